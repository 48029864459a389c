"""The trainer's part of the pod's bill, phase by phase (metrics.json "phases"): each lap is the
time since the previous one, so the phases add up to the trainer's whole run."""

from __future__ import annotations

import time


class Clock:
    def __init__(self, started: float) -> None:
        self.phases: dict[str, float] = {}
        self.started = self._last = started  # epoch seconds: where the laps begin, for the bill's overlaps

    def lap(self, phase: str) -> float:
        now = time.time()
        self.phases[phase] = round(now - self._last, 2)
        self._last = now
        return self.phases[phase]
