"""Seed §3.3: dataset, config and trainer to the pod in one stream, proven by sha256 on both ends.

The pod, not doit's state, says what is done: doit saves nothing when a run is killed, so a rerun
reaches this stage again while the first trainer may still be running. remote/receive.sh then
drains the stream and changes nothing; if the pod's inputs are the same as ours the upload is done,
and if they differ (the user changed the config meanwhile) that trainer is stopped and replaced.
"""

from __future__ import annotations

import logging
import os
import shlex
import shutil
from collections.abc import Mapping
from pathlib import Path

from tasks.context import RunContext
from tasks.core import logs
from tasks.core.errors import TransportError
from tasks.core.retry import GaveUp, Policy, retry
from tasks.core.secrets import HF_TOKEN_ENV
from tasks.data import manifest
from tasks.pod.lifecycle import connect_or_keep, vanished
from tasks.providers.base import Pod
from tasks.transport.connection import Connection, check

log = logging.getLogger(logs.LOGGER)

UPLOAD_ATTEMPTS = 3
TOKEN_FILE = "hf_token"  # in the pod's work folder; remote/train_runner.sh reads it into HF_TOKEN, then deletes it


def _stage_links(staging: Path, inputs: Mapping[str, Path]) -> None:
    """Symlinks named as on the pod; `tar -h` follows them, so nothing is copied locally."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name, path in inputs.items():
        (staging / name).symlink_to(path.resolve())


def _read_state(conn: Connection, pod: Pod) -> str:
    r = pod.remote
    return check(conn.run_script("state.sh", pod.run_dir, r["input_dir"], timeout=120),
                 "read the pod's state", conn).text


def _upload_once(ctx: RunContext, pod: Pod, conn: Connection, inputs: Mapping[str, Path], local: Mapping[str, str],
                 mode: str) -> str:
    """One transfer; returns how it ended: "uploaded", "kept" (a trainer has these inputs) or "stale"."""
    r = pod.remote
    result = conn.send_tree(ctx.paths.upload_staging, list(inputs), r["input_dir"], pod.run_dir, mode)
    check(result, "upload", conn)
    text = result.text
    if "trainer=" not in text:  # the gateway sometimes swallows stdout: read the proof again, don't hang
        log.warning("upload: no report from the pod on stdout; reading its state again")
        text = _read_state(conn, pod)
    state, remote_sums = manifest.parse(text)
    bad = sorted(n for n in local if remote_sums.get(n) != local[n])
    if state not in (None, "none") and mode == "keep":
        if not bad:
            log.info("A trainer on pod %s is already %s with these very inputs: not uploading under it", pod.pod_id, state)
            return "kept"
        log.warning("The trainer on pod %s (%s) has other inputs (%s differ): stopping it and uploading these",
                    pod.pod_id, state, ", ".join(bad))
        return "stale"
    if bad:
        raise TransportError(f"upload: checksum mismatch on the pod for {', '.join(bad)} (pod {pod.pod_id})")
    return "uploaded"


def upload_inputs(ctx: RunContext) -> list[str] | None:
    """Upload (or confirm) the inputs on every node of the pod; writes upload.ok with each file's sha256."""
    live = connect_or_keep(ctx, "upload")
    if live is None:
        return None
    pod, conn = live
    inputs = manifest.inputs(ctx.settings, ctx.paths)
    for name, path in inputs.items():
        if not path.exists():
            raise TransportError(f"upload: input {path} ({name}) does not exist; run the stage that makes it")
    _stage_links(ctx.paths.upload_staging, inputs)
    local = manifest.checksums(inputs)  # once: the dataset may be GBs
    nodes = [(pod.pod_id, conn)] + ctx.provider.connect_nodes(pod)[1:]  # a cluster's other nodes get the same inputs
    try:
        for node, node_conn in nodes:
            outcome = _upload(ctx, pod, node_conn, inputs, local, f" on node {node}" if len(nodes) > 1 else "")
    finally:
        for _, node_conn in nodes:
            node_conn.close()
        shutil.rmtree(ctx.paths.upload_staging, ignore_errors=True)
    lines = manifest.write(ctx.paths.upload_ok, local)
    log.info("Upload verified on pod %s%s: %d files (%s); %s", pod.pod_id,
             f" ({len(nodes)} nodes)" if len(nodes) > 1 else "", len(lines), outcome, manifest.config_line(lines))
    return lines


def _upload(ctx: RunContext, pod: Pod, conn: Connection, inputs: Mapping[str, Path], local: Mapping[str, str],
            where: str) -> str:
    """One node's upload, retried; a trainer there with other inputs is replaced."""
    policy = Policy(attempts=UPLOAD_ATTEMPTS, delay=ctx.settings.ssh.reconnect_delay_s, factor=1.0)
    mode = "keep"
    try:
        outcome = retry(lambda: _upload_once(ctx, pod, conn, inputs, local, mode), f"upload attempt{where}", policy,
                        (TransportError,))
        if outcome == "stale":
            mode = "replace"
            outcome = retry(lambda: _upload_once(ctx, pod, conn, inputs, local, mode), f"upload attempt{where}",
                            policy, (TransportError,))
        if ctx.provider.rents_pods:
            send_token(conn, pod)
    except GaveUp as exc:
        vanished(ctx, pod, "upload")
        raise TransportError(str(exc)) from None
    return outcome


def send_token(conn: Connection, pod: Pod) -> None:
    """The model hub's token (a gated base model is downloaded on the pod), into a file only the pod's
    user may read, over the ssh session's stdin: never in the create request (RunPod returns a pod's
    env to whoever lists pods) and never on a command line. The training run reads it and removes it."""
    token = os.environ.get(HF_TOKEN_ENV)
    if not token:
        return
    work = pod.remote["work_dir"]
    command = f"umask 077 && mkdir -p {shlex.quote(work)} && cat > {shlex.quote(work + '/' + TOKEN_FILE)}"
    check(conn.run(command, stdin=token.encode(), timeout=120), "send the model hub token", conn)

