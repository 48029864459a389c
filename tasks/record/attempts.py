"""The attempts log (attempts.jsonl): every process that runs a stage for a date is one attempt, and
appends its events (start, each stage, each pod it rents or resumes, each termination, end).

It is append-only: no attempt ever rewrites another's lines, so a failed re-run cannot erase the
record of a success, and every pod the date ever rented is in the totals. A torn or hand-edited line
is skipped, never fatal: the record is read by the report and the page long after the run.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import jsonlines
import orjson

from tasks.core.dates import now
from tasks.core.dates import parse_stamp as _parse
from tasks.core.logs import redact
from tasks.core.paths import RunPaths

log = logging.getLogger("fullcycle")


def append_event(paths: RunPaths, attempt: str, event: str, **fields: Any) -> None:
    """One line, appended and flushed: a kill -9 loses at most the line being written."""
    paths.attempts_file.parent.mkdir(parents=True, exist_ok=True)
    line = {"attempt": attempt, "event": event, "at": now(), **fields}
    if "error" in line and line["error"]:
        line["error"] = redact(str(line["error"]))
    with jsonlines.open(paths.attempts_file, mode="a", flush=True) as out:
        out.write(line)


def read_events(paths: RunPaths) -> list[dict[str, Any]]:
    """Every event; a torn last line (the process died mid-write), a line that is not JSON or not
    UTF-8, or one hand-edited out of shape is skipped, never fatal."""
    events = []
    try:
        with paths.attempts_file.open("rb") as fh:
            for line in fh:
                try:
                    item = orjson.loads(line)
                except orjson.JSONDecodeError:
                    continue
                if _well_formed(item):
                    events.append(item)
    except FileNotFoundError:
        return []
    except OSError as exc:
        log.warning("record: %s is not readable (%s)", paths.attempts_file, exc)
    return events


def _well_formed(item: Any) -> bool:
    """An event this module wrote: the fields every reader relies on are there, with their types."""
    if not (isinstance(item, dict) and isinstance(item.get("attempt"), str) and isinstance(item.get("event"), str)
            and _parse(item.get("at")) is not None):
        return False
    if item["event"] == "stage":
        return isinstance(item.get("stage"), str) and isinstance(item.get("status"), str)
    if item["event"] == "pod_created":
        return isinstance(item.get("pod"), dict) and isinstance(item["pod"].get("pod_id"), str)
    return item.get("pod_id") is None or isinstance(item.get("pod_id"), str)


def pod_lives(events: list[dict[str, Any]], current_pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every pod the date rented, with its life span as the record shows it."""
    pods: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["event"] == "pod_created":
            pods[e["pod"].get("pod_id")] = {**e["pod"], "terminated_at": None}
        elif e["event"] == "pod_terminated" and e.get("pod_id") in pods:
            pods[e["pod_id"]]["terminated_at"] = pods[e["pod_id"]]["terminated_at"] or e["at"]
        elif e["event"] == "pod_billed" and e.get("pod_id") in pods:
            pods[e["pod_id"]]["cost_usd_billed"] = e.get("cost_usd_billed")
    if current_pod.get("pod_id") in pods and current_pod.get("terminated_at"):
        pods[current_pod["pod_id"]]["terminated_at"] = pods[current_pod["pod_id"]]["terminated_at"] or current_pod["terminated_at"]
    return pods


def seconds_between(start: dt.datetime | None, end: dt.datetime | None) -> float:
    if not start or not end or end < start:
        return 0.0
    return (end - start).total_seconds()


def cost_at(seconds: float, per_hr: Any) -> float | None:
    return round(per_hr * seconds / 3600, 4) if isinstance(per_hr, (int, float)) else None


def _billed(pods: list[dict[str, Any]]) -> float | None:
    """What RunPod billed for these pods, when it has said so for every one of them."""
    amounts = [p.get("cost_usd_billed") for p in pods]
    return round(sum(amounts), 4) if pods and all(isinstance(a, (int, float)) for a in amounts) else None


def attempts(events: list[dict[str, Any]], pods: dict[str, dict[str, Any]], live: bool) -> list[dict[str, Any]]:
    """One entry per attempt, in order, from its own lines only; `live`: the date's lock is held, so the
    last attempt without an end line is running (else it died: kill -9, power loss)."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        by_id.setdefault(e["attempt"], []).append(e)
    at_now = dt.datetime.now(dt.timezone.utc)
    out = []
    ids = [i for i, lines in by_id.items() if any(e["event"] == "start" for e in lines)]
    for n, attempt_id in enumerate(ids):
        lines = by_id[attempt_id]
        start = next((e for e in lines if e["event"] == "start"), lines[0])
        end = next((e for e in lines if e["event"] == "end"), None)
        stages = [e for e in lines if e["event"] == "stage"]
        failed = [e for e in stages if e.get("status") in ("failed", "interrupted")]
        reached = stages[-1]["stage"] if stages else None
        last_status = {e["stage"]: e["status"] for e in stages}
        if end:
            outcome = end.get("outcome")
        elif n == len(ids) - 1 and live:
            outcome = "running"
        else:
            outcome = "died"  # no end line: killed outright (kill -9, power loss)
        error = None
        if failed:
            error = f"{failed[-1]['stage']}: {failed[-1].get('error') or failed[-1]['status']}"
        elif outcome == "died":
            running = [s for s, status in last_status.items() if status == "running"]
            error = f"{running[-1] if running else reached}: the process died without finishing (killed?)"
        started_at = _parse(start["at"])
        ended_at = _parse(end["at"]) if end else (at_now if outcome == "running" else _parse(lines[-1]["at"]))
        used = []
        for e in lines:
            pod_id = (e.get("pod") or {}).get("pod_id") if e["event"] == "pod_created" else e.get("pod_id")
            if e["event"] in ("pod_created", "pod_resumed") and pod_id and pod_id not in used:
                used.append(pod_id)
        pod_seconds, cost = 0.0, 0.0
        for pod_id in used:
            pod = pods.get(pod_id) or {}
            life_end = _parse(pod.get("terminated_at")) or at_now
            overlap = seconds_between(max(started_at, _parse(pod.get("created_at")) or started_at), min(ended_at, life_end))
            pod_seconds += overlap
            cost += cost_at(overlap, pod.get("cost_per_hr")) or 0.0
        first_pod = pods.get(used[0]) if used else {}
        out.append({
            "attempt": attempt_id,
            "started_at": start["at"],
            "ended_at": end["at"] if end else None,
            "outcome": outcome,
            "stage_reached": reached,
            "stages_run": list(last_status),
            "error": error,
            "pod_id": used[-1] if used else None,
            "pods": used,
            "gpu": (first_pod or {}).get("gpu"),
            "cloud_type": (first_pod or {}).get("cloud_type"),
            "pod_seconds": round(pod_seconds, 1),
            "cost_usd": round(cost, 4) if used else 0.0,
            "cost_usd_billed": _billed([pods.get(p) or {} for p in used]),
            "argv": start.get("argv"),
        })
    return out


def stages(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each stage's latest outcome, in the order they last ran: the one record of stage status."""
    found: dict[str, dict[str, Any]] = {}
    for e in (e for e in events if e["event"] == "stage"):
        before = found.pop(e["stage"], {})
        begun = before.get("attempt") == e["attempt"] and before.get("status") == "running"  # its own start line
        found[e["stage"]] = {"status": e["status"], "started_at": before["started_at"] if begun else e["at"],
                             "seconds": e.get("seconds", 0.0), "error": e.get("error"),
                             "ssh_sessions": e.get("ssh_sessions", 0), "attempt": e["attempt"]}
    return found


def totals(pods: dict[str, dict[str, Any]], current_pod: dict[str, Any]) -> dict[str, Any]:
    """Every pod of the date, whole life each: a pod bills between a killed attempt and the next."""
    at_now = dt.datetime.now(dt.timezone.utc)
    seconds, cost, open_pods = 0.0, 0.0, []
    for pod_id, pod in pods.items():
        end = _parse(pod.get("terminated_at"))
        if end is None:
            open_pods.append(pod_id)
            end = at_now
        life = seconds_between(_parse(pod.get("created_at")), end)
        seconds += life
        cost += cost_at(life, pod.get("cost_per_hr")) or 0.0
    return {"pods": len(pods), "pod_seconds": round(seconds, 1), "cost_usd": round(cost, 4),
            "cost_usd_billed": _billed(list(pods.values())), "pods_not_verified_terminated": open_pods}
