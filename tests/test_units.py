"""Fast unit tests (no sshd, no root, no doit subprocess): retries, API error mapping, resume points,
up-to-date rules, the attempts record, and the pod-side shell."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tasks import record
from tasks.errors import NoCapacityError
from tasks.providers.runpod_api import ApiError, GraphqlApi, RestApi, RetryableApiError, SkipCandidate, with_retries
from tasks.retry import Deadline, GaveUp, Policy, retry
from tasks.transport import REMOTE_DIR, _resume_point, script

# --------------------------------------------------------------------------- retry


class Flaky(Exception):
    pass


def test_retry_backs_off_then_succeeds():
    calls, pauses = [], []

    def call():
        calls.append(1)
        if len(calls) < 3:
            raise Flaky("not yet")
        return "ok"

    assert retry(call, "thing", Policy(attempts=5, delay=1.0), (Flaky,), sleep=pauses.append) == "ok"
    assert pauses == [1.0, 2.0]


def test_retry_gives_up_with_the_last_error_and_lets_others_through():
    with pytest.raises(GaveUp, match="after 3 attempt"):
        retry(lambda: (_ for _ in ()).throw(Flaky("down")), "thing", Policy(attempts=3, delay=0), (Flaky,),
              sleep=lambda s: None)
    with pytest.raises(ValueError):
        retry(lambda: (_ for _ in ()).throw(ValueError("fatal")), "thing", Policy(), (Flaky,), sleep=lambda s: None)


def test_retry_honours_a_hint_and_the_deadline():
    pauses = []
    with pytest.raises(GaveUp):
        retry(lambda: (_ for _ in ()).throw(Flaky("x")), "thing", Policy(attempts=0, delay=5, deadline_s=0.2),
              (Flaky,), wait_hint=lambda exc: 0.05, sleep=lambda s: (pauses.append(s), time.sleep(s)))
    assert pauses and all(p <= 0.05 for p in pauses)
    assert Deadline(0).passed() and Deadline(10).left() > 9


def test_api_retries_turn_into_a_fatal_error_that_names_the_call():
    def busy():
        raise RetryableApiError("HTTP 429", retry_after=0)

    with pytest.raises(ApiError, match="create pod: still failing after 2"):
        with_retries(busy, "create pod", attempts=2, sleep=lambda s: None)


# --------------------------------------------------------------------------- API error mapping


class FakeResponse:
    def __init__(self, status: int, body: object) -> None:
        self.status_code, self._body, self.headers = status, body, {}
        self.text = json.dumps(body)

    def json(self):
        return self._body


def _api(kind, status, body):
    api = GraphqlApi("k", "http://127.0.0.1:9/graphql") if kind == "graphql" else RestApi("k", "http://127.0.0.1:9")
    api.http.request = lambda *a, **kw: FakeResponse(status, body)
    return api


@pytest.mark.parametrize("message, error", [
    ("There are no longer any instances available with the requested specifications.", NoCapacityError),
    ("Something went wrong. Please try again later or contact support.", RetryableApiError),
    ('Cannot query field "x" on type "Pod"', ApiError),
])
def test_graphql_errors_map_to_what_the_caller_does_next(message, error):
    with pytest.raises(error):
        _api("graphql", 200, {"errors": [{"message": message}], "data": None}).get("p1")


def test_graphql_error_with_partial_data_is_not_ignored():
    api = _api("graphql", 200, {"errors": [{"message": "pod is locked"}], "data": {"podTerminate": None}})
    with pytest.raises(ApiError, match="pod is locked"):
        api.terminate("p1")


@pytest.mark.parametrize("status, error", [(400, NoCapacityError), (403, SkipCandidate), (422, ApiError)])
def test_rest_create_statuses(status, error):
    from tasks.providers.runpod_api import CreateRequest

    req = CreateRequest(name="n", gpu_type="g", cloud_type="COMMUNITY", gpu_count=1, template_id="t", image_name="",
                        min_vcpu_count=1, min_memory_gb=1, volume_gb=10, container_disk_gb=10)
    with pytest.raises(error):
        _api("rest", status, {"title": "t", "status": status, "detail": "d"}).create(req)


# --------------------------------------------------------------------------- download resume points


@pytest.mark.parametrize("content, kept", [(b"", 0), (b"QUJD", 4), (b"QUJDRE", 4), (b"QUJDRA==", 4),
                                          (b"QUJDREVG" + b"R0g=", 8), (b"QUJDREVGR0hJ", 12)])
def test_resume_point_keeps_only_whole_unpadded_groups(tmp_path, content, kept):
    partial = tmp_path / "a.partial"
    partial.write_bytes(content)
    assert _resume_point(partial) == kept
    assert partial.stat().st_size == kept


# --------------------------------------------------------------------------- up-to-date rules


def test_same_pod_rule(tmp_path):
    from tasks.uptodate import SamePod

    class Ctx:
        class paths:
            pod_file = tmp_path / "pod.json"

    class Task:
        value_savers: list = []

    rule = SamePod(Ctx)
    assert rule(Task, {"pod_id": "a"}) is False  # no pod recorded
    (tmp_path / "pod.json").write_text(json.dumps({"provider": "local", "pod_id": "a", "name": "n", "created_at": "x"}))
    assert rule(Task, {"pod_id": "a"}) is True
    assert rule(Task, {"pod_id": "b"}) is False
    assert "0x" not in repr(rule)


# --------------------------------------------------------------------------- attempts record


def _paths(tmp_path):
    from tasks.paths import RunPaths

    return RunPaths(date="2026-11-01", project_root=tmp_path, out_root=tmp_path / "out", work_local=tmp_path / "w",
                    final_adapter_dir=tmp_path / "out" / "adapter", raw_data_file=tmp_path / "raw.jsonl",
                    clean_data_file=tmp_path / "w" / "clean.jsonl", config_file=tmp_path / "w" / "config.json",
                    summary_file=tmp_path / "w" / "run-summary.json", trainer_log=tmp_path / "t.log",
                    cache_dir=tmp_path / "c")


def test_attempts_are_composed_from_their_own_lines(tmp_path):
    paths = _paths(tmp_path)
    record.append_event(paths, "a1", "start", pid=2**22 + 12345)  # a pid that does not exist: it died
    record.append_event(paths, "a1", "pod_created", pod={"pod_id": "p1", "gpu": "g", "cloud_type": "COMMUNITY",
                                                         "cost_per_hr": 3600.0, "created_at": record.now()})
    record.append_event(paths, "a1", "stage", stage="train", status="running")
    with paths.attempts_file.open("a") as fh:
        fh.write('{"attempt": "a1", "event": "sta')  # torn by kill -9
    with paths.attempts_file.open("a") as fh:
        fh.write("\n")
    record.append_event(paths, "a2", "start", pid=1)
    record.append_event(paths, "a2", "stage", stage="build_dataset", status="failed", error="boom")
    record.append_event(paths, "a2", "end", outcome="failed")
    summary = record.build(paths, "runpod")
    first, second = summary["attempts"]
    assert first["outcome"] == "died" and "train" in first["error"] and first["pod_id"] == "p1"
    assert second["outcome"] == "failed" and second["error"] == "build_dataset: boom"
    assert summary["error"] == "build_dataset: boom" and summary["success"] is False
    assert summary["totals"]["pods"] == 1 and summary["totals"]["pods_not_verified_terminated"] == ["p1"]


def test_short_never_cuts_mid_word():
    text = "the pod could not be reached through the gateway because the proxy refused"
    cut = record.short(text, 40)
    assert len(cut) <= 40 and text.startswith(cut.removesuffix(" …"))
    assert cut.removesuffix(" …").split()[-1] in text.split()


# --------------------------------------------------------------------------- pod-side shell


def _bash(snippet: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", script("state.sh").split("set -u")[0] + "\n" + snippet, "t", *args],
                          capture_output=True, text=True, timeout=30)


def test_a_stale_pid_file_never_stops_an_unrelated_process(tmp_path):
    other = subprocess.Popen(["sleep", "30"])  # reuses the number a watchdog once had
    try:
        pid_file = tmp_path / "watchdog.pid"
        pid_file.write_text(f"{other.pid}\n")
        result = _bash('alive "$1" fullcycle-watchdog && echo yes || echo no; stop_tagged "$1" fullcycle-watchdog',
                       str(pid_file))
        assert result.stdout.strip() == "no"
        assert other.poll() is None, "an unrelated process was killed"
        assert not pid_file.exists()
    finally:
        other.kill()


def test_a_tagged_process_is_recognised_and_stopped(tmp_path):
    pid_file = tmp_path / "w.pid"
    tagged = subprocess.Popen(["setsid", "bash", "-c", 'echo $$ > "$1"; sleep 30; true', "fullcycle-watchdog", str(pid_file)])
    deadline = time.time() + 5
    while not (pid_file.exists() and pid_file.read_text().strip()) and time.time() < deadline:
        time.sleep(0.02)
    result = _bash('alive "$1" fullcycle-watchdog && echo yes; stop_tagged "$1" fullcycle-watchdog', str(pid_file))
    assert result.stdout.strip() == "yes"
    assert tagged.wait(timeout=5) != 0


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed (.ci/run installs it)")
def test_pod_side_shell_passes_shellcheck(tmp_path):
    for name in sorted(p.name for p in REMOTE_DIR.glob("*.sh") if p.name != "lib.sh"):
        whole = tmp_path / name
        whole.write_text(script(name))
        result = subprocess.run(["shellcheck", "-S", "warning", "-s", "bash", str(whole)], capture_output=True,
                                text=True)
        assert result.returncode == 0, f"{name}:\n{result.stdout}"


def _escapes(path: Path, repo: Path) -> list[str]:
    """Places in `path` that reach above the repository: `..` in a string literal that names a
    path, or a chain of `.parent` / `.parents[N]` on `__file__` deeper than the file's own depth."""
    import ast

    depth = len(path.relative_to(repo).parts)  # parents a file may climb to reach the root
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        # `..` is also what path-traversal tests send as hostile input; a path to shared/ is never that
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "shared" in node.value:
            if re.search(r"(^|/)\.\.(/|$)", node.value):
                found.append(f"line {node.lineno}: {node.value!r}")
        if isinstance(node, (ast.Attribute, ast.Subscript)) and "__file__" in ast.unparse(node):
            text = ast.unparse(node)
            climbs = text.count(".parent") - text.count(".parents")
            climbs += sum(int(n) + 1 for n in re.findall(r"\.parents\[(\d+)\]", text))
            if climbs > depth:
                found.append(f"line {node.lineno}: {text}")
    return sorted(found, key=lambda f: int(f.split(":")[0].split()[1]))


def test_no_test_reads_outside_the_repository():
    """A fresh clone has nothing beside it: no test, bench or stage may read `../anything`."""
    repo = Path(__file__).resolve().parent.parent
    files = [*(repo / "tests").glob("*.py"), *(repo / "bench").glob("*.py"), *(repo / "tasks").rglob("*.py"),
             repo / "dodo.py"]
    escapes = {str(p.relative_to(repo)): e for p in files if (e := _escapes(p, repo))}
    assert not escapes, escapes


def test_the_escape_check_can_fail(tmp_path):
    repo = tmp_path
    (repo / "tests").mkdir()
    bad = repo / "tests" / "bad.py"
    beside = "shared"  # planted escapes, spelt so that no grep for them trips on this test itself
    bad.write_text(f'from pathlib import Path\nA = Path(__file__).resolve().parents[{2}] / "{beside}"\n'
                   f'B = Path(__file__).parent.parent.parent\nC = "{".."}/{beside}/DESIGN.md"\n'
                   'OK = Path(__file__).resolve().parent.parent\n')
    found = _escapes(bad, repo)
    assert [f.split(":")[0] for f in found] == ["line 2", "line 3", "line 4"], found


# --------------------------------------------------------------------------- reaching a pod


class ScriptedConn:
    """Answers probes from a script: one function of (endpoint, command) per connection kind."""

    def __init__(self, answer, log, ep, kind):
        self.answer, self.log, self.ep, self.kind = answer, log, ep, kind

    def run(self, command, timeout=None):
        from tasks.transport import Result

        self.log.append((self.kind, self.ep.user))
        code, out, err = self.answer(self.ep, self.kind, command)
        return Result(code, out, err)

    def close(self):
        pass


def _prober(answer, log, deadline=5.0):
    from tasks.providers.reach import Prober

    return Prober(make_exec=lambda ep: ScriptedConn(answer, log, ep, "exec"),
                  make_pty=lambda ep: ScriptedConn(answer, log, ep, "pty"), probe_command="true",
                  deadline_s=deadline, pause_s=0.01, timeout_s=1)


def _token(command: str) -> bytes:
    return ("FCPROBE" + command.rsplit(" ", 1)[1]).encode() + b"\n"


def test_a_pty_refusal_switches_at_once():
    from tasks.providers.reach import Endpoint

    log = []

    def answer(ep, kind, command):
        if kind == "exec":
            return 1, b"Error: Your SSH client doesn't support PTY\r\n", ""
        return 0, _token(command), ""

    reached = _prober(answer, log).reach([Endpoint("gateway", "pod-1a2b", "gw", 22)], "pod")
    assert reached.mode == "gateway-pty" and log == [("exec", "pod-1a2b"), ("pty", "pod-1a2b")]


def test_direct_users_are_probed_in_turn_and_the_gateway_is_last():
    from tasks.providers.reach import endpoints

    class Info:
        public_ip, ssh_port, ssh_user, host_id = "203.0.113.9", 40022, None, "pod-1a2b"

    found = endpoints(Info, None, "ssh.runpod.io", 22, ("root", "unsloth"))
    assert [(e.kind, e.user) for e in found] == [("direct", "root"), ("direct", "unsloth"), ("gateway", "pod-1a2b")]
    log = []

    def answer(ep, kind, command):
        if ep.user == "root":
            return 255, b"", "root@203.0.113.9: Permission denied (publickey)."
        return 0, _token(command), ""

    reached = _prober(answer, log).reach(found, "pod")
    assert reached.mode == "direct-ssh" and reached.endpoint.user == "unsloth"


def test_refused_logins_fail_quickly_and_quote_the_answer():
    from tasks.errors import ProviderError
    from tasks.providers.reach import Endpoint

    started = time.monotonic()
    with pytest.raises(ProviderError, match="Permission denied"):
        _prober(lambda ep, kind, c: (255, b"", "Permission denied (publickey)."), [], deadline=60).reach(
            [Endpoint("direct", "root", "h", 22)], "pod")
    assert time.monotonic() - started < 5


def test_a_silent_refusal_on_stdout_is_quoted_when_the_deadline_passes():
    from tasks.errors import ProviderError
    from tasks.providers.reach import Endpoint

    with pytest.raises(ProviderError, match="gateway says no"):
        _prober(lambda ep, kind, c: (1, b"gateway says no", ""), [], deadline=0.1).reach(
            [Endpoint("gateway", "u", "h", 22)], "pod")


def test_lost_stdout_is_detected_and_noted():
    from tasks.providers.reach import Endpoint

    reached = _prober(lambda ep, kind, c: (0, b"", ""), []).reach([Endpoint("gateway", "u", "h", 22)], "pod")
    assert reached.mode == "gateway-exec" and "stdout-unreliable" in reached.notes[0]


def test_a_pty_shell_that_is_not_up_yet_is_retried_without_asking_exec_again():
    from tasks.providers.reach import Endpoint

    log, tries = [], []

    def answer(ep, kind, command):
        if kind == "exec":
            return 1, b"Error: Your SSH client doesn't support PTY\r\n", ""
        tries.append(1)
        return (0, _token(command), "") if len(tries) >= 3 else (255, b"", "the PTY shell never answered")

    reached = _prober(answer, log).reach([Endpoint("gateway", "pod-1a2b", "gw", 22)], "pod")
    assert reached.mode == "gateway-pty" and [k for k, _ in log].count("exec") == 1 and len(tries) == 3


def test_the_hub_token_is_redacted_like_the_api_key(monkeypatch):
    from tasks.logs import redact

    monkeypatch.setenv("HF_TOKEN", "hf_SENTINEL_abcdef")
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_SENTINEL_123456")
    assert redact("token hf_SENTINEL_abcdef key rpa_SENTINEL_123456") == "token [REDACTED] key [REDACTED]"


def test_packing_is_safe_with_several_runners(tmp_path):
    """A rerun after kill -9 can re-attach while the killed session's runner is still alive: both
    reach the pack step together. Every runner must report the same good archive, none pack-failed."""
    from tasks.transport import script

    runner = tmp_path / "train_runner.sh"
    runner.write_text(script("train_runner.sh"))
    for round_ in range(8):
        run_dir, out_dir, in_dir = (tmp_path / f"r{round_}" / d for d in ("run", "out", "in"))
        for d in (run_dir, out_dir, in_dir):
            d.mkdir(parents=True)
        for i in range(40):  # enough bytes that two tars overlap
            (out_dir / f"shard{i}.bin").write_bytes(os.urandom(64 * 1024))
        (in_dir / "upload.ok").write_text("x  config.json\n")
        (run_dir / "train.log").write_text("[train] done\n")
        (run_dir / "train.exit").write_text("0\n")
        (run_dir / "train.pid").write_text("999999\n")  # long gone: the trainer finished
        args = [str(run_dir), str(in_dir), str(out_dir), "python3", str(tmp_path), "0", "##end", "s", "d", "c", "",
                "python3"]
        procs = [subprocess.Popen(["bash", str(runner), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for _ in range(4)]
        lines = [p.communicate(timeout=60)[0].strip().splitlines()[-1] for p in procs]
        assert all(" exit=0 " in line for line in lines), lines
        shas = {line.split("sha256=")[1].split()[0] for line in lines}
        assert len(shas) == 1 and len(shas.pop()) == 64, lines
        assert not list(run_dir.glob("adapter.tar.*")), "a runner left its temporary archive behind"


def test_direct_wins_when_its_sshd_comes_up_within_the_grace_period():
    """RunPod lists the direct port before sshd listens: a refused direct connection in the first
    seconds must not pin the run to the gateway that happened to answer first."""
    from tasks.providers.reach import Endpoint, Prober

    log, tries = [], {"direct": 0}

    def answer(ep, kind, command):
        if ep.kind == "direct":
            tries["direct"] += 1
            if tries["direct"] < 3:
                return 255, b"", "ssh: connect to host 203.0.113.9 port 40022: Connection refused"
        return 0, _token(command), ""

    endpoints = [Endpoint("direct", "root", "203.0.113.9", 40022), Endpoint("gateway", "pod-1a2b", "gw", 22)]
    prober = Prober(make_exec=lambda ep: ScriptedConn(answer, log, ep, "exec"),
                    make_pty=lambda ep: ScriptedConn(answer, log, ep, "pty"), probe_command="true",
                    deadline_s=10, pause_s=0.01, timeout_s=1, direct_grace_s=5)
    reached = prober.reach(endpoints, "pod")
    assert reached.mode == "direct-ssh" and ("exec", "pod-1a2b") not in log, log


def test_the_gateway_serves_a_pod_whose_direct_ssh_never_comes():
    from tasks.providers.reach import Endpoint, Prober

    log = []

    def answer(ep, kind, command):
        if ep.kind == "direct":
            return 255, b"", "ssh: connect to host 203.0.113.9 port 40022: Connection refused"
        return 0, _token(command), ""

    prober = Prober(make_exec=lambda ep: ScriptedConn(answer, log, ep, "exec"),
                    make_pty=lambda ep: ScriptedConn(answer, log, ep, "pty"), probe_command="true",
                    deadline_s=10, pause_s=0.01, timeout_s=1, direct_grace_s=0.2)
    started = time.monotonic()
    reached = prober.reach([Endpoint("direct", "root", "203.0.113.9", 40022),
                            Endpoint("gateway", "pod-1a2b", "gw", 22)], "pod")
    assert reached.mode == "gateway-exec" and 0.2 <= time.monotonic() - started < 5


def test_the_images_venv_on_a_login_shells_path_is_found_before_building(tmp_path):
    """The official unsloth image puts /opt/unsloth-venv on PATH only for login shells (profile.d);
    an sshd command sees the system python3 without the stack. setup_python.sh must find the venv
    and build nothing."""
    import sys

    from tasks.transport import script

    venv_bin = tmp_path / "opt" / "unsloth-venv" / "bin"
    venv_bin.mkdir(parents=True)
    stack = venv_bin / "python3"  # a Python with the (CPU) training stack
    stack.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    stack.chmod(0o755)
    plain = tmp_path / "usr" / "bin"
    plain.mkdir(parents=True)
    (plain / "python3").symlink_to(Path(sys.base_prefix) / "bin" / "python3")  # no stack
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bash_profile").write_text(f'export PATH="{venv_bin}:$PATH"\n')  # what profile.d does on the image
    setup = tmp_path / "setup_python.sh"
    setup.write_text(script("setup_python.sh"))
    env = {"HOME": str(home), "PATH": f"{plain}:/usr/bin:/bin"}
    proc = subprocess.run(["bash", str(setup), str(tmp_path / "configured" / "python"), str(tmp_path / "venv"),
                           str(tmp_path), "python3"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    python, source = proc.stdout.splitlines()[:2]
    assert python == str(venv_bin / "python3") and source == "found on a login shell's PATH", proc.stdout
    assert not (tmp_path / "venv").exists(), "a venv was built although the image had the stack"


def test_the_official_images_venv_is_the_first_candidate():
    from tasks.settings import RemoteSettings

    assert RemoteSettings().python_candidates[0] == "/opt/unsloth-venv/bin/python"


@pytest.mark.parametrize("pins, said", [
    (lambda v: f"torch=={v('torch')}\npeft=={v('peft')}\ntrl>=1.0\n", "checked"),
    (lambda v: f"torch=={v('torch')}\npeft==0.0.1\n", "differs: peft {peft} (checked 0.0.1)"),
])
def test_the_pods_stack_is_compared_with_the_checked_set(tmp_path, pins, said):
    """A Python whose modules are merely present is not the set the trainer was checked against:
    setup_python.sh says which it is, and the run records it (train.json / the summary)."""
    import sys
    from importlib.metadata import version

    from tasks.transport import script

    (tmp_path / "requirements-cpu.txt").write_text(pins(version))
    setup = tmp_path / "setup_python.sh"
    setup.write_text(script("setup_python.sh"))
    proc = subprocess.run(["bash", str(setup), sys.executable, str(tmp_path / "venv"), str(tmp_path), "python3"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[3] == said.format(peft=version("peft")), proc.stdout


def test_a_stack_is_never_built_for_a_cuda_the_driver_cannot_run(tmp_path):
    """requirements-gpu.txt's torch from the default index is the CUDA 13 build: on a pre-580 driver the
    set-up stops before downloading anything and names the two ways out."""
    import sys

    from tasks.transport import script

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text('#!/bin/sh\necho "| NVIDIA-SMI 550.54.15   Driver Version: 550.54.15   CUDA Version: 12.4 |"\n')
    smi.chmod(0o755)
    (bin_dir / "python3").symlink_to(Path(sys.base_prefix) / "bin" / "python3")  # no training stack
    setup = tmp_path / "setup_python.sh"
    setup.write_text(script("setup_python.sh"))
    proc = subprocess.run(["bash", str(setup), str(tmp_path / "nope"), str(tmp_path / "venv"), str(tmp_path), "python3"],
                          capture_output=True, text=True, timeout=60, env={"PATH": f"{bin_dir}:/usr/bin:/bin",
                                                                           "HOME": str(tmp_path)})
    assert proc.returncode == 1
    assert "driver supports CUDA 12.4" in proc.stderr and "cuda12_torch_index" in proc.stderr
    assert 'min_cuda_version = "13.0"' in proc.stderr and not (tmp_path / "venv").exists()
