"""The Unsloth branch end to end on a real GPU, in a few minutes: the path the default model takes.

A tiny random Qwen3-MoE (tasks/model/tiny.py, the default base model's architecture) is loaded in
4-bit by Unsloth (`qwen3_moe` goes through its generic FastModel path, not the qwen2 one a tiny qwen2
would exercise), trained for a few steps by remote/train_unsloth.py exactly as on a pod, and the
adapter converted to a GGUF LoRA. Prints the versions, the seconds of each phase and the peak GPU
memory, then one JSON line. Without CUDA it says so and exits 2 (tests/remote/test_gpu_smoke.py skips).

    python bench/gpu_smoke.py [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: the Unsloth branch needs a GPU (this machine trains on the CPU path only)")
        return 2
    from tasks.data import cleaning
    from tasks.model import tiny
    from tasks.post import gguf_lora

    phases: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.time()
        raw = folder / "raw.jsonl"
        raw.write_bytes(b"".join(p.read_bytes() for p in sorted((REPO / "examples" / "notes").glob("*.jsonl"))))
        cleaning.clean(raw, folder / "clean.jsonl")
        model = tiny.build(folder / "clean.jsonl", folder / "model", {"architecture": "qwen3_moe"})
        phases["tiny_model_s"] = round(time.time() - started, 2)
        config = {"base_model": "tiny-qwen3-moe", "base_model_dir": str(model), "lora_rank": 8, "lora_alpha": 16,
                  "num_train_epochs": 1, "learning_rate": 2e-4, "per_device_train_batch_size": 1,
                  "gradient_accumulation_steps": 2, "max_seq_length": 512, "max_steps": args.steps,
                  "load_in_4bit": True}
        (folder / "config.json").write_text(json.dumps(config))
        started = time.time()
        proc = subprocess.run([sys.executable, str(REPO / "remote" / "train_unsloth.py"), "--data",
                               str(folder / "clean.jsonl"), "--config", str(folder / "config.json"), "--output",
                               str(folder / "adapter")], text=True, capture_output=True,
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
        phases["trainer_s"] = round(time.time() - started, 2)
        print(proc.stdout[-4000:], proc.stderr[-4000:], sep="\n")
        if proc.returncode != 0:
            print(json.dumps({"bench": "gpu_smoke", "ok": False, "exit": proc.returncode, "phases": phases}))
            return 1
        metrics = json.loads((folder / "adapter" / "metrics.json").read_text())
        started = time.time()
        written = gguf_lora.convert(folder / "adapter", folder / "adapter.gguf")
        phases["gguf_s"] = round(time.time() - started, 2)
    figures = {"bench": "gpu_smoke", "ok": metrics["backend"] == "unsloth", "backend": metrics["backend"],
               "device": metrics["device"], "gpu": metrics.get("gpu"), "versions": metrics["versions"],
               "model_load_s": metrics["model_load_seconds"], "train_total_s": metrics["seconds"],
               "peak_gpu_memory_gb": metrics.get("peak_gpu_memory_gb"), "final_loss": metrics["final_loss"],
               "gguf": written["architecture"], "phases": phases}
    print(json.dumps(figures))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
