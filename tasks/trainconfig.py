"""The training config the pod receives (seed §2.3), written and read back before anything is rented."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks import tinymodel
from tasks.errors import FullcycleError
from tasks.files import read_json, write_json
from tasks.paths import REMOTE_DIR, TRAIN_SCRIPT, RunPaths
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

# Where the uploaded base model lands, relative to the pod's input folder, when it travels with the
# inputs (the locally built tiny model does; a hub model is downloaded on the pod instead).
UPLOADED_BASE_DIR = "base_model"


class ConfigError(FullcycleError):
    pass


def uploads_base_model(settings: Settings) -> bool:
    return tinymodel.is_tiny(settings.training.base_model)


DATASET_NAME = "unsloth_dataset.jsonl"
CONFIG_NAME = "config.json"
SCRIPT_NAME = "train_unsloth.py"
POD_SETUP = ("setup_python.sh", "requirements-gpu.txt", "requirements-cpu.txt")


def upload_inputs(settings: Settings, paths: RunPaths) -> dict[str, Path]:
    """What goes to the pod's input folder, by the name it gets there (also the upload's file_dep)."""
    inputs = {DATASET_NAME: paths.clean_data_file, CONFIG_NAME: paths.config_file, SCRIPT_NAME: trainer(settings)}
    for name in POD_SETUP:  # the pod finds or builds its Python with these
        inputs[name] = REMOTE_DIR / name
    if uploads_base_model(settings):
        inputs[UPLOADED_BASE_DIR] = paths.tiny_model_dir
    return inputs


def trainer(settings: Settings) -> Path:
    """The script the pod runs as train_unsloth.py: [remote] trainer (relative to the project root) or ours."""
    if not settings.remote.trainer:
        return TRAIN_SCRIPT
    path = Path(settings.remote.trainer).expanduser()
    return path if path.is_absolute() else settings.project_root / path


def config_line(lines: list[str]) -> str | None:
    """upload_verification (seed §3.3): the sha256sum line of config.json among upload.ok's lines."""
    return next((line for line in lines if line.strip().partition("  ")[2] == CONFIG_NAME), None)


def build(settings: Settings, verdict: dict[str, Any] | None = None) -> dict[str, Any]:
    config = settings.training_config()
    config["too_long"] = settings.dataset.too_long  # the trainer's exact (token) check follows it
    if verdict:  # the model check may load a 4-bit build where the bf16 weights cannot fit
        config["model_to_load"] = verdict.get("model_to_load") or config["base_model"]
        config["load_in_4bit"] = bool(verdict.get("load_in_4bit"))
    if uploads_base_model(settings):
        config["base_model_dir"] = UPLOADED_BASE_DIR
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
