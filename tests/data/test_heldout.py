"""The held-out set (tasks/data/heldout.py): chosen by content, stable across days, skipped below the minimum."""

from __future__ import annotations

import json

from tasks.core.settings import EvalSettings
from tasks.data import heldout


def _lines(n: int) -> bytes:
    return b"".join(json.dumps({"instruction": f"q{i}", "input": "", "output": f"a{i}"}).encode() + b"\n"
                    for i in range(n))


def test_the_held_out_set_is_chosen_by_content_and_stays_put(tmp_path):
    data = _lines(400)
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(data)
    shuffled = b"".join(reversed(data.splitlines(keepends=True))) + _lines(500)[len(data):]  # reordered, grown
    second.write_bytes(shuffled)
    settings = EvalSettings(fraction=0.1, min_samples=5, max_samples=1000)
    one = heldout.split(first, tmp_path / "h1.jsonl", settings)
    heldout.split(second, tmp_path / "h2.jsonl", settings)
    held_one = set((tmp_path / "h1.jsonl").read_bytes().splitlines())
    held_two = set((tmp_path / "h2.jsonl").read_bytes().splitlines())
    assert one.heldout == len(held_one) and 20 < one.heldout < 60 and one.train + one.heldout == 400
    assert held_one <= held_two, "a sample held out yesterday was trained on today"
    assert not held_one & set(first.read_bytes().splitlines()), "a held-out sample is in the training set"


def test_below_the_minimum_the_evaluation_is_skipped_and_says_so(tmp_path):
    clean = tmp_path / "c.jsonl"
    clean.write_bytes(_lines(10))
    result = heldout.split(clean, tmp_path / "h.jsonl", EvalSettings(fraction=0.05, min_samples=8))
    assert result.skipped and "fewer than [eval] min_samples = 8" in result.skipped
    assert result.train == 10 and (tmp_path / "h.jsonl").read_bytes() == b""
