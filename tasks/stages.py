"""The small stage bodies (dataset, config, model check, tiny model, summary). The graph itself
lives in dodo.py, where a reader looks for it; its up-to-date rules in tasks/uptodate.py, the
commands that are not stages (report, reap, serve) in tasks/commands.py.

Only light modules are imported here: dodo.py imports this for `doit list`. Each body imports what
it needs when it runs.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from pathlib import Path
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
        if not ctx.paths.heldout_file.exists():  # the caller's dataset is trained whole: no evaluation
            ctx.paths.heldout_file.write_bytes(b"")
        return
    from tasks import dataset, evaluation
    from tasks.files import read_json, write_json

    d = ctx.settings.dataset
    stats = dataset.clean(ctx.paths.raw_data_file, ctx.paths.clean_data_file, ctx.paths.dataset_sources_file,
                          ctx.settings.training.max_seq_length, d.too_long)
    report = dataset.report(stats, read_json(ctx.paths.dataset_sources_file) or {}, d.max_drop_fraction)
    for line in dataset.describe(stats):
        log.info(line)
    if stats.kept == 0:
        write_json(ctx.paths.clean_stats_file, report)
        raise dataset.DatasetError(dataset.no_samples(stats))
    held = evaluation.split(ctx.paths.clean_data_file, ctx.paths.heldout_file, ctx.settings.eval)
    report.update(samples_used=held.train, heldout_samples=held.heldout, eval_skipped=held.skipped)
    write_json(ctx.paths.clean_stats_file, report)
    if held.skipped:
        log.info("evaluation: %s", held.skipped)
    else:
        log.info("evaluation: %d sample(s) held out (never trained on), chosen by content", held.heldout)
    if "warning" in report:
        log.warning("dataset: %s", report["warning"])
        if d.drop_fatal:
            raise dataset.DatasetError(f"{report['warning']}; [dataset] drop_fatal is true, so nothing was rented")
    log.info("samples_used=%d", held.train)


def write_config(ctx: RunContext) -> None:
    if _prepared(ctx, ctx.paths.config_file):
        return
    from tasks import trainconfig
    from tasks.files import read_json

    config = trainconfig.write(ctx.settings, ctx.paths, read_json(ctx.paths.model_check_file))
    log.info("Config written… %s (base_model %s)", ctx.paths.config_file, config["base_model"])


def check_model(ctx: RunContext) -> None:
    from tasks.files import write_json

    t = ctx.settings.training
    local = is_tiny(ctx) or Path(t.base_model).expanduser().is_dir() or t.base_model.startswith(("/", "./", "~"))
    if local:
        from tasks import modelcheck

        verdict = {"base_model": t.base_model, "checked": False, "reason": "a local model: nothing to ask the hub",
                   "model_to_load": t.base_model, "load_in_4bit": t.quantize == "always"}
        verdict.update(modelcheck.gguf_note(_local_config(ctx)))
    else:
        from tasks import modelcheck

        r = ctx.settings.runpod
        verdict = modelcheck.check(t.base_model, r.gpu_types, t.quantize, link_mb_s=r.download_mb_s,
                                   volume=bool(r.network_volume_id))
        log.info("Base model %s: %s", t.base_model,
                 f"~{verdict['needed_gb']} GB in {verdict['precision']}, loading {verdict['model_to_load']}"
                 if verdict.get("needed_gb") else ("exists on the hub" if verdict["checked"] else "not checked"))
    write_json(ctx.paths.model_check_file, verdict)


def evaluate(ctx: RunContext) -> None:
    from tasks import evaluation

    record = evaluation.judge(ctx.settings, ctx.paths)
    if record["verdict"] is None:
        log.info("evaluation: %s", record["why"])
    elif record["verdict"] == "worse" and not record["promoted"]:
        log.warning("evaluation: worse (%s): out/adapters/latest stays where it is; today's adapter is kept in %s",
                    record["why"], ctx.paths.final_adapter_dir)
    else:
        log.info("evaluation: %s (%s)%s", record["verdict"], record["why"], "" if record["promoted"] else "; not promoted")


def _local_config(ctx: RunContext) -> dict[str, Any] | None:
    """The architecture of a local base model: the tiny one's family, or the folder's config.json."""
    if is_tiny(ctx):
        from tasks import families

        fam = families.family(ctx.settings.training.tiny_architecture)
        return {"architectures": [fam.model_class], "model_type": fam.model_type}
    from tasks.files import read_json

    try:
        return read_json(Path(ctx.settings.training.base_model).expanduser() / "config.json")
    except (OSError, ValueError):
        return None


def build_tiny_model(ctx: RunContext) -> None:
    if not is_tiny(ctx):
        return
    tinymodel.build(ctx.paths.clean_data_file, ctx.paths.tiny_model_dir,
                    {"architecture": ctx.settings.training.tiny_architecture})
    log.info("Tiny base model built in %s", ctx.paths.tiny_model_dir)


def summarize(ctx: RunContext) -> None:
    from tasks import logs, record

    logs.setup(ctx.paths.trainer_log)
    summary = record.write(ctx.paths, ctx.provider_name, ctx.samples_used)
    if summary["success"]:
        log.info("Run complete.")
    else:
        log.info("Run finished without success: %s", summary["error"])
