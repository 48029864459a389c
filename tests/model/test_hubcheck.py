"""Refuse before renting: the base model must exist, be downloadable and fit a GPU we would rent."""

from __future__ import annotations

import json

import pytest

from tasks.model.hubcheck import ModelCheckError, check
from tests.doubles.hub import HubDouble
from tests.doubles.sshpod import free_port

GPUS = ("NVIDIA GeForce RTX 5090", "NVIDIA GeForce RTX 4090", "NVIDIA RTX A6000")


@pytest.fixture
def hub(monkeypatch, tmp_path):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("FULLCYCLE_MODEL_CHECKS", str(tmp_path / "model-checks"))
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


def test_auto_downloads_what_the_pinned_stack_can_load_the_bf16_weights_of_a_moe(hub):
    """transformers 5 (the pinned 5.17) cannot load a per-expert 4-bit MoE checkpoint, so "auto" does not
    promise the ~17 GB build: the pod downloads the bf16 weights (~61 GB) and quantizes them while loading."""
    verdict = check("Qwen/Qwen3-30B-A3B", GPUS, "auto")
    assert verdict["model_to_load"] == "Qwen/Qwen3-30B-A3B" and verdict["load_in_4bit"] is True
    assert verdict["moe_build"].startswith("bf16: the pinned stack (transformers 5.17.0) cannot load")
    assert "fallback_model" not in verdict and not any("bnb-4bit" in path for path, _ in hub.requests)
    assert verdict["gpu_types"] == ["NVIDIA GeForce RTX 5090", "NVIDIA GeForce RTX 4090", "NVIDIA RTX A6000"]
    assert verdict["download_gb"] == 61.1 and verdict["needed_gb"] < 32  # 4-bit in GPU memory all the same
    assert "network volume" in verdict["download_advice"]


def test_the_pinned_stack_decides_whether_a_prequantized_moe_build_loads():
    from tasks.model.hubcheck import pinned, prequantized_moe_loads

    assert pinned("transformers") == "5.17.0" and pinned("no-such-package") is None
    assert prequantized_moe_loads("4.57.6") is True  # experts are modules of their own up to 4.x
    assert prequantized_moe_loads("5.17.0") is False and prequantized_moe_loads(None) is False


def test_prequantized_asks_for_the_published_4bit_build_with_bf16_as_the_fallback(hub):
    """Asked for explicitly (a stack of one's own that loads it), the build is downloaded (~17 GB) and
    loaded by its exact name; the pod falls back to the bf16 weights once if it will not load."""
    verdict = check("Qwen/Qwen3-30B-A3B", GPUS, "auto", moe_build="prequantized")
    assert verdict["model_to_load"] == "unsloth/Qwen3-30B-A3B-bnb-4bit" and verdict["moe_build"] == "prequantized"
    assert verdict["fallback_model"] == "Qwen/Qwen3-30B-A3B" and verdict["fallback_bytes"] == 61_064_245_248
    assert verdict["download_gb"] == 17.5 and verdict["download_minutes"] == 2.9
    assert "download_advice" not in verdict  # under the size where a volume pays


def test_a_moe_in_bf16_build_says_what_downloads(hub):
    """Asked for the bf16 weights (or without a published build) the pod downloads ~61 GB and quantizes
    while loading: the verdict says so, with the time and the advice."""
    verdict = check("Qwen/Qwen3-30B-A3B", GPUS, "auto", moe_build="bf16")
    assert verdict["model_to_load"] == "Qwen/Qwen3-30B-A3B" and verdict["load_in_4bit"] is True
    assert verdict["download_gb"] == 61.1 and verdict["download_minutes"] == 10.2
    assert "network volume" in verdict["download_advice"]
    with_volume = check("Qwen/Qwen3-30B-A3B", GPUS, "auto", volume=True, moe_build="bf16")
    assert "download_advice" not in with_volume and with_volume["download_gb"] == 61.1


def test_a_dense_model_loads_its_4bit_build(hub):
    import tests.doubles.hub as double

    double.MODELS["Qwen/Qwen3-32B"] = {"gated": False, "safetensors": {"parameters": {"BF16": 32_762_123_264},
                                                                        "total": 32_762_123_264}}
    double.CONFIGS["Qwen/Qwen3-32B"] = {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3"}
    try:
        verdict = check("Qwen/Qwen3-32B", ("NVIDIA GeForce RTX 5090",), "auto")
    finally:
        double.MODELS.pop("Qwen/Qwen3-32B"), double.CONFIGS.pop("Qwen/Qwen3-32B")
    assert verdict["model_to_load"] == "unsloth/Qwen3-32B-bnb-4bit" and verdict["download_gb"] == 18.0


def test_an_architecture_without_a_gguf_form_is_known_before_renting(hub):
    verdict = check("state-spaces/mamba-2.8b-hf", GPUS, "auto")
    assert verdict["architecture"] == "MambaForCausalLM" and verdict["gguf"].startswith("adapter.gguf will be skipped")


def test_offline_uses_the_last_answer_for_that_model(hub, monkeypatch):
    check("Qwen/Qwen3-30B-A3B", GPUS, "auto")  # online: remembered
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    verdict = check("Qwen/Qwen3-30B-A3B", GPUS, "auto")
    assert verdict["load_in_4bit"] is True and verdict["parameters"] == 30_532_122_624
    assert "used its answer" in verdict["warning"]


def test_offline_and_never_seen_loads_in_4bit_rather_than_guess(monkeypatch, tmp_path):
    monkeypatch.setenv("FULLCYCLE_MODEL_CHECKS", str(tmp_path))
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{free_port()}")
    verdict = check("Qwen/Qwen3-30B-A3B", GPUS, "auto")
    assert verdict["load_in_4bit"] is True and "size is unknown" in verdict["warning"]


def test_gpus_too_small_are_left_out_of_the_rental(hub):
    verdict = check("Qwen/Qwen3-0.6B", ("NVIDIA GeForce RTX 5090",), "never")
    assert verdict["model_to_load"] == "Qwen/Qwen3-0.6B" and verdict["precision"] == "bf16"


def test_offline_warns_and_goes_on(monkeypatch, tmp_path):
    monkeypatch.setenv("FULLCYCLE_MODEL_CHECKS", str(tmp_path))
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
    assert config["model_to_load"] == "Qwen/Qwen3-30B-A3B" and config["load_in_4bit"] is True
    assert config["moe_build"].startswith("bf16: the pinned stack") and config["fallback_model"] is None
    assert config["download_bytes"] == 61_064_245_248  # the trainer reports its download against it
    assert fake_api.ops("create") == 0
    planned = proj.summary["model_check"]  # the record names what the pod will really download
    assert planned["model_to_load"] == "Qwen/Qwen3-30B-A3B" and planned["download_gb"] == 61.1
    assert planned["moe_build"].startswith("bf16: the pinned stack")


def test_more_gpus_speed_up_but_never_make_a_model_fit(hub):
    verdict = check("Qwen/Qwen3-0.6B", GPUS, "auto", gpu_count=2)
    assert "2 GPUs train data-parallel" in verdict["data_parallel"] and "never makes a model fit" in verdict["data_parallel"]
    assert "data_parallel" not in check("Qwen/Qwen3-0.6B", GPUS, "auto")
    with pytest.raises(ModelCheckError) as err:
        check("Qwen/Qwen3-30B-A3B", ("NVIDIA GeForce RTX 5090",), "never", gpu_count=4)
    assert "not more GPUs alone: [runpod] gpu_count = 4 trains data-parallel" in str(err.value)
    assert "FSDP2: [training] sharding = \"auto\"" in str(err.value) and "Nothing was rented" in str(err.value)
    planned = check("Qwen/Qwen3-30B-A3B", ("NVIDIA GeForce RTX 5090",), "never", sharding="auto")
    assert planned["plan"]["sharding"] == "fsdp" and planned["plan"]["gpu"] == "NVIDIA GeForce RTX 5090"
    assert planned["plan"]["gpus_per_pod"] == 3 and planned["load_in_4bit"] is False  # ~67 GB over three 32 GB GPUs
    with pytest.raises(Exception, match="4-bit \\(bitsandbytes\\) weights cannot be sharded"):
        check("Qwen/Qwen3-30B-A3B", ("NVIDIA GeForce RTX 4090",), "always", sharding="fsdp", gpu_count=2)
