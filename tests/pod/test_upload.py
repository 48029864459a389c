"""The inputs in one verified stream (tasks/pod/upload.py), and the hub token beside them, never in the
pod's environment."""

from __future__ import annotations

import json
import stat

from tests.conftest import runpod_project
from tests.doubles import standin

TOKEN = "hf_SENTINEL_token_0123456789"


def test_the_hub_token_goes_over_ssh_into_a_private_file_never_into_the_create_request(tmp_path, sshd, fake_api):
    """RunPod returns a pod's env to anyone who lists pods: the token travels over the ssh session's stdin
    into a file only the pod's user reads (remote/train_runner.sh reads it, then removes it)."""
    proj = runpod_project(tmp_path, sshd, fake_api)
    proj.env["HF_TOKEN"] = TOKEN
    proc = proj.doit("upload", check=True)
    assert all("HF_TOKEN" not in (body.get("env") or {}) for body in fake_api.create_bodies)
    listed = json.dumps([fake_api._rest_pod(p, True)["env"] for p in fake_api.pods.values()])
    assert TOKEN not in listed
    token = tmp_path / "pod" / "workspace" / "fullcycle" / "hf_token"
    assert token.read_text() == TOKEN and stat.S_IMODE(token.stat().st_mode) == 0o600
    assert TOKEN not in proc.stdout + proc.stderr + proj.trainer_log
    env = fake_api.create_bodies[0]["env"]
    assert env["PUBLIC_KEY"] == env["SSH_PUBLIC_KEY"]  # the pod's sshd and RunPod's proxy both know our key


def test_the_training_run_reads_the_token_then_removes_it(tmp_path, sshd, fake_api):
    seen = tmp_path / "seen-by-trainer"
    wrapper = tmp_path / "trainer.py"  # the stand-in, telling what HF_TOKEN it was started with
    wrapper.write_text(f"import os, runpy, sys\nopen({str(seen)!r}, 'w').write(os.environ.get('HF_TOKEN', ''))\n"
                       f"sys.argv[0] = {standin.trainer_script()!r}\nrunpy.run_path(sys.argv[0], run_name='__main__')\n")
    proj = runpod_project(tmp_path, sshd, fake_api, remote={"trainer": str(wrapper)})
    proj.env["HF_TOKEN"] = TOKEN
    proj.doit("full_cycle", check=True)
    assert seen.read_text() == TOKEN
    assert not (tmp_path / "pod" / "workspace" / "fullcycle" / "hf_token").exists()
