"""The trainer's inputs (config.json, the dataset) checked before anything heavy loads, its console
voice, and the exit codes the orchestrator reads.

Exit codes (train.exit on the pod, train.json here):
  0  trained: the adapter, metrics.json and eval.json are in the output folder
  1  training failed (an exception during training; the traceback is in the log)
  2  bad input: the dataset, config.json or a setting that names something the model lacks
  3  the base model could not be loaded (a wrong id, a missing file, a download that failed)
  4  the GPU stack cannot run here (torch cannot use the GPU; Unsloth does not import on a GPU pod)
  5  the preflight failed (remote/trainer/preflight.py), before the base model was loaded
  6  the base model's download failed, stalled or was stopped (remote/trainer/download.py)
Each failure the trainer knows carries its code as `exit_code`.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from trainer import ranks, schema

TRAINED, FAILED, BAD_INPUT, NO_MODEL, NO_GPU_STACK = 0, 1, 2, 3, 4


class InputError(Exception):
    """The dataset, config.json or a setting is wrong: exit 2, with what to change."""

    exit_code = BAD_INPUT


def main(run: Callable[[argparse.Namespace], int], description: str, argv: list[str] | None = None) -> int:
    """A trainer's command line and its exit code: a failure it knows exits with its own code in one
    line (unless it has been said already: `said`), anything else with 1 and its traceback."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--data", type=Path, default=Path("/workspace/input/unsloth_dataset.jsonl"))
    parser.add_argument("--config", type=Path, default=Path("/workspace/input/config.json"))
    parser.add_argument("--output", type=Path, default=Path("/output/adapter"))
    args = parser.parse_args(argv)
    try:
        return ranks.record_exit(run(args))
    except Exception as exc:
        code = getattr(exc, "exit_code", None)
        if code is None:
            traceback.print_exc()
        if not getattr(exc, "said", False):
            error(str(exc) if code is not None else f"training failed: {type(exc).__name__}: {exc}")
        return ranks.record_exit(FAILED if code is None else code)


def say(message: str) -> None:
    """One voice: under torchrun only rank 0 speaks (the log is followed as one training)."""
    if ranks.is_main():
        print(f"[train] {message}", flush=True)


def error(message: str) -> None:
    """The one line the orchestrator quotes in the summary's error (`[train] ERROR: ...`); any rank
    may fail, and says which it is."""
    who = f"rank {ranks.rank()} of {ranks.world()}: " if ranks.world() > 1 else ""
    print(f"[train] ERROR: {who}{message}", file=sys.stderr, flush=True)


def load_config(path: Path) -> dict:
    """config.json as its type reads it (trainer/schema.py): every field there, defaults filled."""
    try:
        config = schema.read(path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"config {path}: {exc}") from None
    if config["hf_endpoint"]:  # the hub (or mirror) the orchestrator asked: downloads come from there too
        os.environ.setdefault("HF_ENDPOINT", str(config["hf_endpoint"]))
    return config


def check_rows(path: Path) -> int:
    """Stream the dataset once to validate it; nothing is kept (a dataset can be many GB)."""
    count = 0
    try:
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise InputError(f"dataset {path}:{number}: invalid JSON ({exc})") from None
                if not isinstance(row, dict) or not row.get("instruction") or not row.get("output"):
                    raise InputError(f"dataset {path}:{number}: needs instruction and output")
                count += 1
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"dataset {path}: {exc}") from None
    if not count:
        raise InputError(f"dataset {path} is empty")
    return count


def quiet() -> None:
    """Keep the followed log readable: no progress bars, no deprecation chatter from the stack."""
    import warnings

    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*pin_memory.*")


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for name in ("torch", "transformers", "peft", "trl", "datasets", "unsloth"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found
