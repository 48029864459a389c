"""The run record (seed §3.7): stages.json, the append-only attempts log, and run-summary.json.

- stages.json holds the latest outcome of each stage: the current state of the date.
- attempts.jsonl is append-only: every process that runs a stage for this date is one attempt and
  appends its events (start, each stage, each pod it rents or resumes, each termination, end). No
  attempt ever rewrites another's lines, so a failed re-run cannot erase the record of a success,
  and every pod the date ever rented is in the totals.
- run-summary.json is composed from those files (never from memory) and rewritten at each stage
  start and end, so even a run killed outright leaves a summary that says where it died.

The seed's fields describe the date's current adapter and the latest attempt; `attempts` and
`totals` describe all of them.
"""

from __future__ import annotations

import datetime as dt
import os
import platform
import sys
import textwrap
from pathlib import Path
from typing import Any

import jsonlines

import tasks
from tasks import catalog, manifest, modes
from tasks.files import read_json, write_json
from tasks.logs import redact
from tasks.paths import RunPaths, run_folders
from tasks.settings import Settings



def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def _iso(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).isoformat(timespec="seconds")


def _parse(stamp: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(stamp) if stamp else None


def short(text: str | None, width: int = 160) -> str:
    """Shorten on a word boundary, never mid-word."""
    return textwrap.shorten(text or "", width=width, placeholder=" …")


# --------------------------------------------------------------------------- stages.json


def record_stage(paths: RunPaths, name: str, status: str, started: float, ended: float,
                 error: str | None = None, ssh_sessions: int = 0) -> None:
    """Record one stage's latest outcome; the latest outcome of a stage replaces the older one."""
    data = read_json(paths.stages_file) or {"stages": {}}
    data["stages"].pop(name, None)  # keep the file in execution order
    data["stages"][name] = {
        "status": status,
        "started_at": _iso(started),
        "seconds": round(ended - started, 3),
        "error": redact(error) if error else None,
        "ssh_sessions": ssh_sessions,
    }
    write_json(paths.stages_file, data)


# --------------------------------------------------------------------------- attempts.jsonl


def append_event(paths: RunPaths, attempt: str, event: str, **fields: Any) -> None:
    """One line, appended and flushed: a kill -9 loses at most the line being written."""
    paths.attempts_file.parent.mkdir(parents=True, exist_ok=True)
    line = {"attempt": attempt, "event": event, "at": now(), **fields}
    if "error" in line and line["error"]:
        line["error"] = redact(str(line["error"]))
    with jsonlines.open(paths.attempts_file, mode="a", flush=True) as out:
        out.write(line)


def read_events(paths: RunPaths) -> list[dict[str, Any]]:
    """Every event; a torn last line (the process died mid-write) is skipped, not fatal."""
    if not paths.attempts_file.exists():
        return []
    events = []
    with jsonlines.open(paths.attempts_file) as reader:
        for item in reader.iter(skip_invalid=True):
            if isinstance(item, dict) and "attempt" in item:
                events.append(item)
    return events


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _pods(events: list[dict[str, Any]], current_pod: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every pod the date rented, with its life span as the record shows it."""
    pods: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["event"] == "pod_created":
            pod = e.get("pod") or {}
            pods[pod.get("pod_id")] = {**pod, "terminated_at": None}
        elif e["event"] == "pod_terminated" and e.get("pod_id") in pods:
            pods[e["pod_id"]]["terminated_at"] = pods[e["pod_id"]]["terminated_at"] or e["at"]
        elif e["event"] == "pod_billed" and e.get("pod_id") in pods:
            pods[e["pod_id"]]["cost_usd_billed"] = e.get("cost_usd_billed")
    if current_pod.get("pod_id") in pods and current_pod.get("terminated_at"):
        pods[current_pod["pod_id"]]["terminated_at"] = pods[current_pod["pod_id"]]["terminated_at"] or current_pod["terminated_at"]
    return pods


def _seconds(start: dt.datetime | None, end: dt.datetime | None) -> float:
    if not start or not end or end < start:
        return 0.0
    return (end - start).total_seconds()


def _cost(seconds: float, per_hr: Any) -> float | None:
    return round(per_hr * seconds / 3600, 4) if isinstance(per_hr, (int, float)) else None


def _billed(pods: list[dict[str, Any]]) -> float | None:
    """What RunPod billed for these pods, when it has said so for every one of them."""
    amounts = [p.get("cost_usd_billed") for p in pods]
    return round(sum(amounts), 4) if pods and all(isinstance(a, (int, float)) for a in amounts) else None


def attempts(events: list[dict[str, Any]], pods: dict[str, dict[str, Any]], live: bool) -> list[dict[str, Any]]:
    """One entry per attempt, in order, from its own lines only."""
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
        elif n == len(ids) - 1 and live and _pid_alive(start.get("pid")):
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
            overlap = _seconds(max(started_at, _parse(pod.get("created_at")) or started_at), min(ended_at, life_end))
            pod_seconds += overlap
            cost += _cost(overlap, pod.get("cost_per_hr")) or 0.0
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


def totals(pods: dict[str, dict[str, Any]], current_pod: dict[str, Any]) -> dict[str, Any]:
    """Every pod of the date, whole life each: a pod bills between a killed attempt and the next."""
    at_now = dt.datetime.now(dt.timezone.utc)
    seconds, cost, open_pods = 0.0, 0.0, []
    for pod_id, pod in pods.items():
        end = _parse(pod.get("terminated_at"))
        if end is None:
            open_pods.append(pod_id)
            end = at_now
        life = _seconds(_parse(pod.get("created_at")), end)
        seconds += life
        cost += _cost(life, pod.get("cost_per_hr")) or 0.0
    return {"pods": len(pods), "pod_seconds": round(seconds, 1), "cost_usd": round(cost, 4),
            "cost_usd_billed": _billed(list(pods.values())), "pods_not_verified_terminated": open_pods}


# --------------------------------------------------------------------------- run-summary.json


def _upload_verification(paths: RunPaths) -> str | None:
    """The sha256sum line of config.json, from the upload or, failing that, the adapter's copy."""
    for source in (paths.upload_ok, paths.final_adapter_dir / "upload.ok"):
        try:
            lines = [line for line in source.read_text().splitlines() if line.strip()]
        except FileNotFoundError:
            continue
        if lines:
            return manifest.config_line(lines)
    return None


def _warnings(paths: RunPaths, stats: dict[str, Any], post: dict[str, Any], judged: dict[str, Any]) -> list[str]:
    """What a person should know although the run succeeded: nothing here failed it."""
    found = []
    check = read_json(paths.model_check_file) or {}
    for note in (check.get("warning"), check.get("gguf")):
        if note:
            found.append(f"model check: {note}")
    if stats.get("warning"):
        found.append(f"dataset: {stats['warning']}")
    if judged.get("verdict") == "worse" and not judged.get("promoted"):
        found.append(f"eval: today's adapter is worse ({judged.get('why')}); out/adapters/latest was not moved, the "
                     f"adapter is kept in {paths.final_adapter_dir}")
    for step, outcome in post.items():
        if isinstance(outcome, dict) and outcome.get("skipped"):
            found.append(f"post-step {step} skipped: {outcome['skipped']}")
    return found


def _eval(judged: dict[str, Any] | None, stats: dict[str, Any]) -> dict[str, Any] | None:
    """The held-out evaluation: losses (missing ones null with a reason), verdict, promotion, seconds,
    and the answers side by side (the page shows them from here)."""
    if judged is None:
        skipped = stats.get("eval_skipped")
        return {"heldout_samples": 0, "verdict": None, "why": skipped, "promoted": None} if skipped else None
    keys = ("heldout_samples", "base_loss", "adapter_loss", "previous_loss", "previous_date", "verdict", "why",
            "promoted", "seconds", "started_from", "heldout_tokens", "base_perplexity", "adapter_perplexity",
            "previous_perplexity", "answers")
    found = {k: judged.get(k) for k in keys}
    if found["previous_loss"] is None:
        found["previous_why"] = "no earlier promoted adapter of this base model"
    return found


def _mode(recorded: str | None) -> str | None:
    try:
        return str(modes.parse(recorded)) if recorded else None
    except ValueError:
        return recorded  # an older record's word, shown as it is


def _versions(metrics: dict[str, Any]) -> dict[str, Any]:
    import doit

    return {
        "fullcycle": tasks.__version__,
        "python": platform.python_version(),
        "doit": ".".join(map(str, doit.__version__)) if isinstance(doit.__version__, tuple) else str(doit.__version__),
        "trainer": metrics.get("versions"),
    }


def _incomplete(stages: dict[str, Any]) -> str:
    missing = [s for s in catalog.NEEDED if stages.get(s, {}).get("status") != "ok"]
    return (f"incomplete: no verified adapter yet; stages not done: {', '.join(missing) or 'none'} "
            f"(run `doit full_cycle`)")


def build(paths: RunPaths, provider: str, samples_used: int | None = None, live: bool = True) -> dict[str, Any]:
    stages = (read_json(paths.stages_file) or {}).get("stages", {})
    config = read_json(paths.config_file) or {}
    stats = read_json(paths.clean_stats_file) or {}
    pod = read_json(paths.pod_file) or {}
    train = read_json(paths.train_file) or {}
    metrics = read_json(paths.final_adapter_dir / "metrics.json") or {}
    post = read_json(paths.work_local / "post-steps.json") or {}
    judged = read_json(paths.eval_file)
    events = read_events(paths)
    pods = _pods(events, pod)
    history = attempts(events, pods, live)
    latest = history[-1] if history else None

    adapter_ok = (paths.final_adapter_dir / "adapter_config.json").is_file() and stages.get(
        "extract_adapter", {}).get("status") == "ok"
    training_success = train.get("exit_code") == 0 and adapter_ok
    # The latest attempt's failure, if it failed; else, when there is no adapter, what is missing.
    error = latest["error"] if latest and latest["outcome"] in ("failed", "interrupted", "died") else None
    success = bool(training_success) and error is None
    if not training_success and error is None:
        error = _incomplete(stages)
    billed = _seconds(_parse(pod.get("created_at")), _parse(pod.get("terminated_at")) or dt.datetime.now(dt.timezone.utc)) if pod.get("created_at") else None

    return {
        "date": paths.date,
        "samples_used": samples_used if samples_used is not None else stats.get("samples_used"),
        "base_model": config.get("base_model"),
        "pod_id": pod.get("pod_id"),
        "ssh_user": pod.get("ssh_user"),
        "ssh_host": pod.get("ssh_host"),
        "ssh_key_path": pod.get("ssh_key_path"),
        "connection_mode": _mode(pod.get("connection_mode")),
        "adapter_path": str(paths.final_adapter_dir),
        "upload_verification": _upload_verification(paths),
        "terminated": bool(pod.get("terminated")) if pod else False,
        "training_success": bool(training_success),
        # Beyond the seed: what an auditor needs to explain the run.
        "success": success,
        "error": error,
        "warnings": _warnings(paths, stats, post, judged or {}),
        "outcome": latest["outcome"] if latest else None,
        "provider": provider,
        "pod": {k: pod.get(k) for k in ("name", "gpu", "cloud_type", "cost_per_hr", "created_at", "ready_at",
                                          "terminated_at", "terminate_error", "ssh_port", "connection_source",
                                          "transport_notes", "network_volume_id", "data_center")}
        if pod else None,
        "billed_seconds": round(billed, 1) if billed is not None else None,
        "cost_usd": _cost(billed, pod.get("cost_per_hr")) if billed is not None else None,
        "cost_usd_billed": pod.get("cost_usd_billed"),
        "gpu_choice": read_json(paths.work_local / "gpu-choice.json"),
        "ssh_sessions": sum(s.get("ssh_sessions", 0) for s in stages.values()),
        "attempts": history,
        "totals": totals(pods, pod),
        "training": {
            "exit_code": train.get("exit_code"),
            "seconds": train.get("seconds"),
            "reconnects": train.get("reconnects"),
            "python": train.get("python"),
            "python_source": train.get("python_source"),
            "setup_seconds": train.get("setup_seconds"),
            "stack": train.get("stack"),  # the pod's packages against the checked set (requirements-*.txt)
            "gpu": metrics.get("gpu"),  # name, driver, the CUDA version the driver supports
            "model_load_seconds": metrics.get("model_load_seconds"),
            "final_loss": metrics.get("final_loss"),
            "device": metrics.get("device"),
            "backend": metrics.get("backend"),
        },
        "dataset": {k: stats.get(k) for k in ("lines_read", "dropped", "dropped_fraction", "examples", "advice",
                                              "shapes", "cut_to_fit", "warning", "skipped_files", "conversions")
                    if k in stats} or None,
        "config": config or None,
        "post_steps": post or None,
        "eval": _eval(judged, stats),
        "stages": stages,
        "files": {
            "raw_data_file": str(paths.raw_data_file),
            "clean_data_file": str(paths.clean_data_file),
            "config_file": str(paths.config_file),
            "trainer_log": str(paths.trainer_log),
            "attempts_log": str(paths.attempts_file),
        },
        "versions": _versions(metrics),
        "argv": [redact(a) for a in sys.argv[1:]],
        "updated_at": now(),
    }


def write(paths: RunPaths, provider: str, samples_used: int | None = None, live: bool = True) -> dict[str, Any]:
    summary = build(paths, provider, samples_used, live)
    write_json(paths.summary_file, summary)
    return summary


def summaries(settings: Settings) -> list[tuple[str, Path, dict[str, Any]]]:
    """(date, run folder, run-summary.json) of each run that has one, oldest date first."""
    found = []
    for date, folder in run_folders(settings):
        summary = read_json(folder / "run-summary.json")
        if summary:
            found.append((date, folder, summary))
    return found


def read_summary(path: Path) -> dict[str, Any]:
    return read_json(path) or {}
