#!/usr/bin/env python3
"""LoRA training on the pod: Unsloth on CUDA when it is installed, transformers + peft + trl otherwise.

Reads the uploaded dataset ({instruction, input, output} per line) and config.json, trains, and saves
the adapter, the tokenizer, the base model's config.json, eval.json and metrics.json into the output
folder. The steps live in the trainer/ package beside this file; exit codes in trainer/config.py.
It runs standalone on the pod: it imports nothing from the orchestrator.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path

# Read by torch's CUDA allocator when torch loads: set before anything imports torch.
os.environ.setdefault("PYTORCH_ALLOC_CONF", "expandable_segments:True")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the trainer package travels beside this script

from trainer import config, data, fit, load, lora, measure, save  # noqa: E402


def run(args: argparse.Namespace) -> int:
    started = time.time()
    config.quiet()
    settings = config.load_config(args.config)
    samples = config.check_rows(args.data)
    gpu = load.nvidia_smi()
    load.check_cuda(gpu)
    unsloth = load.use_unsloth()
    config.say(f"{samples} samples, base model {settings['base_model']}, backend "
               f"{'unsloth' if unsloth else 'transformers+peft+trl'}"
               + (f", GPU {gpu['gpu']} (driver {gpu['driver']}, CUDA {gpu['cuda']})" if gpu else ""))
    loaded = load.base_model(settings, args.config, unsloth)
    lora.quiet_router(loaded.model)
    model, tokenizer = lora.attach(loaded.model, settings, unsloth), loaded.tokenizer
    lora.start_from(model, settings, args.config.parent)
    rows = data.load_training_set(args.data, tokenizer, settings)
    losses, train_seconds = fit.train(model, tokenizer, rows, settings, args.output)
    saving = time.time()
    save.adapter(model, tokenizer, loaded.model_id, args.output)  # before the evaluation: it never costs the adapter
    phases = {"model_load": loaded.seconds, "training": train_seconds, "save": round(time.time() - saving, 2)}
    measured = measure.measure(model, tokenizer, settings, args.config.parent, unsloth)
    measured["train_seconds"] = train_seconds
    phases["evaluation"] = measured.get("seconds", 0.0)
    metrics = save.metrics(settings, gpu, tokenizer, samples, losses, round(time.time() - started, 2), loaded, unsloth,
                           config.versions(), phases)
    save.results(args.output, measured, metrics)
    config.say(f"adapter saved to {args.output} in {metrics['seconds']}s, final loss {metrics['final_loss']}")
    return config.TRAINED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/workspace/input/unsloth_dataset.jsonl"))
    parser.add_argument("--config", type=Path, default=Path("/workspace/input/config.json"))
    parser.add_argument("--output", type=Path, default=Path("/output/adapter"))
    args = parser.parse_args(argv)
    try:
        return run(args)
    except config.InputError as exc:
        config.error(str(exc))
        return config.BAD_INPUT
    except load.ModelLoadError as exc:
        config.error(str(exc))
        return config.NO_MODEL
    except load.NoGpuStack as exc:
        config.error(str(exc))
        return config.NO_GPU_STACK
    except Exception as exc:
        traceback.print_exc()
        config.error(f"training failed: {type(exc).__name__}: {exc}")
        return config.FAILED


if __name__ == "__main__":
    sys.exit(main())
