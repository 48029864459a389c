"""One run per date (tasks/core/lock.py): held until the process ends, and looked at without taking it."""

from __future__ import annotations

import fcntl
import subprocess
import sys

from tasks.core import lock
from tests.helpers import REPO

HOLD = ("import sys, time; sys.path.insert(0, sys.argv[2]); from pathlib import Path; from tasks.core import lock; "
        "lock.acquire(Path(sys.argv[1]), {}); print('held', flush=True); sys.stdin.read()")


def test_is_held_answers_without_taking_the_lock(tmp_path, monkeypatch):
    """The page asks every second: a probe that took the lock for an instant would refuse a run starting
    at that instant (RunLocked)."""
    path = tmp_path / ".lock"
    assert lock.is_held(path) is False  # no file: no run
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(REPO)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        taken = []
        real = fcntl.flock
        monkeypatch.setattr(fcntl, "flock", lambda fd, op: (taken.append(op), real(fd, op))[1])
        assert lock.is_held(path) is True
        assert taken == [], "is_held took a lock to answer"
    finally:
        holder.communicate("")
    assert lock.is_held(path) is False  # the holder is gone: the kernel dropped its lock
    held: dict[str, int] = {}
    lock.acquire(path, held)  # and a new run takes it
    assert lock.is_held(path, held) is True
