"""`doit schedule` (tasks/pipeline/schedule.py): a daily run installed, read and removed, as a systemd
user timer where systemd runs the session (its unit files checked by the real `systemd-analyze verify`),
else as a crontab line added only when asked; never a secret in either; the date's lock keeps a timer's
run and one started by hand apart.

No test touches this machine's own systemd or crontab: `systemctl --user` and `crontab` are doubles
that keep their state in the test's folder ($FULLCYCLE_SYSTEMCTL, $FULLCYCLE_CRONTAB)."""

from __future__ import annotations

import fcntl
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.helpers import make_project

SECRET = "rpa_SCHEDULE_SENTINEL_0123456789"

SYSTEMCTL = """#!/bin/sh
# systemctl --user, as a user manager answers: its calls logged, the timer's next elapse given.
echo "$*" >> "{log}"
case "$2" in
  show-environment)
    [ "{session}" = yes ] || {{ echo "Failed to connect to bus: No medium found" >&2; exit 1; }}
    echo HOME=/root ;;
  show) printf 'NextElapseUSecRealtime=Sat 2026-12-05 03:00:00 UTC\\nActiveState=active\\n' ;;
esac
exit 0
"""

CRONTAB = """#!/bin/sh
# crontab, its table in one file: -l lists it (none yet: exit 1, as cron's does), - replaces it.
table="{table}"
case "$1" in
  -l) [ -f "$table" ] || {{ echo "no crontab for $(id -un)" >&2; exit 1; }}; cat "$table" ;;
  -) cat > "$table" ;;
  *) exit 2 ;;
esac
"""


def _double(path, text: str) -> str:
    path.write_text(text)
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def proj(tmp_path):
    project = make_project(tmp_path / "proj", extra_env={"RUNPOD_API_KEY": SECRET, "HF_TOKEN": "hf_SCHEDULE_SENTINEL",
                                                         "XDG_CONFIG_HOME": str(tmp_path / "config")})
    project.env["FULLCYCLE_CRONTAB"] = _double(tmp_path / "crontab", CRONTAB.format(table=tmp_path / "table"))
    return project


def _systemctl(proj, tmp_path, session: bool) -> None:
    proj.env["FULLCYCLE_SYSTEMCTL"] = _double(tmp_path / "systemctl", SYSTEMCTL.format(
        log=tmp_path / "systemctl.log", session="yes" if session else "no"))


def test_a_user_timer_is_installed_read_and_removed_and_holds_no_secret(proj, tmp_path):
    _systemctl(proj, tmp_path, session=True)
    installed = proj.doit("schedule", "--at", "03:00", check=True).stdout
    units = tmp_path / "config" / "systemd" / "user"
    timer, service = sorted(units.glob("fullcycle-*.timer")), sorted(units.glob("fullcycle-*.service"))
    assert len(timer) == len(service) == 1, list(units.iterdir())
    text = timer[0].read_text() + service[0].read_text()
    assert "OnCalendar=*-*-* 03:00:00" in text and "Persistent=true" in text and "WantedBy=timers.target" in text
    assert f"WorkingDirectory={proj.root}" in text and " full_cycle" in text
    assert SECRET not in text and "hf_SCHEDULE_SENTINEL" not in text and "RUNPOD_API_KEY" not in text
    assert "daily at 03:00" in installed and "next run: Sat 2026-12-05 03:00:00 UTC" in installed
    calls = (tmp_path / "systemctl.log").read_text()
    assert "--user daemon-reload" in calls and f"--user enable --now {timer[0].name}" in calls
    if shutil.which("systemd-analyze"):  # the real verifier: a unit systemd would refuse fails here
        verified = subprocess.run(["systemd-analyze", "verify", str(service[0]), str(timer[0])],
                                  capture_output=True, text=True)
        assert verified.returncode == 0, verified.stderr
    shown = proj.doit("schedule", check=True).stdout
    assert "a systemd user timer: `doit full_cycle` daily at 03:00; next run: Sat 2026-12-05" in shown
    removed = proj.doit("schedule", "--off", check=True).stdout
    assert "removed the timer" in removed and not list(units.glob("fullcycle-*"))
    assert f"--user disable --now {timer[0].name}" in (tmp_path / "systemctl.log").read_text()
    assert "no daily run is scheduled" in proj.doit("schedule", check=True).stdout


def test_without_a_user_session_the_crontab_line_is_printed_then_added_only_when_asked(proj, tmp_path):
    _systemctl(proj, tmp_path, session=False)
    (tmp_path / "table").write_text("17 * * * * /usr/bin/true # the person's own line\n")
    printed = proj.doit("schedule", "--at", "7:05", check=True).stdout
    line = next(ln.strip() for ln in printed.splitlines() if ln.strip().startswith("5 7 * * * cd "))
    assert "--crontab" in printed and "fullcycle-" in line
    assert (tmp_path / "table").read_text().count("\n") == 1  # printed, not installed
    added = proj.doit("schedule", "--at", "07:05", "--crontab", check=True).stdout
    table = (tmp_path / "table").read_text()
    assert line in table and "the person's own line" in table and "added to your crontab" in added
    assert SECRET not in table and "RUNPOD_API_KEY" not in table
    _cron_runs_the_line(proj, line)
    assert re.search(r"a crontab line: `doit full_cycle` daily at 07:05; next run: \d{4}-\d\d-\d\dT07:05",
                     proj.doit("schedule", check=True).stdout)
    proj.doit("schedule", "--at", "08:00", "--crontab", check=True)  # moved, never doubled
    ours = [ln for ln in (tmp_path / "table").read_text().splitlines() if "# fullcycle-" in ln]  # by its marker:
    assert len(ours) == 1 and ours[0].startswith("0 8 * * * ")  # a venv path may say fullcycle- too
    proj.doit("schedule", "--off", check=True)
    assert (tmp_path / "table").read_text() == "17 * * * * /usr/bin/true # the person's own line\n"


def test_a_time_of_day_that_is_not_one_is_refused(proj, tmp_path):
    _systemctl(proj, tmp_path, session=True)
    proc = proj.doit("schedule", "--at", "25:00")
    assert proc.returncode != 0 and "--at '25:00': give the time of day as HH:MM" in proc.stdout + proc.stderr
    assert not (tmp_path / "config").exists()
    assert re.search(r"^schedule +Run full_cycle every day", proj.doit("list", check=True).stdout, re.MULTILINE)


def test_the_timers_run_and_one_started_by_hand_never_overlap(proj, tmp_path):
    """The unit's own command, started while a run for the same date holds the date's lock, is refused."""
    _systemctl(proj, tmp_path, session=True)
    proj.doit("schedule", "--at", "03:00", check=True)
    service = next((tmp_path / "config" / "systemd" / "user").glob("fullcycle-*.service")).read_text()
    command = shlex.split(re.search(r"^ExecStart=(.*)$", service, re.MULTILINE).group(1))
    assert command[0] == sys.executable and command[-1] == "full_cycle"
    lock = proj.work / ".lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # a run started by hand, still going
        env = {k: v for k, v in proj.env.items() if k != "FULLCYCLE_DATE"} | {"FULLCYCLE_DATE": proj.date}
        timer_run = subprocess.run(command, cwd=proj.root, env=env, capture_output=True, text=True, timeout=120)
    assert timer_run.returncode != 0
    assert "another run for this date is in progress" in timer_run.stdout + timer_run.stderr
    assert not (proj.root / "out" / "adapters" / proj.date / "adapter").exists()
    assert os.environ.get("RUNPOD_API_KEY") != SECRET  # the test's own environment was never touched


def _cron_runs_the_line(proj, line: str) -> None:
    """What cron would run, as cron runs it (sh -c, from a project with no cache folder yet), with
    `doit list` for `doit full_cycle`: a redirection into a missing folder would run nothing."""
    command = line.split(None, 5)[5]
    command = command[:command.index(" # fullcycle-")].replace(" full_cycle >> ", " list >> ")
    shutil.rmtree(proj.root / ".fullcycle", ignore_errors=True)
    subprocess.run(["sh", "-c", command], env=proj.env, cwd="/", check=True, timeout=60)
    assert "full_cycle" in (proj.root / ".fullcycle" / "schedule.log").read_text()
