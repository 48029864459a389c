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

# rest METHOD URL [JSON]: one call to RunPod's REST API with the pod's own key, which is read from the
# environment and never put on a command line (other processes on the pod could read it there).
rest() {
  [ -n "${RUNPOD_API_KEY:-}" ] || return 1
  if command -v curl >/dev/null 2>&1; then
    local body=()
    [ -n "${3:-}" ] && body=(-H 'Content-Type: application/json' --data "$3")
    printf 'Authorization: Bearer %s\n' "$RUNPOD_API_KEY" |
      curl -fsS -m 30 -o /dev/null -X "$1" -H @- "${body[@]}" "$2"
  else
    python3 -c 'import os, sys, urllib.request
req = urllib.request.Request(sys.argv[2], data=sys.argv[3].encode() or None, method=sys.argv[1],
    headers={"Authorization": "Bearer " + os.environ["RUNPOD_API_KEY"], "Content-Type": "application/json"})
urllib.request.urlopen(req, timeout=30)' "$1" "$2" "${3:-}"
  fi
}

# end_pod WHAT REST_URL: WHAT is pods/<id> or clusters/<id>. Delete it (REST, then runpodctl for a pod);
# failing both, stop a pod (its disk bills on until it is deleted). A cluster ends only whole.
end_pod() {
  local id=${1#*/}
  echo "watchdog: $(date -u +%FT%TZ): the maximum runtime is up: ending $1"
  if rest DELETE "$2/v2/$1"; then echo "watchdog: deleted $1 (REST)"; return 0; fi
  case $1 in clusters/*)
    echo "watchdog: could not delete $1: it runs on until it is ended from outside"
    return 1 ;;
  esac
  if command -v runpodctl >/dev/null 2>&1 && runpodctl remove pod "$id"; then
    echo "watchdog: deleted pod $id (runpodctl remove pod)"
    return 0
  fi
  if rest POST "$2/v2/$1/action" '{"action":"stop"}'; then
    echo "watchdog: could not delete pod $id: stopped it (REST); its disk bills until it is deleted"
    return 0
  fi
  if command -v runpodctl >/dev/null 2>&1 && runpodctl stop pod "$id"; then
    echo "watchdog: could not delete pod $id: stopped it (runpodctl); its disk bills until it is deleted"
    return 0
  fi
  echo "watchdog: could neither delete nor stop pod $id: it runs on until it is ended from outside"
  return 1
}
