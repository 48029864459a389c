"""The training config (tasks/data/trainconfig.py): what the pod receives, read back before renting;
the prompts answered side by side, from a person's file whatever it holds."""

from __future__ import annotations

import pytest

from tasks.data.trainconfig import MAX_PROMPT_CHARS, ConfigError, prompts_file


def test_a_prompts_file_never_stops_the_run_for_its_bad_lines(tmp_path, caplog):
    source = tmp_path / "prompts.txt"
    source.write_bytes(b"\xef\xbb\xbfFirst question?\n\n\xff\xfe not text\r\n  second one  \r\n" + b"x" * 5000
                       + b"\nfourth\nfifth\n")
    found = prompts_file(source, 3)
    assert found == ["First question?", "second one", "x" * MAX_PROMPT_CHARS]
    assert f"{source}:3 is not UTF-8" in caplog.text and f"{source}:5 is 5000 characters" in caplog.text


def test_a_missing_prompts_file_is_named_with_what_to_do(tmp_path):
    with pytest.raises(ConfigError, match=r"\[eval\] prompts .*nowhere.txt.*leave it empty"):
        prompts_file(tmp_path / "nowhere.txt", 3)
    (tmp_path / "a-folder").mkdir()
    with pytest.raises(ConfigError, match="Is a directory"):
        prompts_file(tmp_path / "a-folder", 3)


def test_one_type_the_orchestrator_writes_and_the_trainer_reads(tmp_path):
    """config.json round-trips through the trainer's own type (remote/trainer/schema.py): what the
    orchestrator writes is what the trainer reads, field for field, and a config with the seed's seven
    fields alone gets the very defaults the orchestrator's settings have."""
    import json

    from tasks.core.settings import TrainingSettings, load
    from tasks.data.trainconfig import build
    from tests.helpers import SEED_CONFIG, make_project, trainer

    proj = make_project(tmp_path, training={"base_model": "Qwen/Qwen3-30B-A3B", "lora_alpha": 32, "seed": 7})
    written = build(load(proj.root), {"model_to_load": "Qwen/Qwen3-30B-A3B", "load_in_4bit": True,
                                      "plan": {"sharding": "fsdp", "gpus_per_pod": 2, "pods": 1}})
    path = tmp_path / "config.json"
    path.write_text(json.dumps(written))
    read = trainer("config").load_config(path)
    assert read == written and read["lora_alpha"] == 32 and read["seed"] == 7 and read["gpu_count"] == 2
    assert read["sharding"]["sharding"] == "fsdp" and read["load_in_4bit"] is True
    path.write_text(json.dumps(SEED_CONFIG))
    minimal = trainer("config").load_config(path)
    defaults = TrainingSettings()
    for name in ("lora_alpha", "lora_dropout", "seed", "max_steps", "use_rslora"):
        assert minimal[name] == getattr(defaults, name), name
    path.write_text(json.dumps({**SEED_CONFIG, "lora_rank": 8.5}))
    with pytest.raises(trainer("config").InputError, match="lora_rank: expected an integer"):
        trainer("config").load_config(path)
