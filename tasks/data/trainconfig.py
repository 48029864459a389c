"""The training config the pod receives (seed §2.3), written and read back before anything is rented."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path
from typing import Any

from tasks.context import RunContext
from tasks.core import trainer
from tasks.core.errors import FullcycleError
from tasks.core.files import read_json, read_record, write_json
from tasks.core.paths import PodNames, RunPaths
from tasks.core.settings import Settings, TrainingSettings

log = logging.getLogger("fullcycle")

class ConfigError(FullcycleError):
    pass


# What the built-in tiny model needs to learn visibly in a few seconds: a random two-layer model moves
# only at a learning rate no real base model would survive. A training setting left at its default
# takes these for base_model = "tiny" alone; config.json and the summary record which (tiny_defaults).
TINY_DEFAULTS = {"learning_rate": 0.02, "num_train_epochs": 4, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 1,
                 "lora_rank": 32, "lora_alpha": 64}


def training(settings: Settings) -> tuple[TrainingSettings, dict[str, Any]]:
    """The training settings this run uses, and the tiny model's defaults applied to them (if any)."""
    t = settings.training
    if not t.is_tiny:
        return t, {}
    defaults = TrainingSettings()
    applied = {k: v for k, v in TINY_DEFAULTS.items() if getattr(t, k) == getattr(defaults, k)}
    return dataclasses.replace(t, **applied), applied


def build(settings: Settings, verdict: dict[str, Any] | None = None) -> dict[str, Any]:
    """config.json's fields as the trainer's own type has them (remote/trainer/schema.py), from the
    settings and the model check's verdict (what is loaded, how, on how many GPUs)."""
    used, applied = training(settings)
    verdict, plan = verdict or {}, (verdict or {}).get("plan") or {}
    fields = {k: v for k, v in dataclasses.asdict(used).items() if k in trainer.schema.FIELDS}
    fields.update(
        target_modules=list(used.target_modules) or "auto", too_long=settings.dataset.too_long,
        tiny_defaults=applied or None, download_stall_s=settings.runpod.download_stall_s,
        start_from=None, moe_build=verdict.get("moe_build"),  # the check's choice of build, not the setting
        sharding=plan if plan.get("sharding") == "fsdp" else None,  # remote/train_fsdp.py trains it
        # training processes per pod: one per GPU (torchrun), or CPUs over gloo; a sharded plan says how many
        gpu_count=plan.get("gpus_per_pod") or settings.runpod.gpu_count,
        hf_endpoint=os.environ.get("HF_ENDPOINT") or None,  # a hub mirror asked here is the pod's too (a URL)
        base_model_dir=PodNames.BASE_MODEL_DIR if settings.training.is_tiny else None,
        preflight=preflight(settings, verdict))
    if verdict:  # the model check may load a 4-bit build where the bf16 weights cannot fit
        fields.update(model_to_load=verdict.get("model_to_load") or used.base_model,
                      load_in_4bit=bool(verdict.get("load_in_4bit")),
                      **{k: verdict[k] for k in ("download_bytes", "fallback_model", "fallback_bytes") if verdict.get(k)})
    return trainer.schema.TrainConfig(**fields).as_dict()


def preflight(settings: Settings, verdict: dict[str, Any] | None) -> dict[str, Any]:
    """What the pod's preflight builds (remote/trainer/preflight.py): a tiny model of the base model's
    family, or why it is skipped. "auto" runs it wherever the pod downloads the base model: that is
    the download a broken stack would otherwise be found out after, and the time it hides in. It runs
    inside the built-in trainer's process when that is one process (Python and Unsloth start once),
    else as a process apart (a trainer of one's own, torchrun)."""
    from tasks.model import families, tiny

    mode = settings.remote.preflight
    if mode == "never":
        return {"skipped": "[remote] preflight = \"never\""}
    if ((verdict or {}).get("plan") or {}).get("sharding") == "fsdp":
        return {"skipped": "the sharded trainer has no preflight of its own (the preflight drives Unsloth's path)"}
    if mode == "auto" and settings.training.is_local:
        return {"skipped": "the base model is not downloaded on the pod ([remote] preflight = \"auto\")"}
    base = (verdict or {}).get("base_config")
    shape = families.preflight_shape(base, tiny.SPEC)
    if shape is None:
        kind = (base or {}).get("model_type") or "unknown (the model hub did not say)"
        return {"skipped": f"no tiny build for architecture {kind} (known: {', '.join(families.FAMILIES)})"}
    inside = not settings.remote.trainer and settings.runpod.gpu_count == 1
    return {"shape": shape, "where": "trainer" if inside else "apart"}


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
    if settings.training.start_from == "latest":
        _check_fits(settings, date, adapter)
    return {"date": date, "adapter": str(adapter)}


def _check_fits(settings: Settings, date: str, adapter: Path) -> None:
    """start_from = "latest" continues yesterday's LoRA: its rank must be today's (the weights' shapes),
    and so must its alpha and rsLoRA (they scale the update: a changed one silently rescales what was
    learnt), and its targets when today names them. Checked before anything is rented."""
    old = read_record(adapter / "adapter_config.json")
    t = training(settings)[0]
    differ = []
    if old.get("r") != t.lora_rank:
        differ.append(f"rank {old.get('r')} (today's lora_rank is {t.lora_rank})")
    if old.get("lora_alpha") != t.lora_alpha:
        differ.append(f"lora_alpha {old.get('lora_alpha')} (today's is {t.lora_alpha})")
    if bool(old.get("use_rslora")) != t.use_rslora:
        differ.append(f"use_rslora {bool(old.get('use_rslora'))} (today's is {t.use_rslora})")
    targets = old.get("target_modules")
    if t.target_modules and isinstance(targets, list) and sorted(targets) != sorted(t.target_modules):
        differ.append(f"target_modules {sorted(targets)} (today's are {sorted(t.target_modules)})")
    if differ:
        raise ConfigError(f"[training] start_from = \"latest\": the adapter of {date} ({adapter}) has "
                          + "; ".join(differ) + "; set the same values or start_from = \"base\". Nothing was rented")


def compose(settings: Settings, paths: RunPaths, verdict: dict[str, Any] | None) -> tuple[dict[str, Any], Any]:
    """config.json as the settings, the model check and the history make it now, and the previous
    adapter it names; nothing is written (the up-to-date check compares it with the file)."""
    config = build(settings, verdict)
    previous = _previous(settings, paths)
    heldout = paths.heldout_file.exists() and paths.heldout_file.stat().st_size > 0
    config["eval"] = {"heldout": PodNames.HELDOUT if heldout else None,
                      "previous_adapter": PodNames.PREVIOUS_DIR if previous else None,
                      "previous_date": (previous or {}).get("date"), "prompts": _prompts(settings, paths),
                      "max_new_tokens": settings.eval.max_new_tokens}
    config["start_from"] = PodNames.PREVIOUS_DIR if previous and settings.training.start_from == "latest" else None
    return json.loads(json.dumps(config)), previous  # as it reads back: tuples are lists in JSON


def is_current(ctx: RunContext) -> bool:
    """write_config's up-to-date check: config.json holds what the stage would write now."""
    return read_record(ctx.paths.config_file) == compose(ctx.settings, ctx.paths, read_json(ctx.paths.model_check_file))[0]


def write(settings: Settings, paths: RunPaths, verdict: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write config.json and prove it parses back to the same values (seed: 'then validate it parses')."""
    path = paths.config_file
    config, previous = compose(settings, paths, verdict)
    write_json(paths.previous_file, previous or {})
    write_json(path, config)
    back = trainer.schema.read(path)
    if back != config:
        raise ConfigError(f"{path}: config did not read back as written")
    return config


def write_config(ctx: RunContext) -> None:
    """The write_config stage: config.json from the settings and the model check's verdict."""
    if ctx.prepared(ctx.paths.config_file):
        return
    config = write(ctx.settings, ctx.paths, read_json(ctx.paths.model_check_file))
    log.info("Config written… %s (base_model %s)", ctx.paths.config_file, config["base_model"])
