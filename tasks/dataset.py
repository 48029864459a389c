"""Today's dataset: build the raw JSONL (pluggable), then clean it in-process (seed §2.2).

The cleanup streams line by line and never holds the dataset in memory: only a 16-byte digest per
kept record, to drop exact duplicates. Every dropped line is counted under a reason, and the first
few of each reason are reported with their line numbers so a person can fix the source.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import shlex
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tasks.errors import FullcycleError
from tasks.files import atomic_writer

log = logging.getLogger("fullcycle")

FIELDS = ("instruction", "input", "output")
EXAMPLES_PER_REASON = 5
OPT_APPEND_NEWLINE = orjson.OPT_APPEND_NEWLINE


class DatasetError(FullcycleError):
    """The dataset could not be built or came out empty."""


# --------------------------------------------------------------------------- builders


def build_raw(settings_dataset: Any, date: str, out: Path, root: Path) -> None:
    """Produce the raw JSONL for `date` at `out` with the configured builder."""
    builder = settings_dataset.builder
    if builder == "folder":
        _build_from_folder(_under(root, settings_dataset.source), out)
    elif builder == "command":
        _build_from_command(settings_dataset.command, date, out, root)
    else:
        _build_from_callable(settings_dataset.callable, date, out)
    if not out.is_file():
        raise DatasetError(f"the {builder!r} dataset builder did not write {out}")


def _under(root: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


def source_files(folder: Path) -> list[Path]:
    """The JSONL files the folder builder reads, in a stable order (also doit's file_dep)."""
    return sorted(p for p in folder.rglob("*.jsonl") if p.is_file()) if folder.is_dir() else []


def _build_from_folder(folder: Path, out: Path) -> None:
    files = source_files(folder)
    if not files:
        raise DatasetError(
            f"dataset source folder {folder} has no *.jsonl files; set [dataset] source in fullcycle.toml"
        )
    with atomic_writer(out) as dst:
        for path in files:
            last = b"\n"
            with path.open("rb") as src:
                while chunk := src.read(1 << 20):
                    dst.write(chunk)
                    last = chunk[-1:]
            if last != b"\n":
                dst.write(b"\n")


def _build_from_command(template: str, date: str, out: Path, root: Path) -> None:
    import sh

    if not template:
        raise DatasetError("[dataset] builder is 'command' but [dataset] command is empty")
    tmp = out.with_name(out.name + ".partial")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    # Only the two placeholders are filled: a command may well contain other braces (JSON, shell).
    command = template.replace("{date}", shlex.quote(date)).replace("{out}", shlex.quote(str(tmp)))
    log.info("Building raw dataset with: %s", command)
    try:
        sh.bash("-c", command, _cwd=str(root), _out=lambda line: log.info("builder: %s", line.rstrip()),
                _err=lambda line: log.info("builder: %s", line.rstrip()))
    except sh.ErrorReturnCode as exc:
        raise DatasetError(f"dataset command exited with {exc.exit_code}: {command}") from None
    if not tmp.is_file():
        raise DatasetError(f"dataset command finished but did not write {{out}} ({tmp}): {command}")
    tmp.replace(out)


def _build_from_callable(spec: str, date: str, out: Path) -> None:
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise DatasetError(f"[dataset] callable {spec!r} must look like 'package.module:function'")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise DatasetError(f"[dataset] callable {spec!r} cannot be loaded: {exc}") from None
    tmp = out.with_name(out.name + ".partial")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    records = func(date=date, out=tmp)
    if records is not None:  # the callable may return records instead of writing the file
        with atomic_writer(tmp) as fh:
            for record in records:
                fh.write(orjson.dumps(record) + b"\n")
    if not tmp.is_file():
        raise DatasetError(f"[dataset] callable {spec!r} neither wrote {tmp} nor returned records")
    tmp.replace(out)


# --------------------------------------------------------------------------- cleanup


@dataclass
class CleanStats:
    lines_read: int = 0
    kept: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def drop(self, reason: str, where: str) -> None:
        self.dropped[reason] += 1
        seen = self.examples.setdefault(reason, [])
        if len(seen) < EXAMPLES_PER_REASON:
            seen.append(where)

    def as_dict(self) -> dict[str, Any]:
        return {
            "lines_read": self.lines_read,
            "samples_used": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "examples": self.examples,
        }


def _classify_unparsable(line: bytes) -> str:
    """Only lines that failed to parse pay for finding out why."""
    if not line.strip():
        return "blank"
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return "not_utf8"
    return "invalid_json"


def _clean_record(obj: object) -> tuple[dict[str, str] | None, str]:
    """Return (record, "") for a usable parsed line, else (None, reason)."""
    if not isinstance(obj, dict):
        return None, "not_an_object"
    instruction, inp, output = obj.get("instruction"), obj.get("input"), obj.get("output")
    if inp is None:
        inp = ""
    if instruction is None:
        instruction = ""
    if output is None:
        output = ""
    if type(instruction) is not str or type(inp) is not str or type(output) is not str:
        return None, "non_string_field"
    if not instruction.strip():
        return None, "missing_instruction"
    if not output.strip():
        return None, "missing_output"
    return {"instruction": instruction, "input": inp, "output": output}, ""


class _Dedup:
    """Exact-duplicate filter in ~8 bytes per unique record: 64-bit digests in a sorted numpy array,
    checked a batch at a time (a Python set of digests costs ~100 bytes each: 300 MB at 3M lines).
    The batch's records sit in one bytearray: holding orjson's bytes objects would pin a ~4 KB
    allocation each. A 64-bit collision among 10M records has odds of about 1 in 400,000."""

    BATCH = 32768

    def __init__(self, write, stats: CleanStats, where: str) -> None:
        import numpy as np

        self.np, self.write, self.stats, self.where = np, write, stats, where
        self.seen = np.empty(0, dtype=np.uint64)
        self._reset()

    def _reset(self) -> None:
        self.buf, self.digests = bytearray(), bytearray()
        self.ends: list[int] = []
        self.numbers: list[int] = []

    def flush(self) -> None:
        if not self.ends:
            return
        np = self.np
        digests = np.frombuffer(bytes(self.digests), dtype=np.uint64)
        unique, first = np.unique(digests, return_index=True)
        pos = np.searchsorted(self.seen, unique)
        known = np.zeros(len(unique), dtype=bool)
        inside = pos < len(self.seen)
        known[inside] = self.seen[pos[inside]] == unique[inside]
        self.seen = np.insert(self.seen, pos[~known], unique[~known])
        keep = np.zeros(len(digests), dtype=bool)
        keep[first[~known]] = True
        view, start = memoryview(self.buf), 0
        for i in np.flatnonzero(~keep).tolist():  # usually none: then one write for the batch
            self.write(view[start:self.ends[i - 1] if i else 0])
            start = self.ends[i]
            self.stats.drop("duplicate", f"{self.where}:{self.numbers[i]}")
        self.write(view[start:])
        view.release()
        self.stats.kept += int(keep.sum())
        self._reset()


def clean(raw: Path, clean_out: Path) -> CleanStats:
    """Stream `raw` into `clean_out` as {instruction, input, output} lines; count every drop.

    orjson parses bytes and rejects invalid UTF-8 itself, so a good line is parsed once and never
    decoded or stripped in Python; that keeps this loop several times faster than jq."""
    stats = CleanStats()
    loads, dumps, JSONDecodeError = orjson.loads, orjson.dumps, orjson.JSONDecodeError
    blake2b, batch = hashlib.blake2b, _Dedup.BATCH
    with raw.open("rb") as src, atomic_writer(clean_out) as dst:
        dedup = _Dedup(dst.write, stats, str(raw))
        number = 0
        for number, line in enumerate(src, start=1):
            try:
                obj = loads(line)
            except JSONDecodeError:
                stats.drop(_classify_unparsable(line), f"{raw}:{number}")
                continue
            # The common case inline (a dict of three strings); anything else takes the slow path.
            if type(obj) is dict:
                ins, inp, out = obj.get("instruction"), obj.get("input", ""), obj.get("output")
                if inp is None:
                    inp = ""
                if not (type(ins) is str and type(inp) is str and type(out) is str and ins.strip() and out.strip()):
                    ins = None
            else:
                ins = None
            if ins is None:
                record, reason = _clean_record(obj)
                if record is None:
                    stats.drop(reason, f"{raw}:{number}")
                    continue
                ins, inp, out = record["instruction"], record["input"], record["output"]
            encoded = dumps({"instruction": ins, "input": inp, "output": out}, option=OPT_APPEND_NEWLINE)
            dedup.buf += encoded
            dedup.ends.append(len(dedup.buf))
            dedup.digests += blake2b(encoded, digest_size=8).digest()
            dedup.numbers.append(number)
            if len(dedup.ends) >= batch:
                dedup.flush()
        dedup.flush()
        stats.lines_read = number
    return stats


def describe(stats: CleanStats) -> Iterable[str]:
    """Human lines for the log: what was kept and why the rest was dropped."""
    yield f"Dataset: {stats.lines_read} lines read, {stats.kept} samples kept"
    for reason, count in sorted(stats.dropped.items()):
        where = ", ".join(stats.examples.get(reason, []))
        yield f"  dropped {count} line(s) as {reason} (first at {where})"
