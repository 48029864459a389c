"""The held-out set: the samples today's adapter is measured on and never trained on.

Each sample's own bytes decide (a hash of its content), so a sample is held out on every day it
appears, on any machine. The trainer measures the held-out loss on the pod (remote/trainer/measure.py);
tasks/post/verdict.py judges it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from tasks.core.files import atomic_writer
from tasks.core.settings import EvalSettings

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
