"""`out/adapters/latest`: the newest date whose adapter landed and was promoted. A failed training
or an adapter judged worse never moves it."""

from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path

from tasks.context import RunContext
from tasks.core.files import section
from tasks.core.paths import latest_link, run_paths
from tasks.post.outcomes import record

log = logging.getLogger("fullcycle")


def newest_successful_date(ctx: RunContext) -> str | None:
    """The newest date whose adapter landed and was promoted ([eval] promote): a failed training or an
    adapter judged worse never counts."""
    from tasks.record.history import summaries

    dates = []
    for date, _folder, summary in summaries(ctx.settings):
        promoted = section(summary, "eval").get("promoted") is not False
        if summary.get("training_success") is True and promoted and Path(str(summary.get("adapter_path") or "")).is_dir():
            dates.append(date)
    return max(dates) if dates else None


def _link_target(ctx: RunContext, date: str) -> str:
    """The newest date's out_root, relative to the link (so the whole tree can move)."""
    out_root = run_paths(dataclasses.replace(ctx.settings, date=date)).out_root
    return os.path.relpath(out_root, latest_link(ctx.settings).parent)


def update_latest(ctx: RunContext) -> None:
    """The post_latest stage: point the link at the newest promoted date (atomically)."""
    newest = newest_successful_date(ctx)
    link = latest_link(ctx.settings)
    if newest is None:
        log.info("latest: no successful run yet; %s left alone", link)
        return
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_name(".latest.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(_link_target(ctx, newest))
    os.replace(tmp, link)
    log.info("latest -> %s", newest)
    record(ctx, "latest", {"link": str(link), "target": newest})


def latest_is_current(ctx: RunContext) -> bool:
    link = latest_link(ctx.settings)
    newest = newest_successful_date(ctx)
    return link.is_symlink() and newest is not None and os.readlink(link) == _link_target(ctx, newest)
