"""The on-pod measurement: the held-out loss per completion token of the base model, the previous
promoted adapter and today's, and their greedy answers to a few prompts, in this process on the
loaded model (tasks/post/verdict.py judges it at home).

A measurement that fails is recorded as failed, never as "skipped": nothing unmeasured is promoted.
"""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trainer.config import say
from trainer.data import FALLBACK_PROMPT, prompt_completion, render


def compute_device(model):
    """Where the logits are computed: the output layer's device. Not the first parameter's: Unsloth
    may offload untied input embeddings to host RAM when GPU memory is short, and inputs placed
    there would meet logits on the GPU."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    weight = getattr(head, "weight", None)
    return weight.device if weight is not None else model.device


def completion_loss(model, tokenizer, rows: list[dict], max_len: int) -> tuple[float | None, int]:
    """Mean loss per completion token (the prompt masked, as in training), and how many tokens."""
    import torch

    device = compute_device(model)
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            prompt = tokenizer(row["prompt"], add_special_tokens=False)["input_ids"]
            ids = (prompt + tokenizer(row["completion"], add_special_tokens=False)["input_ids"])[:max_len]
            if len(ids) <= len(prompt):
                continue
            x = torch.tensor([ids], device=device)
            logits = model(input_ids=x).logits[0, :-1].float()
            targets = x[0, 1:].to(logits.device)  # wherever the model put its logits, the targets follow
            losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none")
            total += losses[len(prompt) - 1:].sum().item()
            count += len(ids) - len(prompt)
    return (round(total / count, 6) if count else None), count


_UNREADABLE: dict[int, list[int]] = {}


def unreadable_tokens(tokenizer) -> list[int]:
    """Tokens that are a control character on their own (a byte-level vocabulary has one per byte):
    an answer never needs them, and a half-trained model otherwise prints them. Newlines stay (an
    answer may have lines). Worked out once per tokenizer."""
    import unicodedata

    key = id(tokenizer)
    if key not in _UNREADABLE:
        texts = tokenizer.batch_decode([[i] for i in range(len(tokenizer))])
        _UNREADABLE[key] = [i for i, text in enumerate(texts) if text and any(
            unicodedata.category(c) == "Cc" and c != "\n" for c in text)]
    return _UNREADABLE[key]


def readable(text: str) -> str:
    """The answer as a person reads it: decoded whole; a character cut short at the token limit, or
    bytes that make no character, dropped rather than shown as U+FFFD; no control character."""
    import unicodedata

    kept = "".join(c for c in text if c != "\ufffd" and (c == "\n" or unicodedata.category(c) != "Cc"))
    return " ".join(kept.split(" ")).strip()


def answer(model, tokenizer, prompt: str, max_new: int) -> str:
    """The greedy answer, decoded as one sequence (a byte-level token alone can be half a character)."""
    import torch

    text = render(tokenizer, prompt) if tokenizer.chat_template else FALLBACK_PROMPT.format(
        instruction=prompt, input_block="")
    ids = tokenizer(text, return_tensors="pt", add_special_tokens=False).to(compute_device(model))
    banned = unreadable_tokens(tokenizer)
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=max_new, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                             suppress_tokens=banned or None)
    return readable(tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True))


def _held_out(path: Path, tokenizer) -> list[dict]:
    convert = prompt_completion(tokenizer)
    with open(path, "rb") as fh:
        return [convert(json.loads(line)) for line in fh if line.strip()]


@contextmanager
def peft_adapter(model, folder: Path) -> Iterator[None]:
    """The previous adapter made active beside today's (peft's own adapters), today's after."""
    model.load_adapter(str(folder), adapter_name="previous")
    model.set_adapter("previous")
    try:
        yield
    finally:
        model.set_adapter("default")
        model.delete_adapter("previous")


def _losses_and_answers(model, tokenizer, config: dict, input_dir: Path, unsloth: bool, switch=peft_adapter) -> dict:
    spec = config["eval"]
    if unsloth:
        from unsloth import FastLanguageModel

        FastLanguageModel.for_inference(model)
    model.eval()
    rows = _held_out(input_dir / spec["heldout"], tokenizer)
    max_len, max_new = int(config["max_seq_length"]), int(spec.get("max_new_tokens") or 48)
    found = {"heldout_samples": len(rows), "previous_date": spec.get("previous_date"),
             "started_from": spec.get("previous_date") if config["start_from"] else "base"}
    found["adapter_loss"], found["heldout_tokens"] = completion_loss(model, tokenizer, rows, max_len)
    prompts = spec.get("prompts") or []
    today = [answer(model, tokenizer, p, max_new) for p in prompts]
    with model.disable_adapter():
        found["base_loss"] = completion_loss(model, tokenizer, rows, max_len)[0]
        base = [answer(model, tokenizer, p, max_new) for p in prompts]
    previous = [None] * len(prompts)
    found["previous_loss"] = None
    if spec.get("previous_adapter"):
        with switch(model, input_dir / spec["previous_adapter"]):
            found["previous_loss"] = completion_loss(model, tokenizer, rows, max_len)[0]
            previous = [answer(model, tokenizer, p, max_new) for p in prompts]
    found["answers"] = [{"prompt": p, "base": b, "previous": v, "today": t}
                        for p, b, v, t in zip(prompts, base, previous, today)]
    if found["adapter_loss"] is None or found["base_loss"] is None:
        raise ValueError(f"no held-out token was measured ({len(rows)} samples, all cut to their prompt?)")
    return found


def measure(model, tokenizer, config: dict, input_dir: Path, unsloth: bool, strict: bool = False,
            switch=peft_adapter) -> dict:
    """Held-out loss of the base model, the previous promoted adapter and today's, and their greedy
    answers to a few prompts: in this process, on the loaded model, after the adapter is saved.

    With no held-out set the result says it was skipped and why. A failure is recorded as
    {"failed": ...} (the adapter is saved already; the verdict never promotes it), or raised when
    `strict` (the preflight, where a failure must stop the run before anything is downloaded). `switch`
    makes the previous adapter the active one for its measurement (peft's adapters, or the sharded
    trainer's weights handed out anew)."""
    spec = config["eval"]
    if not spec.get("heldout"):
        return {"skipped": "no held-out set (see the dataset report: [eval] min_samples)"}
    started = time.time()
    try:
        found = _losses_and_answers(model, tokenizer, config, input_dir, unsloth, switch)
    except Exception as exc:
        if strict:
            raise
        traceback.print_exc()
        say(f"WARNING: the evaluation failed: {type(exc).__name__}: {exc} (the adapter is saved; it is not promoted)")
        return {"failed": f"{type(exc).__name__}: {exc}", "seconds": round(time.time() - started, 2)}
    found["seconds"] = round(time.time() - started, 2)
    say(f"held-out loss: base {found['base_loss']}, previous {found['previous_loss']}, today {found['adapter_loss']} "
        f"({found['heldout_samples']} samples, {found['heldout_tokens']} tokens, {found['seconds']}s)")
    return found
