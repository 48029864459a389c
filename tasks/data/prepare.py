"""The data stages' bodies (seed §2.2): today's raw JSONL from the configured builder, then the
cleaned training set, its held-out part and the drop report (dataset-stats.json)."""

from __future__ import annotations

import logging

from tasks.context import RunContext

log = logging.getLogger("fullcycle")


def build_dataset(ctx: RunContext) -> None:
    if ctx.prepared(ctx.paths.raw_data_file):
        return
    from tasks.data import builders

    log.info("Preparing dataset… (builder %s)", ctx.settings.dataset.builder)
    builders.build_raw(ctx.settings.dataset, ctx.paths.date, ctx.paths.raw_data_file, ctx.paths.project_root,
                       ctx.paths.dataset_sources_file)
    log.info("Raw dataset: %s", ctx.paths.raw_data_file)


def clean_dataset(ctx: RunContext) -> None:
    if ctx.prepared(ctx.paths.clean_data_file):
        if not ctx.paths.heldout_file.exists():  # the caller's dataset is trained whole: no evaluation
            ctx.paths.heldout_file.write_bytes(b"")
        return
    from tasks.core.files import read_json, write_json
    from tasks.data import cleaning, heldout, report

    d = ctx.settings.dataset
    stats = cleaning.clean(ctx.paths.raw_data_file, ctx.paths.clean_data_file, ctx.paths.dataset_sources_file,
                           ctx.settings.training.max_seq_length, d.too_long)
    found = report.report(stats, read_json(ctx.paths.dataset_sources_file) or {}, d.max_drop_fraction)
    for line in report.describe(stats):
        log.info(line)
    if stats.kept == 0:
        write_json(ctx.paths.clean_stats_file, found)
        raise cleaning.DatasetError(report.no_samples(stats))
    held = heldout.split(ctx.paths.clean_data_file, ctx.paths.heldout_file, ctx.settings.eval)
    found.update(samples_used=held.train, heldout_samples=held.heldout, eval_skipped=held.skipped)
    write_json(ctx.paths.clean_stats_file, found)
    if held.skipped:
        log.info("evaluation: %s", held.skipped)
    else:
        log.info("evaluation: %d sample(s) held out (never trained on), chosen by content", held.heldout)
    if "warning" in found:
        log.warning("dataset: %s", found["warning"])
        if d.drop_fatal:
            raise cleaning.DatasetError(f"{found['warning']}; [dataset] drop_fatal is true, so nothing was rented")
    log.info("samples_used=%d", held.train)
