"""What the cleanup says about a dataset: the drop report in dataset-stats.json and the log, and
why nothing survived when nothing did. Every reason comes with the user's own file:line and what to do."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tasks.data.cleaning import ADVICE, CleanStats


def report(stats: CleanStats, sources: dict[str, Any], max_drop_fraction: float) -> dict[str, Any]:
    """dataset-stats.json: the counts, the user's files the builder skipped or converted, and a
    warning when more than max_drop_fraction of the data lines were dropped."""
    found = stats.as_dict()
    found["skipped_files"] = sources.get("skipped", [])
    found["conversions"] = {f["file"]: f["notes"] for f in sources.get("files", []) if f.get("notes")}
    if stats.dropped_fraction > max_drop_fraction:
        found["warning"] = (f"{stats.dropped_fraction:.0%} of the data lines were dropped (more than "
                            f"[dataset] max_drop_fraction {max_drop_fraction:.0%}): see dropped and examples")
    return found


def no_samples(stats: CleanStats) -> str:
    """Why nothing survived the cleanup, where the first bad line is, and what to do about the commonest reason."""
    counted = [(reason, n) for reason, n in stats.dropped.most_common() if reason != "blank"]
    parts = [", ".join(f"{reason} {n}" for reason, n in counted) or "no data lines"]
    first = next((ex[0] for reason, ex in stats.examples.items() if reason != "blank" and ex), None)
    if first:
        parts.append(f"first at {first}")
    message = f"no usable samples in the dataset ({'; '.join(parts)}); "
    commonest = stats.dropped.most_common(1)[0][0] if stats.dropped else None
    if commonest in ADVICE:
        message += f"{ADVICE[commonest]}; "
    return message + "nothing was rented"


def describe(stats: CleanStats) -> Iterable[str]:
    """Human lines for the log: what was kept and why the rest was dropped."""
    yield f"Dataset: {stats.lines_read} lines read, {stats.kept} samples kept"
    for reason, count in sorted(stats.dropped.items()):
        where = ", ".join(stats.examples.get(reason, []))
        yield f"  dropped {count} line(s) as {reason} (first at {where})"
        if reason in ADVICE and reason != "blank":
            yield f"    what to do: {ADVICE[reason]}"
    other = {k: v for k, v in stats.shapes.items() if k != "instruction"}
    if other:
        yield "  shapes mapped to instruction/input/output: " + ", ".join(f"{k} {v}" for k, v in sorted(other.items()))
    if stats.cut:
        yield f"  {stats.cut} sample(s) cut to fit max_seq_length"
