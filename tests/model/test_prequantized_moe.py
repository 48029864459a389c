"""The fact `moe_build = "auto"` stands on (tasks/model/hubcheck.py: prequantized_moe_loads): transformers 5
cannot load a per-expert 4-bit MoE checkpoint, the form the published bnb-4bit builds of Qwen3-30B-A3B have.

The checkpoint is made here as those builds are: every projection (each expert's gate/up/down, the
attention's q/k/v/o) quantized with bitsandbytes' nf4, its packed quant state beside the weight, and
`quantization_config` in config.json. The same recipe on a dense Qwen3 loads, so the recipe is sound and
the refusal is the MoE's. When a transformers release loads it, this test fails: time to let "auto" take
the ~17 GB build again (and to pin that release on the pod).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # transformers and bitsandbytes imports, two tiny models (~5 s)
BITSANDBYTES = "0.50.2"  # the pod's pin (remote/requirements-gpu.txt); on the CPU it quantizes and loads too

SMALL = dict(vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             num_key_value_heads=2, head_dim=16, max_position_embeddings=128, tie_word_embeddings=False)


def _quantize(weights: dict, name: str, tensor) -> None:
    import torch
    from bitsandbytes.functional import quantize_4bit

    packed, state = quantize_4bit(tensor.to(torch.bfloat16).contiguous(), quant_type="nf4", blocksize=64)
    weights[name] = packed
    weights.update({f"{name}.{key}": value for key, value in state.as_dict(packed=True).items()})


def _per_expert(model) -> dict:
    """The state dict as a per-expert 4-bit checkpoint: transformers 5's fused expert tensors split back
    into one gate/up/down projection per expert, as transformers 4 kept them and the builds ship them."""
    weights: dict = {}
    for name, tensor in model.state_dict().items():
        if name.endswith("experts.gate_up_proj"):
            half = tensor.shape[1] // 2
            for expert in range(tensor.shape[0]):
                _quantize(weights, name.replace("gate_up_proj", f"{expert}.gate_proj.weight"), tensor[expert, :half])
                _quantize(weights, name.replace("gate_up_proj", f"{expert}.up_proj.weight"), tensor[expert, half:])
        elif name.endswith("experts.down_proj"):
            for expert in range(tensor.shape[0]):
                _quantize(weights, name.replace("down_proj", f"{expert}.down_proj.weight"), tensor[expert])
        elif tensor.dim() == 2 and name.endswith("_proj.weight"):
            _quantize(weights, name, tensor)
        else:
            weights[name] = tensor
    return weights


def _checkpoint(folder: Path, config) -> Path:
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    weights = _per_expert(AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16))
    folder.mkdir(parents=True)
    written = {**config.to_dict(), "quantization_config": {
        "quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
        "bnb_4bit_compute_dtype": "bfloat16", "bnb_4bit_use_double_quant": False,
        "llm_int8_skip_modules": ["lm_head", "mlp.gate"]}}
    (folder / "config.json").write_text(json.dumps(written))
    save_file({k: v.contiguous() for k, v in weights.items()}, str(folder / "model.safetensors"),
              metadata={"format": "pt"})
    return folder


def _check(folder: Path) -> None:
    """Runs in a process of its own, with bitsandbytes on its path (tests/wheels.py: no other test imports it)."""
    import transformers
    from transformers import AutoModelForCausalLM, Qwen3Config, Qwen3MoeConfig

    from tasks.model.hubcheck import prequantized_moe_loads

    assert not prequantized_moe_loads(transformers.__version__)  # the rule covers the release installed here
    dense = _checkpoint(folder / "dense", Qwen3Config(**SMALL))
    loaded = AutoModelForCausalLM.from_pretrained(str(dense), device_map="cpu")
    assert type(loaded.model.layers[0].self_attn.q_proj).__name__ == "Linear4bit"  # the recipe is a real 4-bit load
    moe = _checkpoint(folder / "moe", Qwen3MoeConfig(**SMALL, num_experts=4, num_experts_per_tok=2,
                                                     moe_intermediate_size=32, mlp_only_layers=[]))
    try:
        AutoModelForCausalLM.from_pretrained(str(moe), device_map="cpu")
    except (RuntimeError, ValueError) as refused:  # 5.23: a size mismatch; 5.17 under Unsloth: "Undefined Operation"
        print(f"REFUSED transformers {transformers.__version__}: {type(refused).__name__}: {str(refused)[:200]}")
        return
    print(f"LOADED transformers {transformers.__version__}")


def test_a_per_expert_4bit_moe_checkpoint_does_not_load_on_transformers_5(tmp_path):
    import os
    import subprocess
    import sys

    from tests.helpers import REPO
    from tests.wheels import unpacked

    site = unpacked("bitsandbytes", BITSANDBYTES)
    code = ("from pathlib import Path; from tests.model.test_prequantized_moe import _check; "
            f"_check(Path({str(tmp_path)!r}))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(site)])})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert "REFUSED transformers 5." in proc.stdout, proc.stdout[-2000:]  # LOADED: the release that fixes it is here
    print(proc.stdout.strip().splitlines()[-1])
