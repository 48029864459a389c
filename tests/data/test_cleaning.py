"""The in-process cleanup (seed §2.2, tasks/data/cleaning.py): every kind of bad line, counted by reason."""

from __future__ import annotations

import json

from tasks.data.cleaning import clean

GOOD = {"instruction": "Say hi", "input": "", "output": "hi"}


def test_every_kind_of_bad_line_is_counted(tmp_path):
    raw = tmp_path / "raw.jsonl"
    lines = [
        json.dumps(GOOD).encode(),
        json.dumps(GOOD).encode(),                                       # duplicate
        json.dumps({"instruction": "No input key", "output": "ok"}).encode(),  # input -> ""
        b"{not json",                                                    # invalid_json
        b"\xff\xfe binary \x00",                                         # not_utf8
        b"[1, 2, 3]",                                                    # not_an_object
        json.dumps({"output": "orphan"}).encode(),                       # missing_instruction
        json.dumps({"instruction": "  ", "output": "blank"}).encode(),   # missing_instruction
        json.dumps({"instruction": "draft"}).encode(),                   # missing_output
        json.dumps({"instruction": "n", "output": 42}).encode(),         # non_string_field
        json.dumps({"instruction": "n", "input": ["a"], "output": "x"}).encode(),  # non_string_field
        b"",                                                             # blank
        json.dumps({"instruction": "Extra fields", "output": "dropped", "meta": {"a": 1}}).encode(),
    ]
    raw.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "clean.jsonl"
    stats = clean(raw, out)
    assert stats.kept == 3
    assert dict(stats.dropped) == {"duplicate": 1, "invalid_json": 1, "not_utf8": 1, "not_an_object": 1,
                                   "missing_instruction": 2, "missing_output": 1, "non_string_field": 2, "blank": 1}
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows[1] == {"instruction": "No input key", "input": "", "output": "ok"}
    assert all(set(r) == {"instruction", "input", "output"} for r in rows)
    assert stats.examples["invalid_json"] == [f"{raw}:4"]


def test_a_100_mb_single_line(tmp_path):
    raw = tmp_path / "raw.jsonl"
    big = "x" * (100 * 1024 * 1024)
    with raw.open("w") as fh:
        fh.write(json.dumps({"instruction": "long", "output": big}) + "\n")
        fh.write('{"instruction": "cut short", "output": "' + big[:1000] + "\n")
        fh.write(json.dumps(GOOD) + "\n")
    stats = clean(raw, tmp_path / "clean.jsonl")
    assert stats.kept == 2 and dict(stats.dropped) == {"invalid_json": 1}
