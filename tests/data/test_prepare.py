"""The data stages as a run meets them (tasks/data/prepare.py): the drop threshold warns or stops the
run before renting, and a huge line never costs the memory of its size."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import DODO, make_project


def _notes(tmp_path: Path, good: int, bad: int) -> Path:
    src = tmp_path / "notes"
    src.mkdir()
    lines = [json.dumps({"instruction": f"q{i}", "output": f"a{i}"}) for i in range(good)]
    lines += ["not json"] * bad
    (src / "n.jsonl").write_text("\n".join(lines) + "\n")
    return src


def test_dropping_most_of_the_data_warns_in_the_log_and_the_summary(tmp_path):
    proj = make_project(tmp_path / "p", source=_notes(tmp_path, 49, 64))
    out = proj.doit("clean_dataset", check=True).stdout
    assert "57% of the data lines were dropped" in out
    stats = json.loads((proj.work / "dataset-stats.json").read_text())
    assert stats["warning"] and stats["examples"]["invalid_json"][0].endswith("n.jsonl:50")
    assert proj.summary["dataset"]["warning"] == stats["warning"]


def test_the_drop_threshold_can_stop_the_run_before_renting(tmp_path):
    proj = make_project(tmp_path / "p", source=_notes(tmp_path, 49, 64), dataset={"drop_fatal": True})
    proc = proj.doit("full_cycle")
    assert proc.returncode != 0 and "drop_fatal" in proc.stdout
    assert not (proj.work / "pod.json").exists()


def _peak_rss_mb(proc: subprocess.Popen) -> float:
    """Peak RSS of a process tree, sampled from /proc every 50 ms (VmHWM of each process seen)."""
    peak = 0.0
    while proc.poll() is None:
        total = 0
        for pid in [proc.pid, *_descendants(proc.pid)]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        total = max(total, int(line.split()[1]))
            except OSError:
                pass
        peak = max(peak, total / 1024)
        time.sleep(0.05)
    return peak


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    found = [int(p) for p in out]
    for child in list(found):
        found += _descendants(child)
    return found


@pytest.mark.slow  # the real trainer's own streaming is part of what is measured
def test_a_50_mb_line_stays_under_1_gb(tmp_path):
    src = tmp_path / "notes"
    src.mkdir()
    with (src / "n.jsonl").open("w") as fh:
        for i in range(40):
            fh.write(json.dumps({"instruction": f"q{i}", "output": f"answer {i}"}) + "\n")
        fh.write(json.dumps({"instruction": "huge", "output": "y" * 50_000_000}) + "\n")
    proj = make_project(tmp_path / "p", source=src, real_training=True)
    proc = subprocess.Popen([sys.executable, "-m", "doit", "-f", str(DODO), "full_cycle"], cwd=proj.root,
                            env=proj.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peak = _peak_rss_mb(proc)
    out = proc.stdout.read()
    assert proc.wait() == 0, out[-3000:]
    print(f"\nfull_cycle with a 50 MB line: largest process peaked at {peak:.0f} MB")
    assert peak < 1024
    assert proj.summary["dataset"]["dropped"]["too_long"] == 1
    assert "formatting" in proj.trainer_log



def test_all_bad_file_aborts_with_a_failed_summary(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    (source / "bad.jsonl").write_text('{"instruction": "x"}\nnot json\n')
    proj = make_project(tmp_path / "proj", source=source)
    proc = proj.doit("full_cycle")
    assert proc.returncode != 0
    assert "no usable samples" in proc.stdout
    summary = proj.summary
    assert summary["success"] is False and summary["training_success"] is False
    assert summary["error"].startswith("clean_dataset: ")
    assert summary["pod_id"] is None and not (proj.work / "pod.json").exists()
    assert summary["dataset"]["dropped"] == {"invalid_json": 1, "missing_output": 1}
