"""The stand-in trainer: most pipeline tests check the graph, the record, the pod's life and the
transfers, not training. They run `[remote] trainer` = a script that honours train_unsloth.py's
contract (--data --config --output, `[train] step i/N loss x` lines, exit codes) and delivers a
copy of one adapter trained for real once per test session. A pipeline run then costs a second or
two instead of ten; the tests that check training itself pass `real_training=True`.

The script lives in a folder shared by every pytest worker ($FULLCYCLE_TEST_SHARED, set by
conftest.py). The adapter it delivers is kept between sessions in the tests' cache
($FULLCYCLE_TEST_CACHE, default ~/.cache/fullcycle-tests), under a key of everything that trains it
(the trainer, the tiny model's builder, the tests' notes, the training stack's versions): it is trained
the first time a stand-in runs (under a lock) and again only when one of those changes, so a test that
never trains never pays, and a second session pays nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "tests" / "data" / "notes"  # the tests' own notes (the shipped examples are the demo's)
SHARED_ENV = "FULLCYCLE_TEST_SHARED"
CACHE_ENV = "FULLCYCLE_TEST_CACHE"
# Everything that decides the adapter the stand-in delivers (see adapter_key).
TRAINS_IT = ("remote", "tests/data/notes", "tasks/model", "tasks/data/cleaning.py", "tasks/data/shapes.py",
             "tests/doubles/standin.py")
STEP_SECONDS = 0.005  # a stand-in step: 400 steps take 2 s, enough to interrupt a run mid-training

SCRIPT = '''#!/usr/bin/env python3
"""Test stand-in for remote/train_unsloth.py: delivers a copy of {adapter}."""
import argparse, fcntl, json, math, os, shutil, subprocess, sys, time
from pathlib import Path

ADAPTER = Path({adapter!r})
STEP_SECONDS = {step_seconds!r}
BUILD = {build!r}  # trains ADAPTER for real, once: python tests/doubles/standin.py FOLDER
ENV = {env!r}


def ensure_adapter():
    with open(ADAPTER.parent / "adapter.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (ADAPTER / "metrics.json").is_file():
            subprocess.run(BUILD, check=True, env={{**os.environ, **ENV}}, stdout=sys.stderr)


def measured(config, input_dir, first, last):
    """eval.json as the contract has it: with a held-out set, losses that say it learnt (the base's a
    nat above the curve, today's its lowest point); a planted failure when STANDIN_EVAL says so."""
    spec = config.get("eval") or {{}}
    if not spec.get("heldout"):
        return {{"skipped": "no held-out set (see the dataset report: [eval] min_samples)"}}
    if os.environ.get("STANDIN_EVAL") == "fail":
        return {{"failed": "RuntimeError: planted in the evaluation", "seconds": 0.01}}
    with open(input_dir / spec["heldout"], "rb") as fh:
        rows = sum(1 for line in fh if line.strip())
    base, today = max(first, last) + 1.0, min(first, last)
    previous = today + 0.01 if spec.get("previous_adapter") else None
    prompts = spec.get("prompts") or []
    return {{"heldout_samples": rows, "heldout_tokens": rows * 8, "base_loss": base, "adapter_loss": today,
            "previous_loss": previous, "previous_date": spec.get("previous_date"), "seconds": 0.01,
            "started_from": spec.get("previous_date") if config.get("start_from") else "base",
            "answers": [{{"prompt": p, "base": "", "previous": "" if previous else None, "today": "stand-in"}}
                        for p in prompts]}}


def main():
    parser = argparse.ArgumentParser()
    for name in ("--data", "--config", "--output"):
        parser.add_argument(name, type=Path, required=True)
    args = parser.parse_args()
    started = time.time()
    try:
        config = json.loads(args.config.read_text())
        with args.data.open("rb") as fh:
            samples = sum(1 for line in fh if line.strip())
    except (OSError, ValueError) as exc:
        print(f"[train] ERROR: {{exc}}", file=sys.stderr, flush=True)
        return 2
    if not samples:
        print(f"[train] ERROR: dataset {{args.data}} is empty", file=sys.stderr, flush=True)
        return 2
    batch = int(config["per_device_train_batch_size"]) * int(config["gradient_accumulation_steps"])
    steps = int(config.get("max_steps", -1))
    if steps <= 0:
        steps = max(1, math.ceil(samples * float(config["num_train_epochs"]) / batch))
    print(f"[train] {{samples}} samples, base model {{config['base_model']}}, backend stand-in", flush=True)
    ensure_adapter()  # the test session's own machinery: not a phase of the stand-in's run
    started = time.time()
    real = json.loads((ADAPTER / "metrics.json").read_text())
    first, last = real["steps"][0]["loss"], real["final_loss"]
    losses, training = [], time.time()
    for step in range(1, steps + 1):
        loss = last + (first - last) * math.exp(-3 * step / steps)
        losses.append({{"step": step, "loss": loss, "epoch": step / steps}})
        print(f"[train] step {{step}}/{{steps}} loss {{loss:.4f}}", flush=True)
        time.sleep(STEP_SECONDS)
    saving = time.time()
    shutil.copytree(ADAPTER, args.output, dirs_exist_ok=True)
    phases = {{"trainer_start": round(training - started, 2), "model_load": 0.0, "data_prep": 0.0,
              "training": round(saving - training, 2), "save": round(time.time() - saving, 2), "evaluation": 0.01}}
    metrics = {{**real, "base_model": config["base_model"], "samples": samples, "steps": losses,
               "final_loss": losses[-1]["loss"], "seconds": round(time.time() - started, 2),
               "backend": "stand-in", "phases": phases}}
    (args.output / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (args.output / "eval.json").write_text(json.dumps(measured(config, args.config.parent, first, last)))
    print(f"[train] adapter saved to {{args.output}}, final loss {{metrics['final_loss']}}", flush=True)
    return 0


sys.exit(main())
'''


def shared_dir() -> Path:
    folder = Path(os.environ[SHARED_ENV])
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def cache_dir() -> Path:
    """Kept between test sessions (content-keyed, like the tiny models): ~/.cache/fullcycle-tests."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    folder = Path(os.environ.get(CACHE_ENV) or base / "fullcycle-tests")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@cache
def adapter_key() -> str:
    """A hash of the files that train the stand-in's adapter and the stack's versions."""
    from importlib.metadata import PackageNotFoundError, version

    digest = hashlib.sha256()
    for top in TRAINS_IT:
        path = REPO / top
        for file in sorted(path.rglob("*") if path.is_dir() else [path]):
            if file.is_file() and "__pycache__" not in file.parts:
                digest.update(str(file.relative_to(REPO)).encode() + b"\0" + file.read_bytes())
    for name in ("torch", "transformers", "peft", "trl", "tokenizers"):
        try:
            digest.update(f"{name}={version(name)}".encode())
        except PackageNotFoundError:
            pass
    return digest.hexdigest()[:16]


def adapter_dir() -> Path:
    """Where the stand-in's adapter is trained and kept: one folder per key."""
    folder = cache_dir() / f"standin-{adapter_key()}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def prebuild() -> subprocess.Popen | None:
    """Start training the session's adapter in the background (a whole-tier run needs it soon):
    the stand-ins that start meanwhile wait on the same lock instead of training it again."""
    folder = adapter_dir()
    if (folder / "adapter" / "metrics.json").is_file():
        return None  # an earlier session trained it
    code = ("import fcntl, sys; from pathlib import Path; from tests.doubles import standin\n"
            f"folder = Path({str(folder)!r})\n"
            "with open(folder / 'adapter.lock', 'w') as lock:\n"
            "    fcntl.flock(lock, fcntl.LOCK_EX)\n"
            "    if not (folder / 'adapter' / 'metrics.json').is_file():\n"
            "        standin.train_once(folder)\n")
    return subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})


def train_once(folder: Path) -> Path:
    """The tiny model of the examples, trained for real for a few steps (remote/train_unsloth.py)."""
    from tasks.data import cleaning as dataset
    from tasks.model import tiny as tinymodel

    folder.mkdir(parents=True, exist_ok=True)
    raw = folder / "raw.jsonl"
    raw.write_bytes(b"".join(p.read_bytes() for p in sorted(EXAMPLES.glob("*.jsonl"))))
    dataset.clean(raw, folder / "clean.jsonl")
    model = tinymodel.build(folder / "clean.jsonl", folder / "model")
    config = {"base_model": "tiny", "base_model_dir": str(model), "lora_rank": 8, "lora_alpha": 16,
              "num_train_epochs": 1, "learning_rate": 0.0002, "per_device_train_batch_size": 1,
              "gradient_accumulation_steps": 4, "max_seq_length": 2048, "max_steps": 3}
    (folder / "config.json").write_text(json.dumps(config))
    adapter = folder / "adapter"
    partial = folder / "adapter.partial"
    shutil.rmtree(partial, ignore_errors=True)  # a session killed mid-training leaves half of one
    subprocess.run([sys.executable, str(REPO / "remote" / "train_unsloth.py"), "--data", str(folder / "clean.jsonl"),
                    "--config", str(folder / "config.json"), "--output", str(partial)], check=True,
                   stdout=sys.stderr, timeout=600, env={**os.environ, "FULLCYCLE_NO_UNSLOTH": "1"})
    partial.rename(adapter)
    return adapter


@cache
def trainer_script() -> str:
    """The stand-in's path (written once, at once; it trains its adapter the first time it runs)."""
    folder = shared_dir() / "standin"
    script = folder / "standin_trainer.py"
    folder.mkdir(parents=True, exist_ok=True)
    if not script.is_file():
        env = {"PYTHONPATH": str(REPO), "FULLCYCLE_TINY_CACHE": os.environ.get("FULLCYCLE_TINY_CACHE", "")}
        trained = adapter_dir()
        text = SCRIPT.format(adapter=str(trained / "adapter"), step_seconds=STEP_SECONDS,
                             build=[sys.executable, str(Path(__file__).resolve()), str(trained)], env=env)
        partial = folder / f".standin_trainer.{os.getpid()}.tmp"
        partial.write_text(text)
        partial.rename(script)
    return str(script)


if __name__ == "__main__":
    train_once(Path(sys.argv[1]))
