"""Loading the base model (remote/trainer/load.py): nothing loads where torch cannot use the GPU, and a
long download says how far it is."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from tests.helpers import REMOTE, train_config, trainer

ENTRY = REMOTE / "train_unsloth.py"


def test_a_gpu_torch_cannot_use_stops_before_loading_anything(tmp_path):
    fake = tmp_path / "bin" / "nvidia-smi"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\ncase "$*" in *--query-gpu*) echo "NVIDIA GeForce RTX 5090, 550.54.15" ;; '
                    '*) echo "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |" ;; esac\n')
    fake.chmod(0o755)
    (tmp_path / "data.jsonl").write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n")
    config = {"base_model": "Qwen/Qwen3-30B-A3B", "lora_rank": 8, "num_train_epochs": 1, "learning_rate": 1e-4,
              "per_device_train_batch_size": 1, "gradient_accumulation_steps": 1, "max_seq_length": 64}
    (tmp_path / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "PATH": f"{fake.parent}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(ENTRY), "--data", str(tmp_path / "data.jsonl"), "--config",
                           str(tmp_path / "config.json"), "--output", str(tmp_path / "out")], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 4, proc.stderr[-2000:]
    error = proc.stderr.strip().splitlines()[-1]
    for fact in ("NVIDIA GeForce RTX 5090", "driver 550.54.15", "supports CUDA 12.4", "torch ", "nothing was loaded"):
        assert fact in error, error
    assert "base model loaded" not in proc.stdout and not (tmp_path / "out").exists()
    assert time.monotonic() - started < 120


def test_an_unsloth_that_does_not_import_on_a_gpu_stops_the_run_with_its_words(tmp_path, monkeypatch):
    """Unsloth raises ImportError for environment faults (a torchvision op, mismatched versions): on a
    GPU that is never a reason to train with plain transformers (a bf16 download, then out of memory)."""
    import torch

    fake = tmp_path / "site" / "unsloth"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('operator torchvision::nms does not exist')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "unsloth", raising=False)
    monkeypatch.delenv("FULLCYCLE_NO_UNSLOTH", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    load = trainer("load")
    import pytest

    with pytest.raises(load.NoGpuStack, match="torchvision::nms does not exist"):
        load.use_unsloth()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # no GPU: the CPU path, as before
    assert load.use_unsloth() is False


def test_the_measurement_takes_the_device_the_logits_come_from():
    """Unsloth may offload untied input embeddings to host RAM: inputs go where the output layer is."""
    import torch

    measure = trainer("measure")

    class Offloaded(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(4, 2, device="meta")  # the first parameter: somewhere else
            self.head = torch.nn.Linear(2, 4)

        def get_output_embeddings(self):
            return self.head

    assert measure.compute_device(Offloaded()) == torch.device("cpu")
    source = "".join(p.read_text() for p in (REMOTE / "trainer").glob("*.py"))
    assert "next(model.parameters()).device" not in source


class _FakeUnsloth:
    """Unsloth's loader as the trainer calls it (a double inside a unit test: no GPU here). The
    keywords are checked against Unsloth's own source in tests/remote/test_gpu_stack.py."""

    def __init__(self, refuse: str | None = None) -> None:
        self.calls: list[dict] = []
        self.refuse = refuse

    def from_pretrained(self, **kwargs):
        self.calls.append(kwargs)
        if kwargs["model_name"] == self.refuse:
            raise RuntimeError("Qwen3MoeForCausalLM: pre-quantized experts are not supported here")

        class Tokenizer:
            pad_token, eos_token = None, "</s>"

        return object(), Tokenizer()


MOE = train_config(base_model="Qwen/Qwen3-30B-A3B", model_to_load="unsloth/Qwen3-30B-A3B-bnb-4bit",
                   fallback_model="Qwen/Qwen3-30B-A3B", fallback_bytes=61_064_245_248, moe_build="prequantized",
                   load_in_4bit=True, max_seq_length=2048, download_stall_s=120)


def _with_unsloth(monkeypatch, fake):
    import types

    module = types.ModuleType("unsloth")
    module.FastLanguageModel = fake
    monkeypatch.setitem(sys.modules, "unsloth", module)
    monkeypatch.delenv("FULLCYCLE_DOWNLOAD_REPORT", raising=False)


def test_a_prequantized_moe_build_is_loaded_by_its_exact_name(tmp_path, monkeypatch):
    fake = _FakeUnsloth()
    _with_unsloth(monkeypatch, fake)
    loaded = trainer("load").base_model(MOE, tmp_path / "config.json", unsloth=True)
    assert fake.calls == [{"model_name": "unsloth/Qwen3-30B-A3B-bnb-4bit", "max_seq_length": 2048, "dtype": None,
                           "load_in_4bit": True, "use_exact_model_name": True}]
    assert loaded.model_id == "unsloth/Qwen3-30B-A3B-bnb-4bit" and loaded.moe_build is None


def test_a_build_that_will_not_load_falls_back_to_bf16_once_and_says_so(tmp_path, monkeypatch):
    fake = _FakeUnsloth(refuse="unsloth/Qwen3-30B-A3B-bnb-4bit")
    _with_unsloth(monkeypatch, fake)
    download = trainer("download")
    fetched = []
    monkeypatch.setattr(download, "fetch", lambda repo, expected, stall: fetched.append((repo, expected)) or
                        {"ok": True, "repo": repo, "bytes": expected})
    loaded = trainer("load").base_model(MOE, tmp_path / "config.json", unsloth=True)
    assert [c["model_name"] for c in fake.calls] == ["unsloth/Qwen3-30B-A3B-bnb-4bit", "Qwen/Qwen3-30B-A3B"]
    assert fake.calls[1]["use_exact_model_name"] is True and fetched == [("Qwen/Qwen3-30B-A3B", 61_064_245_248)]
    assert loaded.moe_build["used"] == "Qwen/Qwen3-30B-A3B" and "not supported" in loaded.moe_build["why"]


def test_a_dense_or_bf16_load_never_falls_back(tmp_path, monkeypatch):
    import pytest

    fake = _FakeUnsloth(refuse="Qwen/Qwen3-30B-A3B")
    _with_unsloth(monkeypatch, fake)
    load = trainer("load")
    config = dict(MOE, model_to_load="Qwen/Qwen3-30B-A3B")
    with pytest.raises(load.ModelLoadError, match="could not load base model 'Qwen/Qwen3-30B-A3B'"):
        load.base_model(config, tmp_path / "config.json", unsloth=True)
    assert len(fake.calls) == 1


def test_the_bf16_weights_load_by_the_exact_name_the_download_fetched(tmp_path, monkeypatch):
    """Unsloth maps Qwen/Qwen3-30B-A3B in 4-bit to unsloth/Qwen3-30B-A3B (its BAD_MAPPINGS): loaded by
    that name, the trainer would download the same ~61 GB a second time, untimed."""
    fake = _FakeUnsloth()
    _with_unsloth(monkeypatch, fake)
    config = {k: v for k, v in MOE.items() if k not in ("fallback_model", "fallback_bytes")}
    loaded = trainer("load").base_model(dict(config, model_to_load="Qwen/Qwen3-30B-A3B", moe_build="bf16"),
                                        tmp_path / "config.json", unsloth=True)
    assert fake.calls == [{"model_name": "Qwen/Qwen3-30B-A3B", "max_seq_length": 2048, "dtype": None,
                           "load_in_4bit": True, "use_exact_model_name": True}]
    assert loaded.model_id == "Qwen/Qwen3-30B-A3B"
