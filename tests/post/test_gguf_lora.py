"""GGUF LoRA conversion: file structure (GGUFReader), numbers (deltas rebuilt from the GGUF reproduce
peft's logits), and refusals for what the format cannot hold."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tasks.model import tiny as tinymodel
from tasks.post import gguf_lora
from tests.helpers import EXAMPLES

BLOCK = {"attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj", "attn_v": "self_attn.v_proj",
         "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj",
         "ffn_down": "mlp.down_proj"}


@pytest.fixture(scope="module")
def tiny_base(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("tiny")
    data = folder / "data.jsonl"
    data.write_text("".join(p.read_text() for p in sorted(EXAMPLES.glob("*.jsonl"))))
    from tasks.data.cleaning import clean

    clean(data, folder / "clean.jsonl")  # the examples hold a few bad lines on purpose
    return tinymodel.build(folder / "clean.jsonl", folder / "model", {"architecture": "qwen2"})


def _adapter(base: Path, out: Path, **lora_kw) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=list({v.split(".")[-1] for v in BLOCK.values()}),
                        task_type="CAUSAL_LM", **lora_kw)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():  # a trained adapter has non-zero B; an untrained one would prove nothing
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.save_pretrained(out)
    shutil.copy(base / "config.json", out / "base_model_config.json")
    return out


def test_gguf_reads_back_as_a_lora_adapter(tiny_base, tmp_path):
    adapter = _adapter(tiny_base, tmp_path / "adapter")
    written = gguf_lora.convert(adapter, tmp_path / "adapter.gguf")
    check = gguf_lora.validate(tmp_path / "adapter.gguf")
    assert check == {"architecture": "qwen2", "alpha": 8.0, "pairs": 14}
    assert written["tensors"] == 28
    print(f"\nadapter.gguf {written['bytes']} bytes vs adapter_model.safetensors "
          f"{(adapter / 'adapter_model.safetensors').stat().st_size} bytes")


def test_deltas_from_the_gguf_reproduce_peft_logits(tiny_base, tmp_path):
    import gguf
    import numpy as np
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter = _adapter(tiny_base, tmp_path / "adapter")
    gguf_lora.convert(adapter, tmp_path / "adapter.gguf")
    reader = gguf.GGUFReader(str(tmp_path / "adapter.gguf"))
    alpha = float(reader.get_field("adapter.lora.alpha").contents())
    tensors = {t.name: np.array(t.data) for t in reader.tensors}
    ids = torch.tensor([[5, 17, 42, 99, 3, 250, 7]])

    base = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
    with torch.no_grad():
        base_logits = base(ids).logits
        peft_logits = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_base), adapter).eval()(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(tiny_base).eval()
        for name, a in tensors.items():
            if not name.endswith(".lora_a"):
                continue
            _, layer, kind, _, _ = name.split(".")
            b = tensors[name[:-1] + "b"]
            weight = merged.get_submodule(f"model.layers.{layer}.{BLOCK[kind]}").weight
            weight += torch.from_numpy((alpha / a.shape[0]) * (b @ a))  # the scale llama.cpp applies
        gguf_logits = merged(ids).logits
    diff = (gguf_logits - peft_logits).abs().max().item()
    moved = (peft_logits - base_logits).abs().max().item()
    print(f"\nmax |logit(gguf deltas) - logit(peft)| = {diff:.2e}; adapter moves logits by {moved:.3f}")
    assert diff < 1e-4
    assert moved > 1e-2


@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_llama_and_qwen3_convert(tmp_path, arch):
    from transformers import (
        LlamaConfig,
        LlamaForCausalLM,
        Qwen3Config,
        Qwen3ForCausalLM,
    )

    cls, cfg = (LlamaForCausalLM, LlamaConfig) if arch == "llama" else (Qwen3ForCausalLM, Qwen3Config)
    base = tmp_path / "base"
    cls(cfg(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
            num_key_value_heads=2, head_dim=8)).save_pretrained(base)
    adapter = _adapter(base, tmp_path / "adapter")
    gguf_lora.convert(adapter, tmp_path / "a.gguf")
    assert gguf_lora.validate(tmp_path / "a.gguf")["architecture"] == arch


@pytest.mark.parametrize(("change", "message"), [
    ({"use_rslora": True}, "rslora"),
    ({"modules_to_save": ["lm_head"]}, "modules_to_save"),
    ({"use_dora": True}, "DoRA"),
])
def test_unrepresentable_adapters_are_refused(tiny_base, tmp_path, change, message):
    adapter = _adapter(tiny_base, tmp_path / "adapter")
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(gguf_lora.GgufError, match=message):
        gguf_lora.convert(adapter, tmp_path / "a.gguf")
    assert not (tmp_path / "a.gguf").exists()


def test_unsupported_architecture_is_refused(tiny_base, tmp_path):
    adapter = _adapter(tiny_base, tmp_path / "adapter")
    (adapter / "base_model_config.json").write_text(json.dumps({"architectures": ["GPT2LMHeadModel"]}))
    with pytest.raises(gguf_lora.GgufError, match=r"has no GGUF LoRA for architecture \[.GPT2LMHeadModel.\]"):
        gguf_lora.convert(adapter, tmp_path / "a.gguf")
