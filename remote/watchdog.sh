# shellcheck shell=bash
# Runs on the pod: (re)start the dead-man's switch that ends the pod after its maximum runtime,
# even when the machine that rented it is gone.
#
#   watchdog.sh PID_FILE SECONDS COMMAND
#
# An older watchdog is stopped only when its pid file still names a live process started as ours.
set -u
pid_file=$1 seconds=$2 command=$3

stop_tagged "$pid_file" fullcycle-watchdog
mkdir -p "$(dirname "$pid_file")"
# shellcheck disable=SC2016 # expanded by the detached bash, from its own arguments
setsid nohup bash -c 'echo $$ >"$1"; sleep "$2"; eval "$3"' fullcycle-watchdog "$pid_file" "$seconds" "$command" \
  >/dev/null 2>&1 </dev/null &
for _ in $(seq 100); do
  [ -s "$pid_file" ] && break
  sleep 0.05
done
echo "watchdog=$(cat "$pid_file" 2>/dev/null)"
