"""`doit gpu_check` (tasks/pod/gpu_check.py): one pod rented, the preflight alone run on it for real,
the pod terminated whatever happened, and a record of what ran and what it cost."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import runpod_project
from tests.helpers import make_project


def _record(proj) -> dict:
    found = sorted((proj.root / ".fullcycle" / "gpu-checks").glob("*/gpu-check.json"))
    assert len(found) == 1, found
    return json.loads(found[0].read_text())


@pytest.mark.slow  # the preflight trains a tiny model for real
def test_gpu_check_on_the_runpod_double_rents_one_pod_runs_the_preflight_and_ends_it(tmp_path, sshd, fake_api):
    proj = runpod_project(tmp_path, sshd, fake_api, real_training=True)
    proc = proj.doit("gpu_check", check=True)
    record = _record(proj)
    assert record["ok"] is True and record["terminated"] is True, record
    assert fake_api.ops("create") == 1 and fake_api.running() == []
    assert record["preflight"]["ok"] is True and record["preflight_family"] == "Qwen3MoeForCausalLM"
    assert record["versions"]["torch"] and record["backend"] == "transformers+peft+trl"
    assert record["gpu"] == "NVIDIA RTX A6000" and record["cloud_type"] == "COMMUNITY"  # the cheapest available
    assert record["pod_seconds"] > 0 and record["cost_usd"] is not None
    assert "gpu_check PASSED" in proc.stdout
    assert record["preflight"]["where"] == "apart"  # the preflight was the whole run: no trainer after it
    pod_log = next(Path(record["folder"]).glob("pod-train.log")).read_text()
    assert "preflight passed" in pod_log and "[train] step" not in pod_log.split("preflight passed", 1)[1]
    assert not (proj.root / "metahuman-runs").exists(), "a check touches no day's record"


@pytest.mark.slow
def test_a_failed_check_says_where_and_still_ends_the_pod(tmp_path, sshd, fake_api):
    proj = runpod_project(tmp_path, sshd, fake_api, real_training=True, training={"target_modules": ["nope_proj"]})
    proc = proj.doit("gpu_check")
    assert proc.returncode != 0
    record = _record(proj)
    assert record["ok"] is False and "preflight failed at lora" in record["error"] and "nope_proj" in record["error"]
    assert fake_api.running() == [] and record["terminated"] is True


def test_gpu_check_is_listed(tmp_path):
    assert "gpu_check" in make_project(tmp_path).doit("list", check=True).stdout
