# shellcheck shell=bash
# Shared by the pod-side scripts: transport.script() prepends it to each one it sends.

# alive PIDFILE TAG: the pid in PIDFILE is a live process started as `bash -c ... TAG`.
# /workspace survives a pod restart, so a pid file can outlive its process and its number can
# belong to something else by now: the tag in the process's own argv is the proof it is ours.
alive() {
  local pid argv
  pid=$(cat "$1" 2>/dev/null) || return 1
  case $pid in '' | *[!0-9]*) return 1 ;; esac
  kill -0 "$pid" 2>/dev/null || return 1
  mapfile -d '' argv <"/proc/$pid/cmdline" 2>/dev/null || return 1
  [ "${argv[3]:-}" = "$2" ]
}

# stop_tagged PIDFILE TAG: end that process (and its group) only if it is really ours.
stop_tagged() {
  if alive "$1" "$2"; then
    local pid
    pid=$(cat "$1")
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
  fi
  rm -f "$1"
}

# trainer_state RUN_DIR: none | running | finished | lost (started, gone, no exit code)
trainer_state() {
  if [ -s "$1/train.exit" ]; then
    echo finished
  elif alive "$1/train.pid" fullcycle-trainer; then
    echo running
  elif [ -e "$1/train.pid" ]; then
    echo lost
  else
    echo none
  fi
}

# b64_decode: openssl decodes ~1.6x faster than coreutils; not every image has it.
b64_decode() {
  if command -v openssl >/dev/null 2>&1; then openssl base64 -d -A; else base64 -d; fi
}
