"""The run record: per-stage outcomes in stages.json, composed into run-summary.json (seed §3.7).

run-summary.json is rebuilt from the stage targets after every stage, success or failure, and after
the pod is terminated, so whatever kills a run, the last summary on disk describes it. It is built
only from files on disk (never from memory), so a re-run of one stage updates it consistently.
"""

from __future__ import annotations

import datetime as dt
import platform
import sys
from typing import Any

import tasks
from tasks.files import read_json, write_json
from tasks.logs import redact
from tasks.paths import RunPaths
from tasks.trainconfig import config_line

CONNECTION_MODES = {"direct": "direct-ssh", "gateway": "gateway-no-scp-no-pty", "local": "local-bash"}


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def record_stage(paths: RunPaths, name: str, status: str, started: float, ended: float,
                 error: str | None = None, ssh_sessions: int = 0) -> None:
    """Record one stage's outcome; the latest outcome of a stage replaces the older one."""
    data = read_json(paths.stages_file) or {"stages": {}}
    data["stages"].pop(name, None)  # keep the file in execution order
    data["stages"][name] = {
        "status": status,
        "started_at": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(ended - started, 3),
        "error": redact(error) if error else None,
        "ssh_sessions": ssh_sessions,
    }
    write_json(paths.stages_file, data)


def _upload_lines(paths: RunPaths) -> list[str]:
    try:
        return [line for line in paths.upload_ok.read_text().splitlines() if line.strip()]
    except FileNotFoundError:
        return []


def _upload_verification(paths: RunPaths) -> str | None:
    """The sha256sum line of config.json, from the upload or, failing that, the adapter's copy."""
    lines = _upload_lines(paths)
    if not lines:
        try:
            lines = (paths.final_adapter_dir / "upload.ok").read_text().splitlines()
        except FileNotFoundError:
            return None
    return config_line(lines)


def _billed_seconds(pod: dict[str, Any]) -> float | None:
    if not pod.get("created_at"):
        return None
    start = dt.datetime.fromisoformat(pod["created_at"])
    end = dt.datetime.fromisoformat(pod["terminated_at"]) if pod.get("terminated_at") else dt.datetime.now(dt.timezone.utc)
    return round((end - start).total_seconds(), 1)


def _versions(metrics: dict[str, Any]) -> dict[str, Any]:
    import doit

    return {
        "fullcycle": tasks.__version__,
        "python": platform.python_version(),
        "doit": ".".join(map(str, doit.__version__)) if isinstance(doit.__version__, tuple) else str(doit.__version__),
        "trainer": metrics.get("versions"),
    }


def _error(failed: list[tuple[str, dict[str, Any]]]) -> str | None:
    if not failed:
        return None
    name, record = failed[-1]
    if record["status"] == "running":
        return f"{name}: did not finish (still running, or the process was killed)"
    return f"{name}: {record['error']}"


def build(paths: RunPaths, provider: str, samples_used: int | None = None) -> dict[str, Any]:
    stages = (read_json(paths.stages_file) or {}).get("stages", {})
    config = read_json(paths.config_file) or {}
    stats = read_json(paths.clean_stats_file) or {}
    pod = read_json(paths.pod_file) or {}
    train = read_json(paths.train_file) or {}
    metrics = read_json(paths.final_adapter_dir / "metrics.json") or {}

    adapter_ok = (paths.final_adapter_dir / "adapter_config.json").is_file() and stages.get(
        "extract_adapter", {}).get("status") == "ok"
    training_success = train.get("exit_code") == 0 and adapter_ok
    failed = [(n, s) for n, s in stages.items() if s["status"] != "ok"]
    billed = _billed_seconds(pod)
    cost = pod.get("cost_per_hr")

    summary = {
        "date": paths.date,
        "samples_used": samples_used if samples_used is not None else stats.get("samples_used"),
        "base_model": config.get("base_model"),
        "pod_id": pod.get("pod_id"),
        "ssh_user": pod.get("ssh_user"),
        "ssh_host": pod.get("ssh_host"),
        "ssh_key_path": pod.get("ssh_key_path"),
        "connection_mode": CONNECTION_MODES.get(pod.get("connection_mode"), pod.get("connection_mode")),
        "adapter_path": str(paths.final_adapter_dir),
        "upload_verification": _upload_verification(paths),
        "terminated": bool(pod.get("terminated")) if pod else False,
        "training_success": bool(training_success),
        # Beyond the seed: what an auditor needs to explain the run.
        "success": bool(training_success) and not failed,
        "error": _error(failed),
        "provider": provider,
        "pod": {k: pod.get(k) for k in ("name", "gpu", "cloud_type", "cost_per_hr", "created_at",
                                          "ready_at", "terminated_at", "terminate_error", "ssh_port")} if pod else None,
        "billed_seconds": billed,
        "ssh_sessions": sum(s.get("ssh_sessions", 0) for s in stages.values()),
        "cost_usd": round(cost * billed / 3600, 4) if cost is not None and billed is not None else None,
        "training": {
            "exit_code": train.get("exit_code"),
            "seconds": train.get("seconds"),
            "reconnects": train.get("reconnects"),
            "final_loss": metrics.get("final_loss"),
            "device": metrics.get("device"),
            "backend": metrics.get("backend"),
        },
        "dataset": {k: stats.get(k) for k in ("lines_read", "dropped")} if stats else None,
        "config": config or None,
        "post_steps": read_json(paths.work_local / "post-steps.json"),
        "stages": stages,
        "files": {
            "raw_data_file": str(paths.raw_data_file),
            "clean_data_file": str(paths.clean_data_file),
            "config_file": str(paths.config_file),
            "trainer_log": str(paths.trainer_log),
        },
        "versions": _versions(metrics),
        "argv": [redact(a) for a in sys.argv[1:]],
        "updated_at": now(),
    }
    return summary


def write(paths: RunPaths, provider: str, samples_used: int | None = None) -> dict[str, Any]:
    summary = build(paths, provider, samples_used)
    write_json(paths.summary_file, summary)
    return summary
