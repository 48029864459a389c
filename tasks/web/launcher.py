"""Starting and cancelling runs from the page: always `doit full_cycle --date D`, in its own process.

The child is the CLI itself (same dodo.py, same environment, same lock), so the page and the
command line cannot disagree. It runs in a session of its own: closing the browser or restarting
the server does not stop it, and Cancel sends SIGINT to its process group, exactly what Ctrl-C in
a terminal does, so the run's own handlers terminate the pod and record the interruption.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tasks.core.secrets import NAMES, child_env
from tasks.core.settings import Settings
from tasks.web.status import holder, paths_for


class RunRefused(Exception):
    """The page asked for something that cannot be done now (the message says why)."""


class Launcher:
    """The runs this server started; any other live run is found through its date's lock."""

    def __init__(self, settings: Settings, dodo: Path, cwd: Path) -> None:
        self.settings = settings
        self.dodo = dodo
        self.cwd = cwd
        self.children: dict[str, subprocess.Popen] = {}
        self.guard = threading.Lock()

    def pid(self, date: str) -> int | None:
        """The live run of this date: the lock's holder, or our child while it has not taken the lock yet."""
        found = holder(paths_for(self.settings, date))
        child = self.children.get(date)
        if found is None and child is not None and child.poll() is None:
            return child.pid
        return found

    def start(self, date: str) -> int:
        paths = paths_for(self.settings, date)
        with self.guard:  # two clicks at once: one run
            running = self.pid(date)
            if running:
                raise RunRefused(f"a run for {date} is already going (pid {running}); watch it or cancel it")
            paths.work_local.mkdir(parents=True, exist_ok=True)
            console = (paths.work_local / "console.log").open("ab")
            console.write(f"\n=== doit full_cycle --date {date} (started from the web page, "
                          f"{time.strftime('%Y-%m-%d %H:%M:%S')})\n".encode())
            console.flush()
            argv = [sys.executable, "-m", "doit", "-f", str(self.dodo), "full_cycle", "--date", date]
            child = subprocess.Popen(argv, cwd=self.cwd, stdin=subprocess.DEVNULL, stdout=console,
                                     stderr=subprocess.STDOUT, start_new_session=True,
                                     env=child_env(keep=NAMES, PYTHONUNBUFFERED="1"))  # this tool itself
            console.close()
            self.children[date] = child
            threading.Thread(target=child.wait, daemon=True).start()  # reaped when it ends: no zombie
            return child.pid

    def cancel(self, date: str) -> int:
        """Interrupt the date's run as Ctrl-C does; its handlers end the pod and write the record."""
        pid = self.pid(date)
        if not pid:
            raise RunRefused(f"no run for {date} is going")
        child = self.children.get(date)
        try:
            if child is not None and child.pid == pid:
                os.killpg(pid, signal.SIGINT)  # our child's own session: the whole group, as Ctrl-C reaches it
            else:
                os.kill(pid, signal.SIGINT)  # a run from someone's terminal: only the run, not their shell's job
        except ProcessLookupError:
            raise RunRefused(f"the run for {date} has just ended") from None
        return pid
