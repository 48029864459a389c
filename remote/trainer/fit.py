"""Training itself: trl's SFTTrainer on the prompt/completion rows (loss on the answer only), every
optimizer step's loss said on the log as `[train] step i/N loss x` (the orchestrator follows it)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from trainer import ranks
from trainer.config import say


def sft_config(config: dict, work: Path):
    """trl's settings from config.json; bf16 where the GPU has it, never fp16 (a 30B MoE overflows)."""
    import torch
    from trl import SFTConfig

    gpu = torch.cuda.is_available()
    bf16 = gpu and torch.cuda.is_bf16_supported()
    batch, accumulation = int(config["per_device_train_batch_size"]), int(config["gradient_accumulation_steps"])
    if ranks.world() > 1 and accumulation % ranks.world() == 0:
        accumulation //= ranks.world()  # the global batch stays the one asked for: the same optimisation, sooner
    shm = ranks.small_shm_fallback() if gpu else None  # before the first collective creates NCCL's links
    if shm and ranks.is_main():
        say(shm)
    if ranks.world() > 1:
        say(f"{ranks.world()} processes, global batch {batch * accumulation * ranks.world()} "
            f"({batch} per process x {accumulation} accumulated x {ranks.world()})")
    return SFTConfig(
        output_dir=str(work), num_train_epochs=float(config["num_train_epochs"]),
        learning_rate=float(config["learning_rate"]),
        per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
        max_length=int(config["max_seq_length"]), logging_steps=1, save_strategy="no", report_to=[],
        seed=config["seed"], bf16=bf16, fp16=False, disable_tqdm=True,
        max_steps=config["max_steps"],
        # under torchrun on CPUs (the tests, a CPU pod): data-parallel over gloo; on GPUs NCCL, as by default
        use_cpu=not gpu, ddp_backend="gloo" if not gpu and ranks.world() > 1 else None,
    )


class TokenCount:
    """Our own count of the tokens trained on: every batch the collator builds for the trainer, its
    non-padding tokens (attention mask, else every id: a padding-free batch has no padding). Unsloth's
    trainer logs no `num_tokens`, so trl's count cannot be the figure tokens/s stands on."""

    def __init__(self, collate) -> None:
        self.collate, self.tokens = collate, 0

    def __call__(self, features):
        batch = self.collate(features)
        mask, ids = batch.get("attention_mask"), batch.get("input_ids")
        if mask is not None:
            self.tokens += int(mask.sum())
        elif ids is not None:
            self.tokens += int(ids.numel())
        return batch


def _all_ranks(count: int) -> int:
    """The tokens of every rank together (each counted its own shard)."""
    import torch

    if ranks.world() < 2 or not torch.distributed.is_initialized():
        return count
    total = torch.tensor([count], device="cuda" if torch.cuda.is_available() else "cpu")
    torch.distributed.all_reduce(total)
    return int(total.item())


def _estimate(trainer, config: dict, steps: int) -> int | None:
    """Where no batch was counted here (a collator in worker processes): each row's tokens times the
    share of the epochs trained."""
    try:
        rows = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    except (KeyError, TypeError, ValueError):
        return None
    per_epoch = max(1, -(-len(rows) // (int(config["per_device_train_batch_size"]) * ranks.world()
                                          * int(config["gradient_accumulation_steps"]))))
    epochs = steps / per_epoch if steps else float(config["num_train_epochs"])
    return int(sum(min(n, int(config["max_seq_length"])) for n in rows) * epochs)


def train(model, tokenizer, dataset, config: dict, output: Path) -> tuple[list[dict], float, int | None]:
    """Train; returns the loss of every step, the seconds training took and the tokens trained on (all
    ranks together, counted here). The trainer's own scratch folder beside the output is removed
    afterwards (nothing is checkpointed)."""
    from transformers import TrainerCallback
    from trl import SFTTrainer

    losses: list[dict] = []

    class LossLog(TrainerCallback):
        def on_log(self, _args, state, _control, logs=None, **_kw):
            if logs and "loss" in logs and state.is_world_process_zero:
                losses.append({"step": state.global_step, "loss": float(logs["loss"]),
                               "epoch": float(logs.get("epoch", 0.0))})
                say(f"step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f}")

    work = output.parent / (output.name + ".trainer")
    trainer = SFTTrainer(model=model, args=sft_config(config, work), train_dataset=dataset, processing_class=tokenizer,
                         callbacks=[LossLog()])
    counted = trainer.data_collator = TokenCount(trainer.data_collator)
    started = time.time()
    trainer.train()
    seconds = round(time.time() - started, 2)
    tokens = _all_ranks(counted.tokens) or _estimate(trainer, config, trainer.state.global_step)
    if ranks.is_main():
        shutil.rmtree(work, ignore_errors=True)
    return losses, seconds, tokens


def throughput(tokens: int | None, seconds: float) -> dict:
    """How fast the GPUs trained: tokens per second in all, and per GPU (the figure a second GPU
    should keep near one GPU's for the speed-up to be worth its price)."""
    gpus = ranks.world()
    rate = round(tokens / seconds, 1) if tokens and seconds else None
    return {"gpus": gpus, "tokens": tokens, "tokens_per_s": rate,
            "tokens_per_s_per_gpu": round(rate / gpus, 1) if rate else None}
