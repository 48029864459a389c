"""The preflight: the real run's code path on a tiny random model of the base model's family, on the
pod's real stack, before the base model downloads. A stack that cannot do what the run will ask of it
fails here in the first minute, with the library's own words and the step it failed in, instead of
after the download.

It drives the same steps the trainer does: build, load (Unsloth, 4-bit when the run is 4-bit), LoRA
on the same targets, start_from, data, a few steps of training, the held-out loss with the adapter
disabled and a second adapter loaded, set and deleted, greedy answers, save.

    python -m trainer.preflight --data D --config C --output DIR --report preflight.json

Exit 0 (passed, or skipped with the reason in the report), 4 (the GPU stack cannot run), 5 (failed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("PYTORCH_ALLOC_CONF", "expandable_segments:True")  # before anything imports torch

from trainer import config, data, fit, load, lora, measure, save, tiny  # noqa: E402

PREFLIGHT_FAILED = 5
ROWS = 64  # samples the tiny model trains and is measured on
STEPS = 2


class StepFailed(Exception):
    def __init__(self, step: str, error: BaseException) -> None:
        super().__init__(f"{step}: {type(error).__name__}: {error}")
        self.step, self.error = step, error


class Steps:
    """Each named step timed; the first that raises is the one the report names."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        started = time.time()
        try:
            yield
        except (StepFailed, load.NoGpuStack):
            raise
        except Exception as exc:
            raise StepFailed(name, exc) from exc
        finally:
            self.seconds[name] = round(time.time() - started, 2)
        config.say(f"preflight: {name} ok ({self.seconds[name]}s)")


def _rows(path: Path, limit: int) -> list[dict]:
    found = []
    with path.open("rb") as fh:
        for line in fh:
            if line.strip():
                found.append(json.loads(line))
            if len(found) >= limit:
                break
    return found


def _tiny_settings(settings: dict) -> dict:
    """The real run's settings, made tiny: its targets, rank, 4-bit and start_from path are kept."""
    return {**settings, "max_steps": STEPS, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 1,
            "max_seq_length": min(int(settings["max_seq_length"]), 256), "start_from": "start",
            "eval": {"heldout": "heldout.jsonl", "previous_adapter": "start", "previous_date": "preflight",
                     "prompts": ["Say hello."], "max_new_tokens": 4}}


def _prequantized(model, tokenizer, settings: dict, work: Path, unsloth: bool) -> str:
    """Whether this stack loads a pre-quantized 4-bit MoE checkpoint by its exact name (unsloth-zoo says
    it does since July 2026; unverified): the tiny model, 4-bit already, saved and loaded back so. A
    failure here is no failed preflight: the download step then fetches the bf16 weights instead."""
    if not unsloth:
        return "not tried: a 4-bit checkpoint needs CUDA, bitsandbytes and Unsloth"
    try:
        model.save_pretrained(work / "prequantized")
        tokenizer.save_pretrained(work / "prequantized")
        load.load_base(str(work / "prequantized"), {**settings, "load_in_4bit": True}, unsloth, exact=True)
    except Exception as exc:  # noqa: BLE001 - whatever the stack says is the answer
        return f"failed: {type(exc).__name__}: {str(exc)[:300]}"
    return "ok"


def run(args: argparse.Namespace) -> dict:
    settings = config.load_config(args.config)
    spec = settings.get("preflight")
    if not spec or not spec.get("shape"):
        return {"ok": None, "skipped": (spec or {}).get("skipped") or "no preflight asked for this run"}
    started, steps = time.time(), Steps()
    report = {"ok": False, "base_model": settings["base_model"], "load_in_4bit": bool(settings.get("load_in_4bit")),
              "family": spec["shape"]["model_class"]}
    with steps.step("stack"):
        gpu = load.nvidia_smi()
        report["gpu"] = gpu
        load.check_cuda(gpu)
        unsloth = load.use_unsloth()
        report["backend"] = "unsloth" if unsloth else "transformers+peft+trl"
    work = args.output
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows = _rows(args.data, ROWS)
    tiny_settings = _tiny_settings(settings)
    with steps.step("build"):
        texts = ["\n".join(r.get(k) or "" for k in ("instruction", "input", "output")) for r in rows]
        tiny.build(texts, spec["shape"], work / "model")
        (work / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[: max(2, len(rows) // 8)]))
        (work / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with steps.step("load"):
        model, tokenizer = load.load_base(str(work / "model"), tiny_settings, unsloth)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    if settings.get("moe_build") == "prequantized":  # which build the download step fetches
        report["prequantized"] = _prequantized(model, tokenizer, tiny_settings, work, unsloth)
    with steps.step("lora"):
        lora.quiet_router(model)
        model = lora.attach(model, tiny_settings, unsloth)
    with steps.step("start_from"):
        model.save_pretrained(work / "start")  # the freshly initialised LoRA: what today starts from
        lora.start_from(model, tiny_settings, work)
    with steps.step("data"):
        dataset = data.load_training_set(work / "train.jsonl", tokenizer, tiny_settings)
    with steps.step("fit"):
        fit.train(model, tokenizer, dataset, tiny_settings, work / "adapter")  # (losses, seconds, tokens)
    with steps.step("measure"):
        measured = measure.measure(model, tokenizer, tiny_settings, work, unsloth, strict=True)
    with steps.step("save"):
        save.adapter(model, tokenizer, str(work / "model"), work / "adapter")
    report.update(ok=True, seconds=round(time.time() - started, 2), steps=steps.seconds,
                  measured={k: measured.get(k) for k in ("base_loss", "adapter_loss", "previous_loss")},
                  versions=config.versions())
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--report", type=Path, required=True)
    args = parser.parse_args(argv)
    config.quiet()
    started = time.time()
    try:
        report, code = run(args), config.TRAINED
        if report.get("skipped"):
            config.say(f"preflight skipped: {report['skipped']}")
        else:
            config.say(f"preflight passed in {report['seconds']}s ({report['backend']}, {report['family']})")
    except load.NoGpuStack as exc:
        report, code = {"ok": False, "step": "stack", "error": str(exc)}, config.NO_GPU_STACK
    except (StepFailed, config.InputError, Exception) as exc:  # noqa: BLE001 - the report says what failed, exactly
        traceback.print_exc()
        step = exc.step if isinstance(exc, StepFailed) else "inputs"
        error = exc.error if isinstance(exc, StepFailed) else exc
        report, code = {"ok": False, "step": step, "error": f"{type(error).__name__}: {error}"}, PREFLIGHT_FAILED
    if report.get("ok") is False:
        report["seconds"] = round(time.time() - started, 2)
        config.error(f"preflight failed at {report['step']}: {report['error']}")
    args.report.write_text(json.dumps(report, indent=2))
    shutil.rmtree(args.output, ignore_errors=True)
    if code == config.TRAINED and _only(args.config):  # `doit gpu_check`: nothing is trained after it
        (args.report.parent / "preflight.only").touch()
    return code


def _only(path: Path) -> bool:
    try:
        return bool(json.loads(path.read_text()).get("preflight_only"))
    except (OSError, ValueError, AttributeError):
        return False


if __name__ == "__main__":
    sys.exit(main())
