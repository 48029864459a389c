"""What one process learns while it runs stages (the providers and the record share it)."""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field


@dataclass
class RunState:
    """Everything one process learns while it runs stages; owned by its RunContext, never global.

    attempt_id names this process's attempt in the date's attempts log; `sessions` counts ssh (or
    bash) sessions opened on the pod; `teardown_failures` turns into exit code 3; `signal` is the
    signal that interrupted the run, for the conventional 128+N exit code.
    """

    attempt_id: str = field(default_factory=lambda: time.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(2))
    sessions: int = 0
    teardown_failures: list[str] = field(default_factory=list)
    locks: dict[str, int] = field(default_factory=dict)
    signal: int | None = None
    interrupted_stage: str | None = None
    attempt_started: bool = False
    attempt_closed: bool = False
    stages_run: list[str] = field(default_factory=list)
    hooks_installed: bool = False
