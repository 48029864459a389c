"""What the page shows, read from the files a run leaves (the same record the CLI writes).

Nothing here keeps state: a run started from the command line, or before the server restarted,
shows exactly like one started from the page, because both are only files and a lock.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from tasks.catalog import BY_NAME, SHOWN
from tasks.core import dates, lock
from tasks.core.files import read_record, section
from tasks.core.logs import redact
from tasks.core.paths import RunPaths, run_folders, run_paths
from tasks.core.settings import Settings
from tasks.record import summary as run_summary
from tasks.record.attempts import read_events
from tasks.record.history import UNREADABLE, summaries

HELP = {name: BY_NAME[name].help for name in SHOWN}


def valid_date(text: str) -> str:
    """A run date from the page, checked as the settings check one (tasks/core/dates.py)."""
    return dates.parse(text)


def paths_for(settings: Settings, date: str) -> RunPaths:
    return run_paths(dataclasses.replace(settings, date=valid_date(date)))


def holder(paths: RunPaths) -> int | None:
    """The pid of the live run holding this date's lock, or None when no run is going."""
    if not lock.is_held(paths.lock_file):
        return None
    try:
        return int(paths.lock_file.read_text().strip() or 0) or None
    except (OSError, ValueError):
        return None


def _latest_attempt(events: list[dict[str, Any]]) -> str | None:
    starts = [e["attempt"] for e in events if e["event"] == "start"]
    return starts[-1] if starts else None


def stage_rows(events: list[dict[str, Any]], running: bool) -> list[dict[str, Any]]:
    """Each stage of the latest attempt: waiting, running, done, skipped (up to date), failed, interrupted."""
    attempt = _latest_attempt(events)
    ended = any(e["attempt"] == attempt and e["event"] == "end" for e in events)
    started_at: dict[str, str] = {}
    last: dict[str, dict[str, Any]] = {}
    for e in events:
        if e["attempt"] == attempt and e["event"] == "stage":
            started_at.setdefault(e["stage"], e["at"])
            last[e["stage"]] = e
    reached = max((SHOWN.index(s) for s in last if s in SHOWN and last[s]["status"] == "ok"), default=-1)
    stops = [SHOWN.index(s) for s in last if s in SHOWN and last[s]["status"] in ("failed", "interrupted")]
    rows = []
    for index, name in enumerate(SHOWN):
        e = last.get(name)
        if e is None:
            # doit skips an up-to-date stage without running it: skipped, once a later one succeeded or the
            # run ended well; after a failure or Ctrl-C the rest never ran.
            if attempt is None:
                state = "waiting"
            elif stops and index > min(stops):
                state = "not run"
            elif index < max([reached, *stops]) or ended:
                state = "skipped"
            else:
                state = "waiting"
            rows.append({"stage": name, "help": HELP.get(name, ""), "state": state, "seconds": None,
                         "started_at": None, "error": None})
            continue
        state = {"ok": "done"}.get(e["status"], e["status"])
        if state == "running" and not running:
            state = "interrupted"  # the process that ran it is gone
        rows.append({"stage": name, "help": HELP.get(name, ""), "state": state, "seconds": e.get("seconds"),
                     "started_at": started_at[name],
                     "error": redact(e["error"]) if e.get("error") else None})
    return rows


def _pod(summary: dict[str, Any]) -> dict[str, Any] | None:
    """The Pod card, from the summary (which has read pod.json already)."""
    pod = summary.get("pod")
    if not pod:
        return None
    return {"id": summary.get("pod_id"), "gpu": pod.get("gpu"), "cloud": pod.get("cloud_type"),
            "connection_mode": summary.get("connection_mode"), "created_at": pod.get("created_at"),
            "terminated": bool(summary.get("terminated")), "terminated_at": pod.get("terminated_at"),
            "terminate_error": pod.get("terminate_error"), "cost_per_hr": pod.get("cost_per_hr"),
            "minutes": round((summary.get("billed_seconds") or 0) / 60, 2), "cost_usd": summary.get("cost_usd"),
            "cost_usd_billed": summary.get("cost_usd_billed"), "why": (summary.get("gpu_choice") or {}).get("why"),
            "image": pod.get("image"), "gpus": summary.get("gpus"), "not_training_share": summary.get("not_training_share"),
            "phases": [[name, seconds] for name, seconds in (summary.get("phases") or {}).items()
                       if isinstance(seconds, (int, float)) and seconds > 0]}


def outputs(paths: RunPaths) -> list[dict[str, Any]]:
    """The files a person looks for after a run, with whether each is there yet."""
    found = [("adapter", paths.final_adapter_dir), ("summary", paths.summary_file), ("log", paths.trainer_log),
             ("GGUF adapter", paths.out_root / "adapter.gguf"), ("Modelfile", paths.out_root / "Modelfile")]
    return [{"what": what, "path": str(path), "exists": path.exists()} for what, path in found]


def date_state(settings: Settings, date: str) -> dict[str, Any]:
    """Everything the Run panel shows for one date."""
    paths = paths_for(settings, date)
    pid = holder(paths)
    events = read_events(paths)
    summary = run_summary.build(paths, settings.project.provider, live=True) if events else {}
    latest = (summary.get("attempts") or [None])[-1]
    phase = "running" if pid else ("idle" if not latest else latest["outcome"])
    return {
        "date": date,
        "phase": phase,  # idle | running | ok | failed | interrupted | died
        "pid": pid,
        "success": summary.get("success"),
        "error": summary.get("error") if phase != "running" else None,
        "warnings": summary.get("warnings") or [],
        "stages": stage_rows(events, running=bool(pid)),
        "pod": _pod(summary),
        "attempt": latest,
        "outputs": outputs(paths),
        "running_dates": running_dates(settings),
        "provider": settings.project.provider,  # the local provider rents nothing: there is no bill to wait for
        "notification": summary.get("notification"),  # what the word on the last run's end returned ([notify])
    }


def signature(paths: RunPaths) -> tuple:
    """A cheap fingerprint of the files date_state reads: a live view recomputes only when it moves."""
    marks = []
    for path in (paths.attempts_file, paths.pod_file, paths.summary_file, paths.lock_file,
                 paths.final_adapter_dir / "adapter_config.json"):
        try:
            st = path.stat()
            marks.append((st.st_mtime_ns, st.st_size))
        except OSError:
            marks.append(None)
    return tuple(marks)


def running_dates(settings: Settings) -> list[str]:
    """Dates with a live run, whoever started it (the page, the CLI, a timer)."""
    return [date for date, folder in run_folders(settings) if lock.is_held(folder / ".lock")]


def _dropped(summary: dict[str, Any]) -> dict[str, Any] | None:
    reasons = section(summary, "dataset").get("dropped")
    if not isinstance(reasons, dict):
        return None
    return {"total": sum(v for v in reasons.values() if isinstance(v, int)), "reasons": reasons}


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _minutes(seconds: Any) -> float | None:
    return round(seconds / 60, 2) if _number(seconds) is not None else None


def history(settings: Settings) -> list[dict[str, Any]]:
    """One row per date, newest first, with its attempts and its loss curve. A summary that is not
    readable, or was hand-edited into other shapes, is a row that names the problem."""
    rows = []
    for date, folder, summary in reversed(summaries(settings)):
        training, totals = section(summary, "training"), section(summary, "totals")
        metrics = read_record(Path(str(summary.get("adapter_path") or folder)) / "metrics.json")
        steps = metrics.get("steps") if isinstance(metrics.get("steps"), list) else []
        attempts = summary.get("attempts") if isinstance(summary.get("attempts"), list) else []
        rows.append({
            "date": date,
            "success": summary.get("success") is True,
            "error": summary.get(UNREADABLE) or summary.get("error"),
            "samples": summary.get("samples_used"),
            "dropped": _dropped(summary),
            "final_loss": _number(training.get("final_loss")),
            "train_minutes": _minutes(training.get("seconds")),
            "pod_minutes": _minutes(totals.get("pod_seconds")),
            "cost_usd": _number(totals.get("cost_usd")),
            "cost_usd_billed": _number(totals.get("cost_usd_billed")),
            "attempts": [{k: a.get(k) for k in ("started_at", "outcome", "stage_reached", "error", "pod_id", "gpu",
                                                "pod_seconds", "cost_usd")} for a in attempts if isinstance(a, dict)],
            "loss": [[s["step"], s["loss"]] for s in steps if isinstance(s, dict) and _number(s.get("step")) is not None
                     and _number(s.get("loss")) is not None],
            "eval": section(summary, "eval") or None,
        })
    return rows


def summary_text(settings: Settings, date: str) -> bytes | None:
    """The date's run-summary.json as it is on disk (already free of secrets), or None."""
    path = paths_for(settings, date).summary_file
    try:
        return redact(path.read_text(encoding="utf-8", errors="replace")).encode()
    except FileNotFoundError:
        return None


class LogTail:
    """Follows trainer.log from the end of what was already shown, a bounded chunk at a time."""

    CHUNK = 64 * 1024

    def __init__(self, path: Path, backlog: int = 16 * 1024) -> None:
        self.path = path
        self.offset: int | None = None
        self.backlog = backlog

    def read(self) -> str:
        try:
            size = os.path.getsize(self.path)
        except OSError:
            self.offset = 0  # not there yet: all it will hold is new
            return ""
        if self.offset is None or size < self.offset:  # first read, or the log was replaced
            self.offset = max(0, size - self.backlog)
            skip_partial = self.offset > 0
        else:
            skip_partial = False
        if size == self.offset:
            return ""
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            data = fh.read(min(self.CHUNK, size - self.offset))
        if skip_partial and b"\n" in data:
            cut = data.index(b"\n") + 1
            self.offset += cut
            data = data[cut:]
        end = data.rfind(b"\n")
        if end < 0 and len(data) < self.CHUNK:
            return ""  # wait for the line to finish
        end = end if end >= 0 else len(data) - 1  # one enormous line: show it in pieces
        self.offset += end + 1
        return redact(data[: end + 1].decode("utf-8", errors="replace"))
