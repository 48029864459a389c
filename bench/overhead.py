"""bench overhead: what a run costs on the pod beyond training.

    python bench/overhead.py [--runs 3] [--mode direct|gateway] [--scenarios-only]

First, the default model's day on an RTX 5090 in three scenarios (a fresh pod loading the bf16
weights, a fresh pod loading the published 4-bit build, a second run on a network volume), each
phase from the facts in docs/reference/ (or a stated assumption), put through the summary's
own phase code (tasks/record/phases.py): the phase table, the share not training, $ per run and
per month. Then, measured: `doit full_cycle` against the fake RunPod API with a real sshd as the
pod (needs root and openssh-server) and the tiny model, its phases from its own run-summary.json.
Prints the figures, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scenarios import print_scenarios  # noqa: E402
from tests.conftest import API_KEY, runpod_project  # noqa: E402
from tests.doubles.fake_runpod import FakeRunpod  # noqa: E402
from tests.doubles.sshpod import GatewayDouble, Sshd, end_pod_processes  # noqa: E402


def one_run(tmp: Path, sshd: Sshd, mode: str) -> dict[str, float]:
    tmp.mkdir(parents=True)
    with FakeRunpod(API_KEY, sshd.port) as api:
        api.faults.public_ssh = mode == "direct"
        api.faults.image_cached = True  # the double stamps a pull it never waits for: say the host had the image
        gateway = GatewayDouble(tmp, api.route_host, sshd.client_key).start() if mode == "gateway" else None
        try:
            # Polling as a person would configure it for a real pod would dominate a 10 s simulation;
            # keep the settings' own poll interval but shorten the readiness wait of the fake.
            proj = runpod_project(tmp / "proj", sshd, api, gateway=gateway, runpod={"poll_interval_s": 1.0},
                                  real_training=True)
            proj.doit("full_cycle", check=True)
        finally:
            if gateway:
                gateway.stop()
        pod = next(iter(api.pods.values()))
        summary = proj.summary
        metrics = json.loads((proj.adapter / "metrics.json").read_text())
        stages = summary["stages"]
        billed = pod.terminated_at - pod.created
        transfer = stages["upload"]["seconds"] + stages["download_adapter"]["seconds"]
        return {"phases": summary["phases"], "not_training_share": summary["not_training_share"],
                "billed_s": billed, "training_s": metrics["seconds"], "overhead_s": billed - metrics["seconds"],
                "transfer_s": transfer, "ssh_sessions": summary["ssh_sessions"], "api_calls": len(api.calls),
                "create_to_ready_s": stages["create_pod"]["seconds"],
                "per_stage_sessions": {k: v["ssh_sessions"] for k, v in stages.items() if v["ssh_sessions"]}}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--mode", choices=("direct", "gateway"), default="gateway")
    parser.add_argument("--scenarios-only", action="store_true", help="only the simulated RTX 5090 day")
    args = parser.parse_args()
    scenarios = print_scenarios()
    if args.scenarios_only:
        print(json.dumps({"bench": "overhead", "scenarios": scenarios}))
        return
    if os.geteuid() != 0:
        raise SystemExit("needs root (the sshd pod double logs in as root), as the tests do")
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        sshd = Sshd(Path(tmp) / "sshd").start()
        try:
            for i in range(args.runs):
                results.append(one_run(Path(tmp) / f"run{i}", sshd, args.mode))
        finally:
            sshd.stop()
            end_pod_processes(Path(tmp))

    def stat(key: str) -> dict[str, float]:
        values = [r[key] for r in results]
        return {"min": round(min(values), 2), "median": round(statistics.median(values), 2), "max": round(max(values), 2)}

    figures = {"bench": "overhead", "scenarios": scenarios, "mode": args.mode, "runs": args.runs,
               "measured_phases": results[-1]["phases"], "measured_not_training_share": results[-1]["not_training_share"],
               **{k: stat(k) for k in ("billed_s", "training_s", "overhead_s", "transfer_s", "create_to_ready_s",
                                       "ssh_sessions", "api_calls")},
               "per_stage_sessions": results[-1]["per_stage_sessions"]}
    budget = figures["transfer_s"]["median"] + 10
    print(f"\nmeasured: the tiny model through the fake RunPod API and a real sshd, mode {args.mode}, "
          f"{args.runs} runs (min/median/max)")
    for key in ("billed_s", "training_s", "overhead_s", "transfer_s", "create_to_ready_s", "ssh_sessions", "api_calls"):
        f = figures[key]
        print(f"  {key:18} {f['min']:>8} {f['median']:>8} {f['max']:>8}")
    print(f"  overhead target: <= transfer + 10 s = {budget:.1f} s -> "
          f"{'met' if figures['overhead_s']['median'] <= budget else 'MISSED'}; ssh sessions per stage "
          f"{figures['per_stage_sessions']}")
    spent = {k: v for k, v in results[-1]["phases"].items() if v}
    print(f"  last run's phases: {spent}; not training {results[-1]['not_training_share']:.0%}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
