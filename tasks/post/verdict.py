"""Is today's adapter better? The verdict on what the trainer measured on the pod (adapter/eval.json:
the held-out loss of the base model, the previous promoted adapter and today's), and whether today's
adapter is promoted: `out/adapters/latest` moves only to an adapter that is not worse.
"""

from __future__ import annotations

import logging
from typing import Any

from tasks.context import RunContext
from tasks.core.files import read_record, section, write_json
from tasks.core.paths import RunPaths
from tasks.core.settings import Settings

log = logging.getLogger("fullcycle")


def verdict(measured: dict[str, Any], tolerance: float) -> tuple[str | None, str]:
    """better / not_worse / worse against the previous promoted adapter, else against the base model."""
    today = measured.get("adapter_loss")
    ref, against = measured.get("previous_loss"), "the previous adapter"
    if ref is None:
        ref, against = measured.get("base_loss"), "the base model"
    if today is None or ref is None:
        return None, "no held-out loss to compare"
    if today < ref - tolerance:
        return "better", f"held-out loss {today:.4f} < {ref:.4f} ({against})"
    if today <= ref + tolerance:
        return "not_worse", f"held-out loss {today:.4f} within {tolerance} of {ref:.4f} ({against})"
    return "worse", f"held-out loss {today:.4f} > {ref:.4f} + {tolerance} ({against})"


def _losses(measured: dict[str, Any]) -> bool:
    return all(isinstance(measured.get(k), (int, float)) for k in ("adapter_loss", "base_loss"))


def judge(settings: Settings, paths: RunPaths) -> dict[str, Any]:
    """The date's eval record (work_local/eval.json) from what the trainer measured; promoted or not.

    Only a measured adapter is promoted: when a held-out set was sent and the measurement failed, or
    came back without losses, the verdict says so and `latest` stays ([eval] promote = "always" aside).
    With no held-out set at all (too little data) there is nothing to measure and the run goes on."""
    measured = read_record(paths.final_adapter_dir / "eval.json")
    sent = bool(section(read_record(paths.config_file), "eval").get("heldout"))
    e = settings.eval
    record: dict[str, Any] = {k: measured.get(k) for k in (
        "heldout_samples", "heldout_tokens", "base_loss", "adapter_loss", "previous_loss", "previous_date",
        "seconds", "answers", "started_from")}
    if measured.get("failed"):
        record.update(verdict="failed", why=f"the evaluation failed on the pod: {measured['failed']}")
    elif not sent:
        why = read_record(paths.clean_stats_file).get("eval_skipped")  # the dataset's reason says most
        record.update(verdict=None, why=why or measured.get("skipped") or "no held-out set was sent",
                      heldout_samples=0)
    elif not _losses(measured):
        record.update(verdict="unmeasured", why=f"a held-out set was sent and no loss came back "
                                                f"({measured.get('skipped') or 'no eval.json from the trainer'})")
    else:
        record["verdict"], record["why"] = verdict(measured, e.tolerance)
    for name in ("base", "adapter", "previous"):
        loss = record.get(f"{name}_loss")
        record[f"{name}_perplexity"] = round(2.718281828459045 ** loss, 4) if isinstance(loss, (int, float)) else None
    record["promoted"] = e.promote == "always" or record["verdict"] in (None, "better", "not_worse")
    write_json(paths.eval_file, record)
    return record


def evaluate(ctx: RunContext) -> None:
    """The evaluate stage: the verdict on today's adapter, and whether it is promoted."""
    record = judge(ctx.settings, ctx.paths)
    if record["verdict"] is None:
        log.info("evaluation: %s", record["why"])
    elif record["verdict"] in ("failed", "unmeasured") and not record["promoted"]:
        log.warning("evaluation %s (%s): out/adapters/latest stays where it is; today's adapter is kept in %s",
                    record["verdict"], record["why"], ctx.paths.final_adapter_dir)
    elif record["verdict"] == "worse" and not record["promoted"]:
        log.warning("evaluation: worse (%s): out/adapters/latest stays where it is; today's adapter is kept in %s",
                    record["why"], ctx.paths.final_adapter_dir)
    else:
        log.info("evaluation: %s (%s)%s", record["verdict"], record["why"], "" if record["promoted"] else "; not promoted")
