# shellcheck shell=bash
# Runs on the pod: (re)start the dead-man's switch that ends the pod after its maximum runtime,
# even when the machine that rented it is gone.
#
#   watchdog.sh PID_FILE SECONDS WHAT REST_URL      (WHAT: pods/<id>, or clusters/<id> on a cluster's node)
#
# When the time is up it ends the pod with what the pod itself has, the most complete way first:
#   1. DELETE REST_URL/v2/WHAT with the pod's own key ($RUNPOD_API_KEY, which RunPod puts in
#      every pod): the pod and its disk are gone;
#   2. `runpodctl remove pod` (GraphQL: works until RunPod retires it in early 2027);
#   3. the stop action (REST, then `runpodctl stop pod`): the GPU stops billing, the pod's disk bills
#      until it is deleted (`doit reap_pods`, or the next run's check, deletes it). A cluster ends only
#      whole: its nodes try step 1 alone.
# Whether RunPod lets a pod's own key delete or stop its pod is not documented: each step is tried
# and what worked is written to watchdog.log beside the pid file.
# An older watchdog is stopped only when its pid file still names a live process started as ours.
set -u
pid_file=$1 seconds=$2 what=$3 url=$4

stop_tagged "$pid_file" fullcycle-watchdog
mkdir -p "$(dirname "$pid_file")"
# shellcheck disable=SC2016 # expanded by the detached bash, from its own arguments
setsid nohup bash -c "$(declare -f rest end_pod)"'
  echo $$ >"$1"; sleep "$2"; end_pod "$3" "$4"' fullcycle-watchdog "$pid_file" "$seconds" "$what" "$url" \
  >>"$(dirname "$pid_file")/watchdog.log" 2>&1 </dev/null &
for _ in $(seq 100); do
  [ -s "$pid_file" ] && break
  sleep 0.05
done
echo "watchdog=$(cat "$pid_file" 2>/dev/null)"
