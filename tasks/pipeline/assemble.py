"""Where a run is put together: its settings, its paths and the provider it rents from, made on first
use (so `doit list` never imports one). dodo.py, run_remote_training() and the web page start here.
"""

from __future__ import annotations

from typing import Any

from tasks.catalog import lazy
from tasks.context import RunContext

PROVIDER = lazy("tasks.providers:get")  # (settings, paths, session counter, pod name) -> Provider


def context(default_dir: str = ".", date: str | None = None, **fields: Any) -> RunContext:
    """The context of a run of the settings found from `default_dir` (or $FULLCYCLE_CONFIG) for `date`."""
    loaded = RunContext.load(default_dir, date)
    return RunContext(loaded.settings, loaded.paths, make_provider=PROVIDER, **fields)
