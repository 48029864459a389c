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


# Unsloth's trainer logs no `num_tokens`: this drops it from every log before any callback sees it.
NO_NUM_TOKENS = '''
from transformers import Trainer
_log = Trainer.log
def _without_num_tokens(self, logs, *args, **kwargs):
    logs.pop("num_tokens", None)
    return _log(self, logs, *args, **kwargs)
Trainer.log = _without_num_tokens
'''


@pytest.mark.slow  # a real training of the tiny model, its preflight first in the same process
def test_the_preflight_runs_inside_the_trainer_beside_the_download_and_tokens_are_our_own_count(tmp_path):
    """One process a day: the preflight inside the trainer (before it waits for the download the runner
    started beside it), then the training, whose tokens/s comes from our own count of the batches even
    when the trainer's logs carry no `num_tokens`, as Unsloth's do not."""
    import json
    import os
    import subprocess
    import sys

    from tasks.data.cleaning import clean
    from tasks.model import families, tiny
    from tests.helpers import EXAMPLES

    (tmp_path / "raw.jsonl").write_bytes(b"".join(p.read_bytes() for p in sorted(EXAMPLES.glob("*.jsonl"))))
    clean(tmp_path / "raw.jsonl", tmp_path / "data.jsonl")
    model = tiny.build(tmp_path / "data.jsonl", tmp_path / "model")
    shape = families.preflight_shape({"model_type": "qwen3_moe", "tie_word_embeddings": False}, tiny.SPEC)
    (tmp_path / "config.json").write_text(json.dumps({
        "base_model": "tiny", "base_model_dir": str(model), "lora_rank": 8, "num_train_epochs": 1,
        "learning_rate": 1e-3, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1,
        "max_seq_length": 256, "max_steps": 3, "preflight": {"shape": shape, "where": "trainer"}}))
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "sitecustomize.py").write_text(NO_NUM_TOKENS)
    download = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(1)"])  # the download's stand-in
    (tmp_path / "download.json").write_text(json.dumps({"ok": True, "bytes": 0, "started_at": 0, "ended_at": 1}))
    env = {**os.environ, "FULLCYCLE_NO_UNSLOTH": "1", "PYTHONPATH": str(tmp_path / "site"),
           "FULLCYCLE_PREFLIGHT_REPORT": str(tmp_path / "preflight.json"), "FULLCYCLE_DOWNLOAD_PID": str(download.pid),
           "FULLCYCLE_DOWNLOAD_REPORT": str(tmp_path / "download.json")}
    proc = subprocess.run([sys.executable, str(ENTRY), "--data", str(tmp_path / "data.jsonl"), "--config",
                           str(tmp_path / "config.json"), "--output", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=300, env=env)
    download.wait()
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "preflight.json").read_text())
    assert report["ok"] is True and report["where"] == "trainer" and report["family"] == "Qwen3MoeForCausalLM"
    assert list(report["steps"])[:2] == ["stack", "build"] and report["ended_at"] > report["started_at"]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert list(metrics["phases"])[:4] == ["trainer_start", "preflight", "download_wait", "model_load"]
    assert proc.stdout.index("preflight passed") < proc.stdout.index(f"base model {model} loaded in")
    scale = metrics["scale"]
    assert isinstance(scale["tokens"], int) and scale["tokens"] > 0 and scale["tokens_per_s"] > 0, scale
    assert not (tmp_path / "out.preflight").exists()


@pytest.mark.slow  # loads torch for a preflight that fails at its LoRA step
def test_a_preflight_that_fails_inside_the_trainer_exits_5_before_any_load(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from tasks.model import families, tiny

    (tmp_path / "data.jsonl").write_text("".join(json.dumps({"instruction": f"say {i}", "output": f"{i}"}) + "\n"
                                                 for i in range(8)))
    shape = families.preflight_shape({"model_type": "qwen3", "tie_word_embeddings": True}, tiny.SPEC)
    (tmp_path / "config.json").write_text(json.dumps({
        "base_model": "x/never-loaded", "lora_rank": 8, "num_train_epochs": 1, "learning_rate": 1e-3,
        "per_device_train_batch_size": 1, "gradient_accumulation_steps": 1, "max_seq_length": 64,
        "target_modules": ["nope_proj"], "preflight": {"shape": shape, "where": "trainer"}}))
    env = {**os.environ, "FULLCYCLE_NO_UNSLOTH": "1", "FULLCYCLE_PREFLIGHT_REPORT": str(tmp_path / "preflight.json")}
    proc = subprocess.run([sys.executable, str(ENTRY), "--data", str(tmp_path / "data.jsonl"), "--config",
                           str(tmp_path / "config.json"), "--output", str(tmp_path / "out")], capture_output=True,
                          text=True, timeout=300, env=env)
    report = json.loads((tmp_path / "preflight.json").read_text())
    assert proc.returncode == 5 and report["ok"] is False and report["step"] == "lora", proc.stderr[-2000:]
    assert proc.stderr.count("[train] ERROR:") == 1 and "x/never-loaded" not in proc.stderr
