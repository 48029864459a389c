"""The remote half of a run (seed §3): pod, upload, training, download, extraction, termination.

Each step is a function of the RunContext that reads and writes the run's files, so doit can run
them one by one as stages and `run_remote_training()` can run them all in one call.

Sessions on the pod in a nominal run: one to upload and verify, one to start training, follow its
log and pack the adapter, one to stream the adapter back (plus the readiness probe).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import io
import logging
import os
import shlex
import shutil
import tarfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tasks import logs, trainconfig
from tasks.trainconfig import CONFIG_NAME, DATASET_NAME, SCRIPT_NAME
from tasks.context import RunContext
from tasks.errors import ProviderError, TrainingError, TransportError
from tasks.files import atomic_writer, read_json, sha256_file, write_json
from tasks.providers.base import Pod
from tasks.summary import now
from tasks.transport import SSH_CONNECT_FAILED, Connection, check, fetch_base64, send_tree

log = logging.getLogger(logs.LOGGER)

END_MARK = b"##fullcycle-train-end"
MAX_FRUITLESS_RECONNECTS = 10
UPLOAD_ATTEMPTS = 3
DOWNLOAD_ATTEMPTS = 5
WATCHDOG_NAME = "fullcycle-watchdog"

q = shlex.quote


# --------------------------------------------------------------------------- pod


def load_pod(ctx: RunContext) -> Pod:
    pod = Pod.load(ctx.paths.pod_file)
    if pod is None:
        raise ProviderError(f"{ctx.paths.pod_file} does not exist: run `doit create_pod` (or `doit full_cycle`)")
    return pod


def live_pod(ctx: RunContext) -> tuple[Pod, Connection]:
    """The recorded pod and a connection to it, after checking with the provider that it is alive."""
    pod = load_pod(ctx)
    if pod.terminated or not ctx.provider.is_alive(pod):
        raise ProviderError(
            f"pod {pod.pod_id} recorded in {ctx.paths.pod_file} is no longer running: "
            f"run `doit full_cycle` to rent a new one"
        )
    return pod, ctx.provider.connect(pod)


def create_pod(ctx: RunContext) -> Pod:
    """Rent a pod (or keep a live one this date already has) and wait until it answers commands."""
    provider = ctx.provider
    old = Pod.load(ctx.paths.pod_file)
    if old and not old.terminated and provider.is_alive(old):
        log.info("Resuming with live pod %s recorded in %s (no new rental)", old.pod_id, ctx.paths.pod_file)
        if not old.ready_at:  # the earlier run died before the pod was reachable
            old = provider.wait_ready(old)
            old.save(ctx.paths.pod_file)
        return old
    log.info("Spawning remote run… (provider %s)", provider.name)
    pod = provider.create()
    pod.save(ctx.paths.pod_file)  # recorded before anything else, so a teardown can always find it
    log.info("Pod %s created (gpu %s, cloud %s)", pod.pod_id, pod.gpu, pod.cloud_type)
    pod = provider.wait_ready(pod)
    pod.save(ctx.paths.pod_file)
    if pod.connection_mode == "gateway":
        log.info("Switched to gateway SSH mode: %s@%s", pod.ssh_user, pod.ssh_host)
    return pod


def pod_done(ctx: RunContext) -> bool:
    """Whether the recorded pod is still of use: alive, or it already delivered its adapter."""
    pod = Pod.load(ctx.paths.pod_file)
    if pod is None:
        return False
    if not pod.terminated:
        return ctx.provider.is_alive(pod)
    train = read_json(ctx.paths.train_file) or {}
    return train.get("pod_id") == pod.pod_id and train.get("exit_code") == 0 and ctx.paths.adapter_b64.is_file()


def terminate_pod(ctx: RunContext) -> bool:
    """Terminate the recorded pod (idempotent) and record what was verified in pod.json."""
    pod = Pod.load(ctx.paths.pod_file)
    if pod is None or pod.terminated:
        return True
    try:
        ctx.provider.terminate(pod)
    except ProviderError as exc:
        pod.terminate_error = str(exc)
        pod.save(ctx.paths.pod_file)
        log.error("podTerminate FAILED for %s: %s", pod.pod_id, exc)
        raise
    pod.terminated, pod.terminated_at, pod.terminate_error = True, now(), None
    pod.save(ctx.paths.pod_file)
    log.info("Pod %s terminated (podTerminate succeeded)", pod.pod_id)
    return True


# --------------------------------------------------------------------------- upload


def _local_checksums(inputs: Mapping[str, Path]) -> dict[str, str]:
    sums = {}
    for name, path in inputs.items():
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                sums[f"{name}/{file.relative_to(path).as_posix()}"] = sha256_file(file)
        else:
            sums[name] = sha256_file(path)
    return sums


def _parse_sha_lines(text: str) -> dict[str, str]:
    sums = {}
    for line in text.splitlines():
        digest, _, name = line.strip().partition("  ")
        if len(digest) == 64 and name:
            sums[name] = digest
    return sums


def _stage_links(staging: Path, inputs: Mapping[str, Path]) -> None:
    """Symlinks named as on the pod; `tar -h` follows them, so nothing is copied locally."""
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name, path in inputs.items():
        (staging / name).symlink_to(path.resolve())


def _watchdog(ctx: RunContext, pod: Pod) -> str:
    """Shell that (re)starts the pod's dead-man's switch: it ends the pod after the maximum runtime,
    even if this machine dies. Only real pods get one; the local 'pod' is this machine."""
    command = ctx.settings.runpod.watchdog_command
    if pod.provider != "runpod" or not command:
        return ""
    created = dt.datetime.fromisoformat(pod.created_at)
    left = ctx.settings.runpod.max_runtime_h * 3600 - (dt.datetime.now(dt.timezone.utc) - created).total_seconds()
    script = f"sleep {max(int(left), 1)}; {command.replace('{pod_id}', q(pod.pod_id))}"
    pid_file = q(pod.remote["work_dir"] + "/watchdog.pid")
    return (f"[ -s {pid_file} ] && kill $(cat {pid_file}) 2>/dev/null; "
            f"setsid nohup bash -c {q(script)} {WATCHDOG_NAME} > /dev/null 2>&1 < /dev/null & echo $! > {pid_file}; ")


def _upload_once(ctx: RunContext, pod: Pod, conn: Connection, inputs: Mapping[str, Path]) -> list[str]:
    input_dir, work_dir = pod.remote["input_dir"], pod.remote["work_dir"]
    names = list(inputs)
    quoted = " ".join(q(n) for n in names)
    before = f"mkdir -p {q(work_dir)}; rm -rf {q(work_dir + '/run')}; {_watchdog(ctx, pod)}"
    after = (f"rm -f upload.ok; find {quoted} -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum > upload.ok.tmp; "
             f"mv upload.ok.tmp upload.ok; echo \"lines $(wc -l < {DATASET_NAME})\" >&2; cat upload.ok")
    result = send_tree(conn, ctx.paths.upload_staging, names, input_dir, before=before, after=after)
    check(result, "upload", conn)
    text = result.text
    if not text.strip():  # the gateway sometimes swallows stdout: read the proof again, don't hang
        log.warning("upload: empty stdout from the pod, reading upload.ok again")
        text = check(conn.run(f"cat {q(input_dir + '/upload.ok')}", timeout=120), "read upload.ok", conn).text
    remote_sums, local_sums = _parse_sha_lines(text), _local_checksums(inputs)
    bad = sorted(n for n in local_sums if remote_sums.get(n) != local_sums[n])
    if bad:
        raise TransportError(f"upload: checksum mismatch on the pod for {', '.join(bad)} (pod {pod.pod_id})")
    return [f"{local_sums[n]}  {n}" for n in sorted(local_sums)]


def upload(ctx: RunContext) -> list[str]:
    """Seed §3.3: one base64 stream for all inputs, sha256 of each checked against the pod's upload.ok.

    A dropped connection or a checksum mismatch uploads again (the inputs are small next to the
    adapter, and the pod's input folder is rewritten whole each time)."""
    pod, conn = live_pod(ctx)
    inputs = trainconfig.upload_inputs(ctx.settings, ctx.paths)
    for name, path in inputs.items():
        if not path.exists():
            raise TransportError(f"upload: input {path} ({name}) does not exist; run the stage that makes it")
    _stage_links(ctx.paths.upload_staging, inputs)
    for attempt in range(1, UPLOAD_ATTEMPTS + 1):
        try:
            lines = _upload_once(ctx, pod, conn, inputs)
            break
        except TransportError as exc:
            if attempt == UPLOAD_ATTEMPTS:
                raise
            log.warning("upload attempt %d failed (%s); uploading again", attempt, exc)
            time.sleep(ctx.settings.ssh.reconnect_delay_s)
    with atomic_writer(ctx.paths.upload_ok, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    verification = trainconfig.config_line(lines)
    log.info("Upload verified on pod %s: %d files; %s", pod.pod_id, len(lines), verification)
    shutil.rmtree(ctx.paths.upload_staging, ignore_errors=True)
    return lines


# --------------------------------------------------------------------------- train


class _PodLog:
    """Sink for the pod's training log: appends the raw bytes, echoes lines, catches the end mark."""

    def __init__(self, path: Path, offset: int) -> None:
        self.fh = path.open("ab")
        self.offset = offset
        self.partial = b""
        self.end: bytes | None = None

    def write(self, data: bytes) -> None:
        if self.end is not None:
            self.end += data
            return
        cut = data.find(END_MARK)
        if cut >= 0:
            data, self.end = data[:cut], data[cut:]
        self.fh.write(data)
        self.fh.flush()
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        for line in lines:
            log.info("pod | %s", line.decode("utf-8", "replace").rstrip("\r"))

    def flush(self) -> None:
        self.fh.flush()

    def close(self) -> None:
        if self.partial:
            log.info("pod | %s", self.partial.decode("utf-8", "replace"))
            self.partial = b""
        self.fh.close()

    def outcome(self) -> dict[str, str] | None:
        if self.end is None or not self.end.rstrip().endswith(b"end"):
            return None
        fields = self.end.decode().split()[1:-1]
        return dict(f.split("=", 1) for f in fields if "=" in f)


def _train_command(pod: Pod, offset: int) -> str:
    """Start training detached (once), follow its log from `offset`, pack the adapter when done.

    The training runs under setsid+nohup with its log and exit code in files, so a dropped ssh
    connection only stops the following; running this command again picks the log up where it was.
    """
    r = pod.remote
    run = r["work_dir"] + "/run"
    train = (
        f"echo $$ > train.pid.tmp && mv train.pid.tmp train.pid; rm -rf -- {q(r['output_dir'])}; "
        f"export HF_HOME={q(r['hf_home'])} PYTHONUNBUFFERED=1; "
        f"{q(r['python'])} {q(r['input_dir'] + '/' + SCRIPT_NAME)} --data {q(r['input_dir'] + '/' + DATASET_NAME)} "
        f"--config {q(r['input_dir'] + '/' + CONFIG_NAME)} --output {q(r['output_dir'])} >> train.log 2>&1; "
        f"echo $? > train.exit.tmp; mv train.exit.tmp train.exit"
    )
    pack = (
        f"tar -cf adapter.tar -C {q(r['output_dir'])} . -C {q(r['input_dir'])} upload.ok "
        f"&& sha=$(sha256sum adapter.tar | cut -d' ' -f1) && size=$(stat -c %s adapter.tar)"
    )
    return (
        f"mkdir -p {q(run)} && cd {q(run)} || exit 97; "
        f"if [ ! -e train.pid ]; then touch train.log; "
        f"setsid nohup bash -c {q(train)} > /dev/null 2>&1 < /dev/null & "
        f"for i in $(seq 200); do [ -s train.pid ] && break; sleep 0.05; done; fi; "
        f"pid=$(cat train.pid); tail -s 0.2 -c +{offset + 1} --pid=\"$pid\" -f train.log; "
        f"code=$(cat train.exit 2>/dev/null || echo lost); sha=; size=; "
        f"if [ \"$code\" = 0 ]; then {pack} || code=pack-failed; fi; "
        f"printf '%s exit=%s sha256=%s bytes=%s end\\n' {q(END_MARK.decode())} \"$code\" \"$sha\" \"$size\""
    )


def train(ctx: RunContext) -> dict[str, Any]:
    """Seed §3.4: run the training on the pod, live log to console and trainer.log, surviving drops."""
    pod, conn = live_pod(ctx)
    log.info("Training %s samples on pod %s with %s", _samples(ctx), pod.pod_id, pod.remote["python"])
    timeout = ctx.settings.ssh.train_timeout_h * 3600
    started, deadline = time.time(), time.monotonic() + timeout
    ctx.paths.pod_train_log.unlink(missing_ok=True)
    offset, reconnects, fruitless = 0, 0, 0
    outcome: dict[str, str] | None = None
    while outcome is None:
        sink = _PodLog(ctx.paths.pod_train_log, offset)
        try:
            result = conn.run(_train_command(pod, offset), out=sink)
        finally:
            sink.close()
        outcome = sink.outcome()
        if outcome is not None:
            break
        fruitless = 0 if sink.offset > offset else fruitless + 1
        offset = sink.offset
        if time.monotonic() > deadline:
            raise TrainingError(f"training on pod {pod.pod_id} did not finish within {timeout:.0f}s")
        if result.exit_code != SSH_CONNECT_FAILED or fruitless > MAX_FRUITLESS_RECONNECTS:
            raise TrainingError(
                f"following the training on pod {pod.pod_id} failed (exit {result.exit_code}): "
                f"{result.stderr.strip()[-500:] or 'no output'}"
            )
        reconnects += 1
        log.warning("Connection to the pod dropped (%s); reconnecting (%d) from log byte %d",
                    result.stderr.strip()[-200:] or "no message", reconnects, offset)
        time.sleep(ctx.settings.ssh.reconnect_delay_s)
    code = outcome.get("exit", "lost")
    record = {
        "pod_id": pod.pod_id,
        "exit_code": int(code) if code.isdigit() else code,
        "started_at": dt.datetime.fromtimestamp(started, dt.timezone.utc).isoformat(timespec="seconds"),
        "seconds": round(time.time() - started, 1),
        "reconnects": reconnects,
        "log_bytes": offset,
        "tar_sha256": outcome.get("sha256") or None,
        "tar_bytes": int(outcome["bytes"]) if outcome.get("bytes", "").isdigit() else None,
    }
    write_json(ctx.paths.train_file, record)
    success = record["exit_code"] == 0
    log.info("Train command exit code: %s", code)
    log.info("Remote training complete, success=%s", success)
    if not success:
        raise TrainingError(f"training on pod {pod.pod_id} exited with {code}; its log is in {ctx.paths.trainer_log}")
    return record


def _samples(ctx: RunContext) -> Any:
    if ctx.samples_used is not None:
        return ctx.samples_used
    return (read_json(ctx.paths.clean_stats_file) or {}).get("samples_used", "?")


# --------------------------------------------------------------------------- download + extract


def download(ctx: RunContext) -> Path:
    """Seed §3.5: the packed adapter, base64 over the connection, streamed straight into a file.

    A broken transfer resumes where it stopped: base64 of the archive from the last whole 3-byte
    group received, appended to the partial file."""
    pod, conn = live_pod(ctx)
    record = read_json(ctx.paths.train_file) or {}
    if record.get("pod_id") != pod.pod_id or record.get("exit_code") != 0:
        raise TransportError(f"download: no successful training recorded for pod {pod.pod_id}; run `doit train`")
    target = ctx.paths.adapter_b64
    # Named by the archive's hash: only a transfer of this very archive may be resumed.
    partial = target.with_name(f"{target.name}.{record.get('tar_sha256') or 'unknown'}.partial")
    for stale in target.parent.glob(f"{target.name}.*.partial"):
        if stale != partial:
            stale.unlink()
    tar = pod.remote["work_dir"] + "/run/adapter.tar"
    expected = 4 * -(-record["tar_bytes"] // 3)
    for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
        result, offset = fetch_base64(conn, tar, partial)
        if attempt > 1:
            log.warning("download: resuming at archive byte %d (attempt %d)", offset, attempt)
        got = partial.stat().st_size
        if result.exit_code == 0 and got == expected:
            break
        if got > expected:
            partial.unlink()
        if attempt == DOWNLOAD_ATTEMPTS:
            raise TransportError(f"download: got {got} of {expected} base64 bytes after {attempt} attempts "
                                 f"({result.stderr.strip()[-300:] or 'transfer truncated'}); re-run `doit download_adapter`")
        time.sleep(ctx.settings.ssh.reconnect_delay_s)
    os.replace(partial, target)
    log.info("Downloaded adapter archive: %d bytes (base64 %d)", record["tar_bytes"], expected)
    return target


class _Base64Reader(io.RawIOBase):
    """Decode a base64 file as a stream and hash what comes out: nothing is held whole."""

    def __init__(self, path: Path) -> None:
        self.fh = path.open("rb")
        self.sha = hashlib.sha256()
        self.buffer = b""
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, out: Any) -> int:
        while not self.buffer:
            chunk = self.fh.read(4 * 65536)
            if not chunk:
                return 0
            self.buffer = base64.b64decode(chunk, validate=True)
            self.sha.update(self.buffer)
            self.size += len(self.buffer)
        n = min(len(out), len(self.buffer))
        out[:n], self.buffer = self.buffer[:n], self.buffer[n:]
        return n

    def close(self) -> None:
        self.fh.close()
        super().close()


def _safe_member(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """Refuse anything an adapter archive has no reason to hold, then apply tarfile's data filter."""
    name = member.name
    parts = Path(name).parts
    if name.startswith("/") or ".." in parts:
        raise TransportError(f"extract: refusing archive member {name!r} (absolute or '..' path)")
    if not (member.isfile() or member.isdir()):
        raise TransportError(f"extract: refusing archive member {name!r} (links and special files are not allowed)")
    return tarfile.data_filter(member, dest)


def extract(ctx: RunContext) -> Path:
    """Decode, verify against the pod's sha256 and unpack into FINAL_ADAPTER_DIR, atomically."""
    record = read_json(ctx.paths.train_file) or {}
    final = ctx.paths.final_adapter_dir
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{final.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    reader = _Base64Reader(ctx.paths.adapter_b64)
    try:
        with tarfile.open(fileobj=io.BufferedReader(reader, 1 << 20), mode="r|*") as archive:
            for member in archive:
                archive.extract(member, partial, filter=_safe_member)
        while reader.read(1 << 20):  # hash the archive's trailing padding too
            pass
    except (tarfile.TarError, ValueError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        log.error("adapter_base64.txt could not be decoded: %s", exc)
        raise TransportError(f"extract: {ctx.paths.adapter_b64} is not a valid archive ({exc}); re-run `doit download_adapter`") from None
    except TransportError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        reader.close()
    digest = reader.sha.hexdigest()
    if record.get("tar_sha256") and digest != record["tar_sha256"]:
        shutil.rmtree(partial, ignore_errors=True)
        raise TransportError(f"extract: archive sha256 {digest} differs from the pod's {record['tar_sha256']}; re-run `doit download_adapter`")
    if not (partial / "adapter_config.json").is_file():
        shutil.rmtree(partial, ignore_errors=True)
        raise TransportError("extract: the archive holds no adapter_config.json: the trainer saved no adapter")
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    partial.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    log.info("adapter_base64.txt decoded and verified (sha256 %s); adapter in %s", digest[:12], final)
    return final


# --------------------------------------------------------------------------- seed contract


def run_remote_training(opts: Mapping[str, Any], ctx: RunContext | None = None) -> dict[str, Any]:
    """Seed §3 in one call: rent, upload, train, download, terminate (always), write the summary.

    `opts` carries the seed's keys (DATE_STR, WORK_LOCAL, OUT_ROOT, FINAL_ADAPTER_DIR, RAW_DATA_FILE,
    CLEAN_DATA_FILE, CONFIG_FILE, SUMMARY_FILE, samples_used); settings come from fullcycle.toml.
    """
    from tasks.runner import stage

    base = ctx or RunContext.load(date=opts["DATE_STR"])
    paths = dataclasses.replace(
        base.paths,
        date=opts["DATE_STR"],
        work_local=Path(opts["WORK_LOCAL"]),
        out_root=Path(opts["OUT_ROOT"]),
        final_adapter_dir=Path(opts["FINAL_ADAPTER_DIR"]),
        raw_data_file=Path(opts["RAW_DATA_FILE"]),
        clean_data_file=Path(opts["CLEAN_DATA_FILE"]),
        config_file=Path(opts["CONFIG_FILE"]),
        summary_file=Path(opts["SUMMARY_FILE"]),
    )
    run = RunContext(base.settings, paths, samples_used=int(opts["samples_used"]))
    log.info("Samples used: %s", run.samples_used)
    steps = [("create_pod", create_pod), ("upload", upload), ("train", train),
             ("download_adapter", download), ("extract_adapter", extract)]
    try:
        for name, step in steps:
            with stage(run, name):
                step(run)
    except Exception:
        pass  # recorded in the summary by stage(); termination below still runs
    finally:
        try:
            with stage(run, "terminate_pod"):
                terminate_pod(run)
        except Exception:
            pass
    pod = Pod.load(paths.pod_file)
    from tasks import summary

    result = summary.write(paths, run.provider_name, run.samples_used)
    return {
        "pod_id": pod.pod_id if pod else None,
        "ssh_user": pod.ssh_user if pod else None,
        "ssh_host": pod.ssh_host if pod else None,
        "training_success": result["training_success"],
        "terminated": result["terminated"],
        "upload_verification": result["upload_verification"],
    }
