"""One way to wait and retry (tasks/core/retry.py): backoff, hints, deadlines."""

from __future__ import annotations

import time

import pytest

from tasks.core.retry import Deadline, GaveUp, Policy, retry


class Flaky(Exception):
    pass


def test_retry_backs_off_then_succeeds():
    calls, pauses = [], []

    def call():
        calls.append(1)
        if len(calls) < 3:
            raise Flaky("not yet")
        return "ok"

    assert retry(call, "thing", Policy(attempts=5, delay=1.0), (Flaky,), sleep=pauses.append) == "ok"
    assert pauses == [1.0, 2.0]


def test_retry_gives_up_with_the_last_error_and_lets_others_through():
    with pytest.raises(GaveUp, match="after 3 attempt"):
        retry(lambda: (_ for _ in ()).throw(Flaky("down")), "thing", Policy(attempts=3, delay=0), (Flaky,),
              sleep=lambda s: None)
    with pytest.raises(ValueError):
        retry(lambda: (_ for _ in ()).throw(ValueError("fatal")), "thing", Policy(), (Flaky,), sleep=lambda s: None)


def test_retry_honours_a_hint_and_the_deadline():
    pauses = []
    with pytest.raises(GaveUp):
        retry(lambda: (_ for _ in ()).throw(Flaky("x")), "thing", Policy(attempts=0, delay=5, deadline_s=0.2),
              (Flaky,), wait_hint=lambda exc: 0.05, sleep=lambda s: (pauses.append(s), time.sleep(s)))
    assert pauses and all(p <= 0.05 for p in pauses)
    assert Deadline(0).passed() and Deadline(10).left() > 9
