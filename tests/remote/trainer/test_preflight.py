"""The preflight (remote/trainer/preflight.py), for real on the CPU: the run's code path on a tiny model
of the base model's family (plain PEFT here; Unsloth wherever CUDA is), and what it says when a step fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from tasks.model import families, tiny
from tests.helpers import EXAMPLES, REMOTE, SEED_CONFIG, trainer


def _inputs(tmp_path, arch: str = "qwen3_moe", tie: bool = False, **settings) -> tuple:
    rows = b"".join(p.read_bytes() for p in sorted(EXAMPLES.glob("*.jsonl")))
    from tasks.data.cleaning import clean

    (tmp_path / "raw.jsonl").write_bytes(rows)
    clean(tmp_path / "raw.jsonl", tmp_path / "data.jsonl")
    shape = families.preflight_shape({"model_type": arch, "tie_word_embeddings": tie}, tiny.SPEC)
    config = {"base_model": "Qwen/Qwen3-30B-A3B", "lora_rank": 8, "lora_alpha": 16, "num_train_epochs": 1,
              "learning_rate": 1e-3, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 1,
              "max_seq_length": 2048, "target_modules": "auto", "preflight": {"shape": shape}, **settings}
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path / "data.jsonl", tmp_path / "config.json"


def _preflight(tmp_path, data, config, env=None) -> tuple[subprocess.CompletedProcess, dict]:
    report = tmp_path / "preflight.json"
    proc = subprocess.run([sys.executable, "-m", "trainer.preflight", "--data", str(data), "--config", str(config),
                           "--output", str(tmp_path / "work"), "--report", str(report)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "PYTHONPATH": str(REMOTE), "HF_HUB_OFFLINE": "1", **(env or {})})
    return proc, json.loads(report.read_text())


@pytest.mark.slow
def test_the_preflight_drives_the_runs_code_path_on_the_base_models_family(tmp_path):
    data, config = _inputs(tmp_path)
    started = time.monotonic()
    proc, report = _preflight(tmp_path, data, config)
    seconds = time.monotonic() - started
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert report["ok"] is True and report["family"] == "Qwen3MoeForCausalLM"
    assert list(report["steps"]) == ["stack", "build", "load", "lora", "start_from", "data", "fit", "measure", "save"]
    assert all(isinstance(report["measured"][k], float) for k in ("base_loss", "adapter_loss", "previous_loss"))
    assert "preflight passed" in proc.stdout and not (tmp_path / "work").exists()
    print(f"\npreflight on the CPU: {report['seconds']}s inside, {seconds:.1f}s with imports; steps {report['steps']}")


@pytest.mark.slow
def test_a_failing_step_is_named_with_the_librarys_own_words(tmp_path):
    data, config = _inputs(tmp_path, target_modules=["q_proj", "no_such_proj"])
    proc, report = _preflight(tmp_path, data, config)
    assert proc.returncode == 5, proc.stderr[-2000:]
    assert report["ok"] is False and report["step"] == "lora" and "no_such_proj" in report["error"]
    assert "[train] ERROR: preflight failed at lora" in proc.stderr


def test_no_shape_skips_it_and_says_why(tmp_path):
    (tmp_path / "data.jsonl").write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    (tmp_path / "config.json").write_text(json.dumps({
        "base_model": "x/y", "lora_rank": 8, "num_train_epochs": 1, "learning_rate": 1e-3,
        "per_device_train_batch_size": 1, "gradient_accumulation_steps": 1, "max_seq_length": 64,
        "preflight": {"skipped": "no tiny build for architecture mamba"}}))
    proc, report = _preflight(tmp_path, tmp_path / "data.jsonl", tmp_path / "config.json")
    assert proc.returncode == 0 and report == {"ok": None, "skipped": "no tiny build for architecture mamba"}


def test_the_runner_learns_where_the_preflight_runs(tmp_path):
    where = __import__("tests.helpers", fromlist=["trainer"]).trainer("preflight").where
    config = tmp_path / "config.json"
    for spec, want in (({"shape": {"model_class": "X"}, "where": "trainer"}, "trainer"),
                       ({"shape": {"model_class": "X"}, "where": "apart"}, "apart"),
                       ({"shape": {"model_class": "X"}}, "apart"), ({"skipped": "never"}, "none"), (None, "none")):
        config.write_text(json.dumps({**SEED_CONFIG, "preflight": spec}))
        assert where(config) == want, spec
    config.write_text(json.dumps({**SEED_CONFIG, "preflight": {"shape": {"model_class": "X"}, "where": "trainer"},
                                  "preflight_only": True}))
    assert where(config) == "apart"  # `doit gpu_check`: nothing is trained after it
    config.write_text("{not json")
    assert where(config) == "apart"  # unreadable: the safe way, a process of its own


def test_the_real_model_compiles_as_a_fresh_process_would_after_the_preflight_inside_the_trainer():
    """On the H200 the real model's decoder blocks, compiled after the tiny model's steps in the same
    process, were compiled as dynamic and Unsloth kept their stock forward: forget_compiled() makes the
    next compile static again, as in a fresh process."""
    import torch

    preflight = trainer("preflight")
    dynamic: list[bool] = []

    def backend(graph, inputs):  # records whether dynamo compiled this graph for varying sizes
        dynamic.append(any(isinstance(i, torch.SymInt) for i in inputs))
        return graph.forward

    def block(x):
        return (x * 2).sum(-1)

    torch._dynamo.reset()
    compiled = torch.compile(block, backend=backend)
    compiled(torch.ones(2, 3))
    compiled(torch.ones(2, 5))  # a second size: dynamo now guesses the size varies
    assert dynamic == [False, True]
    compiled(torch.ones(2, 7))
    assert dynamic == [False, True]  # without the reset, the dynamic graph is what the next model gets
    preflight.forget_compiled()
    torch.compile(block, backend=backend)(torch.ones(2, 9))
    assert dynamic == [False, True, False]
