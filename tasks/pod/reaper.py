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

from tasks.context import RunContext
from tasks.core import lock
from tasks.core.paths import run_folders, run_paths
from tasks.pod.gpu_check import checks_folder
from tasks.pod.lifecycle import record_terminated
from tasks.providers.base import Pod, UnreadablePod
from tasks.record import summary

log = logging.getLogger("fullcycle")


def _recorded(ctx: RunContext) -> dict[str, tuple[str, Path, bool]]:
    """pod id -> (its date, its run folder, whether that run is live)."""
    found = {}
    checks = sorted(p for p in checks_folder(ctx.paths.cache_dir).glob("*") if p.is_dir())
    for date, folder in [*run_folders(ctx.settings), *((None, check) for check in checks)]:
        try:
            pod = Pod.load(folder / "pod.json")
        except UnreadablePod as exc:  # its pod, if any, is owned by no record: the survey shows it as stale
            log.warning("reaper: %s", exc)
            continue
        if pod:
            found[pod.pod_id] = (date, folder, lock.is_held(folder / ".lock", ctx.attempt.locks))
    return found


def _mark_reaped(ctx: RunContext, date: str, folder: Path, pod_id: str) -> None:
    """Record the termination in the run that rented the pod, and refresh that run's summary."""
    try:
        pod = Pod.load(folder / "pod.json")
    except UnreadablePod:
        return
    if not pod or pod.pod_id != pod_id:
        return
    try:
        paths = run_paths(dataclasses.replace(ctx.settings, date=date))
        record_terminated(paths, f"reaper-{ctx.attempt.id}", pod, "reaper")
        summary.write(paths, ctx.provider_name, live=False)
    except Exception as exc:  # an odd folder name must not stop the reaping
        log.warning("reaper: could not refresh the summary in %s: %s", folder, exc)


def survey(ctx: RunContext) -> list[dict[str, Any]]:
    """This project's pods on the account, each with whether it is stale and why (nothing is ended)."""
    prefix = f"{ctx.settings.runpod.name_prefix}-"
    max_age = ctx.settings.runpod.max_runtime_h * 3600
    recorded = _recorded(ctx)
    rows = []
    for info in ctx.provider.list_pods():
        if not (info.name or "").startswith(prefix) or info.status == "TERMINATED":
            continue
        date, folder, live = recorded.get(info.id, (None, None, False))
        too_old = info.uptime_s is not None and info.uptime_s > max_age
        stale = not live or too_old
        why = "over the maximum runtime" if too_old else ("no live run owns it" if stale else "")
        rows.append({"pod_id": info.id, "name": info.name, "status": info.status, "uptime_s": info.uptime_s,
                     "stale": stale, "why": why, "run_folder": str(folder) if folder else None, "date": date,
                     "cluster": bool(getattr(info, "cluster", False))})
    return rows


def _end(ctx: RunContext, row: dict[str, Any]) -> None:
    provider = ctx.provider
    provider.terminate(Pod(provider=provider.name, pod_id=row["pod_id"], name=row["name"] or "", created_at="",
                           cluster={"id": row["pod_id"]} if row.get("cluster") else None))
    if row["run_folder"] and row["date"]:
        _mark_reaped(ctx, row["date"], Path(row["run_folder"]), row["pod_id"])


def reap(ctx: RunContext, terminate: bool) -> list[dict[str, Any]]:
    rows = survey(ctx)
    for row in rows:
        action = "kept (a live run owns it)"
        if row["stale"] and terminate:
            _end(ctx, row)
            action = "terminated"
        elif row["stale"]:
            action = "stale: would terminate (run `doit reap_pods`)"
        row["action"] = action
        log.info("reaper: pod %s (%s, %s, up %ss): %s%s", row["pod_id"], row["name"], row["status"], row["uptime_s"],
                 action, f" — {row['why']}" if row["why"] else "")
    if not rows:
        log.info("reaper: no %s-* pods on the account", ctx.settings.runpod.name_prefix)
    return rows


class NotStale(Exception):
    """The pod asked to be ended is not (or no longer) a stale pod of this project."""


def terminate_stale(ctx: RunContext, pod_id: str) -> dict[str, Any]:
    """End one pod, only if a fresh look still finds it stale: never a live run's pod, never another's."""
    row = next((r for r in survey(ctx) if r["pod_id"] == pod_id), None)
    if row is None:
        raise NotStale(f"pod {pod_id} is not one of this project's running pods (already gone?)")
    if not row["stale"]:
        raise NotStale(f"pod {pod_id} belongs to a live run; cancel that run instead")
    _end(ctx, row)
    log.info("reaper: pod %s terminated on request (%s)", pod_id, row["why"])
    return {**row, "action": "terminated"}
