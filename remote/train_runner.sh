# shellcheck shell=bash
# Runs on the pod: start the training once, detached, follow its log, pack the adapter when done.
# The detached run: find or build the Python (setup_python.sh); then the base model's download
# (python -m trainer.download: timed, never hung) starts at once and the preflight (the run's code path
# on a tiny model of the base's family) runs beside it, so a passing preflight costs the bill nothing
# the download does not already cost; then the trainer: one process, or one per GPU under torchrun when
# [runpod] gpu_count > 1 (python -m trainer.ranks says how many).
#
#   train_runner.sh RUN_DIR INPUT_DIR OUTPUT_DIR PYTHON HF_HOME OFFSET END_MARK SCRIPT DATASET CONFIG
#                   VENV_DIR "PYTHON_CANDIDATE..." TORCH_INDEX ["NODES NODE_RANK MASTER_ADDR MASTER_PORT"]
#
# A sharded plan (config.json's sharding) runs train_fsdp.py beside SCRIPT under torchrun, one process per
# GPU; on a cluster's node torchrun joins the others: the environment RunPod gives each node (NUM_NODES,
# NODE_RANK, MASTER_ADDR, MASTER_PORT) wins, else the last argument, read from the API by the orchestrator;
# the nodes talk over ens1 where there is one (NCCL_SOCKET_IFNAME: eth0 is the internet side).
#
# Where the preflight runs (config.json's preflight.where): "trainer" (the built-in trainer, one
# process) runs it inside the trainer's own process, so Python and Unsloth start once a day and the
# trainer's imports happen during the download too; "apart" (a trainer of one's own, torchrun) runs
# `python -m trainer.preflight` beside the download, then the trainer. The compile caches (Unsloth's
# generated code and its compile bundle, Triton's kernels) live beside the run folder, so the preflight,
# the trainer and, on a network volume, the next day share them. A failed preflight (exit 5) stops the
# download and ends the run; so do a stack that cannot run (exit 4) and a failed download (exit 6).
#
# The Python is found or built first (INPUT_DIR/setup_python.sh), inside the detached run, so a
# long bootstrap survives a dropped connection too and its progress is in the followed log.
# The trainer runs under setsid+nohup with its log, pid and exit code in RUN_DIR, so a dropped ssh
# connection (or a killed orchestrator) only stops the following: running this again re-attaches
# from byte OFFSET of the log and never starts a second trainer. The last line printed is
#   END_MARK exit=<code> sha256=<archive sha> bytes=<archive size> python=<b64> preflight=<b64> download=<b64> end
# and the same line is kept in RUN_DIR/train.outcome for a gateway that loses stdout.
set -u
run_dir=$1 input_dir=$2 output_dir=$3 python=$4 hf_home=$5 offset=$6 end_mark=$7
script=$8 dataset=$9 config=${10} venv_dir=${11} candidates=${12} torch_index=${13:-} cluster=${14:-}

mkdir -p "$run_dir" && cd "$run_dir" || exit 97
state=$(trainer_state "$run_dir")
if [ "$state" = none ] || [ "$state" = lost ]; then
  rm -f train.outcome train.pid train.exit adapter.tar adapter.tar.*.tmp preflight.json preflight.only \
    download.json download.pid rank*.exit
  touch train.log
  # shellcheck disable=SC2016 # expanded by the detached bash, from its own arguments
  setsid nohup bash -c '
    echo $$ >train.pid.tmp && mv train.pid.tmp train.pid
    rm -rf -- "$1"
    token="$(dirname "$PWD")/hf_token"  # the hub token, sent over ssh (never in the pod env): read once, then removed
    if [ -s "$token" ]; then HF_TOKEN=$(cat "$token") && export HF_TOKEN; rm -f "$token"; fi
    caches="$(dirname "$PWD")/compile-cache"
    mkdir -p -m 700 "$caches" && chmod 700 "$caches"  # Unsloth loads a compile bundle only from a private folder
    export HF_HOME="$2" PYTHONUNBUFFERED=1 UNSLOTH_COMPILE_LOCATION="$caches/unsloth" \
      UNSLOTH_MEGA_CACHE_DIR="$caches/mega" TRITON_CACHE_DIR="$caches/triton" TORCHINDUCTOR_CACHE_DIR="$caches/inductor"
    stop_download() {  # only while it runs (a finished pid may be another process by now); its TERM
      if jobs -pr | grep -qx "$download"; then  # handler ends its hub child and writes what it got
        kill -TERM "$download" 2>/dev/null
        wait "$download" 2>/dev/null
      fi
    }
    if setup=$(bash "$7" "$3" "$8" "$9" "${10}" "${11}" 2>>train.log); then
      printf "%s\n" "$setup" >python.info
      py=$(sed -n 1p python.info)
      read -r procs shape <<<"$(PYTHONPATH="$9" "$py" -m trainer.ranks "$6" 2>>train.log)" || procs=1
      read -r nodes node_rank master_addr master_port <<<"${12}"
      nodes=${NUM_NODES:-${nodes:-1}} node_rank=${NODE_RANK:-${node_rank:-0}}
      entry=$4 light=()
      [ "$shape" = fsdp ] && entry="$(dirname "$4")/train_fsdp.py"
      [ "$shape" = fsdp ] && [ "$node_rank" != 0 ] && light=(--no-weights)  # rank 0 alone reads the weights
      PYTHONPATH="$9" "$py" -m trainer.download --config "$6" --report download.json "${light[@]}" >>train.log 2>&1 \
        </dev/null &
      download=$!
      echo "$download" >download.pid
      where=$(PYTHONPATH="$9" "$py" -m trainer.preflight --where "$6" 2>>train.log) || where=apart
      if [ "$where" = trainer ] && [ "${procs:-1}" -le 1 ] && [ "$shape" != fsdp ]; then
        FULLCYCLE_PREFLIGHT_REPORT="$PWD/preflight.json" FULLCYCLE_DOWNLOAD_PID="$download" \
          FULLCYCLE_DOWNLOAD_REPORT="$PWD/download.json" "$py" "$4" --data "$5" --config "$6" --output "$1" >>train.log 2>&1
        code=$?
      else
        code=0
        if [ "$where" != none ]; then
          PYTHONPATH="$9" "$py" -m trainer.preflight --data "$5" --config "$6" --output preflight-work \
            --report preflight.json >>train.log 2>&1
          code=$?
        fi
        if [ "$code" = 0 ]; then
          wait "$download"
          code=$?
        fi
        if [ "$code" = 0 ] && [ -e preflight.only ]; then
          mkdir -p "$1"  # `doit gpu_check`: the preflight was the whole run
        elif [ "$code" = 0 ]; then
          launch=("$py")  # one process, or one per GPU under torchrun (copies or shards; rank 0 reports)
          topology=(--standalone)
          if [ "$nodes" -gt 1 ]; then
            topology=(--nnodes "$nodes" --node_rank "$node_rank" --master_addr "${MASTER_ADDR:-$master_addr}"
              --master_port "${MASTER_PORT:-$master_port}")
            [ -z "${NCCL_SOCKET_IFNAME:-}" ] && [ -e /sys/class/net/ens1 ] && export NCCL_SOCKET_IFNAME=ens1
          fi
          if [ "${procs:-1}" -gt 1 ] || [ "$shape" = fsdp ]; then
            launch=("$py" -m torch.distributed.run "${topology[@]}" --nproc_per_node "${procs:-1}")
          fi
          FULLCYCLE_DOWNLOAD_REPORT="$PWD/download.json" "${launch[@]}" "$entry" --data "$5" --config "$6" \
            --output "$1" >>train.log 2>&1
          code=$?
          for ranked in rank*.exit; do  # torchrun says 1 for any failure: the failing rank knows better
            [ "$code" != 0 ] && [ -s "$ranked" ] && [ "$(cat "$ranked")" != 0 ] && code=$(cat "$ranked") && break
          done
        fi
      fi
      stop_download  # finished already, unless the preflight or the trainer ended the run first
    else
      code=98
    fi
    echo "$code" >train.exit.tmp && mv train.exit.tmp train.exit
  ' fullcycle-trainer "$output_dir" "$hf_home" "$python" "$script" "$dataset" "$config" \
    "$input_dir/setup_python.sh" "$venv_dir" "$input_dir" "$candidates" "$torch_index" "$cluster" >/dev/null 2>&1 </dev/null &
  for _ in $(seq 200); do
    [ -s train.pid ] && break
    sleep 0.05
  done
fi

pid=$(cat train.pid 2>/dev/null || echo 0)
tail -s 0.2 -c +"$((offset + 1))" --pid="$pid" -f train.log
code=$(cat train.exit 2>/dev/null || echo lost)
sha='' size=''
if [ "$code" = 0 ]; then
  # Packed once: a re-attach must not change the archive a resumed download is reading. A runner of
  # a killed session may still be alive and packing too: each writes its own file and hard-links it
  # into place, which succeeds for the first only (a link is never a half-written file); the others
  # use that one. Failure is only "no adapter.tar after trying".
  if [ ! -s adapter.tar ]; then
    mine="adapter.tar.$$.tmp"
    if tar -cf "$mine" -C "$output_dir" . -C "$input_dir" upload.ok; then
      ln "$mine" adapter.tar 2>/dev/null || true
    fi
    rm -f "$mine"
    [ -s adapter.tar ] || code=pack-failed
  fi
  if [ "$code" = 0 ]; then
    sha=$(sha256sum adapter.tar | cut -d' ' -f1)
    size=$(stat -c %s adapter.tar)
  fi
fi
line="$end_mark exit=$code sha256=$sha bytes=$size python=$(base64 -w0 python.info 2>/dev/null)"
line="$line preflight=$(base64 -w0 preflight.json 2>/dev/null) download=$(base64 -w0 download.json 2>/dev/null) end"
[ "$code" = lost ] || echo "$line" >train.outcome
printf '%s\n' "$line"
