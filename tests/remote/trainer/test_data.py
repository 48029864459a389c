"""The training rows (remote/trainer/data.py): the prompt as it is served, and a cut sample keeps its EOS."""

from __future__ import annotations

from tests.helpers import trainer


def test_training_renders_the_prompt_as_it_is_served(qwen3_tokenizer):
    data = trainer("data")
    row = data.prompt_completion(qwen3_tokenizer)({"instruction": "Hi", "output": "Hello"})
    assert row["prompt"] == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    assert row["completion"] == "Hello<|im_end|>"
    fmt = data.prompt_format(qwen3_tokenizer)
    assert fmt == {"user_prefix": "<|im_start|>user\n",
                   "assistant_prefix": "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n",
                   "eos": "<|im_end|>"}


def test_a_cut_sample_keeps_its_eos(qwen3_tokenizer):
    from datasets import Dataset

    data = trainer("data")
    rows = Dataset.from_list([{"instruction": "Hi", "output": "hello there " * 40}])
    rows = rows.map(data.prompt_completion(qwen3_tokenizer), remove_columns=rows.column_names)
    cut = data.fit_to_length(rows, qwen3_tokenizer, 48, "cut")
    assert cut[0]["completion"].endswith("<|im_end|>") and len(cut[0]["completion"]) < len("hello there " * 40)
