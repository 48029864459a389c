"""A word on every run that ends ([notify]): success, failure, an interrupt, a refusal before anything
was rented. A daily run nobody watches is only as good as the word that reaches its owner.

The message is four things, secrets scrubbed: the outcome, the date, the summary's path and one line
of why. `[notify] command` gets them in its environment (FULLCYCLE_OUTCOME, FULLCYCLE_DATE,
FULLCYCLE_SUMMARY, FULLCYCLE_REASON); `[notify] url` (or $FULLCYCLE_NOTIFY_URL, a webhook URL being a
secret) gets them as a short JSON POST whose `text` reads as one line (ntfy, chat webhooks). Each has
`[notify] timeout_s`; one that fails or hangs never changes the run's outcome or its exit code: what it
returned goes into notify.json, which the summary and the page show.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import Any
from urllib.parse import urlsplit

from tasks.context import RunContext
from tasks.core import logs
from tasks.core.files import read_record, write_json
from tasks.core.secrets import NOTIFY_URL_ENV, child_env

OUTPUT_CHARS = 300  # what a command printed, kept for the record


def outcome(summary: dict[str, Any]) -> tuple[str, str]:
    """(succeeded | failed | interrupted | refused, one line of why)."""
    if summary.get("success"):
        judged = summary.get("eval") or {}
        loss = judged.get("adapter_loss")
        measured = isinstance(loss, (int, float))
        said = f"held-out loss {loss:.4f}, {judged.get('verdict')}" if measured else "no evaluation"
        cost = summary.get("cost_usd")
        return "succeeded", f"adapter home ({said})" + (f", ${cost:.2f}" if isinstance(cost, (int, float)) else "")
    error = " ".join(str(summary.get("error") or "no reason recorded").split())[:300]
    if summary.get("outcome") == "interrupted":
        return "interrupted", error
    rented = summary.get("pod_id") or summary.get("provider") == "local"
    return ("failed" if rented else "refused"), error


def message(ctx: RunContext) -> dict[str, str]:
    summary = read_record(ctx.paths.summary_file)
    word, why = outcome(summary)
    fields = {"outcome": word, "date": ctx.paths.date, "summary": str(ctx.paths.summary_file), "reason": why}
    fields = {k: logs.redact(v) for k, v in fields.items()}
    fields["text"] = f"fullcycle {fields['date']}: {word}: {fields['reason']}"
    return fields


def run_command(command: str, fields: dict[str, str], timeout_s: float) -> dict[str, Any]:
    """The user's command, in its own process group, so a hung one is ended whole at the timeout."""
    started = time.monotonic()
    try:
        proc = subprocess.Popen(command, shell=True, env=child_env(**{f"FULLCYCLE_{k.upper()}": v for k, v in fields.items() if k != "text"}), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        return {"error": f"could not start: {exc}"}
    try:
        output, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"timeout": True, "seconds": round(time.monotonic() - started, 2),
                "error": f"no answer within {timeout_s:g}s: ended"}
    said = logs.redact(output.decode("utf-8", "replace").strip())[-OUTPUT_CHARS:]
    return {"exit": proc.returncode, "seconds": round(time.monotonic() - started, 2), "output": said}


def post(url: str, fields: dict[str, str], timeout_s: float) -> dict[str, Any]:
    """The JSON POST; the record names the host only (a webhook's path is its secret)."""
    import requests

    parts = urlsplit(url)
    host = f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    started = time.monotonic()
    try:
        resp = requests.post(url, json=fields, timeout=(min(timeout_s, 5.0), timeout_s),
                             headers={"User-Agent": "fullcycle", "Title": f"fullcycle {fields['date']}"})
    except requests.RequestException as exc:
        return {"host": host, "seconds": round(time.monotonic() - started, 2),
                "error": logs.redact(f"{type(exc).__name__}: {exc}".replace(url, host))[:OUTPUT_CHARS]}
    return {"host": host, "status": resp.status_code, "seconds": round(time.monotonic() - started, 2),
            "ok": resp.ok}


def notify(ctx: RunContext) -> dict[str, Any] | None:
    """Send the word on this date's run as it ended; None when nothing is configured."""
    settings = ctx.settings.notify
    url = settings.url or os.environ.get(NOTIFY_URL_ENV, "")
    if not settings.command and not url:
        return None
    fields = message(ctx)
    record: dict[str, Any] = {"outcome": fields["outcome"], "reason": fields["reason"],
                              "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    if settings.command:
        record["command"] = run_command(settings.command, fields, settings.timeout_s)
    if url:
        record["url"] = post(url, fields, settings.timeout_s)
    write_json(ctx.paths.notify_file, record)
    return record
