"""The training config the pod receives (seed §2.3), written and read back before anything is rented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks import manifest
from tasks.errors import FullcycleError
from tasks.files import read_json, write_json
from tasks.settings import Settings

# The seed's fields; the trainer refuses a config without them.
REQUIRED = (
    "base_model",
    "lora_rank",
    "num_train_epochs",
    "learning_rate",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_seq_length",
)


class ConfigError(FullcycleError):
    pass


def build(settings: Settings, verdict: dict[str, Any] | None = None) -> dict[str, Any]:
    config = settings.training_config()
    config["too_long"] = settings.dataset.too_long  # the trainer's exact (token) check follows it
    if verdict:  # the model check may load a 4-bit build where the bf16 weights cannot fit
        config["model_to_load"] = verdict.get("model_to_load") or config["base_model"]
        config["load_in_4bit"] = bool(verdict.get("load_in_4bit"))
        if verdict.get("download_bytes"):  # the trainer reports the download's progress against it
            config["download_bytes"] = verdict["download_bytes"]
    if manifest.uploads_base_model(settings):
        config["base_model_dir"] = manifest.UPLOADED_BASE_DIR
    return config


def write(settings: Settings, path: Path, verdict: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write config.json and prove it parses back to the same values (seed: 'then validate it parses')."""
    config = build(settings, verdict)
    write_json(path, config)
    back = read_json(path)
    missing = [k for k in REQUIRED if k not in back]
    if back != config or missing:
        raise ConfigError(f"{path}: config did not read back as written (missing: {missing})")
    return config
