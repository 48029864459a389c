"""The LoRA: which modules it trains (by architecture, or [training] target_modules), the MoE router
left alone, and today's LoRA started from the last promoted adapter ([training] start_from)."""

from __future__ import annotations

from pathlib import Path

from trainer.config import InputError, say

# Every linear layer of attention and MLP, by the names the families use (Phi-3/4 fuse q/k/v into
# qkv_proj and gate/up into gate_up_proj); only the names a model has are kept.
TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj", "gate_proj", "up_proj", "down_proj",
                  "gate_up_proj"]
# On a mixture-of-experts model the attention projections only: they convert to a GGUF LoRA, while a
# LoRA on the fused expert weights does not (and the MLP names there are the experts').
ATTENTION_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "qkv_proj"]
# Never targeted by "auto": Qwen3.5's linear-attention (gated delta net) projections, which llama.cpp
# reorders when it converts the base model, so a LoRA on them has no GGUF form.
NOT_AUTO = ("linear_attn.",)


def is_moe(model_config) -> bool:
    return bool(getattr(model_config, "num_experts", 0) or getattr(model_config, "num_local_experts", 0)
                or "moe" in str(getattr(model_config, "model_type", "")))


def target_modules(config: dict, model) -> list[str]:
    """[training] target_modules, or by architecture: all linear layers, attention only on MoE.

    "auto" names the layers by their short names (what Unsloth's fast LoRA path knows), keeping only
    those the model has; a short name that also matches a module with no GGUF form (Qwen3.5's linear
    attention, fused experts) is given by the full names of the others instead."""
    asked = config["target_modules"] or "auto"
    moe = is_moe(model.config)
    if asked != "auto":
        _check_asked(list(asked), model)
        if moe and any(m in asked for m in ("gate_proj", "up_proj", "down_proj")):
            say("WARNING: LoRA on the expert MLPs of a mixture-of-experts model does not convert to a GGUF LoRA "
                "(adapter.gguf will be refused); the attention projections do")
        return list(asked)
    wanted = ATTENTION_MODULES if moe else TARGET_MODULES
    found: dict[str, tuple[list[str], list[str]]] = {leaf: ([], []) for leaf in wanted}
    for name, module in model.named_modules():
        leaf = name.rsplit(".", 1)[-1]
        if leaf in found and getattr(getattr(module, "weight", None), "ndim", 0) == 2:
            excluded = any(p in name for p in NOT_AUTO) or ".experts." in name
            found[leaf][excluded].append(name)
    chosen: list[str] = []
    for leaf, (keep, skip) in found.items():
        if keep:
            chosen += keep if skip else [leaf]
    if not chosen:
        raise InputError(f"no module of {wanted} in this model: set [training] target_modules to the names of "
                         f"its linear layers ({', '.join(_linear_leaves(model)[:12])})")
    return chosen


def _linear_leaves(model) -> list[str]:
    """The short names of the model's 2-D weights (its linear layers), for a message that helps."""
    leaves = {name.rsplit(".", 1)[-1] for name, module in model.named_modules()
              if getattr(getattr(module, "weight", None), "ndim", 0) == 2}
    return sorted(leaves)


def _check_asked(asked: list[str], model) -> None:
    """Every name of [training] target_modules must name a linear layer of this model: a name that
    matches nothing would train nothing (peft raises deep inside; here it says what the model has)."""
    names = [name for name, module in model.named_modules() if getattr(getattr(module, "weight", None), "ndim", 0) == 2]
    missing = [t for t in asked if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise InputError(f"[training] target_modules {missing} name no linear layer of this model; it has "
                         f"{', '.join(_linear_leaves(model)[:16])}")


def start_from(model, config: dict, input_dir: Path) -> None:
    """[training] start_from = "latest": today's LoRA begins with the last promoted adapter's weights."""
    folder = config["start_from"]
    if not folder:
        return
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file

    weights = load_file(str(input_dir / folder / "adapter_model.safetensors"))
    result = set_peft_model_state_dict(model, weights)
    missing = [k for k in getattr(result, "missing_keys", []) if "lora_" in k]
    if missing:
        raise InputError(f"the previous adapter does not fit today's LoRA ({len(missing)} LoRA weights missing, e.g. "
                         f"{missing[0]}): start_from = \"base\" or the same targets and rank")
    say(f"LoRA initialised from the adapter of {(config.get('eval') or {}).get('previous_date')} "
        f"({len(weights)} tensors)")


def quiet_router(model) -> None:
    """trl turns a MoE model's router auxiliary loss on (output_router_logits, router_aux_loss_coef from
    its config); with the router frozen and LoRA on attention only it adds noise and memory."""
    config = getattr(model, "config", None)
    if config is None or not is_moe(config):
        return
    for name, off in (("output_router_logits", False), ("router_aux_loss_coef", 0.0)):
        if hasattr(config, name):
            setattr(config, name, off)
    say("mixture-of-experts: router auxiliary loss off (the router is not trained)")


def attach(model, config: dict, unsloth: bool):
    """Today's LoRA on the loaded base model, on the modules `target_modules` picks."""
    rank, alpha = config["lora_rank"], config["lora_alpha"]
    targets, rslora = target_modules(config, model), config["use_rslora"]
    if unsloth:
        from unsloth import FastLanguageModel

        return FastLanguageModel.get_peft_model(
            model, r=rank, lora_alpha=alpha, lora_dropout=config["lora_dropout"], target_modules=targets,
            use_gradient_checkpointing="unsloth", random_state=config["seed"], use_rslora=rslora,
        )
    import torch
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(config["seed"])  # LoRA's A matrices start random: the same seed, the same run
    lora = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=config["lora_dropout"], task_type="CAUSAL_LM",
                      target_modules=targets, use_rslora=rslora)
    return get_peft_model(model, lora)
