"""The doit stage graph (DESIGN.md): file dependencies and targets, so up-to-date stages are skipped.

Only light modules are imported here: dodo.py imports this for `doit list`. Each action imports
what it needs when it runs.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from doit.tools import config_changed

from tasks.context import RunContext
from tasks.runner import doit_action

DATE_PARAM = {"name": "date", "long": "date", "default": "", "help": "run date YYYY-MM-DD (default: today)"}
TINY = "tiny"

log = logging.getLogger("fullcycle")

# Set by a teardown that could not terminate the pod; dodo.py turns it into a non-zero exit code.
TEARDOWN_FAILURES: list[str] = []


def _task(ctx: RunContext, name: str, func: Any, doc: str, **extra: Any) -> dict[str, Any]:
    return {"basename": name, "doc": doc, "actions": [doit_action(ctx, name, func)],
            "params": [DATE_PARAM], "verbosity": 2, **extra}


def _tiny(ctx: RunContext) -> bool:
    return ctx.settings.training.base_model == TINY


def _tiny_files(ctx: RunContext) -> list[str]:
    d = ctx.paths.tiny_model_dir
    return [str(d / "config.json"), str(d / "model.safetensors")] if _tiny(ctx) else []


class SamePod:
    """Up to date only if the last success was against the pod now recorded in pod.json.

    pod.json itself cannot be a file_dep: terminating the pod rewrites it, and that must not make
    the upload re-run. What matters is which pod the work was done on.
    """

    def __init__(self, ctx: RunContext) -> None:
        self.ctx = ctx

    def _pod_id(self) -> str | None:
        from tasks.providers.base import Pod

        pod = Pod.load(self.ctx.paths.pod_file)
        return pod.pod_id if pod else None

    def __call__(self, task: Any, values: dict[str, Any]) -> bool:
        task.value_savers.append(lambda: {"pod_id": self._pod_id()})
        current = self._pod_id()
        return current is not None and values.get("pod_id") == current


# --------------------------------------------------------------------------- stage bodies


def _build_dataset(ctx: RunContext) -> None:
    from tasks import dataset

    log.info("Preparing dataset… (builder %s)", ctx.settings.dataset.builder)
    dataset.build_raw(ctx.settings.dataset, ctx.paths.date, ctx.paths.raw_data_file, ctx.paths.project_root)
    log.info("Raw dataset: %s", ctx.paths.raw_data_file)


def _clean_dataset(ctx: RunContext) -> None:
    from tasks import dataset
    from tasks.files import write_json

    stats = dataset.clean(ctx.paths.raw_data_file, ctx.paths.clean_data_file)
    write_json(ctx.paths.clean_stats_file, stats.as_dict())
    for line in dataset.describe(stats):
        log.info(line)
    if stats.kept == 0:
        raise dataset.DatasetError(
            f"{ctx.paths.raw_data_file} has no usable samples (each line needs instruction and output); "
            f"nothing was rented"
        )
    log.info("samples_used=%d", stats.kept)


def _write_config(ctx: RunContext) -> None:
    from tasks import trainconfig

    config = trainconfig.write(ctx.settings, ctx.paths.config_file)
    log.info("Config written… %s (base_model %s)", ctx.paths.config_file, config["base_model"])


def _build_tiny_model(ctx: RunContext) -> None:
    if not _tiny(ctx):
        return
    from tasks import tinymodel

    tinymodel.build(ctx.paths.clean_data_file, ctx.paths.tiny_model_dir)
    log.info("Tiny base model built in %s", ctx.paths.tiny_model_dir)


def _lazy(module: str, name: str) -> Callable[[RunContext], Any]:
    """A stage body that imports its module only when it runs, so `doit list` stays light."""

    def body(ctx: RunContext) -> Any:
        return getattr(importlib.import_module(module), name)(ctx)

    body.__name__ = name
    return body


_terminate = _lazy("tasks.remote_training", "terminate_pod")


def _latest_is_current(ctx: RunContext) -> bool:
    from tasks import poststeps

    return poststeps.latest_is_current(ctx)


def _summarize(ctx: RunContext) -> None:
    log.info("Run complete.")


def _reap(ctx: RunContext, terminate: bool) -> Any:
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


def _pod_terminated(ctx: RunContext) -> bool:
    from tasks.providers.base import Pod

    pod = Pod.load(ctx.paths.pod_file)
    return pod is None or pod.terminated


def _pod_done(ctx: RunContext) -> bool:
    from tasks import remote_training

    return remote_training.pod_done(ctx)


def ensure_terminated(ctx: RunContext) -> None:
    """The forced cleanup: runs after all tasks, also after a failure or Ctrl-C (doit teardown)."""
    if _pod_terminated(ctx):
        return
    from tasks.lock import RunLocked
    from tasks.runner import stage

    try:
        with stage(ctx, "terminate_pod"):
            _terminate(ctx)
    except RunLocked:
        return  # the pod belongs to the run that holds the lock: leave it alone
    except Exception as exc:
        TEARDOWN_FAILURES.append(str(exc))


# --------------------------------------------------------------------------- task dicts


def tasks(ctx: RunContext) -> dict[str, dict[str, Any]]:
    """Every stage, in pipeline order."""
    p = ctx.paths
    out, adapter = p.out_root, p.final_adapter_dir
    from tasks.trainconfig import upload_inputs

    inputs = [str(f) for f in upload_inputs(ctx.settings, p).values() if f != p.tiny_model_dir]
    inputs += _tiny_files(ctx)
    teardown = [(ensure_terminated, [ctx])]
    builder = ctx.settings.dataset
    sources: list[str] = []
    if builder.builder == "folder":
        from tasks.dataset import source_files

        src = Path(builder.source).expanduser()
        sources = [str(f) for f in source_files(src if src.is_absolute() else p.project_root / src)]
    return {
        "check_stale_pods": {"basename": "check_stale_pods", "verbosity": 2, "params": [DATE_PARAM],
                             "doc": "Before a run: report (or end, per [runpod] reap) pods a crashed run left",
                             "actions": [(_reap, [ctx, ctx.settings.runpod.reap == "terminate"])],
                             "uptodate": [ctx.settings.runpod.reap == "off" or ctx.provider_name != "runpod"]},
        "build_dataset": _task(ctx, "build_dataset", _build_dataset, "Build today's raw JSONL with the configured builder",
                               file_dep=sources, targets=[str(p.raw_data_file)],
                               uptodate=[config_changed(repr(builder))]),
        "clean_dataset": _task(ctx, "clean_dataset", _clean_dataset,
                               "Stream-clean the raw JSONL to {instruction,input,output}, deduped, reasons counted",
                               file_dep=[str(p.raw_data_file)], targets=[str(p.clean_data_file), str(p.clean_stats_file)]),
        "write_config": _task(ctx, "write_config", _write_config, "Write and validate the training config.json",
                              targets=[str(p.config_file)], uptodate=[config_changed(ctx.settings.training_config())]),
        "build_tiny_model": _task(ctx, "build_tiny_model", _build_tiny_model,
                                  "Build the tiny local base model (only when base_model = 'tiny'); cached",
                                  task_dep=["clean_dataset"], targets=_tiny_files(ctx),
                                  uptodate=[config_changed(str(_tiny(ctx)))]),
        "create_pod": _task(ctx, "create_pod", _lazy("tasks.remote_training", "create_pod"), "Rent a pod (or reuse a live one) and wait until it is ready",
                            file_dep=inputs, targets=[str(p.pod_file)], uptodate=[lambda: _pod_done(ctx)],
                            teardown=teardown),
        "upload": _task(ctx, "upload", _lazy("tasks.remote_training", "upload"), "Upload dataset, config and trainer; verify sha256 on the pod",
                        file_dep=inputs, task_dep=["create_pod"], targets=[str(p.upload_ok)],
                        uptodate=[SamePod(ctx)], teardown=teardown),
        "train": _task(ctx, "train", _lazy("tasks.remote_training", "train"), "Train on the pod (detached, log followed live, survives ssh drops)",
                       file_dep=[str(p.upload_ok)], targets=[str(p.train_file)], uptodate=[SamePod(ctx)],
                       teardown=teardown),
        "download_adapter": _task(ctx, "download_adapter", _lazy("tasks.remote_training", "download"), "Stream the packed adapter into adapter_base64.txt",
                                  file_dep=[str(p.train_file)], targets=[str(p.adapter_b64)], uptodate=[SamePod(ctx)],
                                  teardown=teardown),
        "terminate_pod": _task(ctx, "terminate_pod", _terminate, "Terminate the pod and verify it is gone (idempotent)",
                               uptodate=[lambda: _pod_terminated(ctx)]),
        "extract_adapter": _task(ctx, "extract_adapter", _lazy("tasks.remote_training", "extract"),
                                 "Verify and safely unpack the adapter into out/adapters/<DATE>/adapter/",
                                 file_dep=[str(p.adapter_b64), str(p.train_file)], targets=[str(p.final_adapter_dir)]),
        "post_gguf": _task(ctx, "post_gguf", _lazy("tasks.poststeps", "make_gguf"), "Convert the adapter to a GGUF LoRA (adapter.gguf) and validate it",
                           file_dep=[str(adapter / n) for n in ("adapter_config.json", "adapter_model.safetensors",
                                                                 "base_model_config.json")],
                           task_dep=["extract_adapter"], targets=[str(out / "adapter.gguf")]),
        "post_modelfile": _task(ctx, "post_modelfile", _lazy("tasks.poststeps", "make_modelfile"),
                                "Write the Ollama Modelfile (and `ollama create` when ollama is installed)",
                                file_dep=[str(out / "adapter.gguf")], targets=[str(out / "Modelfile")],
                                uptodate=[config_changed(repr(ctx.settings.post))]),
        "post_latest": _task(ctx, "post_latest", _lazy("tasks.poststeps", "update_latest"), "Point out/adapters/latest at the newest successful date",
                             task_dep=["extract_adapter"], uptodate=[lambda: _latest_is_current(ctx)]),
        "post_commands": _task(ctx, "post_commands", _lazy("tasks.poststeps", "run_user_commands"), "Run the user's [post] commands in order",
                               file_dep=[str(out / "adapter.gguf")],
                               uptodate=[config_changed(repr(ctx.settings.post.commands))]),
        "summarize": _task(ctx, "summarize", _summarize, "Write the final run-summary.json",
                           file_dep=[str(p.stages_file)], targets=[str(p.summary_file)]),
    }


def report(ctx: RunContext) -> dict[str, Any]:
    def show() -> None:
        from tasks import report as history

        print(history.report(ctx))

    return {"basename": "report", "verbosity": 2, "params": [DATE_PARAM], "uptodate": [False], "actions": [show],
            "doc": "Print the run history (loss, minutes, cost, success) and write loss.png into each run folder"}


def reap_pods(ctx: RunContext) -> dict[str, Any]:
    return {"basename": "reap_pods", "verbosity": 2, "params": [DATE_PARAM], "uptodate": [False],
            "doc": "Terminate this project's pods that no live run owns or that outlived max_runtime_h",
            "actions": [(_reap, [ctx, True])]}


def full_cycle(ctx: RunContext, stages: list[str]) -> dict[str, Any]:
    def report() -> None:
        from tasks.files import read_json

        summary = read_json(ctx.paths.summary_file) or {}
        ok = summary.get("success")
        print(f"\nfull_cycle {'SUCCEEDED' if ok else 'FAILED'} for {ctx.paths.date}")
        print(f"  adapter: {summary.get('adapter_path')}\n  summary: {ctx.paths.summary_file}\n  log:     {ctx.paths.trainer_log}")
        if not ok:
            from doit.exceptions import TaskFailed

            return TaskFailed(f"run not successful: {summary.get('error')}")
        return None

    return {"basename": "full_cycle", "doc": "Run every stage in order: dataset → pod → train → adapter → summary",
            "task_dep": stages, "actions": [report], "params": [DATE_PARAM], "verbosity": 2, "uptodate": [False]}
