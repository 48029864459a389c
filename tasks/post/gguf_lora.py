"""PEFT LoRA adapter -> GGUF LoRA adapter that llama.cpp (`--lora`) and Ollama (`ADAPTER`) load.

It needs only the adapter and the base model's config.json (which the trainer brings back), never
the base model's weights: a 30B base does not have to come home for its adapter to be usable.
Anything the GGUF LoRA format cannot represent is refused with a reason instead of written wrong.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from tasks.context import RunContext
from tasks.core.errors import FullcycleError
from tasks.model.families import REORDERED, gguf_architecture, gguf_unsupported
from tasks.post import outcomes

log = logging.getLogger("fullcycle")

PERMUTED = {"LLAMA"}  # llama.cpp's converter permutes q/k rows by head for these (rope layout)
KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.default)?\.weight$")


class GgufError(FullcycleError):
    pass


def _permute(rows: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's rope permutation of q/k rows, by head, as its converter applies to the base."""
    return rows.reshape(n_head, 2, rows.shape[0] // n_head // 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


def _check_adapter(config: dict[str, Any]) -> None:
    if config.get("peft_type", "LORA") != "LORA":
        raise GgufError(f"adapter type {config.get('peft_type')} is not LoRA")
    if config.get("use_rslora"):
        raise GgufError("rslora scales (alpha/sqrt(r)) cannot be represented in a GGUF LoRA; train without rslora")
    if config.get("use_dora"):
        raise GgufError("DoRA adapters cannot be represented in a GGUF LoRA")
    if config.get("modules_to_save"):
        raise GgufError(f"modules_to_save {config['modules_to_save']} (full tensors) cannot go into a GGUF LoRA")
    if config.get("rank_pattern") or config.get("alpha_pattern"):
        raise GgufError("per-module rank/alpha patterns cannot be represented (one alpha per GGUF LoRA)")


def convert(adapter_dir: Path, out: Path, base_config_path: Path | None = None) -> dict[str, Any]:
    """Write `out` from adapter_dir; returns what was written (for the summary)."""
    import gguf
    from safetensors.numpy import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    _check_adapter(config)
    base_path = base_config_path or adapter_dir / "base_model_config.json"
    if not base_path.is_file():
        raise GgufError(f"{base_path} is missing: the base model's config.json is needed to name the tensors")
    base = json.loads(base_path.read_text())
    arch_name = gguf_architecture(base)
    if arch_name is None:
        raise GgufError(gguf_unsupported(base))
    arch = getattr(gguf.MODEL_ARCH, arch_name)
    names = gguf.get_tensor_name_map(arch, base["num_hidden_layers"])
    n_head, n_kv = base["num_attention_heads"], base.get("num_key_value_heads") or base["num_attention_heads"]

    pairs: dict[str, dict[str, np.ndarray]] = {}
    for key, tensor in load_file(str(adapter_dir / "adapter_model.safetensors")).items():
        match = KEY.match(key)
        if not match:
            raise GgufError(f"tensor {key} is not a LoRA A/B matrix (embeddings, lm_head and biases are refused)")
        pairs.setdefault(match["module"], {})[match["ab"]] = tensor
    if not pairs:
        raise GgufError("the adapter holds no LoRA tensors")

    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[arch])
    writer.add_string(gguf.Keys.General.TYPE, gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config.get("lora_alpha", config["r"])))
    count = 0
    for module, ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise GgufError(f"{module} has lora_{''.join(ab)} without its pair")
        if "embed_tokens" in module or "lm_head" in module:
            raise GgufError(f"{module}: LoRA on embeddings or lm_head is not supported in a GGUF LoRA")
        if any(part in module for part in REORDERED.get(arch_name, ())):
            raise GgufError(f"{module}: llama.cpp reorders this tensor when it converts {arch_name.lower()}, so a LoRA "
                            f"on it cannot be written; train the attention projections (target_modules = \"auto\")")
        name = names.get_name(f"{module}.weight", try_suffixes=(".weight",))
        if name is None:
            raise GgufError(f"{module} has no GGUF name for {arch_name}")
        a, b = ab["A"].astype(np.float32), ab["B"].astype(np.float32)
        if arch_name in PERMUTED and module.endswith("q_proj"):
            b = _permute(b, n_head)
        elif arch_name in PERMUTED and module.endswith("k_proj"):
            b = _permute(b, n_kv)
        writer.add_tensor(f"{name}.lora_a", np.ascontiguousarray(a))
        writer.add_tensor(f"{name}.lora_b", np.ascontiguousarray(b))
        count += 2
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"path": str(out), "bytes": out.stat().st_size, "tensors": count, "architecture": gguf.MODEL_ARCH_NAMES[arch],
            "alpha": float(config.get("lora_alpha", config["r"]))}


def validate(path: Path) -> dict[str, Any]:
    """Read the file back: it must say it is a LoRA adapter and hold A/B pairs."""
    import gguf

    reader = gguf.GGUFReader(str(path))

    def field(key: str) -> Any:
        f = reader.get_field(key)
        return f.contents() if f is not None else None

    if field("general.type") != "adapter" or field("adapter.type") != "lora":
        raise GgufError(f"{path} does not read back as a GGUF LoRA adapter")
    tensors = {t.name: t for t in reader.tensors}
    a = sorted(n for n in tensors if n.endswith(".lora_a"))
    if not a or any(n[:-1] + "b" not in tensors for n in a):
        raise GgufError(f"{path}: LoRA A/B tensors are missing or unpaired")
    return {"architecture": field("general.architecture"), "alpha": field("adapter.lora.alpha"), "pairs": len(a)}


def make_gguf(ctx: RunContext) -> None:
    """The post_gguf stage: adapter.gguf beside the adapter, validated by reading it back."""
    log.info("Post-steps: converting the adapter for local runtimes…")
    out = outcomes.gguf_path(ctx)
    out.unlink(missing_ok=True)  # an older date's conversion must not pass for this adapter's
    partial = out.with_name(out.name + ".partial")
    try:
        written = convert(ctx.paths.final_adapter_dir, partial)
    except GgufError as exc:  # the format cannot hold this adapter: nothing to make
        partial.unlink(missing_ok=True)
        outcomes.skip(ctx, "gguf", f"no adapter.gguf: {exc}; the adapter itself is in {ctx.paths.final_adapter_dir}")
        return
    check = validate(partial)
    os.replace(partial, out)
    written["path"] = str(out)
    size = (ctx.paths.final_adapter_dir / "adapter_model.safetensors").stat().st_size
    log.info("GGUF LoRA written: %s (%d bytes; safetensors %d bytes; %d A/B pairs, %s)", out, written["bytes"], size,
             check["pairs"], check["architecture"])
    outcomes.record(ctx, "gguf", {**written, "safetensors_bytes": size, "validated": check})
