"""A tiny random causal LM of a given family with a byte-level BPE tokenizer trained on a few texts,
saved like any model folder: what the preflight drives on the pod (the base model's family, before
anything is downloaded), and what tasks/model/tiny.py builds at home (it loads this very file).

A shape is {"config_class", "model_class", "values"}: transformers class names and the config's
values (tasks/model/families.py makes it). Self-contained: it imports nothing of the trainer.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

CHATML = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def tokenizer(texts: Iterable[str], vocab_size: int):
    """Byte-level BPE (any text encodes) with ChatML specials and template, EOS <|im_end|>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    bpe.train_from_iterator(texts, trainer=trainer)
    made = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>",
                                   bos_token=None, unk_token=None)
    made.chat_template = CHATML
    return made


def model(shape: dict, tok, seed: int = 0):
    """A randomly initialised model of `shape` for `tok` (torch's seed decides its weights)."""
    import torch
    import transformers

    values = {**shape["values"], "vocab_size": len(tok), "eos_token_id": tok.eos_token_id,
              "pad_token_id": tok.pad_token_id, "bos_token_id": None}
    torch.manual_seed(seed)
    config = getattr(transformers, shape["config_class"])(**values)
    return getattr(transformers, shape["model_class"])(config)


def build(texts: Iterable[str], shape: dict, out: Path, vocab_size: int = 512) -> Path:
    """Model and tokenizer saved to `out`, atomically (a half-written folder is never a model)."""
    tok = tokenizer(texts, vocab_size)
    made = model(shape, tok)
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    made.save_pretrained(partial)
    tok.save_pretrained(partial)
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)
    return out
