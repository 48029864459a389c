"""Keep the benchmarks working: each runs at a tiny size and must print its JSON line.

These are not timed tests; the figures are for people (see the README's Benchmarks section)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO


def _bench(name: str, *args: str) -> dict:
    proc = subprocess.run([sys.executable, str(REPO / "bench" / f"{name}.py"), *args], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert figures["bench"] == name
    return figures


def test_bench_clean_small():
    figures = _bench("clean", "--size-mb", "2", "--runs", "1")
    assert figures["ours_peak_rss_mb"] > 0 and figures["ours_mb_s"]["median"] > 0


@pytest.mark.slow  # a whole first run (the stand-in trainer: what it trains is not what the bench times)
def test_bench_noop_small():
    from tests.doubles import standin

    figures = _bench("noop", "--size-mb", "1", "--runs", "1", "--trainer", standin.trainer_script())
    assert figures["noop_s"]["median"] > 0


@pytest.mark.skipif(os.geteuid() != 0, reason="the sshd double logs in as root")
def test_bench_transfer_small(sshd):
    figures = _bench("transfer", "--adapter-mb", "2", "--jsonl-mb", "1", "--runs", "1")
    assert figures["adapter.bin_download_gateway-exec"]["median_s"] > 0
    assert figures["data.jsonl_upload_gateway-pty"]["median_s"] > 0


@pytest.mark.slow  # a real training of the tiny model behind the fake API
@pytest.mark.skipif(os.geteuid() != 0, reason="the sshd double logs in as root")
def test_bench_overhead_small(sshd):
    figures = _bench("overhead", "--runs", "1")
    assert figures["ssh_sessions"]["median"] <= 4
    assert figures["measured_phases"]["training"] > 0 and 0 < figures["measured_not_training_share"] <= 1


def test_bench_overhead_scenarios_go_through_the_summarys_phase_code():
    scenarios = _bench("overhead", "--scenarios-only")["scenarios"]
    before, fresh, volume, built = (scenarios[k] for k in ("before: fresh pod, bf16", "now: fresh pod, bf16",
                                                           "now: volume, 2nd run, bf16",
                                                           "a stack that loads the 4-bit build"))
    # the goal, on the H200's figures: a passing preflight adds at most 15 s to a fresh pod's bill
    assert before["phases"]["preflight"] == 140 and fresh["phases"]["preflight"] <= 15
    assert fresh["phases"]["trainer_start"] == 0  # its imports happen during the download too
    assert before["billed_s"] > fresh["billed_s"] and before["phases"]["model_load"] > fresh["phases"]["model_load"]
    assert fresh["phases"]["model_download"] > built["phases"]["model_download"] > volume["phases"]["model_download"] == 0
    assert volume["phases"]["model_load"] > fresh["phases"]["model_load"]  # read over the network, not the pod's disk
    assert volume["volume_usd_per_month"] > 0
    for day in scenarios.values():
        assert round(sum(day["phases"].values()), 1) == day["billed_s"]


@pytest.mark.slow  # `doit serve` and real runs behind it
def test_bench_web_small():
    figures = _bench("web", "--runs", "3", "--watchers", "2")
    assert figures["log_event"]["median_ms"] > 0 and figures["page"]["median_ms"] > 0
