"""A tiny randomly initialised causal LM with a tokenizer trained on the dataset, built locally.

It lets the whole pipeline train a real LoRA adapter on any machine with no download and no GPU.
The architecture is qwen2 (a family the GGUF conversion supports); the tokenizer is byte-level BPE,
so any text encodes. Built once and cached; deterministic for a given dataset.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import orjson

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
SPEC = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 4096}


TOKENIZER_SAMPLE = 20_000  # records: plenty for a 512-token vocabulary, and fast on a 1 GB dataset


def _texts(dataset: Path) -> Iterator[str]:
    with dataset.open("rb") as fh:
        for number, line in enumerate(fh):
            if number >= TOKENIZER_SAMPLE:
                return
            row = orjson.loads(line)
            yield "\n".join(row[k] for k in ("instruction", "input", "output") if row.get(k))


def build(dataset: Path, out: Path, spec: dict | None = None) -> Path:
    """Write a tiny qwen2 model and tokenizer to `out` (replaced atomically)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    spec = {**SPEC, **(spec or {})}
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=spec["vocab_size"], special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(_texts(dataset), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                        bos_token=None, unk_token=None)
    tokenizer.chat_template = CHATML

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=spec["hidden_size"], intermediate_size=spec["intermediate_size"],
        num_hidden_layers=spec["num_hidden_layers"], num_attention_heads=spec["num_attention_heads"],
        num_key_value_heads=spec["num_key_value_heads"], max_position_embeddings=spec["max_position_embeddings"],
        tie_word_embeddings=True, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
    )
    model = Qwen2ForCausalLM(config)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return out
