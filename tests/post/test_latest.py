"""Post-steps end to end (tasks/post/latest.py): adapter.gguf, Modelfile, the latest link, user commands,
`doit report`; a failed date never moves latest."""

from __future__ import annotations

import os

from tests.helpers import EXAMPLES, make_project, ran

GOOD_DAY, BAD_DAY = "2026-11-20", "2026-11-21"


def test_post_steps_latest_link_and_report(tmp_path):
    marker = tmp_path / "posted.txt"
    builder = f"[ {{date}} = {BAD_DAY} ] && exit 1; cat {EXAMPLES}/*.jsonl > {{out}}"
    proj = make_project(tmp_path / "proj", dataset={"builder": "command", "command": builder},
                        post={"commands": [f"echo {{date}} {{gguf}} >> {marker}", "true"]})
    proj.doit("full_cycle", "--date", GOOD_DAY, check=True)
    out_root = proj.root / "out" / "adapters"
    assert (out_root / GOOD_DAY / "adapter.gguf").stat().st_size > 0
    modelfile = (out_root / GOOD_DAY / "Modelfile").read_text()
    assert "ADAPTER ./adapter.gguf" in modelfile and "FROM tiny" in modelfile
    assert os.readlink(out_root / "latest") == GOOD_DAY
    assert marker.read_text().split() == [GOOD_DAY, str(out_root / GOOD_DAY / "adapter.gguf")]
    proj.date = GOOD_DAY
    post = proj.summary["post_steps"]
    assert [c["exit_code"] for c in post["commands"]] == [0, 0]
    assert post["gguf"]["validated"]["pairs"] == 8  # qwen3_moe, the default shape: q/k/v/o in 2 layers

    again = proj.doit("full_cycle", "--date", GOOD_DAY, check=True).stdout
    assert not any(ran(again, s) for s in ("post_gguf", "post_modelfile", "post_latest", "post_commands"))

    failed = proj.doit("full_cycle", "--date", BAD_DAY)
    assert failed.returncode != 0
    assert os.readlink(out_root / "latest") == GOOD_DAY, "a failed run moved latest"

    report = proj.doit("report", check=True).stdout
    assert GOOD_DAY in report and BAD_DAY in report and "final loss" in report
    png = proj.root / "metahuman-runs" / GOOD_DAY / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
