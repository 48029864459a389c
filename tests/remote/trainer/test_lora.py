"""The LoRA (remote/trainer/lora.py): its targets on each family, and the MoE router left alone."""

from __future__ import annotations

from tasks.model import families
from tasks.model import tiny as tinymodel
from tests.helpers import train_config, trainer


def _tiny(architecture: str):
    spec = {**tinymodel.SPEC, "architecture": architecture}
    return families.tiny_model(spec, vocab_size=64, eos_token_id=1, pad_token_id=0)


def test_the_trainer_targets_what_each_family_has():
    lora = trainer("lora")
    attention = ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert lora.target_modules(train_config(), _tiny("qwen3_moe")) == attention  # MoE: attention only
    assert lora.target_modules(train_config(), _tiny("gpt_oss")) == attention
    dense = lora.target_modules(train_config(), _tiny("qwen3"))
    assert dense == [*attention, "gate_proj", "up_proj", "down_proj"]
    assert lora.target_modules(train_config(), _tiny("phi3")) == ["o_proj", "qkv_proj", "down_proj", "gate_up_proj"]
    hybrid = lora.target_modules(train_config(), _tiny("qwen3_5"))  # its linear attention has no GGUF LoRA form
    assert hybrid == dense and not any("linear_attn" in t for t in hybrid)
    assert lora.target_modules(train_config(target_modules=["q_proj", "gate_proj"]), _tiny("qwen3")) == ["q_proj", "gate_proj"]


def test_target_modules_that_name_nothing_are_bad_input_with_what_the_model_has():
    """A name that matches no linear layer would train nothing: exit 2 (bad input), naming what there is."""
    import pytest

    lora = trainer("lora")
    with pytest.raises(trainer("config").InputError, match=r"\['gate_proj'\] name no linear layer.*q_proj"):
        lora.target_modules(train_config(target_modules=["q_proj", "gate_proj"]), _tiny("qwen3_moe"))  # fused experts


def test_moe_router_aux_loss_is_off():
    model = _tiny("qwen3_moe")
    model.config.output_router_logits, model.config.router_aux_loss_coef = True, 0.001  # what trl turns on
    trainer("lora").quiet_router(model)
    assert model.config.output_router_logits is False and model.config.router_aux_loss_coef == 0.0
