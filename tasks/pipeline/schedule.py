"""`doit schedule`: today's adapter made every day with nobody at the keyboard.

    doit schedule --at 03:00      install a daily `doit full_cycle` for this project
    doit schedule                 what is installed, and when it runs next
    doit schedule --off           remove it

Where systemd runs the user's session, a user timer (`Persistent=true`: a run missed while the machine
slept happens when it wakes). Elsewhere, the crontab line is printed, and added only when asked
(`--crontab`): cron catches up nothing. Neither holds a secret: the run reads the RunPod key and the
tokens from the environment or the secrets file when it starts (tasks/core/secrets.py), and a timer's
run and one started by hand for the same date never overlap (the date's lock).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tasks.core.errors import FullcycleError
from tasks.core.paths import cache_dir
from tasks.core.secrets import child_env
from tasks.core.settings import Settings

SYSTEMCTL_ENV = "FULLCYCLE_SYSTEMCTL"  # another systemctl (the tests' double); else the one on PATH
CRONTAB_ENV = "FULLCYCLE_CRONTAB"
_AT = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)$")


class ScheduleError(FullcycleError):
    """The schedule cannot be installed or read as asked; nothing was changed."""


@dataclass(frozen=True)
class Job:
    """What runs each day, and under which name, for one project."""

    name: str  # fullcycle-<8 hex of the project root>: one schedule per project
    root: Path
    command: list[str]
    config: Path | None
    log: Path  # where cron's runs write what they print (a timer's go to the journal)

    @property
    def tag(self) -> str:
        return f"# {self.name} (fullcycle: doit schedule --off removes it)"


def job(settings: Settings, dodo: str) -> Job:
    root = settings.project_root
    name = "fullcycle-" + hashlib.sha256(str(root).encode()).hexdigest()[:8]
    return Job(name, root, [sys.executable, "-m", "doit", "-f", str(Path(dodo).resolve()), "full_cycle"],
               settings.source_file, cache_dir(settings) / "schedule.log")


def parse_at(at: str) -> tuple[int, int]:
    match = _AT.match(at.strip())
    if not match:
        raise ScheduleError(f"--at {at!r}: give the time of day as HH:MM (24-hour), e.g. --at 03:00; nothing changed")
    return int(match.group(1)), int(match.group(2))


def unit_dir() -> Path:
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "systemd" / "user"


def units(j: Job, hour: int, minute: int) -> dict[str, str]:
    """The service and its timer, as files (no secret: the run reads its own when it starts)."""
    env = f"Environment=FULLCYCLE_CONFIG={_quote(str(j.config))}\n" if j.config else ""
    service = (f"[Unit]\nDescription=fullcycle: today's LoRA adapter for {j.root}\n\n"
               f"[Service]\nType=oneshot\nWorkingDirectory={_quote(str(j.root))}\n{env}"
               f"Environment=PYTHONUNBUFFERED=1\nExecStart={' '.join(_quote(a) for a in j.command)}\n")
    timer = (f"[Unit]\nDescription=fullcycle: a daily run at {hour:02d}:{minute:02d} for {j.root}\n\n"
             f"[Timer]\nOnCalendar=*-*-* {hour:02d}:{minute:02d}:00\nPersistent=true\nUnit={j.name}.service\n\n"
             f"[Install]\nWantedBy=timers.target\n")
    return {f"{j.name}.service": service, f"{j.name}.timer": timer}


def _quote(arg: str) -> str:
    """An argument as systemd reads it: quoted when it has a space, % doubled (its specifier sign)."""
    arg = arg.replace("%", "%%")
    return f'"{arg}"' if re.search(r'[\s"\\]', arg) else arg


def cron_line(j: Job, hour: int, minute: int) -> str:
    """The crontab line; its log's folder is made first (a redirection into a missing folder runs nothing)."""
    env = f"FULLCYCLE_CONFIG={shlex.quote(str(j.config))} " if j.config else ""
    run = " ".join(shlex.quote(a) for a in j.command)
    log = shlex.quote(str(j.log))
    return (f"{minute} {hour} * * * cd {shlex.quote(str(j.root))} && mkdir -p {shlex.quote(str(j.log.parent))} && "
            f"{env}{run} >> {log} 2>&1 {j.tag}")


def _systemctl(*args: str) -> subprocess.CompletedProcess:
    tool = os.environ.get(SYSTEMCTL_ENV) or "systemctl"
    try:
        return subprocess.run([tool, "--user", *args], capture_output=True, text=True, timeout=30, check=False,
                              env=child_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess([tool], 127, "", str(exc))


def systemd_runs_the_session() -> bool:
    """Whether a user manager answers (a desktop or a lingering login has one; a container rarely)."""
    return _systemctl("show-environment").returncode == 0


def _crontab(*args: str, text: str | None = None) -> subprocess.CompletedProcess:
    tool = os.environ.get(CRONTAB_ENV) or "crontab"
    try:
        return subprocess.run([tool, *args], input=text, capture_output=True, text=True, timeout=30, check=False,
                              env=child_env())
    except (OSError, subprocess.TimeoutExpired) as exc:
        return subprocess.CompletedProcess([tool], 127, "", str(exc))


def _cron_table() -> list[str] | None:
    """The user's crontab lines; None where there is no crontab program."""
    listed = _crontab("-l")
    if listed.returncode == 127:
        return None
    return listed.stdout.splitlines() if listed.returncode == 0 else []  # "no crontab for user": none yet


def install(settings: Settings, dodo: str, at: str, crontab: bool = False) -> list[str]:
    """Install the daily run at `at`; returns what to tell the person."""
    hour, minute = parse_at(at)
    j = job(settings, dodo)
    if not crontab and systemd_runs_the_session():
        folder = unit_dir()
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in units(j, hour, minute).items():
            (folder / name).write_text(text)
        for step in (("daemon-reload",), ("enable", "--now", f"{j.name}.timer")):
            done = _systemctl(*step)
            if done.returncode != 0:
                raise ScheduleError(f"systemctl --user {' '.join(step)} failed: {done.stderr.strip()[-300:]}")
        said = (f"installed {folder / (j.name + '.timer')}: `doit full_cycle` daily at {hour:02d}:{minute:02d} "
                "(a run missed while the machine slept happens when it wakes)")
        return [said, *status(settings, dodo)]
    line = cron_line(j, hour, minute)
    if not crontab:
        return ["systemd does not run your session here: a user timer cannot be installed. The crontab line:",
                f"  {line}", (f"add it with `doit schedule --at {hour:02d}:{minute:02d} --crontab` "
                              "(cron runs nothing it missed while the machine slept)")]
    table = _cron_table()
    if table is None:
        raise ScheduleError("there is no crontab program here (install cron), and systemd does not run your session; "
                            f"add this line to your scheduler yourself:\n  {line}")
    kept = [entry for entry in table if j.tag not in entry]
    done = _crontab("-", text="\n".join([*kept, line]) + "\n")
    if done.returncode != 0:
        raise ScheduleError(f"crontab refused the line: {done.stderr.strip()[-300:]}")
    return [f"added to your crontab: {line}", *status(settings, dodo)]


def remove(settings: Settings, dodo: str) -> list[str]:
    j = job(settings, dodo)
    said = []
    folder = unit_dir()
    if (folder / f"{j.name}.timer").exists():
        _systemctl("disable", "--now", f"{j.name}.timer")
        for name in (f"{j.name}.timer", f"{j.name}.service"):
            (folder / name).unlink(missing_ok=True)
        _systemctl("daemon-reload")
        said.append(f"removed the timer {j.name}.timer")
    table = _cron_table()
    if table and any(j.tag in entry for entry in table):
        done = _crontab("-", text="".join(f"{entry}\n" for entry in table if j.tag not in entry))
        if done.returncode != 0:
            raise ScheduleError(f"crontab refused the change: {done.stderr.strip()[-300:]}")
        said.append("removed the crontab line")
    return said or ["no schedule was installed for this project: nothing to remove"]


def _next_cron(minute: int, hour: int, now: dt.datetime | None = None) -> dt.datetime:
    now = now or dt.datetime.now().astimezone()
    due = now.replace(hour=hour, minute=minute, second=0, microsecond=0)
    return due if due > now else due + dt.timedelta(days=1)


def read_schedule(settings: Settings, dodo: str) -> dict[str, str | None]:
    """{kind: timer | cron | None, at, next, note}: what the page and `doit schedule` show."""
    j = job(settings, dodo)
    timer = unit_dir() / f"{j.name}.timer"
    if timer.exists():
        found = re.search(r"OnCalendar=\*-\*-\* (\d\d):(\d\d)", timer.read_text())
        at = f"{found.group(1)}:{found.group(2)}" if found else None
        shown = _systemctl("show", f"{j.name}.timer", "--property=NextElapseUSecRealtime,ActiveState")
        props = dict(line.split("=", 1) for line in shown.stdout.splitlines() if "=" in line)
        nxt = props.get("NextElapseUSecRealtime") or None
        note = None if shown.returncode == 0 else "installed, but systemd's user manager did not answer"
        return {"kind": "timer", "at": at, "next": nxt, "state": props.get("ActiveState"), "note": note}
    for entry in _cron_table() or []:
        if j.tag in entry:
            minute, hour = (int(v) for v in entry.split()[:2])
            return {"kind": "cron", "at": f"{hour:02d}:{minute:02d}",
                    "next": _next_cron(minute, hour).isoformat(timespec="minutes"), "note": None}
    return {"kind": None, "at": None, "next": None, "note": None}


def status(settings: Settings, dodo: str) -> list[str]:
    found = read_schedule(settings, dodo)
    if not found["kind"]:
        return ["no daily run is scheduled for this project: `doit schedule --at 03:00` installs one"]
    what = "a systemd user timer" if found["kind"] == "timer" else "a crontab line"
    said = [f"{what}: `doit full_cycle` daily at {found['at']}; next run: {found['next'] or 'unknown'}"]
    return said + ([found["note"]] if found.get("note") else [])
