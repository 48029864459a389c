"""A tiny randomly initialised causal LM with a tokenizer trained on the dataset, built locally.

It lets the whole pipeline train a real LoRA adapter on any machine with no download and no GPU.
The tokenizer is byte-level BPE, so any text encodes. A build is deterministic for a given dataset
and spec, so it is cached by content (the sampled records + the spec), once per machine: every
project and every date with the same data reuses it, and a cache hit imports no torch.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from tasks.context import RunContext
from tasks.core.paths import TRAINER_PACKAGE

CACHE_ENV = "FULLCYCLE_TINY_CACHE"
BUILD_VERSION = 3  # part of the cache key: bump when the build itself changes
SPEC = {"architecture": "qwen3_moe", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 512, "max_position_embeddings": 4096,
        "initializer_range": 0.02}
# The built-in base model's own: embeddings large enough that a LoRA moves the logits within a few steps
# of training (at 0.02 the best reachable held-out loss is barely below the base's), and twice SPEC's
# width, so the demo's answers tell its three kinds of notes apart (at 32 every answer began as the
# planner's). The family tests keep SPEC's: llama.cpp and peft agree token for token on it.
BASE_MODEL = {"initializer_range": 0.2, "hidden_size": 64, "intermediate_size": 128}
FILES = ("config.json", "model.safetensors")  # what a complete build has (besides the tokenizer)

log = logging.getLogger("fullcycle")
TOKENIZER_SAMPLE = 20_000  # records: plenty for a 512-token vocabulary, and fast on a 1 GB dataset


def cache_root() -> Path:
    """$FULLCYCLE_TINY_CACHE, else the user's cache folder: shared by every project on the machine."""
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "fullcycle" / "tiny-models"


def _records(dataset: Path) -> Iterator[bytes]:
    with dataset.open("rb") as fh:
        for number, line in enumerate(fh):
            if number >= TOKENIZER_SAMPLE:
                return
            yield line


def _texts(dataset: Path) -> Iterator[str]:
    for line in _records(dataset):
        row = orjson.loads(line)
        yield "\n".join(row[k] for k in ("instruction", "input", "output") if row.get(k))


def cache_key(dataset: Path, spec: dict) -> str:
    """Everything the build reads: the version of the build, the spec, the family's own tiny values
    and the sampled records."""
    from tasks.model import families

    shape = families.family(spec["architecture"]).tiny
    digest = hashlib.sha256(orjson.dumps({"v": BUILD_VERSION, "spec": spec, "family": shape},
                                         option=orjson.OPT_SORT_KEYS))
    for line in _records(dataset):
        digest.update(line)
    return digest.hexdigest()[:32]


def _complete(folder: Path) -> bool:
    return all((folder / name).is_file() for name in FILES)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Two processes asking for the same model: one builds, the other waits and reuses it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _replace(src: Path, out: Path) -> None:
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.copytree(src, partial)
    if out.exists():
        shutil.rmtree(out)
    partial.rename(out)


def build(dataset: Path, out: Path, spec: dict | None = None) -> Path:
    """The tiny model for `dataset` in `out` (replaced atomically), from the cache when it has it."""
    spec = {**SPEC, **(spec or {})}
    cached = cache_root() / cache_key(dataset, spec)
    with _locked(cached.with_suffix(".lock")):
        if not _complete(cached):
            _build(dataset, cached, spec)
    _replace(cached, out)
    return out


def _build(dataset: Path, out: Path, spec: dict) -> None:
    """Write a tiny model of `spec["architecture"]` and its tokenizer to `out` (atomically), with the
    very code the pod's preflight builds its tiny model with (remote/trainer/tiny.py)."""
    from tasks.model import families

    shape = families.tiny_shape(spec, tie=spec.get("tie_word_embeddings", True))
    pod_builder().build(_texts(dataset), shape, out, spec["vocab_size"])


def pod_builder() -> Any:
    """remote/trainer/tiny.py, loaded by path: the pod's builder is the one source of the tiny model."""
    import importlib.util
    import sys

    name = "fullcycle_pod_tiny"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, TRAINER_PACKAGE / "tiny.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules[name] = module
    return sys.modules[name]


def tiny_files(ctx: RunContext) -> list[str]:
    """What a complete build holds, for doit (the upload's file_dep); none when the base is not tiny."""
    d = ctx.paths.tiny_model_dir
    return [str(d / name) for name in FILES] if ctx.settings.training.is_tiny else []


def build_tiny_model(ctx: RunContext) -> None:
    """The build_tiny_model stage: the tiny base model of the cleaned dataset, from the cache when it has it."""
    if not ctx.settings.training.is_tiny:
        return
    build(ctx.paths.clean_data_file, ctx.paths.tiny_model_dir,
          BASE_MODEL)
    log.info("Tiny base model built in %s", ctx.paths.tiny_model_dir)
