"""The small stage bodies (dataset, config, tiny model, summary) and the up-to-date checks that
dodo.py's stage graph uses. The graph itself lives in dodo.py, where a reader looks for it.

Only light modules are imported here: dodo.py imports this for `doit list`. Each body imports what
it needs when it runs.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from typing import Any

from tasks import tinymodel
from tasks.context import RunContext

log = logging.getLogger("fullcycle")


def is_tiny(ctx: RunContext) -> bool:
    return tinymodel.is_tiny(ctx.settings.training.base_model)


def tiny_files(ctx: RunContext) -> list[str]:
    d = ctx.paths.tiny_model_dir
    return [str(d / name) for name in tinymodel.FILES] if is_tiny(ctx) else []


def lazy(module: str, name: str) -> Callable[[RunContext], Any]:
    """A stage body that imports its module only when it runs, so `doit list` stays light."""

    def body(ctx: RunContext) -> Any:
        return getattr(importlib.import_module(module), name)(ctx)

    body.__name__ = name
    return body


# --------------------------------------------------------------------------- up-to-date checks


class SamePod:
    """Up to date only if the stage last succeeded against the pod now recorded in pod.json.

    pod.json itself cannot be a file_dep: terminating the pod rewrites it, and that must not make
    the upload re-run. What matters is which pod the work was done on.
    """

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def __repr__(self) -> str:
        return "same pod as at its last success (pod.json's pod_id)"

    __str__ = __repr__

    def _pod_id(self) -> str | None:
        from tasks.providers.base import Pod

        pod = Pod.load(self.ctx.paths.pod_file)
        return pod.pod_id if pod else None

    def __call__(self, task: Any, values: dict[str, Any]) -> bool:
        task.value_savers.append(lambda: {"pod_id": self._pod_id()})
        current = self._pod_id()
        return current is not None and values.get("pod_id") == current


class Check:
    """A named up-to-date predicate: `doit info` shows the name, not a function's address."""

    def __init__(self, name: str, predicate: Callable[[], bool]) -> None:
        self.name, self.predicate = name, predicate

    def __repr__(self) -> str:
        return self.name

    __str__ = __repr__

    def __call__(self) -> bool:
        return self.predicate()


def pod_in_use(ctx: RunContext) -> Check:
    return Check("the recorded pod is alive, or already delivered its adapter",
                 lambda: importlib.import_module("tasks.pod").pod_in_use(ctx))


def pod_terminated(ctx: RunContext) -> Check:
    return Check("the recorded pod is terminated", lambda: importlib.import_module("tasks.pod").is_terminated(ctx))


def latest_is_current(ctx: RunContext) -> Check:
    return Check("out/adapters/latest already points at the newest successful date",
                 lambda: importlib.import_module("tasks.poststeps").latest_is_current(ctx))


def no_pods_to_watch(ctx: RunContext) -> Check:
    return Check("reaping is off, or the provider rents nothing",
                 lambda: ctx.settings.runpod.reap == "off" or not ctx.provider.rents_pods)


# --------------------------------------------------------------------------- small stage bodies


def _prepared(ctx: RunContext, path: Any) -> bool:
    """run_remote_training(): the caller made this file itself (seed §4); never overwrite it."""
    if ctx.inputs_prepared and path.exists():
        log.info("%s was prepared by the caller: kept as it is", path)
        return True
    return False


def build_dataset(ctx: RunContext) -> None:
    if _prepared(ctx, ctx.paths.raw_data_file):
        return
    from tasks import builders

    log.info("Preparing dataset… (builder %s)", ctx.settings.dataset.builder)
    builders.build_raw(ctx.settings.dataset, ctx.paths.date, ctx.paths.raw_data_file, ctx.paths.project_root,
                      ctx.paths.dataset_sources_file)
    log.info("Raw dataset: %s", ctx.paths.raw_data_file)


def clean_dataset(ctx: RunContext) -> None:
    if _prepared(ctx, ctx.paths.clean_data_file):
        return
    from tasks import dataset
    from tasks.files import read_json, write_json

    d = ctx.settings.dataset
    stats = dataset.clean(ctx.paths.raw_data_file, ctx.paths.clean_data_file, ctx.paths.dataset_sources_file,
                          ctx.settings.training.max_seq_length, d.too_long)
    report = dataset.report(stats, read_json(ctx.paths.dataset_sources_file) or {}, d.max_drop_fraction)
    write_json(ctx.paths.clean_stats_file, report)
    for line in dataset.describe(stats):
        log.info(line)
    if stats.kept == 0:
        raise dataset.DatasetError(dataset.no_samples(stats))
    if "warning" in report:
        log.warning("dataset: %s", report["warning"])
        if d.drop_fatal:
            raise dataset.DatasetError(f"{report['warning']}; [dataset] drop_fatal is true, so nothing was rented")
    log.info("samples_used=%d", stats.kept)


def write_config(ctx: RunContext) -> None:
    if _prepared(ctx, ctx.paths.config_file):
        return
    from tasks import trainconfig
    from tasks.files import read_json

    config = trainconfig.write(ctx.settings, ctx.paths.config_file, read_json(ctx.paths.model_check_file))
    log.info("Config written… %s (base_model %s)", ctx.paths.config_file, config["base_model"])


def check_model(ctx: RunContext) -> None:
    from pathlib import Path

    from tasks.files import write_json

    t = ctx.settings.training
    local = is_tiny(ctx) or Path(t.base_model).expanduser().is_dir() or t.base_model.startswith(("/", "./", "~"))
    if local:
        verdict = {"base_model": t.base_model, "checked": False, "reason": "a local model: nothing to ask the hub",
                   "model_to_load": t.base_model, "load_in_4bit": t.quantize == "always"}
    else:
        from tasks import modelcheck

        verdict = modelcheck.check(t.base_model, ctx.settings.runpod.gpu_types, t.quantize)
        log.info("Base model %s: %s", t.base_model,
                 f"~{verdict['needed_gb']} GB in {verdict['precision']}, loading {verdict['model_to_load']}"
                 if verdict.get("needed_gb") else ("exists on the hub" if verdict["checked"] else "not checked"))
    write_json(ctx.paths.model_check_file, verdict)


def build_tiny_model(ctx: RunContext) -> None:
    if not is_tiny(ctx):
        return
    tinymodel.build(ctx.paths.clean_data_file, ctx.paths.tiny_model_dir)
    log.info("Tiny base model built in %s", ctx.paths.tiny_model_dir)


def summarize(ctx: RunContext) -> None:
    from tasks import logs, record

    logs.setup(ctx.paths.trainer_log)
    summary = record.write(ctx.paths, ctx.provider_name, ctx.samples_used)
    if summary["success"]:
        log.info("Run complete.")
    else:
        log.info("Run finished without success: %s", summary["error"])


def reap(ctx: RunContext, terminate: bool) -> Any:
    from tasks import logs, reaper
    from tasks.errors import FullcycleError

    logs.setup(ctx.paths.trainer_log)
    try:
        reaper.reap(ctx, terminate)
    except FullcycleError as exc:
        if terminate:
            from doit.exceptions import TaskFailed

            return TaskFailed(logs.redact(str(exc)))
        log.warning("reaper: could not check for stale pods: %s", exc)
    return None


def report(ctx: RunContext) -> None:
    from tasks import report as history

    print(history.report(ctx))


def full_cycle_result(ctx: RunContext) -> Any:
    """The one line a person reads at the end: what happened to this date, and where things are."""
    from doit.exceptions import TaskFailed

    from tasks.files import read_json

    summary = read_json(ctx.paths.summary_file) or {}
    ok = summary.get("success")
    print(f"\nfull_cycle {'SUCCEEDED' if ok else 'FAILED'} for {ctx.paths.date}")
    print(f"  adapter: {summary.get('adapter_path')}\n  summary: {ctx.paths.summary_file}\n  log:     {ctx.paths.trainer_log}")
    if not ok:
        return TaskFailed(f"run not successful: {summary.get('error')}")
    return None


def serve(ctx: RunContext, dodo: str, host: str, port: int) -> Any:
    try:
        from tasks.web.app import serve as run_server
    except ModuleNotFoundError as exc:
        from doit.exceptions import TaskFailed

        return TaskFailed(f"the web page needs the `web` extra ({exc.name} is missing): pip install -e '.[web]'")
    run_server(ctx, dodo, host, port)
    return None
