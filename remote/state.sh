# shellcheck shell=bash
# Runs on the pod: what the pod itself says is done, for a rerun after a crash or a session whose
# output was lost on the way (the gateway may drop stdout: never assume, re-read).
#
#   state.sh RUN_DIR INPUT_DIR
#
# Prints "trainer=<none|running|finished|lost>", then upload.ok's lines, then train.outcome's line.
set -u
echo "trainer=$(trainer_state "$1")"
cat "$2/upload.ok" 2>/dev/null || true
cat "$1/train.outcome" 2>/dev/null || true
