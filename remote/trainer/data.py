"""The training rows: each sample in the chat format the model will be served with, its loss on the
answer only, and the exact fit to max_seq_length (dropped or cut, never silently truncated).

The dataset is read by our own line reader into memory-mapped Arrow, never a list in RAM.
"""

from __future__ import annotations

import json
from pathlib import Path

from trainer.config import InputError, say

# Used when the tokenizer has no chat template (documented in the README): Alpaca-style sections.
FALLBACK_PROMPT = "### Instruction:\n{instruction}\n\n{input_block}### Response:\n"


def render(tokenizer, user: str) -> str:
    """The user turn as the model will see it when served, answer prompt included. Thinking off: a
    hybrid-reasoning template (Qwen3) then opens the answer with an empty think block, and the
    Modelfile serves the very same prefix (prompt_format)."""
    return tokenizer.apply_chat_template([{"role": "user", "content": user}], tokenize=False,
                                         add_generation_prompt=True, enable_thinking=False)


def prompt_format(tokenizer) -> dict | None:
    """What surrounds the user's text and opens the answer in training, for serving it the same way."""
    if not tokenizer.chat_template:
        return None
    marker = "\x00USER\x00"
    before, _, after = render(tokenizer, marker).partition(marker)
    return {"user_prefix": before, "assistant_prefix": after, "eos": tokenizer.eos_token or ""}


def prompt_completion(tokenizer):
    """Chat-template the user turn; the completion is the answer plus EOS, so loss covers only it."""
    eos = tokenizer.eos_token or ""

    def convert(row: dict) -> dict:
        user = row["instruction"] + (f"\n\n{row['input']}" if row.get("input") else "")
        if tokenizer.chat_template:
            prompt = render(tokenizer, user)
        else:
            block = f"### Input:\n{row['input']}\n\n" if row.get("input") else ""
            prompt = FALLBACK_PROMPT.format(instruction=row["instruction"], input_block=block)
        return {"prompt": prompt, "completion": row["output"] + eos}

    return convert


MAX_BYTES_PER_TOKEN = 32  # the orchestrator's cheap bound (tasks/data/cleaning.py); checked again here
PROGRESS_EVERY = 5000


def _rows(path: str, limit: int, stamp: str, max_bytes: int):
    """The dataset's rows as datasets wants them; `stamp` only keys its cache to this file's version.
    A line over `max_bytes` cannot fit max_seq_length: it is skipped before anything tokenizes it."""
    with open(path, "rb") as fh:
        count = 0
        for line in fh:
            if not line.strip():
                continue
            if 0 <= limit <= count:
                return
            if len(line) > max_bytes:
                continue
            row = json.loads(line)
            yield {"instruction": row["instruction"], "input": row.get("input") or "", "output": row["output"]}
            count += 1
            if count % PROGRESS_EVERY == 0:
                say(f"read {count} samples")


def load_training_set(path: Path, tokenizer, config: dict):
    """Memory-mapped Arrow built from our own line reader, not a list in RAM. (datasets' JSON loader
    takes data_files as a pattern and expands `$VARS` and globs in it: a path with `$` broke it.)
    When max_steps bounds the run, only the rows those steps can see are read and tokenized."""
    from datasets import Dataset

    max_steps = config["max_steps"]
    limit = -1
    if max_steps > 0:
        limit = max_steps * int(config["per_device_train_batch_size"]) * int(config["gradient_accumulation_steps"])
    st = path.stat()
    max_len = int(config["max_seq_length"])
    dataset = Dataset.from_generator(_rows, gen_kwargs={"path": str(path), "limit": limit,
                                                        "stamp": f"{st.st_size}-{st.st_mtime_ns}",
                                                        "max_bytes": max_len * MAX_BYTES_PER_TOKEN})
    say(f"formatting {len(dataset)} samples with the chat template")
    dataset = dataset.map(prompt_completion(tokenizer), remove_columns=dataset.column_names)
    return fit_to_length(dataset, tokenizer, max_len, config["too_long"])


def fit_to_length(dataset, tokenizer, max_len: int, policy: str):
    """The exact check: samples whose tokens exceed max_seq_length are dropped, or their completion
    cut (policy "cut"), never silently truncated by the trainer. Tokenized in batches, with progress."""
    state = {"done": 0}

    def measure(batch: dict) -> dict:
        prompts = tokenizer(batch["prompt"], add_special_tokens=False)["input_ids"]
        completions = tokenizer(batch["completion"], add_special_tokens=False)["input_ids"]
        keep, out_completion = [], []
        for prompt, completion, text in zip(prompts, completions, batch["completion"]):
            fits = len(prompt) + len(completion) <= max_len
            if not fits and policy == "cut" and len(prompt) < max_len - 1:
                # the EOS stays at the end: a sample cut short must still learn to stop
                eos = tokenizer.eos_token or ""
                room = max_len - len(prompt) - (1 if eos else 0)
                text = tokenizer.decode(completion[:room]) + eos
                fits = True
            keep.append(fits)
            out_completion.append(text)
        state["done"] += len(keep)
        if state["done"] % PROGRESS_EVERY < len(keep):
            say(f"tokenized {state['done']} samples")
        return {"completion": out_completion, "fits": keep}

    dataset = dataset.map(measure, batched=True, batch_size=256)
    too_long = len(dataset) - sum(dataset["fits"])
    if too_long:
        say(f"{too_long} sample(s) longer than max_seq_length {max_len} tokens were dropped")
    dataset = dataset.filter(lambda row: row["fits"]).remove_columns(["fits"])
    if len(dataset) == 0:
        raise InputError(f"every sample is longer than max_seq_length {max_len} tokens")
    return dataset
