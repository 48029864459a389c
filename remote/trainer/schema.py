"""config.json, the one type the orchestrator writes (tasks/data/trainconfig.py) and the trainer reads.

The seed's seven fields are required; every other field has its default here, and only here (the
orchestrator's [training] settings take theirs from this file), so a config a caller wrote with the
seed's fields alone trains as one of ours does. Standard library only: the orchestrator loads this
file by its path, the trainer as trainer.schema.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SEED = ("base_model", "lora_rank", "num_train_epochs", "learning_rate", "per_device_train_batch_size",
        "gradient_accumulation_steps", "max_seq_length")


@dataclass
class TrainConfig:
    base_model: str
    lora_rank: int
    num_train_epochs: float
    learning_rate: float
    per_device_train_batch_size: int
    gradient_accumulation_steps: int
    max_seq_length: int
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    seed: int = 42
    max_steps: int = -1  # -1: train for num_train_epochs
    use_rslora: bool = False
    target_modules: list[str] | str = "auto"  # by name, or "auto": by architecture (trainer/lora.py)
    too_long: str = "drop"  # a sample over max_seq_length: "drop", or "cut" its answer
    model_to_load: str | None = None  # what is downloaded and loaded (a 4-bit build, say); None: base_model
    load_in_4bit: bool = False
    moe_build: str | None = None
    download_bytes: int = 0
    fallback_model: str | None = None  # a pre-quantized build's bf16 weights, loaded once if it will not
    fallback_bytes: int = 0
    download_stall_s: float = 120.0  # no byte for this long: retried once, then the run fails
    gpu_count: int = 1  # training processes per pod
    sharding: dict[str, Any] | None = None  # the plan (tasks/model/plan.py): train_fsdp.py shards the model
    hf_endpoint: str | None = None
    base_model_dir: str | None = None  # the model travels with the inputs (the built-in tiny one)
    start_from: str | None = None  # an earlier adapter's folder, beside config.json, today's LoRA starts from
    preflight: dict[str, Any] = field(default_factory=lambda: {"skipped": "not asked for in config.json"})
    preflight_only: bool = False  # `doit gpu_check`
    eval: dict[str, Any] = field(default_factory=dict)  # {heldout, previous_adapter, previous_date, prompts, ...}
    tiny_defaults: dict[str, Any] | None = None  # the built-in tiny model's training values, where applied

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in dataclasses.fields(TrainConfig)}
NUMBERS = {"int": int, "float": float}


def parse(raw: Any) -> dict[str, Any]:
    """Every field, defaults filled; ValueError naming the field for one missing or of the wrong kind.
    Fields this type does not know are left out (a newer orchestrator's, a caller's own)."""
    if not isinstance(raw, dict):
        raise ValueError("must be a JSON object")
    missing = [name for name in SEED if name not in raw]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    values = {}
    for name, given in raw.items():
        if name not in FIELDS:
            continue
        kind = str(FIELDS[name].type)
        if kind in NUMBERS and (isinstance(given, bool) or not isinstance(given, (int, float))
                                or (kind == "int" and not float(given).is_integer())):
            raise ValueError(f"{name}: expected {'an integer' if kind == 'int' else 'a number'}, got {given!r}")
        values[name] = NUMBERS[kind](given) if kind in NUMBERS else given
    return TrainConfig(**values).as_dict()


def read(path: Path) -> dict[str, Any]:
    return parse(json.loads(path.read_text()))
