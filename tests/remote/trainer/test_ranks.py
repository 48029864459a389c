"""How many training processes the runner launches, and who speaks (remote/trainer/ranks.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers import REMOTE, SEED_CONFIG, trainer


@pytest.mark.parametrize("asked, seen, count, said", [(1, 0, 1, False), (2, 0, 2, False), (2, 2, 2, False),
                                                      (4, 2, 2, True), (2, 8, 2, False), (0, 0, 1, False)])
def test_one_process_per_gpu_asked_never_more_than_the_pod_has(asked, seen, count, said):
    found, why = trainer("ranks").processes(asked, seen)
    assert found == count and bool(why) is said
    if said:
        assert f"has {seen} GPU(s) of the {asked} asked for" in why


def test_the_runner_asks_the_config_and_this_machine(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({**SEED_CONFIG, "gpu_count": 2}))
    env = {**os.environ, "PYTHONPATH": str(REMOTE), "PATH": "/usr/bin:/bin"}  # no nvidia-smi here: CPU processes
    proc = subprocess.run([sys.executable, "-m", "trainer.ranks", str(tmp_path / "config.json")], capture_output=True,
                          text=True, env=env, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "2 copies"
    (tmp_path / "config.json").write_text(json.dumps({**SEED_CONFIG, "gpu_count": 2, "sharding": {"sharding": "fsdp"}}))
    sharded = subprocess.run([sys.executable, "-m", "trainer.ranks", str(tmp_path / "config.json")],
                             capture_output=True, text=True, env=env, timeout=60)
    assert sharded.stdout.strip() == "2 fsdp"  # train_fsdp.py, each process holding a shard
    broken = subprocess.run([sys.executable, "-m", "trainer.ranks", str(tmp_path / "none.json")], capture_output=True,
                            text=True, env=env, timeout=60)
    assert broken.stdout.strip() == "1 copies"


def test_only_rank_0_speaks_and_a_failing_rank_names_itself(monkeypatch, capsys, tmp_path):
    config = trainer("config")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    config.say("step 1/2 loss 3.0")
    config.error("training failed: boom")
    assert trainer("ranks").record_exit(3) == 3 and (tmp_path / "rank1.exit").read_text() == "3\n"
    out = capsys.readouterr()
    assert out.out == "" and out.err == "[train] ERROR: rank 1 of 2: training failed: boom\n"
    monkeypatch.setenv("RANK", "0")
    config.say("step 1/2 loss 3.0")
    assert capsys.readouterr().out == "[train] step 1/2 loss 3.0\n"


def test_a_small_shm_turns_nccls_shm_path_off_and_a_users_choice_is_kept(monkeypatch, tmp_path):
    ranks = trainer("ranks")
    monkeypatch.delenv("NCCL_SHM_DISABLE", raising=False)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert ranks.small_shm_fallback(str(tmp_path), min_mb=1 << 40) is None  # one process: no NCCL between GPUs
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert ranks.small_shm_fallback(str(tmp_path), min_mb=1) is None  # room enough
    assert "NCCL_SHM_DISABLE" not in os.environ
    said = ranks.small_shm_fallback(str(tmp_path), min_mb=1 << 40)  # any real folder is "small" against 1 EB
    assert said and "NCCL_SHM_DISABLE=1" in said and os.environ["NCCL_SHM_DISABLE"] == "1"
    monkeypatch.setenv("NCCL_SHM_DISABLE", "0")  # the user's own setting wins
    assert ranks.small_shm_fallback(str(tmp_path), min_mb=1 << 40) is None and os.environ["NCCL_SHM_DISABLE"] == "0"
    monkeypatch.delenv("NCCL_SHM_DISABLE")
    assert ranks.small_shm_fallback(str(tmp_path / "absent"), min_mb=1 << 40) is None  # unreadable: NCCL decides
