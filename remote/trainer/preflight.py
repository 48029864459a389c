"""The preflight: the real run's code path on a tiny random model of the base model's family, on the
pod's real stack, beside the base model's download. A stack that cannot do what the run will ask of it
fails here in the first minutes, with the library's own words and the step it failed in, and the
download is stopped instead of finished and paid for.

It drives the same steps the trainer does: build, load (Unsloth, 4-bit when the run is 4-bit), LoRA
on the same targets, start_from, data, a few steps of training, the held-out loss with the adapter
disabled and a second adapter loaded, set and deleted, greedy answers, save.

The built-in trainer runs it inside its own process (`inline`, config.json's preflight.where =
"trainer"), so Python and Unsloth start once a day; otherwise it is a process of its own:

    python -m trainer.preflight --data D --config C --output DIR --report preflight.json
    python -m trainer.preflight --where C      # prints where it runs: trainer, apart or none

Exit 0 (passed, or skipped with the reason in the report), 4 (the GPU stack cannot run), 5 (failed).
The report holds its start and end (epoch seconds): the summary counts only what it was billed beyond
the download it ran beside.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import shutil
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path

os.environ.setdefault("PYTORCH_ALLOC_CONF", "expandable_segments:True")  # before anything imports torch

from trainer import config, data, fit, load, lora, measure, save, schema, tiny  # noqa: E402

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


def steps(settings: dict, data_path: Path, work: Path, unsloth: bool, timed: Steps) -> dict:
    """The run's steps on the tiny model; raises StepFailed naming the first that failed."""
    spec = settings["preflight"]
    report: dict = {}
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rows = _rows(data_path, ROWS)
    tiny_settings = _tiny_settings(settings)
    with timed.step("build"):
        texts = ["\n".join(r.get(k) or "" for k in ("instruction", "input", "output")) for r in rows]
        tiny.build(texts, spec["shape"], work / "model")
        (work / "heldout.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[: max(2, len(rows) // 8)]))
        (work / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with timed.step("load"):
        model, tokenizer = load.load_base(str(work / "model"), tiny_settings, unsloth)
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    if settings["moe_build"] == "prequantized":  # whether the build being downloaded will load
        report["prequantized"] = _prequantized(model, tokenizer, tiny_settings, work, unsloth)
    with timed.step("lora"):
        lora.quiet_router(model)
        model = lora.attach(model, tiny_settings, unsloth)
    with timed.step("start_from"):
        model.save_pretrained(work / "start")  # the freshly initialised LoRA: what today starts from
        lora.start_from(model, tiny_settings, work)
    with timed.step("data"):
        dataset = data.load_training_set(work / "train.jsonl", tokenizer, tiny_settings)
    with timed.step("fit"):
        fit.train(model, tokenizer, dataset, tiny_settings, work / "adapter")  # (losses, seconds, tokens)
    with timed.step("measure"):
        measured = measure.measure(model, tokenizer, tiny_settings, work, unsloth, strict=True)
    with timed.step("save"):
        save.adapter(model, tokenizer, str(work / "model"), work / "adapter")
    report["measured"] = {k: measured.get(k) for k in ("base_loss", "adapter_loss", "previous_loss")}
    return report


def run(args: argparse.Namespace) -> dict:
    """The preflight as a process of its own (a trainer of one's own, torchrun, `doit gpu_check`)."""
    settings = config.load_config(args.config)
    spec = settings["preflight"]
    if not spec or not spec.get("shape"):
        return {"ok": None, "skipped": (spec or {}).get("skipped") or "no preflight asked for this run"}
    started, timed = time.time(), Steps()
    report = {"ok": False, "where": "apart", "base_model": settings["base_model"],
              "load_in_4bit": settings["load_in_4bit"], "family": spec["shape"]["model_class"]}
    with timed.step("stack"):
        report["gpu"], unsloth = load.stack()
        report["backend"] = "unsloth" if unsloth else "transformers+peft+trl"
    report.update(steps(settings, args.data, args.output, unsloth, timed))
    return _passed(report, started, timed)


def _passed(report: dict, started: float, timed: Steps) -> dict:
    report.update(ok=True, seconds=round(time.time() - started, 2), steps=timed.seconds, versions=config.versions(),
                  started_at=round(started, 3), ended_at=round(time.time(), 3))
    return report


class Failed(Exception):
    """The preflight inside the trainer failed: exit 5 (4 for the stack), its report written."""

    said = True  # the preflight has said what failed already

    def __init__(self, report: dict, code: int) -> None:
        super().__init__(report.get("error"))
        self.report, self.exit_code = report, code


def inline(settings: dict, data_path: Path, output: Path, gpu: dict | None, unsloth: bool, since: float) -> dict | None:
    """The preflight inside the built-in trainer's process, where the runner asked for it
    (FULLCYCLE_PREFLIGHT_REPORT): the stack is the trainer's own, checked since `since`. Returns the
    report (written), None when none was asked; raises Failed."""
    target = os.environ.get("FULLCYCLE_PREFLIGHT_REPORT")
    spec = settings["preflight"]
    if not target or not spec.get("shape"):
        return None
    timed = Steps()
    timed.seconds["stack"] = round(time.time() - since, 2)
    report = {"ok": False, "where": "trainer", "base_model": settings["base_model"], "gpu": gpu,
              "load_in_4bit": settings["load_in_4bit"], "family": spec["shape"]["model_class"],
              "backend": "unsloth" if unsloth else "transformers+peft+trl"}
    work = output.parent / (output.name + ".preflight")
    try:
        report.update(steps(settings, data_path, work, unsloth, timed))
        report = _passed(report, since, timed)
        config.say(f"preflight passed in {report['seconds']}s ({report['backend']}, {report['family']})")
    except Exception as exc:  # noqa: BLE001 - the report says what failed, exactly
        traceback.print_exc()
        step, error = (exc.step, exc.error) if isinstance(exc, StepFailed) else ("inputs", exc)
        report.update(step=step, error=f"{type(error).__name__}: {error}", seconds=round(time.time() - since, 2),
                      started_at=round(since, 3), ended_at=round(time.time(), 3))
        config.error(f"preflight failed at {step}: {report['error']}")
        raise Failed(report, PREFLIGHT_FAILED) from exc
    finally:
        Path(target).write_text(json.dumps(report, indent=2))
        shutil.rmtree(work, ignore_errors=True)
    forget_compiled()
    return report


def forget_compiled() -> None:
    """Drop what the tiny model left in this process before the real model loads. torch.compile keys
    its graphs and its guesses about which sizes vary by the layer's code, which the real model shares:
    after the tiny model's steps it compiles the real layers as dynamic, and Unsloth's region compile of
    each decoder block then fails ("SymNodeVariable() is not a constant", seen on an H200) and keeps the
    stock forward for the whole training. A fresh process never sees this; a reset makes this one as
    fresh. The compile caches on disk stay."""
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is None:
        return
    with contextlib.suppress(Exception):  # a stack without dynamo trains uncompiled anyway
        torch._dynamo.reset()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def where(path: Path) -> str:
    """Where the runner runs the preflight: inside the trainer, as a process apart, or not at all."""
    try:
        settings = schema.read(path)
    except (OSError, ValueError):
        return "apart"
    spec = settings["preflight"]
    if not isinstance(spec, dict) or not spec.get("shape"):
        return "none"
    if settings["preflight_only"]:  # `doit gpu_check`: the preflight is the whole run, no trainer after it
        return "apart"
    return "trainer" if spec.get("where") == "trainer" else "apart"


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["--where"] and len(argv) == 2:
        print(where(Path(argv[1])))
        return 0
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
        report.update(seconds=round(time.time() - started, 2), started_at=round(started, 3),
                      ended_at=round(time.time(), 3))
        config.error(f"preflight failed at {report['step']}: {report['error']}")
    args.report.write_text(json.dumps(report, indent=2))
    shutil.rmtree(args.output, ignore_errors=True)
    if code == config.TRAINED and _only(args.config):  # `doit gpu_check`: nothing is trained after it
        (args.report.parent / "preflight.only").touch()
    return code


def _only(path: Path) -> bool:
    try:
        return schema.read(path)["preflight_only"]
    except (OSError, ValueError):
        return False


if __name__ == "__main__":
    sys.exit(main())
