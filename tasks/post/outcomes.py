"""What each local post-step made of the adapter (post-steps.json, which the summary reports), and
the one way a post-step that cannot apply says so: a warning, never a failed run."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from tasks.context import RunContext
from tasks.core.files import read_record, write_json

log = logging.getLogger("fullcycle")


def gguf_path(ctx: RunContext) -> Path:
    return ctx.paths.out_root / "adapter.gguf"


def modelfile_path(ctx: RunContext) -> Path:
    return ctx.paths.out_root / "Modelfile"


def record(ctx: RunContext, step: str, outcome: Any) -> None:
    data = read_record(ctx.paths.post_steps_file)
    data[step] = outcome
    write_json(ctx.paths.post_steps_file, data)


def skip(ctx: RunContext, step: str, why: str) -> None:
    """A post-step that cannot apply to this adapter: a warning in the log and the summary, never a
    failed run (the adapter is home and verified; this step has nothing it can make of it)."""
    log.warning("post-step %s skipped: %s", step, why)
    record(ctx, step, {"skipped": why})


def skipped(ctx: RunContext, step: str) -> str | None:
    return ((read_record(ctx.paths.post_steps_file)).get(step) or {}).get("skipped")
