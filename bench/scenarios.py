"""The default model's day on an RTX 5090, simulated phase by phase (bench/overhead.py prints it).

Every figure is a fact from docs/reference/ or an assumption named here; the records a run
would leave (pod.json, train.json, metrics.json, stages.json) are built from them and put through
the summary's own code (tasks/record/phases.py), so the table is what run-summary.json would say.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from tasks.providers.runpod.volume import (
    LOCAL_READ_MB_S,
    RUNS_PER_MONTH,
    VOLUME_READ_MB_S,
    monthly_usd,
    size_gb,
)
from tasks.record.phases import ORDER, not_training_share, phases

FACTS = {  # docs/reference/runpod.md (late 2026, 2026-12-03), training.md; "assumed" where nobody measured
    "price_per_hr": 0.89,  # RTX 5090 Secure Cloud, a third-party table (no official price found)
    "image_pull_cold_s": 165,  # a 16 GB image cold (the official one is ~21.5 GB: a floor)
    "download_mb_s": 200,  # the hub to a pod: 150-300 MB/s reported
    "volume_read_mb_s": VOLUME_READ_MB_S, "local_read_mb_s": LOCAL_READ_MB_S,
    "bf16_gb": 61.06, "build_gb": 17.47,  # Qwen3-30B-A3B: its bf16 repo, the published 4-bit build
    "quantize_while_loading_s": 60,  # assumed: bitsandbytes quantizing 61 GB of experts while loading
    "create_to_running_s": 20, "ssh_reachable_s": 15, "preflight_s": 30, "trainer_start_s": 20,  # assumed
    "training_s": 900,  # assumed: a 15-minute daily run
    "data_prep_s": 5, "evaluation_s": 30, "save_s": 5, "upload_s": 2, "adapter_transfer_s": 3,  # assumed
    "terminate_s": 5,  # assumed
}


def _stamp(at: dt.datetime, seconds: float) -> str:
    return (at + dt.timedelta(seconds=seconds)).isoformat(timespec="seconds")


def day(download_gb: float, read_mb_s: float, quantize_s: float) -> dict[str, Any]:
    """One run's records, as the pod would leave them, and its phases as the summary computes them."""
    f, t0 = FACTS, dt.datetime(2026, 12, 4, 6, tzinfo=dt.timezone.utc)
    load_gb = FACTS["bf16_gb"] if quantize_s else FACTS["build_gb"]
    trainer = {"trainer_start": f["trainer_start_s"], "model_load": round(load_gb * 1000 / read_mb_s + quantize_s, 1),
               "data_prep": f["data_prep_s"], "training": f["training_s"], "evaluation": f["evaluation_s"],
               "save": f["save_s"]}
    download_s = round(download_gb * 1000 / f["download_mb_s"], 1)
    running = f["create_to_running_s"] + f["image_pull_cold_s"]
    ready = running + f["ssh_reachable_s"]
    ends = ready + f["upload_s"] + f["preflight_s"] + download_s + sum(trainer.values()) + f["adapter_transfer_s"]
    pod = {"created_at": _stamp(t0, 0), "running_at": _stamp(t0, running), "ready_at": _stamp(t0, ready),
           "image_pull": {"seconds": f["image_pull_cold_s"]}, "terminate_requested_at": _stamp(t0, ends),
           "terminated_at": _stamp(t0, ends + f["terminate_s"])}
    train = {"setup_seconds": 0, "preflight": {"seconds": f["preflight_s"]}, "download": {"seconds": download_s}}
    stages = {"upload": {"status": "ok", "seconds": f["upload_s"]},
              "download_adapter": {"status": "ok", "seconds": f["adapter_transfer_s"]}}
    billed = ends + f["terminate_s"]
    spent = phases(pod, train, {"phases": trainer}, stages, billed)
    return {"phases": spent, "billed_s": billed, "not_training_share": not_training_share(spent, billed)}


def scenarios() -> dict[str, dict[str, Any]]:
    f = FACTS
    found = {
        "fresh pod, bf16 weights": day(f["bf16_gb"], f["local_read_mb_s"], f["quantize_while_loading_s"]),
        "fresh pod, 4-bit build": day(f["build_gb"], f["local_read_mb_s"], 0),
        "2nd run on a volume, 4-bit build": day(0, f["volume_read_mb_s"], 0),
    }
    volume_usd = monthly_usd(size_gb(f["build_gb"]))
    for name, found_day in found.items():
        run_usd = found_day["billed_s"] / 3600 * f["price_per_hr"]
        found_day["usd_per_run"] = round(run_usd, 3)
        found_day["volume_usd_per_month"] = volume_usd if "volume" in name else 0.0
        found_day["usd_per_month"] = round(run_usd * RUNS_PER_MONTH + found_day["volume_usd_per_month"], 2)
    return found


def print_scenarios() -> dict[str, dict[str, Any]]:
    found = scenarios()
    names = list(found)
    print("simulated: Qwen3-30B-A3B on an RTX 5090 (Secure, $%.2f/h), seconds per phase" % FACTS["price_per_hr"])
    print(f"  {'phase':20}" + "".join(f"{n:>34}" for n in names))
    for phase in ORDER:
        cells = [found[n]["phases"][phase] for n in names]
        print(f"  {phase:20}" + "".join(f"{'-' if c is None else round(c, 1):>34}" for c in cells))
    for key, label in (("billed_s", "billed seconds"), ("not_training_share", "not training"),
                       ("usd_per_run", "$ per run"), ("volume_usd_per_month", "$ volume per month"),
                       ("usd_per_month", "$ per month, 1 run/day")):
        cells = [found[n][key] for n in names]
        shown = [f"{c:.0%}" if key == "not_training_share" else f"{c}" for c in cells]
        print(f"  {label:20}" + "".join(f"{s:>34}" for s in shown))
    return found
