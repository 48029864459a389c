"""The Unsloth branch end to end on a real GPU, in a few minutes: every call the default model's run
makes, before a billed 30B run makes it for the first time.

On a tiny random Qwen3-MoE with untied embeddings (the default base model's shape, tasks/model/tiny.py),
as on a pod: the preflight (python -m trainer.preflight), then two days of remote/train_unsloth.py in
4-bit, the second starting from the first's adapter (start_from: set_peft_model_state_dict) and measured
against it (a held-out set: disable_adapter, load_adapter / set_adapter / delete_adapter, generate), and
the adapter converted to a GGUF LoRA. Prints the versions, the seconds of each phase, the held-out losses
and the peak GPU memory, then one JSON line. Without CUDA it says so and exits 2 (tests/remote/test_gpu_smoke.py
skips). `doit gpu_check` runs the preflight part on a rented pod.

    python bench/gpu_smoke.py [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def _run(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    proc = subprocess.run(argv, text=True, capture_output=True, env=env)
    print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
    return proc.returncode, proc.stdout


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: the Unsloth branch needs a GPU (this machine trains on the CPU path only)")
        return 2
    from tasks.core.settings import EvalSettings
    from tasks.data import cleaning, heldout
    from tasks.model import families, tiny
    from tasks.post import gguf_lora

    phases: dict[str, float] = {}
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "remote")}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        started = time.time()
        raw = folder / "raw.jsonl"
        raw.write_bytes(b"".join(p.read_bytes() for p in sorted((REPO / "examples" / "notes").glob("*.jsonl"))))
        cleaning.clean(raw, folder / "clean.jsonl")
        heldout.split(folder / "clean.jsonl", folder / "heldout.jsonl", EvalSettings(fraction=0.1, min_samples=4))
        tiny.build(folder / "clean.jsonl", folder / "base_model", {"architecture": "qwen3_moe", "tie_word_embeddings": False})
        phases["tiny_model_s"] = round(time.time() - started, 2)
        shape = families.preflight_shape({"model_type": "qwen3_moe", "tie_word_embeddings": False}, tiny.SPEC)
        config = {"base_model": "tiny-qwen3-moe", "base_model_dir": "base_model", "lora_rank": 8, "lora_alpha": 16,
                  "num_train_epochs": 1, "learning_rate": 2e-3, "per_device_train_batch_size": 2,
                  "gradient_accumulation_steps": 1, "max_seq_length": 512, "max_steps": args.steps,
                  "load_in_4bit": True, "target_modules": "auto", "preflight": {"shape": shape},
                  "eval": {"heldout": "heldout.jsonl", "prompts": ["Add 2 lemons to my shopping list."],
                           "max_new_tokens": 12}}
        (folder / "config.json").write_text(json.dumps(config))
        started = time.time()
        code, _ = _run([sys.executable, "-m", "trainer.preflight", "--data", str(folder / "clean.jsonl"), "--config",
                        str(folder / "config.json"), "--output", str(folder / "preflight"), "--report",
                        str(folder / "preflight.json")], env)
        phases["preflight_s"] = round(time.time() - started, 2)
        preflight = json.loads((folder / "preflight.json").read_text())
        if code != 0:
            print(json.dumps({"bench": "gpu_smoke", "ok": False, "preflight": preflight, "phases": phases}))
            return 1
        days = []
        for day, extra in (("day1", {}), ("day2", {"start_from": "previous_adapter"})):
            if extra:  # the second day starts from the first's adapter and is measured against it
                shutil.copytree(folder / "day1", folder / "previous_adapter")
                config["eval"].update(previous_adapter="previous_adapter", previous_date="day1")
            (folder / "config.json").write_text(json.dumps({**config, **extra}))
            started = time.time()
            code, _ = _run([sys.executable, str(REPO / "remote" / "train_unsloth.py"), "--data",
                            str(folder / "clean.jsonl"), "--config", str(folder / "config.json"), "--output",
                            str(folder / day)], env)
            phases[f"{day}_s"] = round(time.time() - started, 2)
            if code != 0:
                print(json.dumps({"bench": "gpu_smoke", "ok": False, "exit": code, "day": day, "phases": phases}))
                return 1
            days.append((json.loads((folder / day / "metrics.json").read_text()),
                         json.loads((folder / day / "eval.json").read_text())))
        started = time.time()
        written = gguf_lora.convert(folder / "day2", folder / "adapter.gguf")
        phases["gguf_s"] = round(time.time() - started, 2)
    metrics, measured = days[-1]
    figures = {"bench": "gpu_smoke", "ok": metrics["backend"] == "unsloth" and "failed" not in measured,
               "backend": metrics["backend"], "device": metrics["device"], "gpu": metrics.get("gpu"),
               "versions": metrics["versions"], "preflight": preflight, "model_load_s": metrics["model_load_seconds"],
               "peak_gpu_memory_gb": metrics.get("peak_gpu_memory_gb"), "final_loss": metrics["final_loss"],
               "eval": {k: measured.get(k) for k in ("base_loss", "previous_loss", "adapter_loss", "started_from",
                                                      "failed")},
               "gguf": written["architecture"], "phases": phases}
    print(json.dumps(figures))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
