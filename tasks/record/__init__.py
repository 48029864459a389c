"""The record a run leaves: a stage's record (stage.py), the append-only attempts log (attempts.py),
run-summary.json composed from them (summary.py), and the history of every date (history.py:
`doit report`, the previous promoted adapter).
"""

from tasks.record.history import previous_adapter, summaries
from tasks.record.stage import close_attempt, recording
from tasks.record.summary import summarize

__all__ = ["close_attempt", "previous_adapter", "recording", "summaries", "summarize"]
