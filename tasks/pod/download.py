"""Seed §3.5: the packed adapter comes home as base64 (adapter_base64.txt), streamed straight to
disk by a shell pipeline, resumable after a break; tasks/pod/extract.py verifies and unpacks it."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from tasks.context import RunContext
from tasks.core import logs
from tasks.core.errors import TransportError
from tasks.core.files import read_record
from tasks.core.retry import GaveUp, Policy, retry
from tasks.pod.lifecycle import connect_or_keep, vanished
from tasks.providers.base import Pod
from tasks.transport.connection import Connection

log = logging.getLogger(logs.LOGGER)

DOWNLOAD_ATTEMPTS = 5


def download_adapter(ctx: RunContext) -> Path:
    """The download_adapter stage: the packed adapter, base64 over the connection, streamed into a file.

    A broken transfer resumes where it stopped: base64 of the archive from the last whole 3-byte
    group received, appended to the partial file."""
    live = connect_or_keep(ctx, "download_adapter")
    if live is None:
        return ctx.paths.adapter_b64
    pod, conn = live
    try:
        _download(ctx, pod, conn)
    finally:
        conn.close()  # on every path: an exception must not leave an ssh session (or a PTY process) open
    return ctx.paths.adapter_b64


def _download(ctx: RunContext, pod: Pod, conn: Connection) -> None:
    record = read_record(ctx.paths.train_file)
    if record.get("pod_id") != pod.pod_id or record.get("exit_code") != 0:
        raise TransportError(f"download: no successful training recorded for pod {pod.pod_id}; run `doit full_cycle --date {ctx.paths.date}`")
    target = ctx.paths.adapter_b64
    # Named by the archive's hash: only a transfer of this very archive may be resumed.
    partial = target.with_name(f"{target.name}.{record.get('tar_sha256') or 'unknown'}.partial")
    for stale in target.parent.glob(f"{target.name}.*.partial"):
        if stale != partial:
            stale.unlink()
    tar = pod.run_dir + "/adapter.tar"
    expected = 4 * -(-record["tar_bytes"] // 3)
    tries = [0]

    def once() -> None:
        tries[0] += 1
        result, offset = conn.fetch_base64(tar, partial)
        if tries[0] > 1:
            log.warning("download: resuming at archive byte %d (attempt %d)", offset, tries[0])
        got = partial.stat().st_size
        if result.exit_code == 0 and got == expected:
            return
        if got > expected:
            partial.unlink()
        raise TransportError(f"got {got} of {expected} base64 bytes "
                             f"({result.stderr.strip()[-300:] or 'transfer truncated'})")

    policy = Policy(attempts=DOWNLOAD_ATTEMPTS, delay=ctx.settings.ssh.reconnect_delay_s, factor=1.0)
    try:
        retry(once, "download", policy, (TransportError,))
    except GaveUp as exc:
        vanished(ctx, pod, "download_adapter")
        raise TransportError(f"download: {exc}; re-run `doit -a download_adapter --date {ctx.paths.date}` "
                             f"(it resumes where it stopped)") from None
    os.replace(partial, target)
    log.info("Downloaded adapter archive: %d bytes (base64 %d)", record["tar_bytes"], expected)
