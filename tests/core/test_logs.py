"""Secrets never leave the process: the log's redaction (tasks/core/logs.py)."""

from __future__ import annotations


def test_the_hub_token_is_redacted_like_the_api_key(monkeypatch):
    from tasks.core.logs import redact

    monkeypatch.setenv("HF_TOKEN", "hf_SENTINEL_abcdef")
    monkeypatch.setenv("RUNPOD_API_KEY", "rpa_SENTINEL_123456")
    assert redact("token hf_SENTINEL_abcdef key rpa_SENTINEL_123456") == "token [REDACTED] key [REDACTED]"
