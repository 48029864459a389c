"""Today's dataset, cleaned in-process (seed §2.2); the raw file comes from tasks/data/builders.py.

The cleanup streams line by line and never holds the dataset in memory: only a 16-byte digest per
kept record, to drop exact duplicates. Every dropped line is counted under a reason, and the first
few of each reason are reported with their line numbers so a person can fix the source.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tasks.core.errors import FullcycleError
from tasks.core.files import atomic_writer
from tasks.data.shapes import INVISIBLE, clean_record, cut, shown

log = logging.getLogger("fullcycle")

FIELDS = ("instruction", "input", "output")
EXAMPLES_PER_REASON = 5
OPT_APPEND_NEWLINE = orjson.OPT_APPEND_NEWLINE


class DatasetError(FullcycleError):
    """The dataset could not be built or came out empty."""


# --------------------------------------------------------------------------- cleanup


# A cheap bound before any tokenizer: no realistic tokenizer packs more than this many UTF-8 bytes
# into one token on average, so a sample over max_seq_length * this many bytes cannot fit. The
# exact check (tokens) happens in the trainer, on what passes this one.
MAX_BYTES_PER_TOKEN = 32

ADVICE = {
    "invalid_json": "each line must be one JSON object; look for a line split in two or a trailing comma",
    "not_utf8": "save the file as UTF-8",
    "missing_output": "give each sample an 'output' (the answer to learn)",
    "missing_instruction": "give each sample an 'instruction' (the prompt)",
    "duplicate": "identical samples are kept once; nothing to do unless that is most of the data",
    "unknown_shape": ("map your fields to instruction/input/output; accepted as they are: prompt/completion, "
                      "question/answer, chat 'messages' [{role, content}], ShareGPT 'conversations' [{from, value}]"),
    "too_long": "the sample is longer than [training] max_seq_length; shorten it, raise the limit, or set "
                "[dataset] too_long = \"cut\"",
    "non_string_field": "instruction, input and output must be strings",
    "not_an_object": "each line must be a JSON object, not an array or a bare value",
    "cr_line_endings": "the file ends its lines with CR only (old Mac style); save it with LF line endings",
    "lone_surrogate": ("a \\uD800-\\uDFFF escape without its pair (text cut in the middle of an emoji?) is no "
                       "character; fix or drop that escape"),
    "too_deep": "the line nests arrays or objects more than 1024 deep; a sample is a flat object: flatten it",
    "unreadable": ("the line could not be read (the detail says why); the rest of the file was kept; if the line "
                   "looks right, please report it with that detail"),
}
BOM = b"\xef\xbb\xbf"


@dataclass
class Sources:
    """Where each raw line came from: the folder builder's record of the user's own files."""

    files: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path | None) -> "Sources":
        from tasks.core.files import read_json

        data = read_json(path) if path else None
        return cls(files=(data or {}).get("files", []))

    def locate(self, raw: Path, number: int) -> str:
        import bisect

        starts = [f["first_line"] for f in self.files]
        at = bisect.bisect_right(starts, number) - 1
        if at < 0:
            return f"{raw}:{number}"
        source = self.files[at]
        return f"{source['file']}:{number - source['first_line'] + 1}"


@dataclass
class CleanStats:
    lines_read: int = 0
    kept: int = 0
    blank: int = 0
    dropped: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    shapes: Counter = field(default_factory=Counter)
    cut: int = 0
    raw: Path = Path("raw.jsonl")
    sources: Sources = field(default_factory=Sources)

    def drop(self, reason: str, number: int, detail: str = "") -> None:
        self.dropped[reason] += 1
        seen = self.examples.setdefault(reason, [])
        if len(seen) < EXAMPLES_PER_REASON:
            where = self.sources.locate(self.raw, number)
            seen.append(f"{where} ({detail})" if detail else where)

    @property
    def dropped_fraction(self) -> float:
        """Share of the non-blank lines that did not become samples."""
        data_lines = self.lines_read - self.blank
        return (data_lines - self.kept) / data_lines if data_lines else 0.0

    def as_dict(self) -> dict[str, Any]:
        common = [r for r, _ in self.dropped.most_common(3)]
        return {
            "lines_read": self.lines_read,
            "samples_used": self.kept,
            "dropped": dict(sorted(self.dropped.items())),
            "dropped_fraction": round(self.dropped_fraction, 4),
            "examples": self.examples,
            "advice": {r: ADVICE[r] for r in common if r in ADVICE},
            "shapes": dict(sorted(self.shapes.items())),
            "cut_to_fit": self.cut,
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


def _lenient(line: bytes, refused: str) -> tuple[object, str | None]:
    """Python's parser accepts NaN, Infinity and lone surrogates, which orjson (rightly) refuses: a
    value we do not keep must not decide whether a record is kept. It is bounded as orjson is: a line
    orjson found too deep is never parsed again, and whatever Python's parser throws (RecursionError
    on deep nesting, ValueError on a number of 4,300 digits or more) is a reason, not an exception."""
    import json

    if "depth" in refused or "recursion" in refused:
        return None, "too_deep"
    try:
        return json.loads(line.decode("utf-8")), None
    except RecursionError:
        return None, "too_deep"
    except Exception:  # noqa: BLE001 - any refusal of the lenient parser is a drop, never a crash
        return None, "cr_line_endings" if line.count(b"\r") > 1 and b"\n" not in line.rstrip(b"\n") else "invalid_json"


class _Dedup:
    """Exact-duplicate filter in ~8 bytes per unique record: 64-bit digests in a sorted numpy array,
    checked a batch at a time (a Python set of digests costs ~100 bytes each: 300 MB at 3M lines).
    The batch's records sit in one bytearray: holding orjson's bytes objects would pin a ~4 KB
    allocation each. A 64-bit collision among 10M records has odds of about 1 in 400,000."""

    BATCH = 32768

    def __init__(self, write, stats: CleanStats) -> None:
        import numpy as np

        self.np, self.write, self.stats = np, write, stats
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
            self.stats.drop("duplicate", self.numbers[i])
        self.write(view[start:])
        view.release()
        self.stats.kept += int(keep.sum())
        self._reset()


def clean(raw: Path, clean_out: Path, sources: Path | None = None, max_seq_length: int | None = None,
          too_long: str = "drop") -> CleanStats:
    """Stream `raw` into `clean_out` as {instruction, input, output} lines; count every drop.

    orjson parses bytes and rejects invalid UTF-8 itself, so a good line is parsed once and never
    decoded or stripped in Python; that keeps this loop several times faster than jq. Anything
    that is not the common shape takes the slow path (other shapes, NaN in an extra field, BOM)."""
    stats = CleanStats(raw=raw, sources=Sources.load(sources))
    limit = max_seq_length * MAX_BYTES_PER_TOKEN if max_seq_length else 1 << 62
    loads, dumps, JSONDecodeError = orjson.loads, orjson.dumps, orjson.JSONDecodeError
    blake2b, batch, invisible = hashlib.blake2b, _Dedup.BATCH, frozenset(INVISIBLE)
    with raw.open("rb") as src, atomic_writer(clean_out) as dst:
        dedup = _Dedup(dst.write, stats)
        number = 0
        for number, line in enumerate(src, start=1):
            try:  # the last guard: whatever a line holds, it is kept or dropped with a reason, never fatal
                if line.startswith(BOM):  # the file's first line, or files joined by a builder
                    line = line[3:]
                if len(line) > limit and too_long == "drop":  # never parsed: a 50 MB line costs no 50 MB string
                    stats.drop("too_long", number, f"{len(line)} bytes")
                    continue
                try:
                    obj = loads(line)
                except JSONDecodeError as refused:
                    reason = _classify_unparsable(line)
                    if reason == "blank":
                        stats.blank += 1
                        stats.drop("blank", number)
                        continue
                    if reason != "invalid_json":
                        stats.drop(reason, number)
                        continue
                    obj, reason = _lenient(line, str(refused))
                    if reason:
                        stats.drop(reason, number)
                        continue
                # The common case inline (a dict of three strings); anything else takes the slow path.
                if type(obj) is dict:
                    ins, inp, out = obj.get("instruction"), obj.get("input", ""), obj.get("output")
                    if inp is None:
                        inp = ""
                    if not (type(ins) is str and type(inp) is str and type(out) is str):
                        ins = None
                    else:
                        ins_s, out_s = ins.strip(), out.strip()
                        if not ins_s or not out_s or ins_s[0] in invisible or out_s[0] in invisible:
                            ins = None
                else:
                    ins = None
                if ins is None:
                    record, shape, detail = clean_record(obj)
                    if record is None:
                        stats.drop(shape, number, detail)
                        continue
                    ins, inp, out = record["instruction"], record["input"], record["output"]
                else:
                    shape = "instruction"
                if len(line) > limit:
                    fitted = cut({"instruction": ins, "input": inp, "output": out}, limit) if too_long == "cut" else None
                    if fitted is None:
                        stats.drop("too_long", number, f"{len(line)} bytes")
                        continue
                    stats.cut += 1
                    ins, inp, out = fitted["instruction"], fitted["input"], fitted["output"]
                try:
                    encoded = dumps({"instruction": ins, "input": inp, "output": out}, option=OPT_APPEND_NEWLINE)
                except TypeError:  # only a lone surrogate escape parses as JSON and is no UTF-8 text
                    stats.drop("lone_surrogate", number)
                    continue
                digest = blake2b(encoded, digest_size=8).digest()
            except Exception as exc:  # noqa: BLE001 - no line of a person's data can stop the cleanup
                stats.drop("unreadable", number, f"{type(exc).__name__}: {shown(exc, 80)}")
                continue
            stats.shapes[shape] += 1
            dedup.buf += encoded
            dedup.ends.append(len(dedup.buf))
            dedup.digests += digest
            dedup.numbers.append(number)
            if len(dedup.ends) >= batch:
                dedup.flush()
        dedup.flush()
        stats.lines_read = number
    return stats
