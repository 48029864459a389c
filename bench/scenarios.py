"""The default model's day on an RTX 5090, simulated phase by phase (bench/overhead.py prints it).

Every figure is named for where it comes from: MEASURED_H200 is what the pinned pod stack did on one
H200 (docs/reference/training.md, "Measured on a real GPU", 2026-12-04); REPORTED is what
docs/reference/ quotes from others; ASSUMED is nobody's measurement. The records a run would leave
(pod.json, train.json, metrics.json, the stages' outcomes) are built from them and put through the summary's
own code (tasks/record/phases.py), so each table is what run-summary.json would say.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from tasks.pipeline.volume import (
    LOCAL_READ_MB_S,
    RUNS_PER_MONTH,
    VOLUME_READ_MB_S,
    monthly_usd,
    size_gb,
)
from tasks.record.phases import ORDER, not_training_share, phases

MEASURED_H200 = {  # docs/reference/training.md: one H200, the pinned stack, main 7477583
    "trainer_start_s": 28,  # a trainer process's start: imports (unsloth alone 13.3 s) and the GPU check, 25-31 s
    "preflight_cold_s": 140,  # fresh machine: stack 30, fit 76.8, measure 24.7 (again: 151 apart, 128 inside)
    "preflight_stack_s": 30,  # its first step: the same imports the trainer's start pays
    "preflight_warm_s": 70,  # 64-75 s where the compile caches were warm (fit 24-29, measure 6-9)
}
REPORTED = {  # docs/reference/runpod.md, training.md
    "price_per_hr": 0.89,  # RTX 5090 Secure Cloud, a third-party table (no official price found)
    "image_pull_cold_s": 165,  # a 16 GB image cold (the official one is ~21.5 GB: a floor)
    "download_mb_s": 200,  # the hub to a pod: 150-300 MB/s reported
    "volume_read_mb_s": VOLUME_READ_MB_S,
    "bf16_gb": 61.06, "build_gb": 17.47,  # Qwen3-30B-A3B: its bf16 repo, the published 4-bit build
}
ASSUMED = {
    "local_read_mb_s": LOCAL_READ_MB_S,
    "quantize_while_loading_s": 60,  # bitsandbytes quantizing 61 GB of experts while loading
    "create_to_running_s": 20, "ssh_reachable_s": 15, "training_s": 900,  # a 15-minute daily run
    "data_prep_s": 5, "evaluation_s": 30, "save_s": 5, "upload_s": 2, "adapter_transfer_s": 3, "terminate_s": 5,
}


@dataclass(frozen=True)
class Day:
    """One way the day can go: what is downloaded, where it is read from, and how the preflight runs."""

    download_gb: float  # what the download step fetches (0: the volume has it)
    load_gb: float  # what the trainer reads to load
    read_mb_s: float
    quantize_s: float
    preflight_s: float  # the preflight's own steps, beyond the imports it shares with the trainer
    beside: bool = True  # beside the download, inside the trainer's process; else before it, a process apart
    load_downloads_gb: float = 0.0  # downloaded again inside the load (Unsloth's name mapping, before)


def _stamp(at: dt.datetime, seconds: float) -> str:
    return (at + dt.timedelta(seconds=seconds)).isoformat(timespec="seconds")


def day(plan: Day) -> dict[str, Any]:
    """One run's records, as the pod would leave them, and its phases as the summary computes them."""
    m, r, a = MEASURED_H200, REPORTED, ASSUMED
    t0 = dt.datetime(2026, 12, 4, 6, tzinfo=dt.timezone.utc)
    running = a["create_to_running_s"] + r["image_pull_cold_s"]
    ready = running + a["ssh_reachable_s"]
    block = t0.timestamp() + ready + a["upload_s"]  # the Python is there: the download starts
    download_s = round(plan.download_gb * 1000 / r["download_mb_s"], 1)
    load_s = round(plan.load_downloads_gb * 1000 / r["download_mb_s"] + plan.load_gb * 1000 / plan.read_mb_s
                   + plan.quantize_s, 1)
    if plan.beside:  # one process: its start and the preflight during the download, then it waits
        preflight = {"ok": True, "seconds": m["trainer_start_s"] + plan.preflight_s, "started_at": block,
                     "ended_at": block + m["trainer_start_s"] + plan.preflight_s}
        download = {"ok": True, "seconds": download_s, "started_at": block, "ended_at": block + download_s}
        laps = {"trainer_start": m["trainer_start_s"], "preflight": plan.preflight_s,
                "download_wait": max(download_s - m["trainer_start_s"] - plan.preflight_s, 0.0)}
        trainer_at = block
    else:  # before: the preflight as a process of its own, then the download, then the trainer's start
        seconds = m["preflight_stack_s"] + plan.preflight_s
        preflight = {"ok": True, "seconds": seconds, "started_at": block, "ended_at": block + seconds}
        download = {"ok": True, "seconds": download_s, "started_at": block + seconds,
                    "ended_at": block + seconds + download_s}
        laps = {"trainer_start": m["trainer_start_s"]}
        trainer_at = download["ended_at"]
    laps.update(model_load=load_s, data_prep=a["data_prep_s"], training=a["training_s"], evaluation=a["evaluation_s"],
                save=a["save_s"])
    ends = trainer_at + sum(laps.values()) + a["adapter_transfer_s"] - t0.timestamp()
    pod = {"created_at": _stamp(t0, 0), "running_at": _stamp(t0, running), "ready_at": _stamp(t0, ready),
           "image_pull": {"seconds": r["image_pull_cold_s"]}, "terminate_requested_at": _stamp(t0, ends),
           "terminated_at": _stamp(t0, ends + a["terminate_s"])}
    train = {"setup_seconds": 0, "preflight": preflight, "download": download}
    stages = {"upload": {"status": "ok", "seconds": a["upload_s"]},
              "download_adapter": {"status": "ok", "seconds": a["adapter_transfer_s"]}}
    billed = round(ends + a["terminate_s"], 1)
    spent = phases(pod, train, {"started_at": trainer_at, "phases": laps}, stages, billed)
    return {"phases": spent, "billed_s": billed, "not_training_share": not_training_share(spent, billed)}


def plans() -> dict[str, Day]:
    m, r, a = MEASURED_H200, REPORTED, ASSUMED
    cold, warm = m["preflight_cold_s"] - m["preflight_stack_s"], m["preflight_warm_s"] - m["preflight_stack_s"]
    return {
        # main 7477583 on the pinned stack: the 4-bit build fails the preflight, the bf16 weights are fetched,
        # then Unsloth's name mapping loads unsloth/Qwen3-30B-A3B and downloads the same ~61 GB again
        "before: fresh pod, bf16": Day(r["bf16_gb"], r["bf16_gb"], a["local_read_mb_s"], a["quantize_while_loading_s"],
                                       cold, beside=False, load_downloads_gb=r["bf16_gb"]),
        "now: fresh pod, bf16": Day(r["bf16_gb"], r["bf16_gb"], a["local_read_mb_s"], a["quantize_while_loading_s"],
                                    cold),
        "now: volume, 2nd run, bf16": Day(0, r["bf16_gb"], r["volume_read_mb_s"], a["quantize_while_loading_s"], warm),
        "a stack that loads the 4-bit build": Day(r["build_gb"], r["build_gb"], a["local_read_mb_s"], 0, cold),
    }


def scenarios() -> dict[str, dict[str, Any]]:
    found = {name: day(plan) for name, plan in plans().items()}
    for name, found_day in found.items():
        run_usd = found_day["billed_s"] / 3600 * REPORTED["price_per_hr"]
        found_day["usd_per_run"] = round(run_usd, 3)
        found_day["volume_usd_per_month"] = monthly_usd(size_gb(REPORTED["bf16_gb"])) if "volume" in name else 0.0
        found_day["usd_per_month"] = round(run_usd * RUNS_PER_MONTH + found_day["volume_usd_per_month"], 2)
    return found


def print_scenarios() -> dict[str, dict[str, Any]]:
    found = scenarios()
    names = list(found)
    price = REPORTED["price_per_hr"]
    print(f"simulated: Qwen3-30B-A3B on an RTX 5090 (Secure, ${price:.2f}/h), billed seconds per phase")
    print("  (measured on an H200: trainer start %(trainer_start_s)s s, preflight %(preflight_cold_s)s s cold, "
          "%(preflight_warm_s)s s warm; the rest reported or assumed: bench/scenarios.py)" % MEASURED_H200)
    width = max(len(n) for n in names) + 2
    print(f"  {'phase':20}" + "".join(f"{n:>{width}}" for n in names))
    for phase in ORDER:
        cells = [found[n]["phases"][phase] for n in names]
        print(f"  {phase:20}" + "".join(f"{'-' if c is None else round(c, 1):>{width}}" for c in cells))
    for key, label in (("billed_s", "billed seconds"), ("not_training_share", "not training"),
                       ("usd_per_run", "$ per run"), ("volume_usd_per_month", "$ volume per month"),
                       ("usd_per_month", "$ per month, 1 run/day")):
        cells = [found[n][key] for n in names]
        shown = [f"{c:.0%}" if key == "not_training_share" else f"{c}" for c in cells]
        print(f"  {label:20}" + "".join(f"{s:>{width}}" for s in shown))
    return found
