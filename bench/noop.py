"""bench noop: `doit full_cycle` when everything is up to date, with a large dataset.

    python bench/noop.py [--size-mb 1024] [--runs 5] [--trainer SCRIPT]

Builds a project whose source folder holds a dataset of the given size, runs the whole pipeline
once (local provider, tiny model, a few steps), then times `doit full_cycle` again several times:
every stage must be skipped, so this is the cost of doit's up-to-date checks plus our start-up.
Prints the figures, then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.clean import make_dataset  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=float, default=1024)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--trainer", default="",
                        help="[remote] trainer for the set-up run (what it trains is not timed)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "source").mkdir()
        make_dataset(root / "source" / "notes.jsonl", int(args.size_mb * 1024 * 1024))
        remote = f'[remote]\ntrainer = "{args.trainer}"\n' if args.trainer else ""
        (root / "fullcycle.toml").write_text(
            '[dataset]\nsource = "source"\n[training]\nbase_model = "tiny"\nmax_steps = 2\n' + remote)
        env = {**os.environ, "FULLCYCLE_CONFIG": str(root / "fullcycle.toml"), "FULLCYCLE_DATE": "2026-11-27"}
        doit = [sys.executable, "-m", "doit", "-f", str(ROOT / "dodo.py"), "full_cycle"]
        started = time.perf_counter()
        first = subprocess.run(doit, cwd=root, env=env, capture_output=True, text=True)
        first_s = time.perf_counter() - started
        if first.returncode != 0:
            raise SystemExit(first.stdout[-3000:] + first.stderr[-3000:])
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            again = subprocess.run(doit, cwd=root, env=env, capture_output=True, text=True, check=True)
            times.append(time.perf_counter() - started)
            ran = [line for line in again.stdout.splitlines() if line.startswith(".  ") and "full_cycle" not in line]
            if ran:
                raise SystemExit(f"not a no-op: {ran}")
        size = (root / "source" / "notes.jsonl").stat().st_size / 1e6
    figures = {"bench": "noop", "dataset_mb": round(size, 1), "first_run_s": round(first_s, 1),
               "noop_s": {"min": round(min(times), 3), "median": round(statistics.median(times), 3),
                          "max": round(max(times), 3)}}
    print(f"dataset {size:.0f} MB; first full run {first_s:.1f}s; no-op `doit full_cycle`: "
          f"median {figures['noop_s']['median']}s (min {figures['noop_s']['min']}, max {figures['noop_s']['max']})")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
