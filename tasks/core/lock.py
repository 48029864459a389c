"""One run per date at a time: an flock on WORK_LOCAL/.lock, held until the process exits.

The lock is taken before a stage records anything, so a second run for the same date refuses
without touching the first run's files. The kernel drops it when the process dies (even kill -9),
so a crashed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from tasks.core.errors import FullcycleError


class RunLocked(FullcycleError):
    pass


def acquire(path: Path, held: dict[str, int]) -> None:
    """Take the date's lock for this process; `held` is the run's own record of locks it holds."""
    key = str(path.resolve())
    if key in held:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        owner = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunLocked(f"another run for this date is in progress (pid {owner}, lock {path}); "
                        f"wait for it or stop it first") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    held[key] = fd


def is_held(path: Path, held: dict[str, int] | None = None) -> bool:
    """Whether some live process holds this lock (used by the reaper to spare live runs' pods)."""
    if held and str(path.resolve()) in held:
        return True
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
