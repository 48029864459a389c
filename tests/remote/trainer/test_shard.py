"""One LoRA trained by processes that each hold a shard of the base model (remote/trainer/shard.py,
loop.py, train_fsdp.py), on CPUs over gloo: the same loss and adapter as one process holding it all,
half the frozen bytes on each of two ranks, and the checkpoint opened by rank 0 alone."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import threads
from tests.helpers import REMOTE

pytestmark = pytest.mark.slow  # two real trainings under torchrun

# Every rank records the weights files it opens (sitecustomize runs first in each process torchrun starts;
# safetensors opens them in Rust, so its two entry points are wrapped rather than Python's open audited).
AUDIT = '''import os
if os.environ.get("FULLCYCLE_AUDIT"):
    import safetensors, safetensors.torch

    def _record(path):
        with open(os.environ["FULLCYCLE_AUDIT"] + "." + os.environ.get("RANK", "x"), "a") as out:
            out.write(str(path) + "\\n")

    def _opening(real):
        def opened(path, *args, **kwargs):
            _record(path)
            return real(path, *args, **kwargs)
        return opened

    safetensors.safe_open = _opening(safetensors.safe_open)
    safetensors.torch.safe_open = safetensors.safe_open
    safetensors.torch.load_file = _opening(safetensors.torch.load_file)
'''
TOLERANCE = 1e-5  # loss and adapter weights, 2 ranks against 1 (bf16 compute, fp32 reduction; measured: 0.0)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same training with one rank and with two: their folders and their wall seconds."""
    from tasks.model import tiny

    root = tmp_path_factory.mktemp("shard")
    data = root / "data.jsonl"
    data.write_text("".join(json.dumps({"instruction": f"What is {i} plus {i}?", "input": "",
                                        "output": f"{i} plus {i} is {2 * i}."}) + "\n" for i in range(40)))
    tiny.build(data, root / "base_model")
    (root / "audit").mkdir()
    (root / "audit" / "sitecustomize.py").write_text(AUDIT)
    config = {"base_model": "tiny", "base_model_dir": "base_model", "lora_rank": 8, "lora_alpha": 16,
              "num_train_epochs": 1, "learning_rate": 0.01, "per_device_train_batch_size": 1,
              "gradient_accumulation_steps": 2, "max_seq_length": 256, "max_steps": 3, "seed": 42,
              "target_modules": "auto", "gpu_count": 2, "eval": {"heldout": None}}
    (root / "config.json").write_text(json.dumps(config))
    found = {}
    for ranks in (1, 2):
        out = root / f"out{ranks}"
        env = {**os.environ, "PYTHONPATH": f"{root / 'audit'}{os.pathsep}{REMOTE}", "OMP_NUM_THREADS": str(threads()),
               "FULLCYCLE_AUDIT": str(root / f"opened{ranks}")}
        proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                               str(ranks), str(REMOTE / "train_fsdp.py"), "--data", str(data), "--config",
                               str(root / "config.json"), "--output", str(out)], cwd=root, env=env,
                              capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        found[ranks] = out
    return root, found


def test_two_ranks_each_hold_half_and_train_as_one(runs):
    from safetensors.torch import load_file

    _, out = runs
    one, two = (json.loads((out[n] / "metrics.json").read_text()) for n in (1, 2))
    assert two["scale"]["sharding"] == "fsdp" and two["scale"]["ranks"] == 2
    whole, halves = one["scale"]["frozen_bytes_per_rank"][0], two["scale"]["frozen_bytes_per_rank"]
    assert len(halves) == 2 and all(abs(h / whole - 0.5) < 0.05 for h in halves), (whole, halves)
    for a, b in zip(one["steps"], two["steps"], strict=True):
        assert abs(a["loss"] - b["loss"]) <= TOLERANCE, (one["steps"], two["steps"])
    first, second = (load_file(str(out[n] / "adapter_model.safetensors")) for n in (1, 2))
    assert sorted(first) == sorted(second) and any(".lora_B." in k for k in first)
    assert max((first[k].float() - second[k].float()).abs().max().item() for k in first) <= TOLERANCE
    assert max(v.abs().max().item() for k, v in second.items() if ".lora_B." in k) > 0  # it learnt something


def test_the_adapter_is_standard_peft_files(runs):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    root, out = runs
    config = json.loads((out[2] / "adapter_config.json").read_text())
    assert config["peft_type"] == "LORA" and config["r"] == 8
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(root / "base_model"), out[2])
    assert any("lora_A" in name for name, _ in model.named_parameters())
    assert (out[2] / "base_model_config.json").is_file() and (out[2] / "tokenizer.json").is_file()


def test_rank_1_never_opens_the_checkpoint(runs):
    root, _ = runs
    opened = {rank: Path(f"{root / 'opened2'}.{rank}") for rank in (0, 1)}
    assert opened[0].is_file() and "model.safetensors" in opened[0].read_text()
    assert not opened[1].exists(), opened[1].read_text()


def test_4bit_weights_are_refused_with_the_reason(tmp_path):
    from tests.helpers import trainer

    shard = trainer("shard")
    with pytest.raises(Exception, match="4-bit weights cannot be sharded"):
        shard.build(tmp_path, {"load_in_4bit": True}, None, None)
