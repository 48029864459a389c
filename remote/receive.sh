# shellcheck shell=bash
# Runs on the pod: receive the run's inputs as one tar stream on stdin and prove what arrived.
#
#   receive.sh INPUT_DIR RUN_DIR ENCODING MODE NAME...
#     ENCODING  raw | base64 | base64-gzip (base64 where the channel is not binary-safe, seed §3.3;
#               gzipped first through a PTY, the slowest channel)
#     MODE      keep:    a trainer that runs or ran in RUN_DIR is left alone; stdin is drained
#               replace: such a trainer is stopped and RUN_DIR cleared first
#
# Prints "trainer=<state before>" and then upload.ok: the sha256sum line of every file received.
# A rerun after the orchestrator was killed must never upload under a running trainer (seed §3.4).
set -euo pipefail
input_dir=$1 run_dir=$2 encoding=$3 mode=$4
shift 4

state=$(trainer_state "$run_dir")
if [ "$mode" = keep ] && [ "$state" != none ]; then
  cat >/dev/null
  echo "trainer=$state"
  cat "$input_dir/upload.ok" 2>/dev/null || true
  exit 0
fi
stop_tagged "$run_dir/train.pid" fullcycle-trainer
rm -rf -- "$run_dir"
mkdir -p "$input_dir"
cd "$input_dir"
rm -f upload.ok
rm -rf -- "$@"
if [ "$encoding" = base64 ]; then
  b64_decode | tar -b 2048 -xf -
elif [ "$encoding" = base64-gzip ]; then
  b64_decode | gzip -dc | tar -b 2048 -xf -
else
  tar -b 2048 -xf -
fi
find "$@" -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum >upload.ok.tmp
mv upload.ok.tmp upload.ok
echo "lines $(wc -l <"$1")" >&2
echo "trainer=$state"
cat upload.ok
