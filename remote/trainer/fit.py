"""Training itself: trl's SFTTrainer on the prompt/completion rows (loss on the answer only), every
optimizer step's loss said on the log as `[train] step i/N loss x` (the orchestrator follows it)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from trainer.config import say


def sft_config(config: dict, work: Path):
    """trl's settings from config.json; bf16 where the GPU has it, never fp16 (a 30B MoE overflows)."""
    import torch
    from trl import SFTConfig

    bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return SFTConfig(
        output_dir=str(work), num_train_epochs=float(config["num_train_epochs"]),
        learning_rate=float(config["learning_rate"]),
        per_device_train_batch_size=int(config["per_device_train_batch_size"]),
        gradient_accumulation_steps=int(config["gradient_accumulation_steps"]),
        max_length=int(config["max_seq_length"]), logging_steps=1, save_strategy="no", report_to=[],
        seed=int(config.get("seed", 42)), bf16=bf16, fp16=False, disable_tqdm=True,
        max_steps=int(config.get("max_steps", -1)),
    )


def train(model, tokenizer, dataset, config: dict, output: Path) -> tuple[list[dict], float]:
    """Train; returns the loss of every step and the seconds training took. The trainer's own
    scratch folder beside the output is removed afterwards (nothing is checkpointed)."""
    from transformers import TrainerCallback
    from trl import SFTTrainer

    losses: list[dict] = []

    class LossLog(TrainerCallback):
        def on_log(self, _args, state, _control, logs=None, **_kw):
            if logs and "loss" in logs:
                losses.append({"step": state.global_step, "loss": float(logs["loss"]),
                               "epoch": float(logs.get("epoch", 0.0))})
                say(f"step {state.global_step}/{state.max_steps} loss {logs['loss']:.4f}")

    work = output.parent / (output.name + ".trainer")
    trainer = SFTTrainer(model=model, args=sft_config(config, work), train_dataset=dataset, processing_class=tokenizer,
                         callbacks=[LossLog()])
    started = time.time()
    trainer.train()
    seconds = round(time.time() - started, 2)
    shutil.rmtree(work, ignore_errors=True)
    return losses, seconds
