"""The Unsloth branch end to end on a real GPU, in a few minutes: every call the default model's run
makes, before a billed 30B run makes it for the first time.

On a tiny random Qwen3-MoE with untied embeddings (the default base model's shape, tasks/model/tiny.py),
as on a pod, with the compile caches where the pod's runner keeps them:
- the preflight as a process apart (python -m trainer.preflight), cold, with the pre-quantized check
  (a 4-bit MoE checkpoint saved and loaded back by its exact name: does this stack load one?);
- day 1: remote/train_unsloth.py in 4-bit with the preflight inside its own process (as the built-in
  trainer runs it beside the download), so the same steps run again warm;
- day 2, starting from day 1's adapter (start_from: set_peft_model_state_dict) and measured against it
  (a held-out set: disable_adapter, load_adapter / set_adapter / delete_adapter, generate);
- the adapter converted to a GGUF LoRA.
Prints the versions, each preflight step cold and warm, the trainer's start, tokens/s, the held-out
losses and the peak GPU memory, then one JSON line. Without CUDA it says so and exits 2
(tests/remote/test_gpu_smoke.py skips). `doit gpu_check` runs the preflight part on a rented pod.

    python bench/gpu_smoke.py [--steps 5] [--cpu: a dry run of the script itself on the CPU path]
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
    proc = subprocess.run(argv, check=False, text=True, capture_output=True, env=env)
    print(proc.stdout[-3000:], proc.stderr[-3000:], sep="\n")
    return proc.returncode, proc.stdout + proc.stderr


FALLBACK = "block compile failed"  # Unsloth's words when a decoder block keeps its stock (uncompiled) forward


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--cpu", action="store_true", help="a dry run of this script on the CPU path (plain PEFT)")
    parser.add_argument("--inline-only", action="store_true",
                        help="day 1 alone, its preflight inside the trainer, cold (no preflight apart, day 2, GGUF)")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available() and not args.cpu:
        print("no CUDA device: the Unsloth branch needs a GPU (this machine trains on the CPU path only)")
        return 2
    from tasks.core.settings import EvalSettings
    from tasks.data import cleaning, heldout
    from tasks.model import families, tiny
    from tasks.post import gguf_lora

    phases: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        caches = folder / "compile-cache"  # as remote/train_runner.sh sets them
        caches.mkdir(mode=0o700)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO / "remote"),
               **({"FULLCYCLE_NO_UNSLOTH": "1"} if args.cpu else {}),
               "UNSLOTH_COMPILE_LOCATION": str(caches / "unsloth"), "UNSLOTH_MEGA_CACHE_DIR": str(caches / "mega"),
               "TRITON_CACHE_DIR": str(caches / "triton"), "TORCHINDUCTOR_CACHE_DIR": str(caches / "inductor")}
        started = time.time()
        raw = folder / "raw.jsonl"
        raw.write_bytes(b"".join(p.read_bytes() for p in sorted((REPO / "examples" / "notes").glob("*.jsonl"))))
        cleaning.clean(raw, folder / "clean.jsonl")
        heldout.split(folder / "clean.jsonl", folder / "heldout.jsonl", EvalSettings(fraction=0.1, min_samples=4))
        tiny.build(folder / "clean.jsonl", folder / "base_model",
                   {"architecture": "qwen3_moe", "tie_word_embeddings": False})
        phases["tiny_model_s"] = round(time.time() - started, 2)
        shape = families.preflight_shape({"model_type": "qwen3_moe", "tie_word_embeddings": False}, tiny.SPEC)
        config = {"base_model": "tiny-qwen3-moe", "base_model_dir": "base_model", "lora_rank": 8, "lora_alpha": 16,
                  "num_train_epochs": 1, "learning_rate": 2e-3, "per_device_train_batch_size": 2,
                  "gradient_accumulation_steps": 1, "max_seq_length": 512, "max_steps": args.steps,
                  "load_in_4bit": True, "target_modules": "auto", "moe_build": "prequantized",
                  "preflight": {"shape": shape, "where": "trainer"},
                  "eval": {"heldout": "heldout.jsonl", "prompts": ["Add 2 lemons to my shopping list."],
                           "max_new_tokens": 12}}
        (folder / "config.json").write_text(json.dumps(config))
        started = time.time()
        apart = [sys.executable, "-m", "trainer.preflight", "--data", str(folder / "clean.jsonl"), "--config",
                 str(folder / "config.json"), "--output", str(folder / "preflight"), "--report",
                 str(folder / "preflight.json")]
        code, _ = (0, "") if args.inline_only else _run(apart, env)
        phases["preflight_s"] = round(time.time() - started, 2)
        preflight = {"steps": {}} if args.inline_only else json.loads((folder / "preflight.json").read_text())
        if code != 0:
            print(json.dumps({"bench": "gpu_smoke", "ok": False, "preflight": preflight, "phases": phases}))
            return 1
        days, fallbacks = [], []
        for day, extra in (("day1", {}), ("day2", {"start_from": "previous_adapter", "preflight": None})):
            if extra and args.inline_only:
                break
            if extra:  # the second day starts from the first's adapter and is measured against it
                shutil.copytree(folder / "day1", folder / "previous_adapter")
                config["eval"].update(previous_adapter="previous_adapter", previous_date="day1")
            (folder / "config.json").write_text(json.dumps({**config, **extra}))
            inline = {} if extra else {"FULLCYCLE_PREFLIGHT_REPORT": str(folder / "preflight-inline.json")}
            started = time.time()
            code, said = _run([sys.executable, str(REPO / "remote" / "train_unsloth.py"), "--data",
                               str(folder / "clean.jsonl"), "--config", str(folder / "config.json"), "--output",
                               str(folder / day)], {**env, **inline})
            fallbacks.append(said.count(FALLBACK))
            phases[f"{day}_s"] = round(time.time() - started, 2)
            if code != 0:
                print(json.dumps({"bench": "gpu_smoke", "ok": False, "exit": code, "day": day, "phases": phases}))
                return 1
            days.append((json.loads((folder / day / "metrics.json").read_text()),
                         json.loads((folder / day / "eval.json").read_text())))
        started = time.time()
        written = ({"architecture": None} if args.inline_only
                   else gguf_lora.convert(folder / "day2", folder / "adapter.gguf"))
        phases["gguf_s"] = round(time.time() - started, 2)
        warm = json.loads((folder / "preflight-inline.json").read_text())
        if args.inline_only:
            preflight = {**warm, "steps": {name: None for name in warm.get("steps", {})}}
    metrics, measured = days[-1]
    steps = {name: {"cold": preflight["steps"].get(name), "warm": warm.get("steps", {}).get(name)}
             for name in preflight["steps"]}
    print("preflight step      cold s   warm s (inside day 1's trainer)")
    for name, seconds in steps.items():
        print(f"  {name:16} {seconds['cold']!s:>8} {seconds['warm']!s:>8}")
    for day, (found, _) in zip(("day1", "day2"), days):
        scale = found["scale"]
        print(f"{day}: trainer start {found['phases'].get('trainer_start')} s, tokens/s {scale.get('tokens_per_s')} "
              f"({scale.get('tokens')} tokens), phases {found['phases']}")
    print(f"pre-quantized 4-bit MoE checkpoint: {preflight.get('prequantized')}")
    counted = ", ".join(f"day{i + 1} {n}" for i, n in enumerate(fallbacks))
    print(f"decoder blocks left uncompiled ({FALLBACK!r}): {counted}")
    backend = "transformers+peft+trl" if args.cpu else "unsloth"
    figures = {"bench": "gpu_smoke", "ok": metrics["backend"] == backend and "failed" not in measured
               and warm.get("ok") is True and not any(fallbacks), "compile_fallbacks": fallbacks,
               "backend": metrics["backend"], "device": metrics["device"], "gpu": metrics.get("gpu"),
               "versions": metrics["versions"], "preflight": preflight, "model_load_s": metrics["model_load_seconds"],
               "peak_gpu_memory_gb": metrics.get("peak_gpu_memory_gb"), "final_loss": metrics["final_loss"],
               "eval": {k: measured.get(k) for k in ("base_loss", "previous_loss", "adapter_loss", "started_from",
                                                      "failed")},
               "gguf": written["architecture"], "phases": phases, "prequantized": preflight.get("prequantized"),
               "preflight_steps": steps, "trainer_start_s": [d[0]["phases"].get("trainer_start") for d in days],
               "tokens_per_s": [d[0]["scale"].get("tokens_per_s") for d in days],
               "ok_tokens": all(isinstance(d[0]["scale"].get("tokens_per_s"), (int, float)) for d in days)}
    print(json.dumps(figures))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
