"""Where a base model trains, decided before anything is rented: one GPU, one pod whose N GPUs share the
model (PyTorch FSDP2 in bf16), or an Instant Cluster of such pods; the cheapest way that holds it, within
[runpod] max_gpus. `doit plan --model ID` prints it from the shapes kept here, with no network.

The memory of one GPU under N-way sharding (docs/scale.md says where each term comes from):
  weights     2 bytes per parameter (bf16), 1/N of them
  LoRA        its parameters in bf16 plus fp32 gradients and AdamW's two moments, 1/N of them
  gathered    the two decoder layers FSDP holds whole at a time (the one computing, the one prefetched)
  activations one micro-batch's hidden states kept at each layer (gradient checkpointing), one layer's
              working set, the logits in fp32 with their gradient: not sharded (each rank has its batch)
  context     CUDA, NCCL and the allocator's slack
4-bit weights are never sharded: bitsandbytes' uint8 storage is not a floating-point tensor FSDP2 can
shard, and the ways around it are not proven (docs/reference/scale.md).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from tasks.core.errors import FullcycleError

GB = 1e9
USABLE = 0.92  # of a GPU's memory: what the allocator can hand out
CONTEXT_GB = 2.5
MAX_GPUS_PER_POD = 8  # RunPod pods hold up to 8 GPUs
CLUSTER_NODES = range(2, 9)  # Instant Clusters self-serve: 2 to 8 nodes, every one alike
CLUSTER_GPUS = ("NVIDIA H100 80GB HBM3", "NVIDIA H200", "NVIDIA B200", "NVIDIA A100-SXM4-80GB")

# Memory (GB) and list price (USD per GPU-hour, Secure Cloud) by RunPod gpuTypeId. Prices are the ones a
# source named (docs/reference/runpod.md, scale.md); None where none did: such a GPU is planned, priced
# "unknown", and ranked after the priced ones. A rented pod's price is read live from the catalogue.
GPUS: dict[str, tuple[int, float | None]] = {
    "NVIDIA GeForce RTX 5090": (32, 0.89), "NVIDIA GeForce RTX 4090": (24, None), "NVIDIA GeForce RTX 3090": (24, None),
    "NVIDIA RTX A6000": (48, None), "NVIDIA RTX 6000 Ada Generation": (48, None), "NVIDIA L40S": (48, None),
    "NVIDIA A40": (48, None), "NVIDIA A100 80GB PCIe": (80, None), "NVIDIA A100-SXM4-80GB": (80, None),
    "NVIDIA H100 PCIe": (80, None), "NVIDIA H100 80GB HBM3": (80, 3.49), "NVIDIA H100 NVL": (94, None),
    "NVIDIA H200": (141, 4.59), "NVIDIA B200": (180, 6.79),
}


@dataclass(frozen=True)
class Shape:
    """What the estimate needs of a model: its parameters and widths (config.json)."""

    parameters: int
    hidden: int
    layers: int
    vocab: int

    @classmethod
    def from_config(cls, parameters: int, config: dict[str, Any] | None) -> Shape:
        """From the hub's answer. Widths a config does not give, or that cannot hold the parameter count
        (a dense transformer has 12·h²·L; a mixture of experts ~12 times that), are guessed from it."""
        config = (config or {}).get("text_config") or config or {}
        hidden = int(config.get("hidden_size") or 0)
        layers = int(config.get("num_hidden_layers") or 0)
        if not hidden or not layers or parameters > 100 * 12 * hidden**2 * layers:
            layers = min(max(round(parameters / 1e9), 24), 128)  # ~1B parameters a layer, as the big ones have
            hidden = int(math.sqrt(parameters / (12 * layers)))
        return cls(parameters, hidden, layers, int(config.get("vocab_size") or 151_936))


# The shapes people move to, kept here so a plan needs no network (parameters: the hub's safetensors total).
KNOWN: dict[str, Shape] = {
    "Qwen/Qwen3-30B-A3B": Shape(30_532_122_624, 2048, 48, 151_936),
    "Qwen/Qwen3-235B-A22B": Shape(235_093_634_560, 4096, 94, 151_936),
    "meta-llama/Llama-3.3-70B-Instruct": Shape(70_553_706_496, 8192, 80, 128_256),
    "Qwen/Qwen2.5-72B-Instruct": Shape(72_706_203_648, 8192, 80, 152_064),
}


@dataclass(frozen=True)
class Load:
    """What one training step holds: the sequence length, the micro-batch and the LoRA's rank."""

    seq: int = 2048
    batch: int = 1
    rank: int = 8


def gb_per_gpu(shape: Shape, ranks: int, load: Load) -> float:
    """GPU memory one of `ranks` GPUs needs to train `shape` sharded in bf16 (the module's docstring)."""
    lora = 4 * load.rank * 2 * shape.hidden * shape.layers  # q, k, v, o: r x (in + out) each
    layer = shape.parameters / shape.layers
    tokens = load.seq * load.batch
    weights = shape.parameters * 2 / ranks
    states = lora * (2 + 4 + 8) / ranks
    gathered = 2 * layer * 2 if ranks > 1 else 0.0
    activations = tokens * shape.hidden * 2 * shape.layers + tokens * shape.hidden * 34 + tokens * shape.vocab * 4 * 2
    return round((weights + states + gathered + activations) / GB + CONTEXT_GB, 1)


@dataclass
class Option:
    """One way to hold the model: `pods` pods of `gpus_per_pod` GPUs of one type."""

    gpu: str
    gpus_per_pod: int
    pods: int
    gb_per_gpu: float
    gpu_memory_gb: int
    price_per_hr: float | None  # all GPUs together; None: no price known here

    @property
    def gpus(self) -> int:
        return self.gpus_per_pod * self.pods

    def describe(self) -> str:
        where = (f"{self.gpus_per_pod} x {self.gpu} on one pod" if self.pods == 1
                 else f"an Instant Cluster of {self.pods} pods x {self.gpus_per_pod} x {self.gpu}")
        price = f"${self.price_per_hr:.2f}/h" if self.price_per_hr is not None else "price unknown offline"
        return f"{where}: {self.gb_per_gpu:.0f} of {self.gpu_memory_gb} GB per GPU, {price}"


@dataclass
class Plan:
    """What check_model decided and records before renting (model-check.json's `plan`)."""

    sharding: str  # "none" (one GPU holds it), "fsdp"
    chosen: Option | None
    why: str
    alternatives: list[Option] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        chosen = asdict(self.chosen) if self.chosen else None
        return {"sharding": self.sharding, "why": self.why,
                **({"gpu": chosen["gpu"], "gpus_per_pod": chosen["gpus_per_pod"], "pods": chosen["pods"],
                    "gpus": self.chosen.gpus, "gb_per_gpu": chosen["gb_per_gpu"],
                    "price_per_hr": chosen["price_per_hr"]} if chosen else {}),
                "alternatives": [o.describe() for o in self.alternatives]}

    def lines(self) -> list[str]:
        found = [f"plan: {self.chosen.describe() if self.chosen else 'none'}", f"  why: {self.why}"]
        return found + [f"  also: {o.describe()}" for o in self.alternatives[:4]]


class PlanRefused(FullcycleError):
    """No way to hold the model within what the settings allow; nothing was rented."""


def bf16_only(quantize: str, why: str) -> None:
    """Sharding takes bf16 weights: 4-bit ones (bitsandbytes) are refused, with the reason."""
    if quantize == "always":
        raise PlanRefused(f"{why}, and [training] quantize = \"always\" asks for 4-bit weights: 4-bit (bitsandbytes) "
                          f"weights cannot be sharded with FSDP2 here (their uint8 storage is not a floating-point tensor "
                          f"FSDP2 can shard; docs/scale.md). Set quantize = \"auto\" to shard the bf16 weights; "
                          f"nothing was rented")


def _price(gpu: str, count: int) -> float | None:
    unit = GPUS.get(gpu, (0, None))[1]
    return round(unit * count, 2) if unit is not None else None


def _smallest(shape: Shape, gpu: str, counts: range | list[int], load: Load) -> tuple[int, float] | None:
    memory = GPUS[gpu][0]
    for count in counts:
        need = gb_per_gpu(shape, count, load)
        if need <= memory * USABLE:
            return count, need
    return None


def _cost_key(option: Option) -> tuple[bool, bool, float, int]:
    """One pod before a cluster (its GPUs talk over NVLink or PCIe, not the network), then the cheapest
    (a price unknown here last), then the fewest GPUs."""
    return option.pods > 1, option.price_per_hr is None, option.price_per_hr or 0.0, option.gpus


def options(shape: Shape, gpu_types: list[str], load: Load, least: int = 2) -> list[Option]:
    """Every way to hold `shape` sharded, the one to rent first: N GPUs of one of `gpu_types` on one pod,
    else an Instant Cluster of pods of the types clusters offer."""
    found = []
    for gpu in (g for g in dict.fromkeys(gpu_types) if g in GPUS):
        fit = _smallest(shape, gpu, range(least, MAX_GPUS_PER_POD + 1), load)
        if fit:
            found.append(Option(gpu, fit[0], 1, fit[1], GPUS[gpu][0], _price(gpu, fit[0])))
    for gpu in CLUSTER_GPUS:  # the fewest pods (traffic between them is the slow part), then the fewest GPUs
        fits = [(pods, per_pod) for pods in CLUSTER_NODES for per_pod in (1, 2, 4, 8)
                if gb_per_gpu(shape, per_pod * pods, load) <= GPUS[gpu][0] * USABLE]
        if fits:
            pods, per_pod = min(fits)
            count = pods * per_pod
            found.append(Option(gpu, per_pod, pods, gb_per_gpu(shape, count, load), GPUS[gpu][0], _price(gpu, count)))
    return sorted(found, key=_cost_key)


def shard(model: str, shape: Shape, gpu_types: list[str], load: Load, max_gpus: int, quantize: str,
          least: int = 2) -> Plan:
    """The cheapest sharded way within max_gpus; refused (with the cheaper or bigger choices named)
    when there is none, and for 4-bit weights, which are never sharded."""
    bf16_only(quantize, f"{model} needs sharding")
    found = options(shape, gpu_types, load, least)
    allowed = [o for o in found if o.gpus <= max_gpus]
    if not allowed:
        beyond = "; ".join(o.describe() for o in found[:3]) or "none within 8 nodes of 8 GPUs"
        raise PlanRefused(f"{model} (~{shape.parameters / 1e9:.0f}B parameters, ~{gb_per_gpu(shape, 1, load):.0f} GB "
                          f"in bf16 on one GPU) fits no way within [runpod] max_gpus = {max_gpus}: the cheapest ways are "
                          f"{beyond}. Raise max_gpus to rent one of them, or choose a smaller base model; "
                          f"nothing was rented")
    chosen = allowed[0]
    where = ("on one pod" if chosen.pods == 1 else
             f"on the cheapest Instant Cluster: no pod of those GPUs holds it within max_gpus = {max_gpus}")
    why = (f"no GPU of {', '.join(gpu_types)} holds it whole (~{gb_per_gpu(shape, 1, load):.0f} GB in bf16): "
           f"its weights are sharded over {chosen.gpus} GPUs (FSDP2, bf16) {where}")
    return Plan("fsdp", chosen, why, [o for o in found if o is not chosen])


def forced(gpu_types: list[str], gpus: int, shape: Shape | None, load: Load) -> Plan:
    """[training] sharding = "fsdp": the model sharded over [runpod] gpu_count GPUs whether or not one would
    hold it (the local provider runs them as CPU processes)."""
    gpu = next((g for g in gpu_types if g in GPUS), gpu_types[0])
    memory = GPUS.get(gpu, (0, None))[0]
    need = gb_per_gpu(shape, gpus, load) if shape else 0.0
    chosen = Option(gpu, gpus, 1, need, memory, _price(gpu, gpus))
    return Plan("fsdp", chosen, f"[training] sharding = \"fsdp\": sharded over [runpod] gpu_count = {gpus} processes")


def describe(model: str, shape: Shape, gpu_types: list[str], load: Load, max_gpus: int, quantize: str) -> list[str]:
    """What `doit plan` prints: one GPU's need, which of gpu_types hold it whole, else the sharded plan
    (or why there is none within max_gpus) and the other ways, cheapest first."""
    whole = gb_per_gpu(shape, 1, load)
    lines = [f"{model}: ~{shape.parameters / 1e9:.1f}B parameters, {shape.layers} layers of width {shape.hidden}; "
             f"~{whole:.0f} GB to train in bf16 on one GPU (sequence {load.seq}, micro-batch {load.batch}, "
             f"LoRA rank {load.rank})"]
    holds = [g for g in gpu_types if g in GPUS and whole <= GPUS[g][0] * USABLE]
    if holds:
        return [*lines, f"plan: one GPU holds it whole: {holds[0]} ({GPUS[holds[0]][0]} GB); no sharding"]
    try:
        found = shard(model, shape, gpu_types, load, max_gpus, quantize)
    except PlanRefused as exc:
        return [*lines, f"refused: {exc}"]
    return [*lines, *found.lines()]
