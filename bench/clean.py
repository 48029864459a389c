"""bench clean: our streaming cleanup vs jq doing the same job, on a realistic JSONL.

    python bench/clean.py [--size-mb 1024] [--runs 3]

The input has mixed lengths, ~5% bad lines (broken JSON, missing fields, wrong types, non-UTF-8)
and some exact duplicates. Each tool runs in a child process so its peak RSS is its own. Prints
a table and, last, one JSON line with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JQ_FILTER = ('fromjson? | select(type=="object" and .instruction and .output) '
             '| {instruction, input: (.input // ""), output}')
WORDS = ("the run pod adapter lora train data note meeting coffee plan week code review test ship small "
         "long quiet river book write answer question morning focus").split()


def make_dataset(path: Path, size: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    written, recent = 0, []
    with path.open("wb") as fh:
        while written < size:
            roll = rng.random()
            if roll < 0.01:
                line = b'{"instruction": "broken'
            elif roll < 0.02:
                line = json.dumps({"instruction": "no answer"}).encode()
            elif roll < 0.03:
                line = json.dumps({"instruction": "typed", "output": 42}).encode()
            elif roll < 0.04:
                line = b'{"instruction": "\xff\xfe", "output": "x"}'
            elif roll < 0.05:
                line = b"[1, 2, 3]"
            elif roll < 0.08 and recent:
                line = rng.choice(recent)  # an exact duplicate
            else:
                n = int(rng.lognormvariate(4, 1.0)) + 3
                text = " ".join(rng.choices(WORDS, k=n))
                record = {"instruction": " ".join(rng.choices(WORDS, k=8)) + "?", "output": text}
                if rng.random() < 0.5:
                    record["input"] = " ".join(rng.choices(WORDS, k=rng.randint(0, 30)))
                line = json.dumps(record).encode()
                if len(recent) < 1000:
                    recent.append(line)
            fh.write(line + b"\n")
            written += len(line) + 1


def run_child(argv: list[str], stdout_path: Path | None = None) -> tuple[float, int]:
    """(seconds, peak RSS in bytes) of a child process."""
    started = time.perf_counter()
    with (stdout_path.open("wb") if stdout_path else open(os.devnull, "wb")) as out:
        proc = subprocess.run(["/usr/bin/env", *argv], stdout=out, stderr=subprocess.PIPE)
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{argv[0]} failed: {proc.stderr.decode()[-500:]}")
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return seconds, usage.ru_maxrss * 1024


def ours(raw: Path, out: Path) -> list[str]:
    code = ("import sys, resource; sys.path.insert(0, %r); from pathlib import Path; from tasks.data.cleaning import clean; "
            "s = clean(Path(sys.argv[1]), Path(sys.argv[2])); "
            "print(s.kept, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)" % str(ROOT))
    return [sys.executable, "-c", code, str(raw), str(out)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=float, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        raw, cleaned = Path(tmp) / "raw.jsonl", Path(tmp) / "clean.jsonl"
        make_dataset(raw, int(args.size_mb * 1024 * 1024))
        size = raw.stat().st_size
        results: dict[str, list[float]] = {"ours_s": [], "jq_s": [], "ours_rss": []}
        for _ in range(args.runs):
            started = time.perf_counter()
            proc = subprocess.run(ours(raw, cleaned), capture_output=True, text=True, check=True)
            results["ours_s"].append(time.perf_counter() - started)
            results["ours_rss"].append(int(proc.stdout.split()[1]))
            if shutil.which("jq"):
                seconds, _ = run_child(["jq", "-cR", JQ_FILTER, str(raw)], Path(tmp) / "jq.jsonl")
                results["jq_s"].append(seconds)
        med = {k: statistics.median(v) for k, v in results.items() if v}
        mb = size / 1e6
        figures = {
            "bench": "clean", "input_mb": round(mb, 1),
            "ours_mb_s": {"min": round(mb / max(results["ours_s"]), 1), "median": round(mb / med["ours_s"], 1),
                          "max": round(mb / min(results["ours_s"]), 1)},
            "ours_peak_rss_mb": round(max(results["ours_rss"]) / 1e6, 1),
        }
        if results["jq_s"]:
            figures["jq_mb_s"] = {"min": round(mb / max(results["jq_s"]), 1), "median": round(mb / med["jq_s"], 1),
                                  "max": round(mb / min(results["jq_s"]), 1)}
            figures["speedup_vs_jq"] = round(med["jq_s"] / med["ours_s"], 2)
        print(f"input {mb:.0f} MB, {args.runs} runs")
        print(f"ours: {figures['ours_mb_s']['median']} MB/s median (min {figures['ours_mb_s']['min']}, max "
              f"{figures['ours_mb_s']['max']}), peak RSS {figures['ours_peak_rss_mb']} MB")
        if "jq_mb_s" in figures:
            print(f"jq:   {figures['jq_mb_s']['median']} MB/s median; ours is {figures['speedup_vs_jq']}x jq")
        print(json.dumps(figures))


if __name__ == "__main__":
    main()
