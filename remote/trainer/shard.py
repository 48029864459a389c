"""One LoRA trained by several processes that each hold a shard of the base model (PyTorch FSDP2), for a
base model no single GPU holds: its own entry (train_fsdp.py), because importing Unsloth patches
transformers for the whole process.

The model is built on the meta device, the LoRA attached before sharding (after it, the LoRA's weights
would be neither sharded nor synchronised), each decoder layer sharded, then the root; bf16 parameters,
fp32 gradient reduction. Rank 0 alone reads the checkpoint (transformers' own loader, so a checkpoint
whose layout differs from the model's, per-expert weights for a fused MoE, is converted as it always
is) and hands it out one decoder layer at a time; the other ranks never open it. The adapter is
gathered on rank 0 into standard PEFT files. 4-bit weights are never sharded (docs/scale.md).
"""

from __future__ import annotations

import math
import os
import re
import resource
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from trainer import ranks
from trainer.config import InputError

LORA = re.compile(r"\.lora_[AB]\.")
LAYER = re.compile(r"^(.*?\.layers\.\d+)\.")


class Sharded:
    """The process group, the device and the mesh this rank trains on."""

    def __init__(self) -> None:
        import torch
        import torch.distributed as dist
        from torch.distributed.device_mesh import init_device_mesh

        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.set_device(ranks.local_rank())
        if not dist.is_initialized():
            dist.init_process_group("nccl" if self.cuda else "gloo")
        self.device = torch.device(f"cuda:{ranks.local_rank()}" if self.cuda else "cpu")
        self.mesh = init_device_mesh("cuda" if self.cuda else "cpu", (dist.get_world_size(),))
        self.world, self.rank = dist.get_world_size(), dist.get_rank()

    def close(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def checkpoint_dir(model_id: str) -> Path:
    """The folder the model is in: a local model's, or the hub snapshot the download step fetched (on a
    cluster's other nodes without the weights: only rank 0 reads them)."""
    path = Path(model_id).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(model_id, "config.json")
    if not isinstance(found, str):
        raise InputError(f"{model_id} is not in the model hub's cache on this node: the download step did not fetch it")
    return Path(found).parent


def build(model_dir: Path, config: dict, where: Sharded, targets) -> Any:
    """The model on the meta device with today's LoRA attached, every decoder layer sharded, then the
    root; materialised empty on this rank's device (load() fills it)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
    from transformers import AutoConfig, AutoModelForCausalLM

    if config["load_in_4bit"]:
        raise InputError("4-bit weights cannot be sharded with FSDP2 here (bitsandbytes' uint8 storage is not a "
                         "floating-point tensor): the plan shards the bf16 weights; set [training] quantize = \"auto\"")
    model_config = AutoConfig.from_pretrained(model_dir)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(model_config, dtype=torch.bfloat16)
    model.config.use_cache = False
    rank, alpha = config["lora_rank"], config["lora_alpha"]
    lora = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=config["lora_dropout"], target_modules=targets(model),
                      use_rslora=config["use_rslora"], task_type="CAUSAL_LM")
    model = get_peft_model(model, lora)
    for name, param in model.named_parameters():
        if LORA.search(name):
            param.data = param.data.to(torch.float32)  # trained in fp32, computed in bf16 (the policy below)
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    blocks = set(getattr(model.get_base_model(), "_no_split_modules", None) or [])
    layers = [m for m in model.modules() if type(m).__name__ in blocks]
    if not layers:
        raise InputError(f"{model_config.architectures}: no decoder layer to shard (the model names none)")
    for layer in layers:
        fully_shard(layer, mesh=where.mesh, mp_policy=policy)
    fully_shard(model, mesh=where.mesh, mp_policy=policy)
    model.to_empty(device=where.device)
    return model


def _grouped(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The state dict in pieces of one decoder layer each (the rest together): what is handed out at once."""
    groups: dict[str, dict[str, Any]] = {}
    for key, value in state.items():
        found = LAYER.match(key)
        groups.setdefault(found.group(1) if found else "", {})[key] = value
    return list(groups.values())


def load(model, model_dir: Path, where: Sharded, seed: int, start: Path | None = None) -> None:
    """Rank 0 reads the checkpoint with transformers' own loader, adds the LoRA's starting weights (the
    adapter in `start`, [training] start_from; else as peft starts them: A uniform, B zero, from `seed`)
    and hands both out a layer at a time; the other ranks only receive. Then the buffers no checkpoint
    holds (the rotary embedding) are made again."""
    import torch
    import torch.distributed as dist
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    names = {re.sub(r"^base_model\.model\.", "", k).replace(".base_layer", ""): k for k in model.state_dict()}
    groups: list[dict[str, Any]] = []
    if where.rank == 0:
        from transformers import AutoModelForCausalLM

        full = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.bfloat16).state_dict()
        state = {names[k]: v for k, v in full.items() if k in names}
        state.update(lora_start(model, seed) if start is None else previous_weights(model, start))
        missing = [k for k in names.values() if k not in state]
        if missing:
            raise InputError(f"the checkpoint in {model_dir} has no {missing[0]} (and {len(missing) - 1} more)")
        groups = _grouped(state)
    count = [len(groups)]
    dist.broadcast_object_list(count, src=0)
    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False)
    for index in range(count[0]):
        set_model_state_dict(model, groups[index] if where.rank == 0 else {}, options=options)
    del groups
    _rotary(model, where.device)


def lora_start(model, seed: int) -> dict[str, Any]:
    """The LoRA's starting weights, whole, as peft makes them (kaiming-uniform A, zero B): the same on
    any number of ranks, so a sharded run starts where an unsharded one does."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    found = {}
    for name, param in sorted(model.named_parameters()):
        if not LORA.search(name):
            continue
        weight = torch.zeros(param.shape, dtype=torch.float32)
        if ".lora_A." in name:
            bound = 1 / math.sqrt(param.shape[1])  # kaiming_uniform_(a=sqrt(5)) as nn.Linear and peft use
            weight.uniform_(-bound, bound, generator=generator)
        found[name] = weight
    return found


def _rotary(model, device) -> None:
    """`to_empty` left the rotary embedding's inverse frequencies empty (no checkpoint holds them)."""
    for module in model.modules():
        if type(module).__name__.endswith("RotaryEmbedding") and hasattr(module, "inv_freq"):
            fresh = type(module)(config=module.config)  # made on the CPU (its signature varies), then moved
            for name, buffer in fresh.named_buffers(recurse=False):
                setattr(module, name, buffer.to(device))


def frozen_bytes(model) -> int:
    """The bytes of the base model's weights this rank holds (its shards)."""
    total = 0
    for name, param in model.named_parameters():
        if not param.requires_grad:
            local = param.to_local() if hasattr(param, "to_local") else param
            total += local.numel() * local.element_size()
    return total


def gather_adapter(model) -> dict[str, Any]:
    """Today's LoRA, whole, on rank 0 (every rank takes part; the others get {})."""
    found = {}
    for name, param in model.named_parameters():
        if LORA.search(name):
            whole = param.full_tensor() if hasattr(param, "full_tensor") else param.detach()
            if ranks.is_main():
                found[name] = whole.detach().to("cpu", dtype=param.dtype if param.dtype.is_floating_point else None)
    return found


def save(model, weights: dict[str, Any], tokenizer, model_dir: Path, output: Path) -> None:
    """Standard PEFT files (adapter_config.json, adapter_model.safetensors), the tokenizer and the base
    model's config.json: what download, evaluation at home, GGUF and promotion read, as after Unsloth."""
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    output.mkdir(parents=True, exist_ok=True)
    adapter = get_peft_model_state_dict(model, state_dict=weights)
    save_file({k: v.contiguous() for k, v in adapter.items()}, str(output / "adapter_model.safetensors"))
    model.peft_config["default"].save_pretrained(str(output))
    tokenizer.save_pretrained(output)
    (output / "base_model_config.json").write_text((model_dir / "config.json").read_text())


def previous_weights(model, folder: Path) -> dict[str, Any]:
    """An earlier adapter's weights under this model's names (rank 0 reads them)."""
    from safetensors.torch import load_file

    saved = load_file(str(folder / "adapter_model.safetensors"))
    found = {}
    for name, _ in model.named_parameters():
        if LORA.search(name):
            key = name.replace(".default.", ".")
            if key not in saved:
                raise InputError(f"the adapter in {folder} has no {key}: it does not fit today's LoRA "
                                 f"(start_from = \"base\", or the same targets and rank)")
            found[name] = saved[key].float()
    return found


@contextmanager
def adapter_swapped(model, folder: Path, today: dict[str, Any]) -> Iterator[None]:
    """The previous promoted adapter's weights in place of today's for a measurement, handed out by rank
    0 as the checkpoint was; today's (gathered on rank 0) put back after."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True, strict=False)
    model.reshard()  # a forward without backward leaves the root's own weights gathered
    set_model_state_dict(model, previous_weights(model, folder) if ranks.is_main() else {}, options=options)
    try:
        yield
    finally:
        model.reshard()
        set_model_state_dict(model, today if ranks.is_main() else {}, options=options)


def peak_memory() -> dict[str, Any]:
    """This rank's peak memory: the GPU's allocator where there is one, else the process's RSS."""
    import torch

    if torch.cuda.is_available():
        return {"gpu_gb": round(torch.cuda.max_memory_allocated() / 1e9, 3)}
    return {"rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9, 3)}


def all_ranks(value: Any) -> list[Any]:
    """Every rank's `value`, in rank order (on every rank)."""
    import torch.distributed as dist

    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def nodes() -> int:
    """Machines this training spans (torchrun's GROUP_WORLD_SIZE: one per pod of a cluster)."""
    return int(os.environ.get("GROUP_WORLD_SIZE") or os.environ.get("NUM_NODES") or 1)
