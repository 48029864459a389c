#!/usr/bin/env python3
"""LoRA training sharded over every process of a torchrun (PyTorch FSDP2, bf16): for a base model that
no single GPU holds, on one pod's GPUs or a cluster's; on CPUs over gloo where there is no GPU.

The same contract as train_unsloth.py (its arguments, its outputs, its exit codes in trainer/config.py);
the steps in trainer/ beside it; rank 0 alone reads the checkpoint, saves, evaluates and reports.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

PROCESS_STARTED = time.time()
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the trainer package travels beside this script

from trainer import config, data, download, fit, load, loop, lora, measure, ranks, save, shard  # noqa: E402
from trainer.clock import Clock  # noqa: E402


def run(args: argparse.Namespace) -> int:
    clock = Clock(PROCESS_STARTED)
    config.quiet()
    settings = config.load_config(args.config)
    samples = config.check_rows(args.data)
    gpu = load.nvidia_smi()
    load.check_cuda(gpu)
    where = shard.Sharded()
    load.announce(samples, settings, gpu, unsloth=False)
    clock.lap("trainer_start")
    if download.wait():  # the download the runner started beside this process
        clock.lap("download_wait")
    model_id, _ = load.resolve_model(settings, args.config)
    folder = shard.checkpoint_dir(model_id)
    model = shard.build(folder, settings, where, lambda base: lora.target_modules(settings, base))
    start = args.config.parent / settings["start_from"] if settings["start_from"] else None
    shard.load(model, folder, where, settings["seed"], start)
    clock.lap("model_load")
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    rows = loop.examples(data.load_training_set(args.data, tokenizer, settings), tokenizer)
    clock.lap("data_prep")
    losses, seconds, tokens = loop.train(model, rows, settings, tokenizer.pad_token_id, where.device)
    clock.lap("training")
    today = shard.gather_adapter(model)
    if ranks.is_main():
        shard.save(model, today, tokenizer, folder, args.output)  # before the evaluation: it never costs the adapter
    clock.lap("save")
    measured = measure.measure(model, tokenizer, settings, args.config.parent, unsloth=False,
                               switch=lambda _model, path: shard.adapter_swapped(model, path, today))
    measured["train_seconds"] = seconds
    clock.lap("evaluation")
    sharding = {"sharding": "fsdp", "ranks": where.world, "nodes": shard.nodes(),
                "frozen_bytes_per_rank": shard.all_ranks(shard.frozen_bytes(model)),
                "peak_memory_per_rank": shard.all_ranks(shard.peak_memory())}
    if ranks.is_main():
        metrics = save.metrics(settings, gpu, tokenizer, samples, losses, round(time.time() - PROCESS_STARTED, 2),
                               load.Loaded(model, tokenizer, str(folder), clock.phases.get("model_load", 0.0)),
                               False, config.versions(), clock, {**fit.throughput(tokens, seconds), **sharding})
        save.results(args.output, measured, metrics)
        config.say(f"adapter saved to {args.output} in {metrics['seconds']}s, final loss {metrics['final_loss']} "
                   f"({where.world} ranks, {sharding['frozen_bytes_per_rank'][0] / 1e6:.1f} MB of weights each)")
    where.close()
    return config.TRAINED


def main(argv: list[str] | None = None) -> int:
    return config.main(run, __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    sys.exit(main())
