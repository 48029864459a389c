"""Every model family people fine-tune, from the trainer's LoRA to a GGUF the real llama.cpp loads.

For each family a tiny random model is built from its transformers config class; llama.cpp's own
converter writes it as the base GGUF a user would have; a LoRA on the modules the trainer picks
("auto") is given large random B (an adapter that moves nothing would prove nothing), converted by
tasks/post/gguf_lora.py, and run in llama.cpp next to peft: greedy tokens must be equal (the margin
argument of test_llamacpp.py). The table is printed at the end of the session.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tasks.model import families
from tasks.model import tiny as tinymodel
from tasks.post import gguf_lora
from tests import llamacpp
from tests.conftest import table_row
from tests.helpers import EXAMPLES, train_config, trainer
from tests.post.test_llamacpp import (
    MARGIN,
    _special_ids,
    complete,
    peft_greedy,
    prompt_tokens,
)

PROMPTS = ("The meeting notes", "Remember to", "What did we decide about")
NO_MTP = {"qwen3_5", "qwen3_5_moe"}  # converted without the multi-token-prediction layers a tiny model lacks
FAMILIES = ["llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "qwen3_5", "qwen3_5_moe", "gpt_oss", "gemma3_text",
            "phi3"]


@pytest.fixture(scope="module")
def clean_data(tmp_path_factory) -> Path:
    from tasks.data.cleaning import clean

    folder = tmp_path_factory.mktemp("families")
    raw = folder / "raw.jsonl"
    raw.write_bytes(b"".join(p.read_bytes() for p in sorted(EXAMPLES.glob("*.jsonl"))))
    clean(raw, folder / "clean.jsonl")
    return folder / "clean.jsonl"


def _adapter(model_dir: Path, out: Path, seed: int) -> tuple[Path, list[str]]:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    targets = trainer("lora").target_modules(train_config(), model)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=targets, task_type="CAUSAL_LM"))
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.5)
    peft_model.save_pretrained(out)
    shutil.copy(model_dir / "config.json", out / "base_model_config.json")
    return out, targets


@pytest.mark.slow
@pytest.mark.parametrize("family", FAMILIES)
def test_family_adapter_in_llamacpp(family, clean_data, llama_bin, tmp_path):
    model = tinymodel.build(clean_data, tmp_path / "model", {"architecture": family})
    config = json.loads((model / "config.json").read_text())
    row = {"family": family, "class": config["architectures"][0], "targets": "", "gguf arch": "",
           "llama.cpp loads": "no", "tokens equal peft": "no"}
    try:
        _check(family, model, row, clean_data, llama_bin, tmp_path)
    finally:
        table_row("families", row)


def _check(family, model, row, clean_data, llama_bin, tmp_path):
    banned = _special_ids(model)
    for prompt in PROMPTS:  # a random model's greedy path must be far from a tie to compare
        want_plain, text_plain, margin_plain = peft_greedy(model, None, banned, prompt)
        if margin_plain > MARGIN:
            break
    for seed in range(1, 6):  # random B whose greedy path is far from a tie (rounding cannot flip a token)
        adapter, targets = _adapter(model, tmp_path / f"adapter-{seed}", seed)
        want_lora, text_lora, margin_lora = peft_greedy(model, adapter, banned, prompt)
        if margin_lora > MARGIN:
            break
    row["targets"] = ",".join(t.rsplit(".", 1)[-1] for t in dict.fromkeys(targets))
    written = gguf_lora.convert(adapter, tmp_path / "adapter.gguf")
    row["gguf arch"] = written["architecture"]
    base = llamacpp.convert_base(model, tmp_path / "base.gguf", *(["--no-mtp"] if family in NO_MTP else []))
    plain = complete(llama_bin, base, banned=banned, prompt=prompt)
    lora = complete(llama_bin, base, "--lora", str(tmp_path / "adapter.gguf"), banned=banned, prompt=prompt)
    assert plain.returncode == 0 and lora.returncode == 0, plain.stderr[-2000:] + lora.stderr[-2000:]
    row["llama.cpp loads"] = "yes"
    from transformers import AutoTokenizer

    assert prompt_tokens(lora.stderr) == AutoTokenizer.from_pretrained(model)(
        prompt, add_special_tokens=False)["input_ids"]
    assert min(margin_plain, margin_lora) > MARGIN, "greedy path too close to a tie to compare"
    assert want_lora != want_plain, "the adapter does not move peft's output: the test would prove nothing"
    assert plain.stdout == text_plain, (plain.stdout, text_plain)
    assert lora.stdout == text_lora, (lora.stdout, text_lora)
    row["tokens equal peft"] = "yes"


def test_unknown_architectures_are_known_before_renting():
    assert families.gguf_unsupported({"architectures": ["Qwen3MoeForCausalLM"]}) is None
    why = families.gguf_unsupported({"architectures": ["MambaForCausalLM"]})
    assert why and "MambaForCausalLM" in why
