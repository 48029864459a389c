#!/usr/bin/env python3
"""LoRA training on the pod: Unsloth on CUDA when it is installed, transformers + peft + trl otherwise.

Dataset ({instruction, input, output} lines) and config.json in; adapter, tokenizer, base config, eval.json
and metrics.json out. Steps in trainer/ beside it, exit codes in trainer/config.py; nothing of the orchestrator.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

PROCESS_STARTED = time.time()  # the imports below are part of the bill: "trainer_start" in the phases

# Read by torch's CUDA allocator when torch loads: set before anything imports torch.
os.environ.setdefault("PYTORCH_ALLOC_CONF", "expandable_segments:True")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the trainer package travels beside this script

from trainer import config, data, download, fit, load, lora, measure, preflight, ranks, save  # noqa: E402
from trainer.clock import Clock  # noqa: E402


def run(args: argparse.Namespace) -> int:
    clock = Clock(PROCESS_STARTED)
    config.quiet()
    settings = config.load_config(args.config)
    samples = config.check_rows(args.data)
    gpu, unsloth = load.stack()
    load.announce(samples, settings, gpu, unsloth)
    clock.lap("trainer_start")
    if preflight.inline(settings, args.data, args.output, gpu, unsloth, PROCESS_STARTED):  # beside the download
        clock.lap("preflight")
    if download.wait():  # the download the runner started beside this process
        clock.lap("download_wait")
    loaded = load.base_model(settings, args.config, unsloth)
    clock.lap("model_load")
    lora.quiet_router(loaded.model)
    model, tokenizer = lora.attach(loaded.model, settings, unsloth), loaded.tokenizer
    lora.start_from(model, settings, args.config.parent)
    rows = data.load_training_set(args.data, tokenizer, settings)
    clock.lap("data_prep")
    losses, train_seconds, tokens = fit.train(model, tokenizer, rows, settings, args.output)
    clock.lap("training")
    if not ranks.is_main():  # every rank trained its share; rank 0 alone saves, evaluates and reports
        return config.TRAINED
    save.adapter(model, tokenizer, loaded.model_id, args.output)  # before the evaluation: it never costs the adapter
    clock.lap("save")
    measured = measure.measure(model, tokenizer, settings, args.config.parent, unsloth)
    measured["train_seconds"] = train_seconds
    clock.lap("evaluation")
    metrics = save.metrics(settings, gpu, tokenizer, samples, losses, round(time.time() - PROCESS_STARTED, 2), loaded,
                           unsloth, config.versions(), clock, fit.throughput(tokens, train_seconds))
    save.results(args.output, measured, metrics)
    config.say(f"adapter saved to {args.output} in {metrics['seconds']}s, final loss {metrics['final_loss']}")
    return config.TRAINED


def main(argv: list[str] | None = None) -> int:
    return config.main(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
