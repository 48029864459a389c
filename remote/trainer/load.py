"""Loading the base model: the GPU and torch checked first (nothing is loaded where torch cannot use
the GPU), Unsloth where CUDA and Unsloth are, else transformers + peft; the download's progress
reported while it runs."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from trainer.config import InputError, say


def resolve_model(config: dict, config_path: Path) -> str:
    if config.get("base_model_dir"):
        path = (config_path.parent / config["base_model_dir"]).resolve()
        if not (path / "config.json").is_file():
            raise InputError(f"base_model_dir {path} has no config.json")
        return str(path)
    return config.get("model_to_load") or config["base_model"]


class NoGpuStack(Exception):
    """A GPU is there and the stack cannot use it (torch without CUDA, Unsloth that does not import):
    training anyway would load a 30B model the wrong way and die after the download. Exit 4."""


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


class ModelLoadError(Exception):
    """The base model could not be loaded (a wrong id, a missing file, a failed download): exit 3."""


def load_base(model_id: str, config: dict, unsloth: bool):
    """The base model and its tokenizer, without the LoRA (tasks/trainer/lora.py attaches it)."""
    try:
        if unsloth:
            from unsloth import FastLanguageModel

            return FastLanguageModel.from_pretrained(
                model_name=model_id, max_seq_length=config["max_seq_length"], dtype=None,
                load_in_4bit=bool(config.get("load_in_4bit", False)),
            )
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model_id)
        dtype, device_map, quantization = torch.float32, None, None
        if torch.cuda.is_available():  # plain transformers on a GPU: the weights go there, 4-bit when asked
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            device_map = {"": torch.cuda.current_device()}
            if config.get("load_in_4bit"):
                from transformers import BitsAndBytesConfig

                quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=dtype)
        model = AutoModelForCausalLM.from_pretrained(model_id, dtype=dtype, device_map=device_map,
                                                     quantization_config=quantization)
        return model, tokenizer
    except Exception as exc:  # a wrong id or a missing file: say so plainly
        raise ModelLoadError(f"could not load base model {model_id!r}: {exc}") from exc


def base_model(config: dict, config_path: Path, unsloth: bool):
    """Load the base model, reporting the download's progress while a hub model downloads."""
    model_id = resolve_model(config, config_path)
    loading = time.time()
    progress = DownloadProgress(config) if not Path(model_id).is_dir() else None
    try:
        model, tokenizer = load_base(model_id, config, unsloth)
    finally:
        if progress:
            progress.stop()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    seconds = round(time.time() - loading, 2)
    say(f"base model loaded (downloaded if not cached) in {seconds}s")
    return model, tokenizer, model_id, seconds


class DownloadProgress:
    """While the base model downloads, say how far it is every PROGRESS_S: the hub's progress bars
    redraw with carriage returns, which a line follower never shows, so a long download looked hung."""

    def __init__(self, config: dict, every: float | None = None) -> None:
        self.expected = int(config.get("download_bytes") or 0)
        self.every = every or float(os.environ.get("FULLCYCLE_PROGRESS_S", "30"))
        self.root = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
        self.done = threading.Event()
        self.start = self._size()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _size(self) -> int:
        total = 0
        for folder, _, files in os.walk(self.root):
            for name in files:
                try:
                    total += os.lstat(os.path.join(folder, name)).st_size
                except OSError:
                    pass
        return total

    def _run(self) -> None:
        started, last = time.time(), self.start
        while not self.done.wait(self.every):
            now = self._size()
            got, rate = now - self.start, (now - last) / self.every
            last = now
            line = f"downloading the base model: {got / 1e9:.2f} GB"
            if self.expected:
                left = max(self.expected - got, 0)
                eta = f", ~{left / rate / 60:.0f} min left" if rate > 0 else ""
                line += f" of {self.expected / 1e9:.1f} GB{eta}"
            say(f"{line} ({rate / 1e6:.1f} MB/s, {time.time() - started:.0f}s)")

    def stop(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)
