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
        seed=int(config.get("seed", 42)), bf16=bf16, fp16=False, disable_tqdm=True,
        max_steps=int(config.get("max_steps", -1)),
        # under torchrun on CPUs (the tests, a CPU pod): data-parallel over gloo; on GPUs NCCL, as by default
        use_cpu=not gpu, ddp_backend="gloo" if not gpu and ranks.world() > 1 else None,
    )


def train(model, tokenizer, dataset, config: dict, output: Path) -> tuple[list[dict], float, int | None]:
    """Train; returns the loss of every step, the seconds training took and the tokens trained on (all
    ranks together, as trl counts them). The trainer's own scratch folder beside the output is removed
    afterwards (nothing is checkpointed)."""
    from transformers import TrainerCallback
    from trl import SFTTrainer

    losses: list[dict] = []
    tokens: list[int] = []

    class LossLog(TrainerCallback):
        def on_log(self, _args, state, _control, logs=None, **_kw):
            if logs and "num_tokens" in logs:
                tokens.append(int(float(logs["num_tokens"])))
            if logs and "loss" in logs and state.is_world_process_zero:
                losses.append({"step": state.global_step, "loss": float(logs["loss"]),
                               "epoch": float(logs.get("epoch", 0.0))})
                say(f"step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f}")

    work = output.parent / (output.name + ".trainer")
    trainer = SFTTrainer(model=model, args=sft_config(config, work), train_dataset=dataset, processing_class=tokenizer,
                         callbacks=[LossLog()])
    started = time.time()
    trainer.train()
    seconds = round(time.time() - started, 2)
    if ranks.is_main():
        shutil.rmtree(work, ignore_errors=True)
    return losses, seconds, tokens[-1] if tokens else None


def throughput(tokens: int | None, seconds: float) -> dict:
    """How fast the GPUs trained: tokens per second in all, and per GPU (the figure a second GPU
    should keep near one GPU's for the speed-up to be worth its price)."""
    gpus = ranks.world()
    rate = round(tokens / seconds, 1) if tokens and seconds else None
    return {"gpus": gpus, "tokens": tokens, "tokens_per_s": rate,
            "tokens_per_s_per_gpu": round(rate / gpus, 1) if rate else None}
