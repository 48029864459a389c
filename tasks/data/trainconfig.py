"""The training config the pod receives (seed §2.3), written and read back before anything is rented."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tasks.context import RunContext
from tasks.core.errors import FullcycleError
from tasks.core.files import read_json, write_json
from tasks.core.paths import PodNames, RunPaths
from tasks.core.settings import Settings

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
    if settings.training.is_tiny:
        config["base_model_dir"] = PodNames.BASE_MODEL_DIR
    return config


MAX_PROMPT_CHARS = 2000  # a prompt answered side by side; longer lines are cut (and said so)


def _prompts(settings: Settings, paths: RunPaths) -> list[str]:
    """The prompts answered side by side: the user's file, else the first held-out instructions."""
    e = settings.eval
    if e.prompts:
        source = Path(e.prompts).expanduser()
        source = source if source.is_absolute() else settings.project_root / source
        return prompts_file(source, e.answers)
    found = []
    if paths.heldout_file.exists():
        with paths.heldout_file.open("rb") as fh:
            for line in fh:
                if len(found) >= e.answers:
                    break
                found.append(json.loads(line)["instruction"])
    return found


def prompts_file(source: Path, wanted: int) -> list[str]:
    """The first `wanted` prompts of a file, one per line, read as a stream (only those lines are read).
    A line that is not UTF-8 is skipped and named (file:line), a byte-order mark dropped, a very long
    line cut: a person's prompts file never stops the run, it only ever costs its bad lines."""
    found: list[str] = []
    try:
        with source.open("rb") as fh:
            for number, raw in enumerate(fh, 1):
                if len(found) >= wanted:
                    break
                try:
                    text = raw.decode("utf-8").removeprefix("\ufeff").strip()
                except UnicodeDecodeError as exc:
                    log.warning("[eval] prompts %s:%d is not UTF-8 (%s at byte %d): skipped", source, number,
                                exc.reason, exc.start)
                    continue
                if len(text) > MAX_PROMPT_CHARS:
                    log.warning("[eval] prompts %s:%d is %d characters: cut to %d", source, number, len(text),
                                MAX_PROMPT_CHARS)
                    text = text[:MAX_PROMPT_CHARS]
                if text:
                    found.append(text)
    except OSError as exc:
        raise ConfigError(f"[eval] prompts {source}: {exc.strerror or exc}; fix the path in fullcycle.toml "
                          f"or leave it empty to answer the first held-out instructions") from None
    return found


def _previous(settings: Settings, paths: RunPaths) -> dict[str, Any] | None:
    """The earlier promoted adapter today is compared with and, with start_from = "latest", starts from;
    checked here, before anything is rented: it must fit today's LoRA."""
    from tasks.record import history

    found = history.previous_adapter(settings, paths.date, settings.training.base_model)
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
    config["eval"] = {"heldout": PodNames.HELDOUT if heldout else None,
                      "previous_adapter": PodNames.PREVIOUS_DIR if previous else None,
                      "previous_date": (previous or {}).get("date"), "prompts": _prompts(settings, paths),
                      "max_new_tokens": settings.eval.max_new_tokens}
    config["start_from"] = PodNames.PREVIOUS_DIR if previous and settings.training.start_from == "latest" else None
    write_json(path, config)
    back = read_json(path)
    missing = [k for k in REQUIRED if k not in back]
    if back != config or missing:
        raise ConfigError(f"{path}: config did not read back as written (missing: {missing})")
    return config


def write_config(ctx: RunContext) -> None:
    """The write_config stage: config.json from the settings and the model check's verdict."""
    if ctx.prepared(ctx.paths.config_file):
        return
    config = write(ctx.settings, ctx.paths, read_json(ctx.paths.model_check_file))
    log.info("Config written… %s (base_model %s)", ctx.paths.config_file, config["base_model"])
