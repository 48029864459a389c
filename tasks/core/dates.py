"""Run dates: the one check of the YYYY-MM-DD a date must be (it names folders and doit's state).

The settings (`--date`, $FULLCYCLE_DATE, `[project] date`) and the web page both ask here.
"""

from __future__ import annotations

import datetime as dt
import re

from tasks.core.errors import FullcycleError

FORM = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class BadDate(FullcycleError, ValueError):
    """Not a date this tool accepts; the message says why."""


def parse(text: str) -> str:
    """`text` when it is YYYY-MM-DD and a real day; else BadDate (a date names files: nothing else passes)."""
    if not isinstance(text, str) or not FORM.match(text):
        raise BadDate(f"date {text!r} must be YYYY-MM-DD")
    try:
        dt.date.fromisoformat(text)
    except ValueError as exc:
        raise BadDate(f"date {text!r} is not a calendar date ({exc})") from None
    return text


def now() -> str:
    """This moment in UTC, to the millisecond: every record's timestamps are written by this one function.
    Whole seconds made a pod that lived under a second (the local provider's, a quick test run) look
    unbilled, and every span read from two stamps ±1 s."""
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds")


def parse_stamp(stamp: object) -> dt.datetime | None:
    """A record's timestamp back into a datetime; None when it is missing or not a timestamp (a
    hand-edited record must never stop the report that reads it)."""
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        parsed = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)
