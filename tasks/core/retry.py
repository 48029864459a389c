"""One way to wait and retry: API calls, ssh probes, uploads, downloads and reconnects all use it.

A `Policy` says how many tries, how the pause grows and how long the whole thing may take; `retry`
runs a call under it and lets through only the errors the caller names as transient. Keeping the
numbers in one place is what makes "how long can a broken pod bill us" answerable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

log = logging.getLogger("fullcycle")
T = TypeVar("T")


class Deadline:
    """A point in monotonic time; `left()` never goes negative."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self._clock = clock
        self._end = clock() + seconds

    def left(self) -> float:
        return max(0.0, self._end - self._clock())

    def passed(self) -> bool:
        return self._clock() >= self._end


@dataclass(frozen=True)
class Policy:
    """attempts: total tries (0 = until the deadline); delay doubles up to max_delay."""

    attempts: int = 6
    delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 60.0
    deadline_s: float | None = None

    def pause(self, attempt: int) -> float:
        return min(self.delay * self.factor ** (attempt - 1), self.max_delay)


class GaveUp(Exception):
    """Raised by `retry` when the policy is spent; carries the last error."""

    def __init__(self, what: str, attempts: int, last: BaseException) -> None:
        super().__init__(f"{what}: still failing after {attempts} attempt(s): {last}")
        self.last = last
        self.attempts = attempts


def retry(call: Callable[[], T], what: str, policy: Policy, transient: tuple[type[BaseException], ...],
          wait_hint: Callable[[BaseException], float | None] = lambda exc: None,
          sleep: Callable[[float], None] = time.sleep, quiet: bool = False) -> T:
    """Run `call` until it returns; a `transient` error waits and tries again, anything else passes.

    `wait_hint` lets an error carry its own pause (HTTP Retry-After)."""
    deadline = Deadline(policy.deadline_s) if policy.deadline_s is not None else None
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except transient as exc:
            out_of_tries = policy.attempts and attempt >= policy.attempts
            if out_of_tries or (deadline is not None and deadline.passed()):
                raise GaveUp(what, attempt, exc) from None
            hint = wait_hint(exc)
            pause = min(hint if hint is not None else policy.pause(attempt), policy.max_delay)
            if deadline is not None:
                pause = min(pause, deadline.left())
            if not quiet:
                log.warning("%s failed (%s); retrying in %.1fs (attempt %d%s)", what, exc, pause, attempt,
                            f"/{policy.attempts}" if policy.attempts else "")
            sleep(pause)
