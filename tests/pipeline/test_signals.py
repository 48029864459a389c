"""Process policy (tasks/pipeline/signals.py): a signal becomes a clean interrupt, and the exit code
and the last line say what happened and what to do."""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys

import pytest

from tasks.context import RunContext
from tasks.pipeline import signals
from tasks.record import stage
from tasks.record.attempts import read_events
from tests.helpers import make_project


@pytest.fixture
def ctx(tmp_path, monkeypatch):
    proj = make_project(tmp_path)
    monkeypatch.setenv("FULLCYCLE_CONFIG", proj.env["FULLCYCLE_CONFIG"])
    made = RunContext.load(date=proj.date)
    made.paths.work_local.mkdir(parents=True)

    def exit_(code: int) -> None:  # os._exit would end pytest itself
        raise SystemExit(code)

    monkeypatch.setattr(signals.os, "_exit", exit_)
    yield made
    for fd in made.attempt.locks.values():
        os.close(fd)


def _pod(ctx: RunContext, terminated: bool) -> None:
    ctx.paths.pod_file.write_text(json.dumps({"pod_id": "pod-7", "terminated": terminated}))


def test_a_run_that_ended_by_itself_keeps_its_exit_code(ctx, capsys):
    with stage.recording(ctx, "build_dataset"):
        pass
    signals.at_exit(ctx)  # returns: doit's own code stands
    end = read_events(ctx.paths)[-1]
    assert (end["event"], end["outcome"], end["signal"]) == ("end", "ok", None)
    assert capsys.readouterr().err == ""


def test_sigterm_during_a_stage_exits_143_and_says_the_pod_may_still_run(ctx, capsys):
    ctx.attempt.signal = signal.SIGTERM
    with pytest.raises(KeyboardInterrupt), stage.recording(ctx, "train"):
        _pod(ctx, terminated=False)
        raise KeyboardInterrupt
    with pytest.raises(SystemExit) as stopped:
        signals.at_exit(ctx)
    assert stopped.value.code == 143
    err = capsys.readouterr().err
    assert "stopped by SIGTERM during train" in err
    assert f"pod pod-7 may still be running: `doit terminate_pod --date {ctx.paths.date}` ends it" in err


def test_an_interrupt_after_the_pod_was_terminated_says_so(ctx, capsys):
    ctx.attempt.interrupted_stage = "download_adapter"
    _pod(ctx, terminated=True)
    with pytest.raises(SystemExit) as stopped:
        signals.at_exit(ctx)
    assert stopped.value.code == 130  # an interrupt with no signal recorded: Ctrl-C
    assert "during download_adapter; pod pod-7 was terminated" in capsys.readouterr().err


def test_a_pod_that_could_not_be_terminated_exits_3_with_what_to_do(ctx, capsys):
    ctx.attempt.teardown_failures.append("DELETE /pods/pod-7 answered 500")
    with pytest.raises(SystemExit) as stopped:
        signals.at_exit(ctx)
    assert stopped.value.code == 3
    err = capsys.readouterr().err
    assert "the pod could not be terminated: DELETE /pods/pod-7 answered 500" in err
    assert f"doit terminate_pod --date {ctx.paths.date}" in err and "RunPod console" in err


def test_hooks_turn_a_signal_into_an_interrupt_and_are_installed_once(ctx):
    handlers = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    hook = sys.excepthook
    try:
        signals.install_hooks(ctx)
        installed = signal.getsignal(signal.SIGTERM)
        signals.install_hooks(ctx)
        assert signal.getsignal(signal.SIGTERM) is installed
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0)  # a point where the handler has run
        assert ctx.attempt.signal == signal.SIGTERM
    finally:
        atexit.unregister(signals.at_exit)
        sys.excepthook = hook
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def test_a_context_that_does_not_own_its_process_installs_nothing(ctx):
    ctx.owns_process = False  # run_remote_training() inside someone else's program
    before = signal.getsignal(signal.SIGTERM)
    signals.install_hooks(ctx)
    assert signal.getsignal(signal.SIGTERM) is before and not ctx.attempt.hooks_installed
