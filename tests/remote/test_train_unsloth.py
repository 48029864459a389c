"""The trainer's entry point (remote/train_unsloth.py): thin, its steps in order, settings that must
come before torch set before anything imports it."""

from __future__ import annotations

import pytest

from tests.helpers import REMOTE

ENTRY = REMOTE / "train_unsloth.py"


def test_the_allocator_setting_comes_before_torch():
    """torch's CUDA allocator reads PYTORCH_ALLOC_CONF when torch loads: the entry sets it before it
    imports a step, and no step imports torch when it is imported (only when it runs)."""
    import ast

    source = ENTRY.read_text()
    assert source.index('os.environ.setdefault("PYTORCH_ALLOC_CONF", "expandable_segments:True")') < source.index(
        "from trainer import")
    for step in sorted((REMOTE / "trainer").glob("*.py")):
        top = [n for n in ast.parse(step.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name.split(".")[0] for n in top for a in n.names} | {(getattr(n, "module", "") or "").split(".")[0]
                                                                         for n in top}
        assert not names & {"torch", "transformers", "trl", "peft", "unsloth", "datasets"}, (step.name, names)


@pytest.mark.slow  # loads torch and a model: seconds the fast tier keeps for others
def test_a_target_module_the_model_lacks_is_bad_input_not_a_failed_load(tmp_path):
    """Exit 2 (bad input: change the setting), not 3 (the base model could not be loaded)."""
    import json
    import os
    import subprocess
    import sys

    from tasks.data.cleaning import clean
    from tasks.model import tiny
    from tests.helpers import EXAMPLES

    (tmp_path / "raw.jsonl").write_bytes(b"".join(p.read_bytes() for p in sorted(EXAMPLES.glob("*.jsonl"))))
    clean(tmp_path / "raw.jsonl", tmp_path / "data.jsonl")
    model = tiny.build(tmp_path / "data.jsonl", tmp_path / "model")
    (tmp_path / "config.json").write_text(json.dumps({
        "base_model": "tiny", "base_model_dir": str(model), "lora_rank": 8, "num_train_epochs": 1,
        "learning_rate": 1e-3, "per_device_train_batch_size": 1, "gradient_accumulation_steps": 1,
        "max_seq_length": 256, "target_modules": ["q_proj", "nope_proj"]}))
    proc = subprocess.run([sys.executable, str(ENTRY), "--data", str(tmp_path / "data.jsonl"), "--config",
                           str(tmp_path / "config.json"), "--output", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "FULLCYCLE_NO_UNSLOTH": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "[train] ERROR: [training] target_modules ['nope_proj'] name no linear layer" in proc.stderr
