"""The model families fullcycle knows, by transformers `model_type`: how to build each one tiny, and
which of them llama.cpp holds a GGUF LoRA for.

The tiny model (tasks/model/tiny.py) can take any of these shapes, so the pipeline and the GGUF
conversion are exercised on the architecture a user really trains, not only on the convenient one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Family:
    model_type: str
    config_class: str  # in transformers
    model_class: str
    tiny: dict[str, Any] = field(default_factory=dict)  # config values beyond the common spec


_MOE = {"num_experts": 4, "num_experts_per_tok": 2, "moe_intermediate_size": 32}
# Qwen3.5: gated-delta-net (linear attention) layers between full-attention ones.
# llama.cpp reads the layout as every fourth layer full attention (as the real models have it).
# Its rope is partial and sectioned (MRoPE): the sections must fit the tiny head's rotary dims.
_LINEAR = {"linear_num_key_heads": 2, "linear_num_value_heads": 4, "linear_key_head_dim": 8,
           "linear_value_head_dim": 8, "linear_conv_kernel_dim": 4, "num_hidden_layers": 4,
           "layer_types": ["linear_attention"] * 3 + ["full_attention"], "head_dim": 16,
           "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
                               "mrope_section": [2, 1, 1]}}
ALIASES = {"qwen3_5": "qwen3_5_text", "qwen3_5_moe": "qwen3_5_moe_text", "gemma3": "gemma3_text"}

FAMILIES: dict[str, Family] = {f.model_type: f for f in (
    Family("llama", "LlamaConfig", "LlamaForCausalLM"),
    Family("mistral", "MistralConfig", "MistralForCausalLM"),
    Family("qwen2", "Qwen2Config", "Qwen2ForCausalLM"),
    Family("qwen3", "Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 8}),
    Family("qwen3_moe", "Qwen3MoeConfig", "Qwen3MoeForCausalLM",
           {"head_dim": 8, "decoder_sparse_step": 1, "mlp_only_layers": [], **_MOE}),
    Family("qwen3_5_text", "Qwen3_5TextConfig", "Qwen3_5ForCausalLM", _LINEAR),
    Family("qwen3_5_moe_text", "Qwen3_5MoeTextConfig", "Qwen3_5MoeForCausalLM",
           {**_LINEAR, **_MOE, "shared_expert_intermediate_size": 32}),
    Family("gpt_oss", "GptOssConfig", "GptOssForCausalLM",
           {"head_dim": 8, "num_local_experts": 4, "num_experts_per_tok": 2, "sliding_window": 128,
            "tie_word_embeddings": False}),  # llama.cpp's gpt-oss wants its own output matrix, as the real one has
    Family("gemma3_text", "Gemma3TextConfig", "Gemma3ForCausalLM", {"head_dim": 8, "query_pre_attn_scalar": 8}),
    Family("phi3", "Phi3Config", "Phi3ForCausalLM"),
)}


def family(model_type: str) -> Family:
    try:
        return FAMILIES[ALIASES.get(model_type, model_type)]
    except KeyError:
        raise ValueError(f"no tiny build for architecture {model_type!r} (known: {', '.join(FAMILIES)})") from None


SIZES = ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads",
         "max_position_embeddings", "initializer_range")


def tiny_shape(spec: dict[str, Any], tie: bool = True, larger: dict[str, Any] | None = None) -> dict[str, Any]:
    """The shape remote/trainer/tiny.py builds: `spec`'s sizes, the family's own tiny values, tied
    embeddings or not, and `larger` on top (the preflight's GPU-kernel-friendly sizes)."""
    fam = family(spec["architecture"])
    values = {k: spec[k] for k in SIZES}
    values.update(tie_word_embeddings=tie)
    values.update(fam.tiny)
    values.update(larger or {})
    return {"config_class": fam.config_class, "model_class": fam.model_class, "values": values}


def tiny_model(spec: dict[str, Any], **tokens: Any) -> Any:
    """A randomly initialised model of `spec["architecture"]` (torch's seed decides its weights)."""
    import transformers

    shape = tiny_shape(spec)
    config = getattr(transformers, shape["config_class"])(**{**shape["values"], "bos_token_id": None, **tokens})
    return getattr(transformers, shape["model_class"])(config)


# The preflight's tiny model: heads of 32 and a hidden size of 128, sizes every GPU kernel takes (the home
# build's heads of 8 suit the CPU and llama.cpp), still ~1M parameters: built and trained in seconds.
PREFLIGHT_SIZES = {"hidden_size": 128, "intermediate_size": 256, "num_attention_heads": 4, "num_key_value_heads": 2}
PREFLIGHT_HEAD = {"head_dim": 32}


def preflight_shape(base_config: dict[str, Any] | None, spec: dict[str, Any]) -> dict[str, Any] | None:
    """The shape of the preflight's tiny model: the base model's family, with its embeddings tied or
    not as the base has them (Unsloth treats untied ones differently); None for a family with no
    tiny build (the preflight is then skipped, and says why)."""
    model_type = (base_config or {}).get("model_type")
    try:
        fam = family(model_type) if model_type else None
    except ValueError:
        return None
    if fam is None:
        return None
    tie = bool((base_config or {}).get("tie_word_embeddings", True))
    larger = {**PREFLIGHT_SIZES, **(PREFLIGHT_HEAD if fam.tiny.get("head_dim") == 8 else {})}
    if "moe_intermediate_size" in fam.tiny:
        larger["moe_intermediate_size"] = 64
    return tiny_shape({**spec, "architecture": fam.model_type}, tie=tie, larger=larger)


# --------------------------------------------------------------------------- GGUF LoRA

# transformers architecture -> llama.cpp's (gguf.MODEL_ARCH); an adapter must name its base's.
GGUF_ARCHES = {"LlamaForCausalLM": "LLAMA", "MistralForCausalLM": "LLAMA", "Qwen2ForCausalLM": "QWEN2",
               "Qwen3ForCausalLM": "QWEN3", "Qwen3MoeForCausalLM": "QWEN3MOE", "Qwen3_5ForCausalLM": "QWEN35",
               "Qwen3_5MoeForCausalLM": "QWEN35MOE", "GptOssForCausalLM": "GPT_OSS", "Gemma3ForCausalLM": "GEMMA3",
               "Phi3ForCausalLM": "PHI3"}
# Tensors llama.cpp's converter reorders or splits on the way to GGUF: a LoRA on them cannot be
# written as it is (the trainer never targets them; a custom target list might).
REORDERED = {"QWEN35": ("linear_attn.",), "QWEN35MOE": ("linear_attn.",), "GPT_OSS": ("experts.",)}


def gguf_architecture(base: dict[str, Any]) -> str | None:
    """llama.cpp's architecture for a base model's config.json, or None when no GGUF LoRA can name it."""
    return next((GGUF_ARCHES[a] for a in base.get("architectures") or [] if a in GGUF_ARCHES), None)


def gguf_unsupported(base: dict[str, Any]) -> str | None:
    """Why adapters of this base cannot become a GGUF LoRA (None when they can): known before renting."""
    if gguf_architecture(base) is None:
        known = ", ".join(sorted(GGUF_ARCHES))
        return f"llama.cpp has no GGUF LoRA for architecture {base.get('architectures')} (known here: {known})"
    return None
