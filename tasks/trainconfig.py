"""The training config the pod receives (seed §2.3), written and read back before anything is rented."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tasks import manifest
from tasks.errors import FullcycleError
from tasks.files import read_json, write_json
from tasks.paths import RunPaths
from tasks.settings import Settings

log = logging.getLogger("fullcycle")

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


def _prompts(settings: Settings, paths: RunPaths) -> list[str]:
    """The prompts answered side by side: the user's file, else the first held-out instructions."""
    e = settings.eval
    if e.prompts:
        source = Path(e.prompts).expanduser()
        source = source if source.is_absolute() else settings.project_root / source
        try:
            found = [line.strip() for line in source.read_text(encoding="utf-8").splitlines() if line.strip()]
        except OSError as exc:
            raise ConfigError(f"[eval] prompts {source}: {exc}") from None
        return found[: e.answers]
    found = []
    if paths.heldout_file.exists():
        with paths.heldout_file.open("rb") as fh:
            for line in fh:
                if len(found) >= e.answers:
                    break
                found.append(json.loads(line)["instruction"])
    return found


def _previous(settings: Settings, paths: RunPaths) -> dict[str, Any] | None:
    """The earlier promoted adapter today is compared with and, with start_from = "latest", starts from;
    checked here, before anything is rented: it must fit today's LoRA."""
    from tasks import evaluation

    found = evaluation.previous(settings, paths, settings.training.base_model)
    if found is None:
        if settings.training.start_from == "latest":
            log.info("start_from = \"latest\": no promoted adapter of %s yet, starting from the base model",
                     settings.training.base_model)
        return None
    date, adapter = found
    old = read_json(adapter / "adapter_config.json") or {}
    if settings.training.start_from == "latest" and old.get("r") != settings.training.lora_rank:
        raise ConfigError(f"[training] start_from = \"latest\": the adapter of {date} ({adapter}) has rank "
                          f"{old.get('r')}, today's lora_rank is {settings.training.lora_rank}; set the same rank or "
                          f"start_from = \"base\". Nothing was rented")
    return {"date": date, "adapter": str(adapter)}


def write(settings: Settings, paths: RunPaths, verdict: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write config.json and prove it parses back to the same values (seed: 'then validate it parses')."""
    path = paths.config_file
    config = build(settings, verdict)
    previous = _previous(settings, paths)
    write_json(paths.previous_file, previous or {})
    heldout = paths.heldout_file.exists() and paths.heldout_file.stat().st_size > 0
    config["eval"] = {"heldout": manifest.HELDOUT_NAME if heldout else None,
                      "previous_adapter": manifest.PREVIOUS_DIR if previous else None,
                      "previous_date": (previous or {}).get("date"), "prompts": _prompts(settings, paths),
                      "max_new_tokens": settings.eval.max_new_tokens}
    config["start_from"] = manifest.PREVIOUS_DIR if previous and settings.training.start_from == "latest" else None
    write_json(path, config)
    back = read_json(path)
    missing = [k for k in REQUIRED if k not in back]
    if back != config or missing:
        raise ConfigError(f"{path}: config did not read back as written (missing: {missing})")
    return config
