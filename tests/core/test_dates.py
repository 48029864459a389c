"""Records' timestamps (tasks/core/dates.py): fine enough to bill a pod that lived under a second."""

from __future__ import annotations

import re
import time

from tasks.core import dates


def test_stamps_keep_the_milliseconds_a_short_pods_bill_is_read_from():
    first = dates.now()
    time.sleep(0.25)
    second = dates.now()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", second), second
    span = (dates.parse_stamp(second) - dates.parse_stamp(first)).total_seconds()
    assert 0.2 <= span < 5  # whole seconds gave 0 or 1: a local pod of 0.4 s looked unbilled
    assert dates.parse_stamp("2026-12-04T18:26:22+00:00") is not None  # records written before still read
