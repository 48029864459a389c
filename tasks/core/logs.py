"""trainer.log and the console: one logger, with the API key scrubbed from every line.

The seed keeps a per-day trainer.log for forensics (§5); both the orchestrator and the pod's
training output land there.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from tasks.core import secrets

LOGGER = "fullcycle"
_FORMAT = "%(asctime)s %(levelname)s %(message)s"


def redact(text: str) -> str:
    """Remove every secret (the RunPod key, the model hub token, a notification URL, whatever the secrets
    file gave) from any text that may leave the process (logs, summaries, errors, notifications)."""
    for name in (*secrets.NAMES, *sorted(secrets.LOADED)):
        key = os.environ.get(name)
        if key and len(key) >= 4 and key in text:
            text = text.replace(key, "[REDACTED]")
    return text


class _RedactFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = ()
        return True


def setup(trainer_log: Path) -> logging.Logger:
    """Attach the console and trainer.log handlers once per process (idempotent)."""
    logger = logging.getLogger(LOGGER)
    target = str(trainer_log.resolve())
    if any(getattr(h, "_fullcycle_target", None) == target for h in logger.handlers):
        return logger
    for handler in list(logger.handlers):  # a new run date in the same process: switch files
        if getattr(handler, "_fullcycle_target", None):
            logger.removeHandler(handler)
            handler.close()
    trainer_log.parent.mkdir(parents=True, exist_ok=True)
    file_handler = logging.FileHandler(trainer_log, encoding="utf-8")
    file_handler._fullcycle_target = target  # type: ignore[attr-defined]
    file_handler.setFormatter(logging.Formatter(_FORMAT))
    logger.addHandler(file_handler)
    if not any(getattr(h, "_fullcycle_console", False) for h in logger.handlers):
        console = logging.StreamHandler(sys.stdout)
        console._fullcycle_console = True  # type: ignore[attr-defined]
        console.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(console)
    if not any(isinstance(f, _RedactFilter) for f in logger.filters):
        logger.addFilter(_RedactFilter())
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger
