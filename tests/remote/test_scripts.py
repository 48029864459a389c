"""The pod-side shell (remote/*.sh): pid files, packing, finding or building the pod's Python, shellcheck."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tasks.core.paths import REMOTE_DIR
from tasks.transport.connection import script


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


def test_packing_is_safe_with_several_runners(tmp_path):
    """A rerun after kill -9 can re-attach while the killed session's runner is still alive: both
    reach the pack step together. Every runner must report the same good archive, none pack-failed."""
    from tasks.transport.connection import script

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


def _setup(tmp_path: Path, ranges: str | None = None) -> Path:
    """setup_python.sh as the pod runs it, with the checked ranges in its input folder."""
    from tasks.core.paths import REMOTE_DIR
    from tasks.transport.connection import script

    for name in ("requirements-cpu.txt", "requirements-gpu.txt", "ranges-gpu.txt"):
        (tmp_path / name).write_text((REMOTE_DIR / name).read_text())
    if ranges is not None:
        (tmp_path / "requirements-cpu.txt").write_text(ranges)
    setup = tmp_path / "setup_python.sh"
    setup.write_text(script("setup_python.sh"))
    return setup


def _wrapper(folder: Path, python: str, pythonpath: Path | None = None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / "python3"
    env = f'PYTHONPATH="{pythonpath}" ' if pythonpath else ""
    wrapper.write_text(f'#!/bin/sh\n{env}exec {python} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


def _fake_gpu(bin_dir: Path, cuda: str = "12.8") -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f'#!/bin/sh\necho "| NVIDIA-SMI 570.1   Driver Version: 570.1   CUDA Version: {cuda} |"\n')
    smi.chmod(0o755)


def test_the_images_venv_on_a_login_shells_path_is_found_before_building(tmp_path):
    """The official unsloth image puts /opt/unsloth-venv on PATH only for login shells (profile.d);
    an sshd command sees the system python3 without the stack. setup_python.sh must find the venv
    and build nothing."""
    import sys

    venv_bin = tmp_path / "opt" / "unsloth-venv" / "bin"
    _wrapper(venv_bin, sys.executable)  # a Python with the (CPU) training stack, in the checked ranges
    plain = tmp_path / "usr" / "bin"
    plain.mkdir(parents=True)
    (plain / "python3").symlink_to(Path(sys.base_prefix) / "bin" / "python3")  # no stack
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bash_profile").write_text(f'export PATH="{venv_bin}:$PATH"\n')  # what profile.d does on the image
    setup = _setup(tmp_path)
    env = {"HOME": str(home), "PATH": f"{plain}:/usr/bin:/bin"}
    proc = subprocess.run(["bash", str(setup), str(tmp_path / "configured" / "python"), str(tmp_path / "venv"),
                           str(tmp_path), "python3"], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    python, source, _seconds, stack = proc.stdout.splitlines()[:4]
    assert python == str(venv_bin / "python3") and source == "found on a login shell's PATH", proc.stdout
    assert stack == "in range"
    assert not (tmp_path / "venv").exists(), "a venv was built although the image had the stack"


def test_the_official_images_venv_is_the_first_candidate():
    from tasks.core.settings import RemoteSettings

    assert RemoteSettings().python_candidates[0] == "/opt/unsloth-venv/bin/python"


@pytest.mark.slow  # the fast tier keeps a minute; the whole suite runs it
def test_a_stack_out_of_the_checked_ranges_is_passed_over_and_named(tmp_path):
    """A Python whose modules are merely present is not the set the trainer was checked against: one
    outside the ranges is not used, and the set-up says which package and which range."""
    import sys
    from importlib.metadata import version

    setup = _setup(tmp_path, ranges=f"torch=={version('torch')}\npeft==0.0.1\n")
    proc = subprocess.run(["bash", str(setup), sys.executable, str(tmp_path / "venv"), str(tmp_path), ""],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PATH": "/usr/bin:/bin", "PIP_NO_INDEX": "1"})  # the build fails here
    assert proc.returncode == 1  # nothing else on this "pod": it tries to build, having said why the other is not used
    assert f"has the stack but not the checked versions: out of range: peft {version('peft')} (wanted ==0.0.1)" \
        in proc.stderr, proc.stderr


def test_the_stack_in_range_is_used_and_recorded(tmp_path):
    import sys

    setup = _setup(tmp_path)
    proc = subprocess.run(["bash", str(setup), sys.executable, str(tmp_path / "venv"), str(tmp_path), "python3"],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[1:4:2] == ["configured", "in range"]


def test_an_images_newer_unsloth_is_not_used_silently(tmp_path):
    """On a GPU pod the official image's stack must be the checked one: an Unsloth of another month (and
    this machine's torch) is passed over and named; building the pinned set needs one CUDA index."""
    import sys

    fake = tmp_path / "site"
    (fake / "unsloth").mkdir(parents=True)
    (fake / "unsloth" / "__init__.py").write_text("")
    (fake / "unsloth-2026.11.2.dist-info").mkdir()
    (fake / "unsloth-2026.11.2.dist-info" / "METADATA").write_text("Name: unsloth\nVersion: 2026.11.2\n")
    image = _wrapper(tmp_path / "opt" / "unsloth-venv" / "bin", sys.executable, pythonpath=fake)
    _fake_gpu(tmp_path / "bin")
    setup = _setup(tmp_path)
    proc = subprocess.run(["bash", str(setup), str(image), str(tmp_path / "venv"), str(tmp_path), ""],
                          capture_output=True, text=True, timeout=120,
                          env={"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 1
    assert "unsloth 2026.11.2 (wanted <2026.11,>=2026.10.9)" in proc.stderr, proc.stderr
    assert "set [remote] torch_index" in proc.stderr and not (tmp_path / "venv").exists()


def test_a_stack_is_never_built_for_a_cuda_the_driver_cannot_run(tmp_path):
    """The pinned set is built for CUDA 12.8: on an older driver the set-up stops before downloading
    anything and says what to rent."""
    import sys

    bin_dir = tmp_path / "bin"
    _fake_gpu(bin_dir, cuda="12.4")
    (bin_dir / "python3").symlink_to(Path(sys.base_prefix) / "bin" / "python3")  # no training stack
    setup = _setup(tmp_path)
    proc = subprocess.run(["bash", str(setup), str(tmp_path / "nope"), str(tmp_path / "venv"), str(tmp_path), "python3",
                           "http://127.0.0.1:9/whl/cu128"], capture_output=True, text=True, timeout=60,
                          env={"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)})
    assert proc.returncode == 1
    assert "driver supports CUDA 12.4" in proc.stderr and 'min_cuda_version = "12.8"' in proc.stderr
    assert not (tmp_path / "venv").exists()
