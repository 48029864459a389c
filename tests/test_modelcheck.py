"""Refuse before renting: the base model must exist, be downloadable and fit a GPU we would rent."""

from __future__ import annotations

import json

import pytest

from tasks.modelcheck import ModelCheckError, check
from tests.hubdouble import HubDouble
from tests.sshpod import free_port

GPUS = ("NVIDIA GeForce RTX 5090", "NVIDIA GeForce RTX 4090", "NVIDIA RTX A6000")


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with HubDouble() as double:
        monkeypatch.setenv("HF_ENDPOINT", double.url)
        yield double


def test_a_model_that_does_not_exist_is_refused(hub):
    with pytest.raises(ModelCheckError, match="does not exist on the model hub.*nothing was rented"):
        check("Qwen/Qwen3-30B-Instruct", GPUS, "auto")


def test_a_gated_model_needs_a_token(hub, monkeypatch):
    with pytest.raises(ModelCheckError, match="gated.*HF_TOKEN"):
        check("meta-llama/Llama-3.1-8B", GPUS, "auto")
    monkeypatch.setenv("HF_TOKEN", "hf_SENTINEL")
    assert check("meta-llama/Llama-3.1-8B", GPUS, "auto")["checked"] is True
    assert hub.requests[-1][1] == "Bearer hf_SENTINEL"


def test_a_bf16_load_that_fits_no_gpu_is_refused_with_the_cheaper_choices(hub):
    with pytest.raises(ModelCheckError) as err:
        check("Qwen/Qwen3-30B-A3B", ("NVIDIA GeForce RTX 5090",), "never")
    message = str(err.value)
    assert "RTX 5090 (32 GB)" in message and "unsloth/Qwen3-30B-A3B-bnb-4bit" in message
    assert "bigger GPU" in message and "Nothing was rented" in message


def test_auto_loads_the_4bit_build_where_bf16_cannot_fit(hub):
    verdict = check("Qwen/Qwen3-30B-A3B", GPUS, "auto")
    assert verdict["model_to_load"] == "unsloth/Qwen3-30B-A3B-bnb-4bit" and verdict["load_in_4bit"] is True
    assert verdict["gpu_types"] == ["NVIDIA GeForce RTX 5090", "NVIDIA GeForce RTX 4090", "NVIDIA RTX A6000"]


def test_gpus_too_small_are_left_out_of_the_rental(hub):
    verdict = check("Qwen/Qwen3-0.6B", ("NVIDIA GeForce RTX 5090",), "never")
    assert verdict["model_to_load"] == "Qwen/Qwen3-0.6B" and verdict["precision"] == "bf16"


def test_offline_warns_and_goes_on(monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    verdict = check("Qwen/Qwen3-30B-A3B", GPUS, "auto")
    assert verdict["checked"] is False and "not reachable" in verdict["warning"]


def test_the_pipeline_refuses_before_renting(tmp_path, sshd, fake_api):
    from tests.conftest import runpod_project

    with HubDouble() as double:
        proj = runpod_project(tmp_path, sshd, fake_api, training={"base_model": "Qwen/Qwen3-30B-Instruct"})
        proj.env["HF_ENDPOINT"] = double.url
        proc = proj.doit("full_cycle")
    assert proc.returncode != 0 and "does not exist on the model hub" in proc.stdout
    assert fake_api.ops("create") == 0
    assert proj.summary["error"].startswith("check_model: ")


def test_the_4bit_choice_reaches_the_trainers_config(tmp_path, sshd, fake_api):
    from tests.conftest import runpod_project

    with HubDouble() as double:
        proj = runpod_project(tmp_path, sshd, fake_api, training={"base_model": "Qwen/Qwen3-30B-A3B"})
        proj.env["HF_ENDPOINT"] = double.url
        proj.doit("write_config", check=True)
    config = json.loads((proj.work / "config.json").read_text())
    assert config["model_to_load"] == "unsloth/Qwen3-30B-A3B-bnb-4bit" and config["load_in_4bit"] is True
    assert fake_api.ops("create") == 0


def _tiny(architecture: str):
    from tasks import families, tinymodel

    spec = {**tinymodel.SPEC, "architecture": architecture}
    return families.tiny_model(spec, vocab_size=64, eos_token_id=1, pad_token_id=0)


def test_the_trainer_targets_what_each_family_has():
    import importlib.util

    from tests.helpers import REPO

    spec = importlib.util.spec_from_file_location("trainer", REPO / "remote" / "train_unsloth.py")
    trainer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(trainer)
    attention = ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert trainer.target_modules({}, _tiny("qwen3_moe")) == attention  # MoE: attention only
    assert trainer.target_modules({}, _tiny("gpt_oss")) == attention
    dense = trainer.target_modules({}, _tiny("qwen3"))
    assert dense == [*attention, "gate_proj", "up_proj", "down_proj"]
    assert trainer.target_modules({}, _tiny("phi3")) == ["o_proj", "qkv_proj", "down_proj", "gate_up_proj"]
    hybrid = trainer.target_modules({}, _tiny("qwen3_5"))  # its linear attention has no GGUF LoRA form
    assert hybrid == dense and not any("linear_attn" in t for t in hybrid)
    assert trainer.target_modules({"target_modules": ["q_proj", "gate_proj"]}, _tiny("qwen3_moe")) == ["q_proj", "gate_proj"]