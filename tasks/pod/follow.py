"""Seed §3.4: the train stage: start the training on the pod, detached, and follow its log live
into trainer.log until the end line.

remote/train_runner.sh starts the trainer once and follows its log; a dropped connection only
stops the following, and running it again re-attaches where the log was. When a session ends
without the end line (dropped, or a gateway that lost stdout), the pod is asked what it has
(remote/state.sh) before anything is concluded: a finished training is never thrown away.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from pathlib import Path
from typing import Any

from tasks.context import RunContext
from tasks.core import logs
from tasks.core.errors import TrainingError, TransportError
from tasks.core.files import read_record, write_json
from tasks.core.paths import PodNames
from tasks.core.retry import Deadline
from tasks.pod.lifecycle import connect_or_keep, vanished
from tasks.providers.base import Pod
from tasks.transport.connection import SSH_CONNECT_FAILED, Connection

log = logging.getLogger(logs.LOGGER)

END_MARK = b"##fullcycle-train-end"
FOLLOW_MARGIN_S = 600
MAX_FRUITLESS_RECONNECTS = 10


class PodLog:
    """Sink for the pod's training log: appends the raw bytes, echoes lines, catches the end mark.

    Writes after close are dropped: after an interrupt, the reader thread may still deliver bytes. A
    chunk that ends in the first bytes of the end mark is held back until the next one says whether
    the mark follows (ssh cuts its stream wherever it likes)."""

    def __init__(self, path: Path, offset: int, echo: bool = True) -> None:
        self.fh = path.open("ab")
        self.offset = offset
        self.partial = b""
        self.held = b""
        self.end: bytes | None = None
        self.echo = echo  # a cluster's other nodes are kept in their own logs, not echoed

    def write(self, data: bytes) -> None:
        if self.fh.closed:
            return
        if self.end is not None:
            self.end += data
            return
        data, self.held = self.held + data, b""
        cut = data.find(END_MARK)
        if cut >= 0:
            data, self.end = data[:cut], data[cut:]
        else:
            begun = next((n for n in range(min(len(END_MARK) - 1, len(data)), 0, -1)
                          if END_MARK.startswith(data[-n:])), 0)
            data, self.held = data[:len(data) - begun], data[len(data) - begun:]
        self._keep(data)

    def _keep(self, data: bytes) -> None:
        self.fh.write(data)
        self.fh.flush()
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines if self.echo else ():
            log.info("pod | %s", line.decode("utf-8", "replace").rstrip("\r"))

    def flush(self) -> None:
        if not self.fh.closed:
            self.fh.flush()

    def close(self) -> None:
        if self.held and not self.fh.closed:
            self._keep(self.held)
            self.held = b""
        if self.partial and self.echo:
            log.info("pod | %s", self.partial.decode("utf-8", "replace"))
            self.partial = b""
        self.fh.close()

    def outcome(self) -> dict[str, str] | None:
        return parse_outcome(self.end or b"")


def parse_outcome(text: bytes) -> dict[str, str] | None:
    """`END_MARK exit=.. sha256=.. bytes=.. end` -> its fields; None when absent or torn."""
    at = text.find(END_MARK)
    if at < 0:
        return None
    line = text[at:].split(b"\n", 1)[0].decode(errors="replace").rstrip("\r ")
    if not line.endswith(" end"):
        return None
    return dict(f.split("=", 1) for f in line.split()[1:-1] if "=" in f)


def _follow_once(ctx: RunContext, pod: Pod, conn: Connection, offset: int, rank: int = 0,
                 sink: PodLog | None = None) -> tuple[Any, PodLog]:
    r = pod.remote
    sink = sink or PodLog(ctx.paths.pod_train_log, offset)
    try:
        result = conn.run_script(
            "train_runner.sh", pod.run_dir, r["input_dir"], r["output_dir"], r["python"], r["hf_home"],
            offset, END_MARK.decode(), r["input_dir"] + "/" + PodNames.SCRIPT, r["input_dir"] + "/" + PodNames.DATASET,
            r["input_dir"] + "/" + PodNames.CONFIG, r.get("venv_dir", ""), " ".join(ctx.settings.remote.python_candidates),
            ctx.settings.remote.torch_index, pod.topology(rank),
            out=sink)
    finally:
        sink.close()
    return result, sink


def _ask_pod(conn: Connection, pod: Pod) -> tuple[str | None, dict[str, str] | None]:
    """The trainer's state and its recorded outcome, or (None, None) when the pod cannot be asked."""
    r = pod.remote
    try:
        result = conn.run_script("state.sh", pod.run_dir, r["input_dir"], timeout=120)
    except TransportError:
        return None, None
    if result.exit_code != 0:
        return None, None
    state = next((ln.partition("=")[2] for ln in result.text.splitlines() if ln.startswith("trainer=")), None)
    return state, parse_outcome(result.stdout)


def follow_training(ctx: RunContext) -> dict[str, Any] | None:
    """The train stage: start (or re-attach to) the training, follow it to the end, record train.json."""
    live = connect_or_keep(ctx, "train")
    if live is None:
        return None
    pod, conn = live
    try:
        return _follow_to_the_end(ctx, pod, conn)
    finally:
        conn.close()


def _start_nodes(ctx: RunContext, pod: Pod) -> list[threading.Thread]:
    """A cluster's other nodes: each runner starts its node's part of the torchrun (detached, as on the
    primary) and is followed into pod-train-<node>.log; the primary's log is the training's."""
    started = []
    for rank, (node, conn) in enumerate(ctx.provider.connect_nodes(pod)[1:], start=1):
        path = ctx.paths.pod_train_log.with_name(f"pod-train-{node}.log")
        path.unlink(missing_ok=True)

        def follow(conn: Connection = conn, rank: int = rank, path: Path = path) -> None:
            try:
                _follow_once(ctx, pod, conn, 0, rank, PodLog(path, 0, echo=False))
            except TransportError as exc:
                log.warning("following node %d of cluster %s stopped: %s (its training goes on)", rank, pod.pod_id, exc)
            finally:
                conn.close()

        started.append(threading.Thread(target=follow, name=f"node-{rank}", daemon=True))
        started[-1].start()
    if started:
        log.info("Cluster %s: the training started on %d nodes (the others' logs: %s)", pod.pod_id, len(started) + 1,
                 ctx.paths.pod_train_log.with_name("pod-train-<node>.log"))
    return started


def _follow_to_the_end(ctx: RunContext, pod: Pod, conn: Connection) -> dict[str, Any]:
    log.info("Training %s samples on pod %s with %s", _samples(ctx), pod.pod_id, pod.remote["python"])
    _start_nodes(ctx, pod)
    timeout = ctx.settings.runpod.max_runtime_h * 3600 + FOLLOW_MARGIN_S  # the watchdog has ended the pod by then
    started, deadline = time.time(), Deadline(timeout)
    ctx.paths.pod_train_log.unlink(missing_ok=True)
    offset, reconnects, fruitless = 0, 0, 0
    while True:
        result, sink = _follow_once(ctx, pod, conn, offset)
        outcome = sink.outcome()
        if outcome is not None:
            break
        progressed, offset = sink.offset > offset, sink.offset
        state, outcome = _ask_pod(conn, pod)
        if outcome is not None:
            log.warning("The follow session ended without the end line (exit %s); the pod says the training "
                        "finished: exit=%s", result.exit_code, outcome.get("exit"))
            break
        if state is None and not progressed:  # the pod cannot even be asked: was it ended from outside?
            vanished(ctx, pod, "train")
        if result.exit_code not in (0, SSH_CONNECT_FAILED) and state in ("none", None) and not progressed:
            raise TrainingError(f"the train runner on pod {pod.pod_id} failed (exit {result.exit_code}): "
                                f"{logs.redact(result.stderr.strip()[-500:]) or 'no output'}")
        fruitless = 0 if progressed else fruitless + 1
        if deadline.passed():
            raise TrainingError(f"training on pod {pod.pod_id} did not finish within {timeout:.0f}s")
        if fruitless >= 2:  # twice without a byte: has the pod been ended from outside? (one API call)
            vanished(ctx, pod, "train")
        if fruitless > MAX_FRUITLESS_RECONNECTS:
            raise TrainingError(f"following the training on pod {pod.pod_id} failed {fruitless} times in a row "
                                f"(last exit {result.exit_code}, trainer {state or 'unknown'}): "
                                f"{logs.redact(result.stderr.strip()[-300:]) or 'no output'}")
        reconnects += 1
        log.warning("Connection to the pod dropped (%s); reconnecting (%d) from log byte %d",
                    result.stderr.strip()[-200:] or f"exit {result.exit_code}, no end line", reconnects, offset)
        time.sleep(ctx.settings.ssh.reconnect_delay_s)
    code = outcome.get("exit", "lost")
    train_record = {
        "pod_id": pod.pod_id,
        "exit_code": int(code) if code.isdigit() else code,
        "started_at": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1),
        "reconnects": reconnects,
        "log_bytes": offset,
        "tar_sha256": outcome.get("sha256") or None,
        "tar_bytes": int(outcome["bytes"]) if outcome.get("bytes", "").isdigit() else None,
        **_python_info(outcome.get("python", "")),
        "preflight": _report(outcome.get("preflight", "")),
        "download": _report(outcome.get("download", "")),
    }
    if train_record.get("python"):
        log.info("Pod Python: %s (%s, set-up %ss; stack %s)", train_record["python"], train_record["python_source"],
                 train_record["setup_seconds"], train_record.get("stack") or "not compared")
    if train_record["exit_code"] == 0 and ctx.settings.runpod.gpu_count > 1:
        from tasks.record.history import one_gpu_rate

        train_record["one_gpu_baseline"] = one_gpu_rate(ctx.settings, ctx.paths.date, ctx.settings.training.base_model,
                                                        pod.gpu)
    write_json(ctx.paths.train_file, train_record)
    success = train_record["exit_code"] == 0
    log.info("Train command exit code: %s", code)
    log.info("Remote training complete, success=%s", success)
    if not success:
        raise TrainingError(_failure(ctx, pod, train_record))
    return train_record


PREFLIGHT_FAILED, NO_GPU_STACK, DOWNLOAD_FAILED = 5, 4, 6  # the pod's exit codes (remote/trainer/*.py)


def _failure(ctx: RunContext, pod: Pod, record: dict[str, Any]) -> str:
    """What the summary's error says: a failed preflight by its step and the library's own words (the
    download beside it stopped), else the trainer's last error line."""
    preflight = record.get("preflight") or {}
    where = f"; its log is in {ctx.paths.trainer_log}"
    if preflight.get("ok") is False:
        download = record.get("download") or {}
        stopped = ("the base model's download beside it was stopped" if download.get("stopped")
                   else "before the base model was loaded")
        return (f"preflight failed at {preflight.get('step')} on pod {pod.pod_id} after {preflight.get('seconds')}s, "
                f"{stopped}: {logs.redact(str(preflight.get('error')))[:600]}{where}")
    download = record.get("download") or {}
    if download.get("ok") is False:
        return (f"the base model's download failed on pod {pod.pod_id}: {logs.redact(str(download.get('error')))[:600]}"
                f"; the pod is terminated rather than left billing{where}")
    said = _trainer_error(ctx.paths.pod_train_log)
    return f"training on pod {pod.pod_id} exited with {record['exit_code']}" + (f": {said}" if said else "") + where


def _report(encoded: str) -> dict[str, Any] | None:
    """A step's report on the pod (preflight.json, download.json), base64 in the end line; None when
    the step did not run."""
    import base64
    import binascii

    import orjson

    try:
        found = orjson.loads(base64.b64decode(encoded)) if encoded else None
    except (binascii.Error, ValueError):
        return {"ok": None, "skipped": "its report did not come back whole"}
    return found if isinstance(found, dict) else None


def _trainer_error(log_file: Path, keep: int = 64 * 1024) -> str | None:
    """The trainer's own last `[train] ERROR:` line (from the log's tail), for the summary's error."""
    try:
        with log_file.open("rb") as fh:
            fh.seek(max(log_file.stat().st_size - keep, 0))
            tail = fh.read().decode("utf-8", "replace")
    except OSError:
        return None
    errors = [line.split("[train] ERROR:", 1)[1].strip() for line in tail.splitlines() if "[train] ERROR:" in line]
    died = _rank_died(tail)
    if died and not any(e.startswith(f"rank {died[0]} ") for e in errors):
        return f"rank {died[0]} of the torchrun processes died ({died[1]}) without a word of its own"
    return logs.redact(errors[-1])[:600] if errors else None


def _rank_died(tail: str) -> tuple[str, str] | None:
    """torchrun's own account of the first rank that failed (`Root Cause`): rank and exit code (a
    signal for a process the kernel ended, e.g. out of memory)."""
    import re

    found = re.search(r"Root Cause[^\n]*\n(?:.*\n){0,4}?\s*rank\s*:\s*(\d+)[^\n]*\n(?:.*\n){0,2}?\s*exitcode\s*:\s*"
                      r"([^\n]+)", tail)
    return (found.group(1), " ".join(found.group(2).split())) if found else None


def _python_info(encoded: str) -> dict[str, Any]:
    """setup_python.sh's answer (interpreter, how it was obtained, seconds), base64 in the end line."""
    import base64
    import binascii

    try:
        lines = base64.b64decode(encoded).decode().splitlines() if encoded else []
    except (binascii.Error, UnicodeDecodeError):
        lines = []
    if len(lines) < 3:
        return {}
    return {"python": lines[0], "python_source": lines[1],
            "setup_seconds": int(lines[2]) if lines[2].isdigit() else None,
            "stack": lines[3] if len(lines) > 3 else None}


def _samples(ctx: RunContext) -> Any:
    if ctx.samples_used is not None:
        return ctx.samples_used
    return (read_record(ctx.paths.clean_stats_file)).get("samples_used", "?")
