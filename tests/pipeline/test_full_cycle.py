"""`doit full_cycle` end to end with the local provider and the tiny model, and doit's up-to-date rules.

`trained` is the one real training of this module: the embedded default as a newcomer meets it (`doit
full_cycle` on a fresh clone: the shipped fullcycle.toml and examples, slow tier), which must show the
feature: a held-out loss clearly below the base model's and answers that follow the data. doit's
up-to-date rules are checked on projects of their own with the stand-in trainer, so no test sees what
another one changed."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from tasks.record.phases import ORDER as PHASE_ORDER
from tests.helpers import REPO, Project, make_project, project_env, ran

SEED_FIELDS = ("date", "samples_used", "base_model", "pod_id", "ssh_user", "ssh_host", "ssh_key_path",
               "connection_mode", "adapter_path", "upload_verification", "terminated", "training_success")
PHASES = ("Preparing dataset", "Config written", "Spawning remote run", "Remote training complete, success=True",
          "Run complete.")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A fresh clone's `doit full_cycle`: the shipped settings and examples, trained for real."""
    root = tmp_path_factory.mktemp("clone")
    shutil.copy(REPO / "fullcycle.toml", root / "fullcycle.toml")
    shutil.copytree(REPO / "examples", root / "examples")
    proj = Project(root=root, env=project_env(root / "fullcycle.toml", "2026-11-27"))
    started = time.monotonic()
    proj.first = proj.doit("full_cycle", check=True)
    proj.seconds = time.monotonic() - started
    return proj


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished date (stand-in trainer) that the tests using it only read."""
    proj = make_project(tmp_path_factory.mktemp("finished"))
    proj.first = proj.doit("full_cycle", check=True)
    return proj


@pytest.fixture
def project(tmp_path):
    """A finished date of its own (stand-in trainer), for a test that changes it."""
    proj = make_project(tmp_path)
    proj.first = proj.doit("full_cycle", check=True)
    return proj


@pytest.mark.slow
def test_full_cycle_produces_an_adapter_that_peft_loads(trained):
    project = trained
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = project.adapter
    for name in ("adapter_config.json", "adapter_model.safetensors", "base_model_config.json", "metrics.json",
                 "tokenizer.json"):
        assert (adapter / name).is_file(), name
    base = AutoModelForCausalLM.from_pretrained(project.root / ".fullcycle" / "tiny-model")  # the built-in base
    model = PeftModel.from_pretrained(base, adapter)
    lora = [n for n, _ in model.named_parameters() if "lora_A" in n]
    assert lora, "no LoRA weights loaded"
    assert json.loads((adapter / "adapter_config.json").read_text())["r"] == 32  # the tiny model's own default


def test_summary_has_the_seed_fields_and_the_truth(finished):
    project = finished
    summary = project.summary
    for field in SEED_FIELDS:
        assert field in summary, field
    assert summary["training_success"] is True and summary["success"] is True
    assert summary["terminated"] is True
    assert summary["samples_used"] == 36
    assert summary["base_model"] == "tiny"
    assert summary["upload_verification"].endswith("  config.json")
    assert summary["adapter_path"] == str(project.adapter)
    assert summary["training"]["final_loss"] is not None
    assert set(summary["stages"]) >= {"build_dataset", "clean_dataset", "write_config", "create_pod", "upload",
                                      "train", "download_adapter", "terminate_pod", "extract_adapter"}
    assert summary["dataset"]["dropped"] == {"duplicate": 1, "invalid_json": 1, "missing_output": 1}
    # 36 samples at [eval] fraction 0.05 hold out fewer than min_samples: no evaluation, and it says why
    assert summary["eval"]["heldout_samples"] == 0 and summary["eval"]["verdict"] is None
    assert "fewer than [eval] min_samples = 8" in summary["eval"]["why"] and summary["eval"]["promoted"] is True


@pytest.mark.slow
def test_the_real_run_records_where_its_seconds_went(trained):
    """The local provider records the phases it has: no image, no hub download, the trainer's own four."""
    summary = trained.summary
    spent = summary["phases"]
    assert list(spent) == list(PHASE_ORDER)
    assert spent["image_pull"] is None and spent["model_download"] is None  # the tiny model travels with the inputs
    for name in ("upload", "trainer_start", "model_load", "training", "save", "adapter_transfer", "other"):
        assert isinstance(spent[name], float), name
    assert spent["training"] > 0 and spent["model_load"] > 0
    assert 0 < summary["not_training_share"] < 1
    assert summary["not_training_share"] == round(1 - spent["training"] / summary["billed_seconds"], 3)


@pytest.mark.slow
def test_trainer_log_has_the_phases(trained):
    log = trained.trainer_log
    for phase in PHASES:
        assert phase in log, phase
    assert "pod | [train] step" in log  # the pod's training log is followed into trainer.log
    assert "backend transformers+peft+trl" in log  # the real trainer, not the stand-in


def test_command_prints_result_and_paths(finished):
    assert "full_cycle SUCCEEDED" in finished.first.stdout
    assert str(finished.adapter) in finished.first.stdout


def test_second_run_reruns_nothing(project):
    train_json = (project.work / "train.json").stat().st_mtime_ns
    second = project.doit("full_cycle", check=True)
    for stage in ("build_dataset", "clean_dataset", "write_config", "create_pod", "upload", "train",
                  "download_adapter", "extract_adapter", "summarize"):
        assert not ran(second.stdout, stage), stage
    assert (project.work / "train.json").stat().st_mtime_ns == train_json


def test_deleting_the_adapter_reruns_only_extraction(project):
    shutil.rmtree(project.adapter)
    out = project.doit("full_cycle", check=True).stdout
    assert ran(out, "extract_adapter")
    for stage in ("create_pod", "upload", "train", "download_adapter"):
        assert not ran(out, stage), stage
    assert (project.adapter / "adapter_model.safetensors").is_file()


def test_extract_adapter_alone(project):
    shutil.rmtree(project.adapter)
    out = project.doit("extract_adapter", check=True).stdout
    assert ran(out, "extract_adapter") and not ran(out, "train")
    assert (project.adapter / "adapter_config.json").is_file()


def test_changing_learning_rate_reruns_config_and_everything_after(project):
    settings = project.root / "fullcycle.toml"
    settings.write_text(settings.read_text().replace("[training]", "[training]\nlearning_rate = 0.001"))
    out = project.doit("full_cycle", check=True).stdout
    assert not ran(out, "build_dataset") and not ran(out, "clean_dataset")
    for stage in ("write_config", "create_pod", "upload", "train", "download_adapter", "terminate_pod",
                  "extract_adapter", "summarize"):
        assert ran(out, stage), stage
    assert json.loads((project.work / "config.json").read_text())["learning_rate"] == 0.001
    assert project.summary["config"]["learning_rate"] == 0.001 and project.summary["success"] is True


@pytest.mark.slow  # the preflight trains a tiny model for real
def test_the_preflight_runs_on_the_pod_before_the_trainer(tmp_path):
    proj = make_project(tmp_path / "proj", remote={"preflight": "always"})
    proj.doit("full_cycle", check=True)
    pod_log = (proj.work / "pod-train.log").read_text()
    assert "preflight passed" in pod_log and "backend stand-in" in pod_log
    assert pod_log.index("preflight passed") < pod_log.index("backend stand-in")
    preflight = proj.summary["preflight"]
    assert preflight["ok"] is True and preflight["family"] == "Qwen3MoeForCausalLM" and preflight["seconds"] > 0
    assert proj.summary["phases"]["preflight"] == round(preflight["seconds"], 2)


@pytest.mark.slow
def test_a_failed_preflight_ends_the_run_before_the_trainer_and_says_where(tmp_path):
    proj = make_project(tmp_path / "proj", remote={"preflight": "always"}, training={"target_modules": ["no_such_proj"]})
    proc = proj.doit("full_cycle")
    assert proc.returncode != 0
    summary = proj.summary
    assert summary["error"].startswith("train: preflight failed at lora"), summary["error"]
    assert "no_such_proj" in summary["error"] and "before the base model was loaded" in summary["error"]
    assert summary["preflight"]["ok"] is False and summary["terminated"] is True
    assert summary["billed_seconds"] is not None and summary["cost_usd"] is not None
    assert "backend stand-in" not in (proj.work / "pod-train.log").read_text()


@pytest.mark.slow
def test_the_default_run_learns_visibly_and_says_so(trained):
    proj, seconds = trained, trained.seconds
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
