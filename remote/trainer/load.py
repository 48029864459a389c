"""Loading the base model: the GPU and torch checked first (nothing is loaded where torch cannot use
the GPU), Unsloth where CUDA is, else transformers + peft; a pre-quantized MoE build by its exact
name, its bf16 weights once if it will not load. The download itself is a step of its own
(remote/trainer/download.py): what is timed here is the load."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trainer import ranks
from trainer.config import NO_GPU_STACK, NO_MODEL, InputError, say


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    model_id: str
    seconds: float
    moe_build: dict | None = None  # a pre-quantized build that would not load, and what was loaded instead


def resolve_model(config: dict, config_path: Path) -> tuple[str, bool]:
    """The model to load and whether by its exact name: a hub repo always is, so what loads is what the
    download step fetched (Unsloth's name mapping would fetch another copy: Qwen/Qwen3-30B-A3B in 4-bit
    becomes unsloth/Qwen3-30B-A3B, the same ~61 GB again). The download step may have fetched the
    fallback instead: it says so."""
    if config["base_model_dir"]:
        path = (config_path.parent / config["base_model_dir"]).resolve()
        if not (path / "config.json").is_file():
            raise InputError(f"base_model_dir {path} has no config.json")
        return str(path), False
    asked = config["model_to_load"] or config["base_model"]
    try:
        fetched = json.loads(Path(os.environ.get("FULLCYCLE_DOWNLOAD_REPORT", "")).read_text()).get("repo")
    except (OSError, ValueError, AttributeError):
        fetched = None
    if fetched and fetched != asked and fetched == config["fallback_model"]:
        asked = fetched
    return asked, not Path(asked).expanduser().is_dir()


class NoGpuStack(Exception):
    """A GPU is there and the stack cannot use it (torch without CUDA, Unsloth that does not import):
    training anyway would load a 30B model the wrong way and die after the download. Exit 4."""

    exit_code = NO_GPU_STACK


def nvidia_smi() -> dict[str, str] | None:
    """The host's GPUs, driver and the CUDA version the driver supports; None when there is no GPU."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30)
        header = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    if query.returncode != 0 or not query.stdout.strip():
        return None
    listed = query.stdout.strip().splitlines()
    name, _, driver = listed[0].partition(",")
    cuda = header.split("CUDA Version:", 1)[1].split()[0] if "CUDA Version:" in header else "unknown"
    return {"gpu": name.strip(), "driver": driver.strip(), "cuda": cuda, "count": len(listed)}


def check_cuda(gpu: dict[str, str] | None) -> None:
    """Stop before loading anything when a GPU is present and torch cannot use it."""
    if gpu is None:
        return
    import torch

    if torch.cuda.is_available():
        return
    build = f"torch {torch.__version__} built for CUDA {torch.version.cuda or 'none (a CPU build)'}"
    raise NoGpuStack(f"a GPU is present ({gpu['gpu']}, driver {gpu['driver']}, supports CUDA {gpu['cuda']}) but "
                 f"{build} cannot use it: nothing was loaded. Install a torch build for CUDA <= {gpu['cuda']} "
                 f"(or rent a host with a newer driver: [runpod] min_cuda_version)")


def use_unsloth() -> bool:
    """Unsloth wherever torch sees a GPU (FULLCYCLE_NO_UNSLOTH=1 opts out, for a known reason).

    Unsloth raises ImportError for ordinary environment faults (a torchvision op, versions that do not
    match), not only when it is absent. Falling back to plain transformers then would download the
    bf16 weights and die for memory after the most expensive minutes of the run: on a GPU an import
    failure stops the run here, with Unsloth's own words."""
    if os.environ.get("FULLCYCLE_NO_UNSLOTH"):
        return False
    import torch

    if not torch.cuda.is_available():
        return False
    try:
        import unsloth  # noqa: F401  (must come before transformers/trl/peft)
    except Exception as exc:  # ImportError, and what a broken install raises while importing
        raise NoGpuStack(f"unsloth does not import on this GPU pod ({type(exc).__name__}: {exc}); nothing was loaded. "
                         f"Fix the pod's stack (remote/requirements-gpu.txt, [remote] torch_index) or set "
                         f"FULLCYCLE_NO_UNSLOTH=1 to train with plain transformers knowingly") from exc
    return True


def stack() -> tuple[dict | None, bool]:
    """The GPU, torch's use of it and Unsloth's import: checked before anything loads (the trainer's
    first step and the preflight's)."""
    gpu = nvidia_smi()
    check_cuda(gpu)
    return gpu, use_unsloth()


def announce(samples: int, config: dict, gpu: dict | None, unsloth: bool) -> None:
    """The run's first line: what trains on what (the orchestrator's log shows it as it comes)."""
    say(f"{samples} samples, base model {config['base_model']}, backend {'unsloth' if unsloth else 'transformers+peft+trl'}"
        + (f", GPU {gpu['gpu']} (driver {gpu['driver']}, CUDA {gpu['cuda']})" if gpu else ""))


class ModelLoadError(Exception):
    """The base model could not be loaded (a wrong id, a missing file, a failed download): exit 3."""

    exit_code = NO_MODEL


def load_base(model_id: str, config: dict, unsloth: bool, exact: bool = False):
    """The base model and its tokenizer, without the LoRA (remote/trainer/lora.py attaches it)."""
    try:
        if unsloth:
            from unsloth import FastLanguageModel

            return FastLanguageModel.from_pretrained(
                model_name=model_id, max_seq_length=config["max_seq_length"], dtype=None,
                load_in_4bit=config["load_in_4bit"], use_exact_model_name=exact,
            )
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_id)
        dtype, device_map, quantization = torch.float32, None, None
        if torch.cuda.is_available():  # plain transformers on a GPU: the weights go there, 4-bit when asked
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            torch.cuda.set_device(ranks.local_rank())  # under torchrun, each rank its own GPU
            device_map = {"": ranks.local_rank()}
            if config["load_in_4bit"]:
                from transformers import BitsAndBytesConfig

                quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype)
        model = AutoModelForCausalLM.from_pretrained(model_id, dtype=dtype, device_map=device_map,
                                                     quantization_config=quantization)
        return model, tokenizer
    except Exception as exc:  # a wrong id or a missing file: say so plainly
        raise ModelLoadError(f"could not load base model {model_id!r}: {exc}") from exc


def base_model(config: dict, config_path: Path, unsloth: bool) -> Loaded:
    """Load the base model (downloaded already by the download step). A pre-quantized MoE build that
    fails to load falls back, once, to its bf16 weights quantized while loading; the record says so."""
    model_id, exact = resolve_model(config, config_path)
    loading, moe_build = time.time(), None
    try:
        model, tokenizer = load_base(model_id, config, unsloth, exact)
    except ModelLoadError as exc:
        if not (exact and config["fallback_model"] and model_id != config["fallback_model"]):
            raise
        fallback = config["fallback_model"]
        say(f"WARNING: the pre-quantized build {model_id} did not load ({exc.__cause__ or exc}); "
            f"loading {fallback} instead, quantized while loading (once)")
        from trainer import download

        try:
            fetched = download.fetch(fallback, config["fallback_bytes"], config["download_stall_s"])
        except download.DownloadFailed as failed:
            raise ModelLoadError(f"{exc}; and its fallback {fallback}: {failed}") from failed
        moe_build = {"asked": model_id, "used": fallback, "why": str(exc.__cause__ or exc)[:400], "download": fetched}
        model_id, loading = fallback, time.time()
        model, tokenizer = load_base(model_id, config, unsloth, exact=True)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    seconds = round(time.time() - loading, 2)
    say(f"base model {model_id} loaded in {seconds}s")
    return Loaded(model, tokenizer, model_id, seconds, moe_build)
