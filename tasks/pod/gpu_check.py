"""`doit gpu_check`: what a new user runs once before the first real day.

It rents the cheapest available GPU of [runpod] gpu_types, runs only the preflight (the run's code path
on a tiny model of the base model's family, remote/trainer/preflight.py) on the configured stack,
terminates the pod whatever happened, and records what ran (versions, GPU, driver, CUDA), the seconds
and the bill in <cache_dir>/gpu-checks/<when>/gpu-check.json. Nothing of the day's record is touched.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import signal
import time
from pathlib import Path
from typing import Any

from tasks.context import RunContext
from tasks.core import lock, logs
from tasks.core.dates import now, parse_stamp
from tasks.core.errors import FullcycleError
from tasks.core.files import read_record, write_json
from tasks.record.attempts import cost_at

log = logging.getLogger("fullcycle")

FOLDER = "gpu-checks"  # under [paths] cache_dir; the reaper knows these pods as owned while their check runs
WORDS = ("window", "kitchen", "river", "bread", "coffee", "mountain", "street", "garden", "bridge", "market")


def checks_folder(cache_dir: Path) -> Path:
    return cache_dir / FOLDER


def _context(ctx: RunContext, stamp: str) -> RunContext:
    """A run context of its own: its folder, the cheapest GPU, the preflight always, a pod name apart."""
    folder = checks_folder(ctx.paths.cache_dir) / stamp
    paths = dataclasses.replace(ctx.paths, work_local=folder, out_root=folder, final_adapter_dir=folder / "adapter",
                                raw_data_file=folder / "raw.jsonl", clean_data_file=folder / "unsloth_dataset.jsonl",
                                config_file=folder / "config.json", summary_file=folder / "run-summary.json",
                                trainer_log=folder / "trainer.log")
    s = ctx.settings
    settings = dataclasses.replace(s, runpod=dataclasses.replace(s.runpod, gpu_choice="cheapest"),
                                   remote=dataclasses.replace(s.remote, preflight="always"))
    return RunContext(settings, paths, pod_name=f"{s.runpod.name_prefix}-gpucheck-{stamp}", make_provider=ctx.make_provider)


def _inputs(check: RunContext) -> dict[str, Any]:
    """What the pod receives: a few synthetic samples (no person's data travels for a check), the
    model check's verdict on the configured base model, and a config that asks for the preflight alone."""
    from tasks.data import trainconfig
    from tasks.model.hubcheck import check_model
    from tasks.model.tiny import build_tiny_model

    p = check.paths
    p.work_local.mkdir(parents=True, exist_ok=True)
    rows = [{"instruction": f"How do I spell '{w}' backwards?", "input": "", "output": f"'{w}' backwards is '{w[::-1]}'."}
            for w in WORDS * 4]
    p.clean_data_file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    p.heldout_file.write_text("")
    check_model(check)
    verdict = read_record(p.model_check_file)
    if check.settings.training.is_tiny:
        build_tiny_model(check)
    config = trainconfig.build(check.settings, verdict)
    config.update(eval={"heldout": None, "previous_adapter": None, "prompts": [], "max_new_tokens": 4},
                  start_from=None, preflight_only=True)
    write_json(p.config_file, config)
    return config


def check_gpu(ctx: RunContext) -> dict[str, Any]:
    """Rent, preflight, terminate (always), record. Returns the record; never leaves a pod running."""
    from tasks.pod.follow import follow_training
    from tasks.pod.lifecycle import create_pod, load_pod, terminate_pod
    from tasks.pod.upload import upload_inputs

    stamp = time.strftime("%Y%m%dT%H%M%S")
    check = _context(ctx, stamp)
    lock.acquire(check.paths.lock_file, check.attempt.locks)
    logs.setup(check.paths.trainer_log)
    record: dict[str, Any] = {"checked_at": now(), "provider": check.provider_name, "ok": False,
                              "base_model": check.settings.training.base_model, "folder": str(check.paths.work_local)}
    log.info("gpu_check: the preflight of %s on the cheapest available of %s", record["base_model"],
             ", ".join(check.settings.runpod.gpu_types))
    previous = _signals_as_interrupts()
    try:
        config = _inputs(check)
        record["preflight_family"] = (config["preflight"].get("shape") or {}).get("model_class")
        create_pod(check)
        upload_inputs(check)
        follow_training(check)
        record["ok"] = True
    except (FullcycleError, KeyboardInterrupt) as exc:
        record["error"] = logs.redact(str(exc) or type(exc).__name__)
        log.error("gpu_check failed: %s", record["error"])
    finally:
        try:
            terminate_pod(check)
        except FullcycleError as exc:
            record["terminate_error"] = str(exc)
        signal.signal(signal.SIGTERM, previous)
        _fill(record, check, load_pod(check))
        write_json(check.paths.work_local / "gpu-check.json", record)
    _say(record)
    return record


def _signals_as_interrupts() -> Any:
    """SIGTERM becomes an interrupt, so the `finally` that terminates the pod runs (as on Ctrl-C)."""
    def interrupt(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    return signal.signal(signal.SIGTERM, interrupt)


def _fill(record: dict[str, Any], check: RunContext, pod: Any) -> None:
    """What ran, how long the pod lived and what it cost, from the records the stages left."""
    train = read_record(check.paths.train_file)
    preflight = train.get("preflight") or {}
    record.update(preflight=preflight, stack=train.get("stack"), python=train.get("python"),
                  python_source=train.get("python_source"))
    if preflight.get("ok") is False and not record.get("error"):
        record["error"] = f"preflight failed at {preflight.get('step')}: {preflight.get('error')}"
    if pod is None:
        return
    created, ended = parse_stamp(pod.created_at), parse_stamp(pod.terminated_at)
    seconds = (ended - created).total_seconds() if created and ended else None
    record.update(pod_id=pod.pod_id, gpu=pod.gpu, cloud_type=pod.cloud_type, cost_per_hr=pod.cost_per_hr,
                  terminated=pod.terminated, pod_seconds=round(seconds, 1) if seconds is not None else None,
                  cost_usd=cost_at(seconds, pod.cost_per_hr) if seconds is not None else None,
                  cost_usd_billed=pod.cost_usd_billed, gpu_seen=preflight.get("gpu"),
                  versions=preflight.get("versions"), backend=preflight.get("backend"))


def _say(record: dict[str, Any]) -> None:
    gpu = record.get("gpu_seen") or {}
    where = f"{record.get('gpu') or gpu.get('gpu') or 'this machine'} ({record.get('cloud_type') or record['provider']})"
    if record["ok"]:
        log.info("gpu_check PASSED on %s: %s, driver %s, CUDA %s; %s; %ss of pod, $%s (billed $%s)", where,
                 record.get("backend"), gpu.get("driver", "-"), gpu.get("cuda", "-"), record.get("versions"),
                 record.get("pod_seconds"), record.get("cost_usd"), record.get("cost_usd_billed"))
    else:
        log.error("gpu_check FAILED on %s: %s; %ss of pod, $%s", where, record.get("error"), record.get("pod_seconds"),
                  record.get("cost_usd"))
    if record.get("terminate_error"):
        log.error("the pod may still be running: %s", record["terminate_error"])
    log.info("record: %s", Path(record["folder"]) / "gpu-check.json")
