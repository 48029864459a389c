"""The on-pod measurement (remote/trainer/measure.py) on a real tiny model with a real LoRA: the loss
counts completion tokens only, an adapter that changes nothing measures as the base, and a failure
is recorded (or raised in the preflight), never skipped."""

from __future__ import annotations

import json

import pytest

from tests.helpers import train_config, trainer

ROWS = [{"instruction": f"What is {i} plus {i}?", "input": "", "output": f"{i} plus {i} is {2 * i}."} for i in range(6)]


@pytest.fixture(scope="module")
def lora(tmp_path_factory):
    """The tiny base model with a fresh LoRA (its B matrices zero: it changes nothing yet), its tokenizer,
    and a folder holding the held-out rows and that same adapter saved as 'the previous one'."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tasks.model import tiny

    root = tmp_path_factory.mktemp("measure")
    data = root / "heldout.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in ROWS))
    tiny.build(data, root / "base")
    tokenizer = AutoTokenizer.from_pretrained(root / "base")
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(root / "base"),
                           LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    model.save_pretrained(root / "previous")
    return model, tokenizer, root


def _config(**eval_spec):
    return train_config(eval={"heldout": "heldout.jsonl", "prompts": ["What is 2 plus 2?"], "max_new_tokens": 4,
                              **eval_spec})


@pytest.mark.slow  # a real model and LoRA
def test_the_loss_is_over_completion_tokens_only(lora):
    model, tokenizer, _root = lora
    measure = trainer("measure")
    row = {"prompt": "What is 1 plus 1?", "completion": " 2"}
    loss, tokens = measure.completion_loss(model, tokenizer, [row], max_len=256)
    assert tokens == len(tokenizer(" 2", add_special_tokens=False)["input_ids"]) and loss > 0
    prompt_len = len(tokenizer(row["prompt"], add_special_tokens=False)["input_ids"])
    assert measure.completion_loss(model, tokenizer, [row], max_len=prompt_len) == (None, 0)  # cut to its prompt


@pytest.mark.slow  # a real model and LoRA
def test_an_adapter_that_changes_nothing_measures_as_the_base_and_as_the_previous(lora):
    model, tokenizer, root = lora
    found = trainer("measure").measure(model, tokenizer, _config(previous_adapter="previous", previous_date="2026-12-05"),
                                       root, unsloth=False)
    assert found["heldout_samples"] == len(ROWS) and found["heldout_tokens"] > 0
    assert found["adapter_loss"] == found["base_loss"] == found["previous_loss"]
    assert found["previous_date"] == "2026-12-05" and found["started_from"] == "base"
    answers = found["answers"][0]
    assert answers["prompt"] == "What is 2 plus 2?" and answers["today"] == answers["base"] == answers["previous"]
    assert model.active_adapter == "default" and "previous" not in model.peft_config  # today's adapter is back


@pytest.mark.slow  # a real model and LoRA
def test_a_measurement_that_fails_is_recorded_as_failed_and_raised_in_the_preflight(lora):
    model, tokenizer, root = lora
    measure = trainer("measure")
    cut = _config()
    cut["max_seq_length"] = 4  # every held-out row cut to its prompt: nothing measured
    failed = measure.measure(model, tokenizer, cut, root, unsloth=False)
    assert failed["failed"].startswith("ValueError: no held-out token was measured (6 samples")
    with pytest.raises(ValueError, match="no held-out token was measured"):
        measure.measure(model, tokenizer, cut, root, unsloth=False, strict=True)
    skipped = measure.measure(model, tokenizer, train_config(eval={"heldout": None}), root, unsloth=False)
    assert skipped == {"skipped": "no held-out set (see the dataset report: [eval] min_samples)"}


def test_an_answer_is_shown_as_a_person_reads_it():
    readable = trainer("measure").readable
    assert readable("  two\ufffd lines\x07\nhere ") == "two lines\nhere"
    assert readable("\x1b[31mred\x00") == "[31mred"


def test_throughput_is_per_second_in_all_and_per_gpu(monkeypatch):
    fit = trainer("fit")
    assert fit.throughput(1000, 4.0) == {"gpus": 1, "tokens": 1000, "tokens_per_s": 250.0, "tokens_per_s_per_gpu": 250.0}
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert fit.throughput(1000, 4.0)["tokens_per_s_per_gpu"] == 125.0
    assert fit.throughput(None, 4.0)["tokens_per_s"] is None and fit.throughput(10, 0.0)["tokens_per_s"] is None


def test_tokens_are_counted_from_each_batch_the_collator_builds():
    import torch

    fit = trainer("fit")
    padded = fit.TokenCount(lambda rows: {"input_ids": torch.ones(2, 5), "attention_mask": torch.tensor(
        [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])})
    padded([{}]), padded([{}])
    assert padded.tokens == 16
    packed = fit.TokenCount(lambda rows: {"input_ids": torch.ones(1, 7)})  # padding-free: every id is a token
    packed([{}])
    assert packed.tokens == 7


def test_where_no_batch_was_counted_the_tokens_are_estimated_from_the_rows():
    fit = trainer("fit")

    class Trained:
        train_dataset = {"input_ids": [[0] * 10, [0] * 300, [0] * 20, [0] * 30]}

    config = train_config(max_seq_length=256, per_device_train_batch_size=2, gradient_accumulation_steps=1,
                          num_train_epochs=2)
    assert fit._estimate(Trained(), config, steps=4) == (10 + 256 + 20 + 30) * 2  # 2 steps an epoch, 4 steps
    assert fit._estimate(Trained(), config, steps=1) == (10 + 256 + 20 + 30) // 2


@pytest.mark.slow  # a real model and LoRA
def test_the_results_and_the_base_models_config_come_home(lora, tmp_path):
    model, tokenizer, root = lora
    save = trainer("save")
    save.adapter(model, tokenizer, str(root / "base"), tmp_path / "out")
    assert json.loads((tmp_path / "out" / "base_model_config.json").read_text()) == json.loads(
        (root / "base" / "config.json").read_text())
    assert (tmp_path / "out" / "adapter_config.json").is_file()
    save.adapter(model, tokenizer, "org/a-hub-id", tmp_path / "hub")  # a hub id: written from the loaded model
    assert json.loads((tmp_path / "hub" / "base_model_config.json").read_text())["model_type"] == model.config.model_type
    save.results(tmp_path / "out", {"verdict": None}, {"final_loss": 1.5})
    assert json.loads((tmp_path / "out" / "metrics.json").read_text()) == {"final_loss": 1.5}
