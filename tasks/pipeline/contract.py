"""The seed's function contract (§3): `run_remote_training(opts)` for callers that are not doit.

It drives the very same doit graph as `doit full_cycle` (dodo.py, run in-process with a context
built from `opts`), so the two can never disagree on order, up-to-date rules, teardown or record.
The caller prepared dataset and config (seed §2); those stages keep the caller's files.
"""

from __future__ import annotations

import dataclasses
import runpy
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks import catalog
from tasks.context import RunContext
from tasks.pipeline import assemble

DODO = Path(__file__).resolve().parents[2] / "dodo.py"


def context_for(opts: Mapping[str, Any], base: RunContext | None = None) -> RunContext:
    """A run context whose paths are the seed's keys in `opts`; settings from fullcycle.toml."""
    base = base or assemble.context(date=opts["DATE_STR"])
    paths = dataclasses.replace(
        base.paths,
        date=opts["DATE_STR"],
        work_local=Path(opts["WORK_LOCAL"]),
        out_root=Path(opts["OUT_ROOT"]),
        final_adapter_dir=Path(opts["FINAL_ADAPTER_DIR"]),
        raw_data_file=Path(opts["RAW_DATA_FILE"]),
        clean_data_file=Path(opts["CLEAN_DATA_FILE"]),
        config_file=Path(opts["CONFIG_FILE"]),
        summary_file=Path(opts["SUMMARY_FILE"]),
    )
    return RunContext(base.settings, paths, samples_used=int(opts["samples_used"]), inputs_prepared=True,
                      owns_process=False, make_provider=base.make_provider or assemble.PROVIDER)


def run_remote_training(opts: Mapping[str, Any], ctx: RunContext | None = None) -> dict[str, Any]:
    """Rent, upload, train, download, terminate (always), write the summary; never raises for a
    failed stage: the result and run-summary.json say what happened (seed §3.8)."""
    from doit.cmd_base import ModuleTaskLoader
    from doit.doit_cmd import DoitMain

    from tasks.core.files import read_record
    from tasks.record import close_attempt
    from tasks.record import summary as run_summary

    own = context_for(opts, ctx)
    namespace = runpy.run_path(str(DODO), init_globals={"CTX": own}, run_name="fullcycle_dodo")
    try:
        DoitMain(ModuleTaskLoader(namespace), config_filenames=()).run(list(catalog.REMOTE))
    finally:
        close_attempt(own)
    # close_attempt wrote it (the attempt's end); a run that started no stage has none yet
    summary = run_summary.read(own.paths.summary_file) or run_summary.build(own.paths, own.provider_name, own.samples_used)
    pod = read_record(own.paths.pod_file)
    return {
        "pod_id": pod.get("pod_id"),
        "ssh_user": pod.get("ssh_user"),
        "ssh_host": pod.get("ssh_host"),
        "training_success": summary["training_success"],
        "terminated": summary["terminated"] and not own.attempt.teardown_failures,
        "upload_verification": summary["upload_verification"],
    }
