"""The Unsloth branch for real, where a GPU is (bench/gpu_smoke.py); skipped with the reason elsewhere."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO


def _cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.skipif(not _cuda(), reason="no CUDA device here: the Unsloth branch has not run (bench/gpu_smoke.py "
                                        "runs it on a GPU machine with the unsloth stack)")
def test_unsloth_trains_a_tiny_qwen3_moe_in_4bit():
    proc = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_smoke.py")], capture_output=True, text=True,
                          timeout=1200)
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == 0 and figures["backend"] == "unsloth" and figures["gguf"] == "qwen3moe", proc.stdout
