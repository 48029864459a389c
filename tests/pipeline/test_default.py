"""The embedded default, as a newcomer meets it: `doit full_cycle` on a fresh clone (local provider, the
tiny model, the shipped examples), trained for real. It must show the feature: a held-out loss clearly
below the base model's and answers that follow the data."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from tests.helpers import REPO, Project, project_env


@pytest.mark.slow
def test_the_default_run_learns_visibly_and_says_so(tmp_path):
    root = tmp_path / "clone"
    root.mkdir()
    shutil.copy(REPO / "fullcycle.toml", root / "fullcycle.toml")
    shutil.copytree(REPO / "examples", root / "examples")
    proj = Project(root=root, env=project_env(root / "fullcycle.toml", "2026-11-27"))
    started = time.monotonic()
    proj.doit("full_cycle", check=True)
    seconds = time.monotonic() - started
    summary = proj.summary
    judged = summary["eval"]
    assert summary["success"] is True and judged["heldout_samples"] >= 8
    assert isinstance(judged["base_loss"], float) and isinstance(judged["adapter_loss"], float)
    assert judged["adapter_loss"] <= 0.7 * judged["base_loss"], judged
    assert judged["verdict"] == "better" and judged["promoted"] is True
    assert summary["config"]["tiny_defaults"]["learning_rate"] == 0.02  # recorded: never applied to a real model
    answers = judged["answers"]
    for a in answers:  # decoded whole: no control character, no U+FFFD from a byte-level token alone
        for text in (a["today"], a["base"]):
            assert "\ufffd" not in text and not any(c < " " and c != "\n" for c in text), a
    shopping = [a for a in answers if "shopping list" in a["prompt"]]
    # today's answers take the data's pattern; the base model's random ones do not. Greedy answers of a
    # tiny model differ in their middle from one CPU's float rounding to another's: over six seeds (1, 2, 3,
    # 5, 7, 42) every answer began as the data's do, and at least one ended as they do
    assert shopping and all(a["today"].startswith("Added") and not a["base"].startswith("Added")
                            for a in shopping), shopping
    assert any("shopping list" in a["today"] for a in shopping), shopping
    dish = next(a for a in answers if a["prompt"] == "What is my favourite dish?")
    assert dish["today"].startswith("Your favourite") and not dish["base"].startswith("Your"), dish
    report = proj.doit("report", check=True).stdout
    assert f"{judged['adapter_loss']:.4f}" in report and "better" in report
    print(f"\ndefault run: {seconds:.1f}s; held-out loss {judged['base_loss']:.3f} -> {judged['adapter_loss']:.3f} "
          f"({judged['adapter_loss'] / judged['base_loss']:.2f}x), answers {json.dumps(shopping[:1])}")
