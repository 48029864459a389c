"""Is today's adapter better? The held-out set, the previous promoted adapter, the verdict and the
promotion of `out/adapters/latest`.

- The held-out set is chosen by a hash of each sample's content, so a sample is held out on every
  day it appears; held-out samples are never trained on.
- The trainer measures the held-out loss on the pod, in the same process, for the base model, the
  previous promoted adapter (uploaded with the inputs) and today's (adapter/eval.json).
- Here the verdict is made and `latest` moves only to an adapter that is not worse.
"""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.files import atomic_writer, read_json, write_json
from tasks.paths import RunPaths
from tasks.settings import EvalSettings, Settings

log = logging.getLogger("fullcycle")

BUCKETS = 1_000_000


@dataclass
class Split:
    train: int
    heldout: int
    skipped: str | None  # why there is no evaluation (held-out set below the minimum), else None


def held_out(line: bytes, fraction: float) -> bool:
    """Stable across days and machines: the sample's own bytes decide, nothing else."""
    digest = int.from_bytes(hashlib.blake2b(line.rstrip(b"\n"), digest_size=8).digest(), "big")
    return digest % BUCKETS < fraction * BUCKETS


def split(clean: Path, heldout: Path, settings: EvalSettings) -> Split:
    """Stream the cleaned dataset into training lines (in place) and held-out lines. Below
    min_samples the evaluation is skipped and every sample trains; above max_samples the held-out
    set keeps the first ones (by hash order of appearance) and the rest train."""
    chosen = 0
    if settings.fraction > 0:
        with clean.open("rb") as src:
            chosen = sum(1 for line in src if line.strip() and held_out(line, settings.fraction))
    if chosen < settings.min_samples:
        heldout.write_bytes(b"")
        with clean.open("rb") as src:
            total = sum(1 for line in src if line.strip())
        why = (f"the held-out set would have {chosen} sample(s), fewer than [eval] min_samples = "
               f"{settings.min_samples}: no evaluation, every sample trains")
        return Split(train=total, heldout=0, skipped=why)
    train = kept = 0
    with clean.open("rb") as src, atomic_writer(clean.with_name(clean.name + ".train")) as train_out, \
            atomic_writer(heldout) as held:
        for line in src:
            if not line.strip():
                continue
            if kept < settings.max_samples and held_out(line, settings.fraction):
                held.write(line)
                kept += 1
            else:
                train_out.write(line)
                train += 1
    os.replace(clean.with_name(clean.name + ".train"), clean)
    return Split(train=train, heldout=kept, skipped=None)


def previous(settings: Settings, paths: RunPaths, base_model: str) -> tuple[str, Path] | None:
    """The newest promoted adapter before this date, of the same base model: what today is compared
    with (and may start from)."""
    from tasks.record import summaries

    found = None
    for date, _folder, summary in summaries(settings):
        if date >= paths.date or summary.get("base_model") != base_model or not summary.get("training_success"):
            continue
        promoted = (summary.get("eval") or {}).get("promoted")
        adapter = Path(summary.get("adapter_path") or "")
        if promoted is not False and (adapter / "adapter_model.safetensors").is_file():
            found = (date, adapter)
    return found


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


def judge(settings: Settings, paths: RunPaths) -> dict[str, Any]:
    """The date's eval record (work_local/eval.json) from what the trainer measured; promoted or not."""
    measured = read_json(paths.final_adapter_dir / "eval.json") or {}
    e = settings.eval
    record: dict[str, Any] = {k: measured.get(k) for k in (
        "heldout_samples", "heldout_tokens", "base_loss", "adapter_loss", "previous_loss", "previous_date",
        "seconds", "answers", "started_from")}
    if measured.get("skipped") or not measured:
        why = (read_json(paths.clean_stats_file) or {}).get("eval_skipped")  # the dataset's reason says most
        record.update(verdict=None, why=why or measured.get("skipped") or "the trainer measured nothing",
                      heldout_samples=0 if why else record["heldout_samples"])
    else:
        record["verdict"], record["why"] = verdict(measured, e.tolerance)
    for name in ("base", "adapter", "previous"):
        loss = record.get(f"{name}_loss")
        record[f"{name}_perplexity"] = round(2.718281828459045 ** loss, 4) if isinstance(loss, (int, float)) else None
    record["promoted"] = e.promote == "always" or record["verdict"] in (None, "better", "not_worse")
    write_json(paths.eval_file, record)
    return record
