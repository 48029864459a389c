"""Find and end pods that a crashed run left behind.

A pod is this project's when its name starts with `<name_prefix>-`. It is spared while a live run
owns it (its run folder's pod.json names it and that run's lock is held); it is reaped when no live
run owns it, or when it has outlived the maximum runtime whatever owns it.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

from tasks import lock, record
from tasks.context import RunContext
from tasks.paths import run_paths
from tasks.providers.base import Pod

log = logging.getLogger("fullcycle")


def run_folders(ctx: RunContext) -> list[Path]:
    pattern = ctx.settings.paths.work_local.replace("{date}", "*")
    return sorted(p for p in ctx.paths.project_root.glob(pattern) if p.is_dir())


def _recorded(ctx: RunContext) -> dict[str, tuple[Path, bool]]:
    """pod id -> (its run folder, whether that run is live)."""
    found = {}
    for folder in run_folders(ctx):
        pod = Pod.load(folder / "pod.json")
        if pod:
            found[pod.pod_id] = (folder, lock.is_held(folder / ".lock", ctx.run.locks))
    return found


def _mark_reaped(ctx: RunContext, folder: Path, pod_id: str) -> None:
    """Record the termination in the run that rented the pod, and refresh that run's summary."""
    pod = Pod.load(folder / "pod.json")
    if not pod or pod.pod_id != pod_id:
        return
    pod.terminated, pod.terminated_at, pod.terminate_error = True, record.now(), None
    pod.save(folder / "pod.json")
    date = folder.name
    try:
        paths = run_paths(dataclasses.replace(ctx.settings, date=date))
        record.append_event(paths, f"reaper-{ctx.run.attempt_id}", "pod_terminated", pod_id=pod_id, how="reaper")
        record.write(paths, ctx.provider_name, live=False)
    except Exception as exc:  # an odd folder name must not stop the reaping
        log.warning("reaper: could not refresh the summary in %s: %s", folder, exc)


def reap(ctx: RunContext, terminate: bool) -> list[dict[str, Any]]:
    provider = ctx.provider
    prefix = f"{ctx.settings.runpod.name_prefix}-"
    max_age = ctx.settings.runpod.max_runtime_h * 3600
    recorded = _recorded(ctx)
    rows = []
    for info in provider.list_pods():
        if not (info.name or "").startswith(prefix) or info.status == "TERMINATED":
            continue
        folder, live = recorded.get(info.id, (None, False))
        too_old = info.uptime_s is not None and info.uptime_s > max_age
        stale = not live or too_old
        action = "kept (a live run owns it)"
        if stale and terminate:
            provider.terminate(Pod(provider=provider.name, pod_id=info.id, name=info.name or "", created_at=""))
            if folder:
                _mark_reaped(ctx, folder, info.id)
            action = "terminated"
        elif stale:
            action = "stale: would terminate (run `doit reap_pods`)"
        why = "over the maximum runtime" if too_old else ("no live run owns it" if stale else "")
        rows.append({"pod_id": info.id, "name": info.name, "status": info.status, "uptime_s": info.uptime_s,
                     "action": action, "why": why})
        log.info("reaper: pod %s (%s, %s, up %ss): %s%s", info.id, info.name, info.status, info.uptime_s, action,
                 f" — {why}" if why else "")
    if not rows:
        log.info("reaper: no %s* pods on the account", prefix)
    return rows
