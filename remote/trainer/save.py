"""What the pod brings home in the output folder: the adapter (saved before anything else can fail),
the tokenizer, the base model's config.json (all a GGUF LoRA conversion needs, so the 60 GB base
model never has to come home), eval.json and metrics.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path


def adapter(model, tokenizer, model_id: str, output: Path) -> None:
    """The adapter and tokenizer, and a copy of the base model's config.json."""
    output.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(output)
    tokenizer.save_pretrained(output)
    base_config = Path(model_id) / "config.json"
    if base_config.is_file():
        shutil.copy(base_config, output / "base_model_config.json")
    else:
        model.base_model.model.config.to_json_file(output / "base_model_config.json")


def results(output: Path, measured: dict, metrics: dict) -> None:
    (output / "eval.json").write_text(json.dumps(measured, indent=2))
    (output / "metrics.json").write_text(json.dumps(metrics, indent=2))


def metrics(config: dict, gpu: dict | None, tokenizer, samples: int, losses: list[dict], seconds: float,
            loaded, unsloth: bool, versions: dict, clock, scale: dict) -> dict:
    """metrics.json: loss per step, the seconds of each phase, and what ran (GPU, backend, versions)."""
    import torch

    from trainer.data import prompt_format

    return {
        "base_model": config["base_model"],
        "gpu": gpu,
        "prompt_format": prompt_format(tokenizer),
        "samples": samples,
        "steps": losses,
        "final_loss": losses[-1]["loss"] if losses else None,
        "seconds": seconds,
        "model_load_seconds": loaded.seconds,
        "model_loaded": loaded.model_id,
        "moe_build": loaded.moe_build,  # a pre-quantized build that would not load, and what was loaded instead
        "scale": scale,  # GPUs (torchrun processes), tokens, tokens/s in all and per GPU
        # trainer_start, [preflight, download_wait,] model_load, data_prep, training, save, evaluation
        "phases": clock.phases,
        "started_at": round(clock.started, 3),  # epoch seconds the phases begin at (the bill's overlaps)
        "backend": "unsloth" if unsloth else "transformers+peft+trl",
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
        "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 1e9, 3) if torch.cuda.is_available() else None,
        "versions": versions,
    }
