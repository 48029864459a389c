"""The trainer's own behaviour before and around training, on the CPU (remote/train_unsloth.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers import REPO

TRAINER = REPO / "remote" / "train_unsloth.py"
QWEN3_LIKE = (  # the shape of Qwen3's template: a hybrid-reasoning model's empty think block when thinking is off
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% if enable_thinking is defined and not enable_thinking %}"
    "<think>\n\n</think>\n\n{% endif %}{% endif %}")


def _trainer():
    spec = importlib.util.spec_from_file_location("trainer", TRAINER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    proc = subprocess.run([sys.executable, str(TRAINER), "--data", str(tmp_path / "data.jsonl"), "--config",
                           str(tmp_path / "config.json"), "--output", str(tmp_path / "out")], capture_output=True,
                          text=True, env=env, timeout=300)
    assert proc.returncode == 4, proc.stderr[-2000:]
    error = proc.stderr.strip().splitlines()[-1]
    for fact in ("NVIDIA GeForce RTX 5090", "driver 550.54.15", "supports CUDA 12.4", "torch ", "nothing was loaded"):
        assert fact in error, error
    assert "base model loaded" not in proc.stdout and not (tmp_path / "out").exists()
    assert time.monotonic() - started < 120


def test_the_allocator_setting_comes_before_torch():
    source = TRAINER.read_text()
    assert source.index('os.environ.setdefault("PYTORCH_ALLOC_CONF", "expandable_segments:True")') < source.index(
        "import torch")


def test_moe_router_aux_loss_is_off():
    from tasks import families, tinymodel

    model = families.tiny_model({**tinymodel.SPEC, "architecture": "qwen3_moe"}, vocab_size=64, eos_token_id=1,
                                pad_token_id=0)
    model.config.output_router_logits, model.config.router_aux_loss_coef = True, 0.001  # what trl turns on
    _trainer().quiet_router(model)
    assert model.config.output_router_logits is False and model.config.router_aux_loss_coef == 0.0


@pytest.fixture(scope="module")
def qwen3_tokenizer(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.train_from_iterator(["hello there, how are you? " * 20], trainer=trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = QWEN3_LIKE
    return tok


def test_training_renders_the_prompt_as_it_is_served(qwen3_tokenizer):
    trainer = _trainer()
    row = trainer.prompt_completion(qwen3_tokenizer)({"instruction": "Hi", "output": "Hello"})
    assert row["prompt"] == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert row["completion"] == "Hello<|im_end|>"
    fmt = trainer.prompt_format(qwen3_tokenizer)
    assert fmt == {"user_prefix": "<|im_start|>user\n",
                   "assistant_prefix": "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
                   "eos": "<|im_end|>"}


def test_the_modelfile_serves_the_trained_format(tmp_path, monkeypatch, qwen3_tokenizer):
    from tasks import poststeps
    from tasks.context import RunContext
    from tests.helpers import make_project

    proj = make_project(tmp_path)
    monkeypatch.setenv("FULLCYCLE_CONFIG", proj.env["FULLCYCLE_CONFIG"])
    ctx = RunContext.load(date=proj.date)
    ctx.paths.final_adapter_dir.mkdir(parents=True)
    (ctx.paths.final_adapter_dir / "metrics.json").write_text(json.dumps(
        {"prompt_format": _trainer().prompt_format(qwen3_tokenizer)}))
    text = poststeps._modelfile_text(ctx, "qwen3:30b-a3b", adapter=True)
    assert ('TEMPLATE """<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n'
            '{{ .Response }}<|im_end|>"""') in text
    assert "PARAMETER stop <|im_end|>" in text


def test_a_cut_sample_keeps_its_eos(qwen3_tokenizer):
    from datasets import Dataset

    trainer = _trainer()
    rows = Dataset.from_list([{"instruction": "Hi", "output": "hello there " * 40}])
    rows = rows.map(trainer.prompt_completion(qwen3_tokenizer), remove_columns=rows.column_names)
    cut = trainer.fit_to_length(rows, qwen3_tokenizer, 48, "cut")
    assert cut[0]["completion"].endswith("<|im_end|>") and len(cut[0]["completion"]) < len("hello there " * 40)


def test_a_long_download_reports_its_progress(tmp_path, monkeypatch, capsys):
    """The hub's progress bars redraw with carriage returns, which a followed log never shows: the
    trainer says how far the base model's download is, at a steady pace, in whole lines."""
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    progress = _trainer().DownloadProgress({"download_bytes": 4_000_000}, every=0.2)
    blob = tmp_path / "hub" / "models--x" / "blobs" / "part"
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"\0" * 1_000_000)
    time.sleep(0.5)
    progress.stop()
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "downloading the base model" in ln]
    assert lines and all("GB of 0.0 GB" in ln and "MB/s" in ln and "\r" not in ln for ln in lines)
    assert any("min left" in ln for ln in lines)  # a rate was measured: the time left is estimated
