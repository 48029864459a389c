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
    """Whether some live process holds this lock (the reaper spares its pod, the page shows its run).

    Asked without taking the lock: the page asks every second, and a probe that took it for an
    instant would refuse a run starting at that instant. The holder wrote its pid into the file; it
    holds the lock when one of its open files is this one with an flock on it (/proc/<pid>/fdinfo).
    Where there is no /proc, a shared probe: it never blocks a holder, only, for an instant, a taker."""
    if held and str(path.resolve()) in held:
        return True
    try:
        pid = path.read_text(errors="replace").strip()
    except FileNotFoundError:
        return False
    if Path("/proc/self/fdinfo").is_dir():
        return pid.isdigit() and _holds(int(pid), path.resolve())
    return _probe(path)


def _holds(pid: int, path: Path) -> bool:
    """Whether process `pid` has `path` open with an flock on it."""
    fds = Path(f"/proc/{pid}/fd")
    try:
        entries = list(fds.iterdir())
    except OSError:  # no such process (or not ours to look at)
        return False
    for fd in entries:
        try:
            if Path(os.readlink(fd)) == path and "FLOCK" in Path(f"/proc/{pid}/fdinfo/{fd.name}").read_text():
                return True
        except OSError:
            continue
    return False


def _probe(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
