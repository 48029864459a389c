"""The secrets file (tasks/core/secrets.py): read when a run starts, only when its owner alone may read
it, never over what the environment already has; and a run refused before anything is rented when it
is unsafe."""

from __future__ import annotations

import os

import pytest

from tasks.core import secrets

KEY = "rpa_FILE_SENTINEL_0123456789abcdef"


def _file(tmp_path, text: str, mode: int = 0o600):
    path = tmp_path / "secrets.env"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_private_file_is_read_and_the_environment_wins(tmp_path, monkeypatch):
    path = _file(tmp_path, f"# mine\nexport RUNPOD_API_KEY='{KEY}'\nHF_TOKEN = \"hf_x\"\n\nFULLCYCLE_NOTIFY_URL=http://h/t\n")
    assert secrets.read(path) == {"RUNPOD_API_KEY": KEY, "HF_TOKEN": "hf_x", "FULLCYCLE_NOTIFY_URL": "http://h/t"}
    monkeypatch.setenv(secrets.SECRETS_ENV, str(path))
    monkeypatch.delenv("RUNPOD_API_KEY", raising=False)
    monkeypatch.setenv("HF_TOKEN", "hf_from_the_environment")
    monkeypatch.delenv("FULLCYCLE_NOTIFY_URL", raising=False)
    assert sorted(secrets.fill_environment()) == ["FULLCYCLE_NOTIFY_URL", "RUNPOD_API_KEY"]
    assert os.environ["RUNPOD_API_KEY"] == KEY and os.environ["HF_TOKEN"] == "hf_from_the_environment"
    from tasks.core.logs import redact

    assert redact(f"url http://h/t key {KEY}") == "url [REDACTED] key [REDACTED]"


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_file_others_may_read_is_refused_with_the_fix(tmp_path, mode):
    path = _file(tmp_path, f"RUNPOD_API_KEY={KEY}\n", mode)
    with pytest.raises(secrets.SecretsError) as refused:
        secrets.read(path)
    assert f"chmod 600 {path}" in str(refused.value) and KEY not in str(refused.value)


@pytest.mark.skipif(os.geteuid() != 0, reason="handing a file to another user needs root")
def test_a_file_someone_else_owns_is_refused(tmp_path):
    path = _file(tmp_path, f"RUNPOD_API_KEY={KEY}\n")
    os.chown(path, 65534, 65534)
    with pytest.raises(secrets.SecretsError, match="not to you"):
        secrets.read(path)


def test_no_file_is_nothing_and_a_bad_line_is_named_without_its_value(tmp_path):
    assert secrets.read(tmp_path / "absent.env") == {}
    path = _file(tmp_path, f"RUNPOD_API_KEY={KEY}\nthis is {KEY} not a pair\n")
    with pytest.raises(secrets.SecretsError, match=r"secrets.env:2: not a NAME=value line") as bad:
        secrets.read(path)
    assert KEY not in str(bad.value)


def test_an_unsafe_file_stops_a_rented_run_before_anything_is_rented(tmp_path, fake_api):
    from tests.conftest import runpod_project

    proj = runpod_project(tmp_path, None, fake_api)
    proj.env.pop("RUNPOD_API_KEY")
    path = _file(proj.root, f"RUNPOD_API_KEY={KEY}\n", 0o644)
    proj.env[secrets.SECRETS_ENV] = str(path)
    proc = proj.doit("full_cycle")
    assert proc.returncode != 0 and fake_api.ops("create") == 0
    assert f"chmod 600 {path}" in proj.summary["error"]
    assert KEY not in proc.stdout + proc.stderr + (proj.work / "run-summary.json").read_text()


def test_a_key_only_in_a_private_file_reaches_runpod(tmp_path, fake_api):
    """A run nobody starts by hand has no key in its environment: the file gives it, the API takes it."""
    from tests.conftest import API_KEY, runpod_project

    proj = runpod_project(tmp_path, None, fake_api)
    proj.env.pop("RUNPOD_API_KEY")
    proj.env[secrets.SECRETS_ENV] = str(_file(proj.root, f"RUNPOD_API_KEY={API_KEY}\n"))
    planned = proj.doit("volume", check=True)
    assert "network volume 'fullcycle-models'" in planned.stdout and API_KEY not in planned.stdout


def test_no_child_process_sees_a_secret_but_those_it_needs(monkeypatch):
    monkeypatch.setenv("RUNPOD_API_KEY", KEY)
    monkeypatch.setenv("HF_TOKEN", "hf_sentinel")
    monkeypatch.setenv("FULLCYCLE_NOTIFY_URL", "https://hooks.example/secret-path")
    monkeypatch.setenv("PATH_LIKE_THING", "kept")
    env = secrets.child_env(EXTRA="1")
    assert not {"RUNPOD_API_KEY", "HF_TOKEN", "FULLCYCLE_NOTIFY_URL"} & set(env)
    assert env["PATH_LIKE_THING"] == "kept" and env["EXTRA"] == "1"
    assert secrets.child_env(keep=("HF_TOKEN",))["HF_TOKEN"] == "hf_sentinel"  # the local trainer's download


def test_user_commands_and_the_dataset_command_never_get_the_runpod_key(tmp_path):
    """[post] commands and the command dataset builder are the user's own programs: they get the
    environment less every secret (they used to get all of it)."""
    from tests.helpers import make_project

    dump = tmp_path / "seen"
    src = tmp_path / "notes.jsonl"
    src.write_text("".join(f'{{"instruction": "say {i}", "output": "{i}"}}\n' for i in range(40)))
    proj = make_project(tmp_path / "proj", dataset={"builder": "command",
                                                    "command": f"env > {dump}.builder; cp {src} {{out}}"},
                        post={"commands": [f"env > {dump}.post"]})
    proj.env.update(RUNPOD_API_KEY=KEY, HF_TOKEN="hf_sentinel_token")
    proj.doit("full_cycle", check=True)
    for who in ("builder", "post"):
        seen = (tmp_path / f"seen.{who}").read_text()
        assert KEY not in seen and "hf_sentinel_token" not in seen and "PATH=" in seen, who
