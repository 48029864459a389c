"""The sharded trainer's own training loop (trl's trainer drives neither a meta-built FSDP2 model nor
a CPU run): the rows tokenized with the loss on the answer only, each global batch split over the ranks,
AdamW on the LoRA's weights with a linear decay, `[train] step i/N loss x` on the log.

Every rank computes the loss of its share summed over its tokens, divided by the tokens of the whole
batch, times the ranks (FSDP averages the gradients over them): the gradient is the one an unsharded run
of the same batch takes, whatever the number of ranks.
"""

from __future__ import annotations

import math
import time

from trainer import ranks
from trainer.config import say


def examples(dataset, tokenizer) -> list[tuple[list[int], int]]:
    """Each row as its token ids and where its answer starts (the prompt is masked)."""
    found = []
    for row in dataset:
        prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
        answer = tokenizer(row["completion"], add_special_tokens=False)["input_ids"]
        found.append((prompt + answer, len(prompt)))
    return found


def _batch(rows: list[tuple[list[int], int]], pad: int, device):
    """Inputs, attention mask and labels (-100 on the prompt and the padding) of a micro-batch."""
    import torch

    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), -100, dtype=torch.long)
    for i, (tokens, start) in enumerate(rows):
        ids[i, :len(tokens)] = torch.tensor(tokens)
        mask[i, :len(tokens)] = 1
        labels[i, start:len(tokens)] = torch.tensor(tokens[start:])
    return ids.to(device), mask.to(device), labels.to(device)


def _order(count: int, epochs: int, seed: int) -> list[int]:
    """The rows in the order training sees them: shuffled anew each epoch, the same on every rank."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    return [int(i) for _ in range(epochs) for i in torch.randperm(count, generator=generator)]


def train(model, rows: list[tuple[list[int], int]], config: dict, pad: int, device) -> tuple[list[dict], float, int]:
    """Train; returns the loss of every step, the seconds it took and the tokens trained on (all ranks)."""
    import torch
    import torch.distributed as dist

    world, rank = ranks.world(), ranks.rank()
    micro, accumulation = int(config["per_device_train_batch_size"]), int(config["gradient_accumulation_steps"])
    if world > 1 and accumulation % world == 0:
        accumulation //= world  # the global batch stays the one asked for
    step_rows = micro * accumulation * world
    epochs = max(1, math.ceil(float(config["num_train_epochs"])))
    order = _order(len(rows), epochs, config["seed"])
    per_epoch = max(1, math.ceil(len(rows) / step_rows))
    total = config["max_steps"]
    total = total if total > 0 else max(1, math.ceil(per_epoch * float(config["num_train_epochs"])))
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=float(config["learning_rate"]), weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total))
    model.train()
    say(f"{world} processes share the model (FSDP2, bf16), global batch {step_rows} "
        f"({micro} per process x {accumulation} accumulated x {world}), {total} steps")
    losses, tokens, started = [], 0, time.time()
    for step in range(total):
        chosen = [rows[order[(step * step_rows + i) % len(order)]] for i in range(step_rows)]
        mine = chosen[rank::world]
        counted = torch.tensor([float(sum(len(ids) - start for ids, start in chosen))], device=device)
        summed = torch.zeros(1, device=device)
        for at in range(0, len(mine), micro):
            ids, mask, labels = _batch(mine[at:at + micro], pad, device)
            logits = model(input_ids=ids, attention_mask=mask).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                                     labels[:, 1:].reshape(-1), ignore_index=-100, reduction="sum")
            (loss / counted * world).backward()
            summed += loss.detach()
            tokens += int(mask.sum())
        torch.nn.utils.clip_grad_norm_(trained, 1.0)
        optimizer.step()
        schedule.step()
        optimizer.zero_grad(set_to_none=True)
        if world > 1:
            dist.all_reduce(summed)
        value = float(summed.item() / counted.item())
        losses.append({"step": step + 1, "loss": value, "epoch": round((step + 1) / per_epoch, 4)})
        say(f"step {step + 1}/{total} loss {value:.4f}")
    seconds = round(time.time() - started, 2)
    if world > 1:
        total_tokens = torch.tensor([tokens], device=device)
        dist.all_reduce(total_tokens)
        tokens = int(total_tokens.item())
    return losses, seconds, tokens
