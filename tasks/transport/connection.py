"""Running commands on the pod: a Connection turns a shell command into the argv that runs it there.

Every transfer is a shell pipeline (`tar | base64 | ssh ...`) so the data never passes through
Python: memory stays flat whatever the size, and the speed is the speed of the tools. The local
provider's connection runs the same commands with bash, so both providers share every stage.
"""

from __future__ import annotations

import io
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

import sh

from tasks.core.errors import TransportError
from tasks.core.modes import ConnectionMode
from tasks.core.modes import parse as parse_mode
from tasks.core.paths import REMOTE_DIR
from tasks.core.secrets import HF_TOKEN_ENV, child_env

SSH_CONNECT_FAILED = 255  # what ssh itself exits with when the connection fails or drops
TAR_EXCLUDES = "--exclude=__pycache__ --exclude='*.pyc'"  # caches beside the trainer's modules never travel


def script(name: str) -> str:
    """A pod-side script from remote/, with the shared helpers in front: sent whole, quoted once."""
    return (REMOTE_DIR / "lib.sh").read_text() + "\n" + (REMOTE_DIR / name).read_text()


def script_command(name: str, *args: str | int) -> str:
    """The shell command that runs remote/<name> on the pod with `args` as its positional arguments."""
    return shlex.join(["bash", "-c", script(name), name, *(str(a) for a in args)])


class SessionCounter(Protocol):
    """What counts the sessions opened on the pod (fewer is faster and kinder to the gateway): the run's
    Attempt, or a connection's own count."""

    sessions: int


@dataclass
class _Count:
    sessions: int = 0


@dataclass
class Result:
    exit_code: int
    stdout: bytes
    stderr: str

    @property
    def text(self) -> str:
        return self.stdout.decode("utf-8", "replace")


@dataclass
class Connection:
    """Base: run a command on the pod with its stdin/stdout as streams."""

    mode: ConnectionMode = ConnectionMode.LOCAL
    counter: SessionCounter = field(default_factory=_Count)

    def __post_init__(self) -> None:
        self.mode = parse_mode(self.mode)  # "direct", "gateway-pty", ... as the records and callers spell them

    def argv(self, command: str) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """What the local processes of a command see: no secret (ssh sends none of it anyway)."""
        return child_env()

    @property
    def binary_safe(self) -> bool:
        return self.mode.binary_safe

    def describe(self) -> str:
        return str(self.mode)

    def run(self, command: str, *, stdin: IO[bytes] | bytes | None = None, out: Any = None,
            timeout: float | None = None) -> Result:
        """Run `command` on the pod; stdout goes to `out` (a binary sink) or is captured."""
        return self._exec(self.argv(command), stdin=stdin, out=out, timeout=timeout)

    def run_script(self, name: str, *args: str | int, stdin: IO[bytes] | bytes | None = None, out: Any = None,
                   timeout: float | None = None) -> Result:
        """Run remote/<name> on the pod (see `script_command`)."""
        return self.run(script_command(name, *args), stdin=stdin, out=out, timeout=timeout)

    def close(self) -> None:
        """End whatever session the connection keeps open (only the PTY one keeps one)."""

    def send_tree(self, staging: Path, names: list[str], remote_dir: str, run_dir: str, mode: str = "keep") -> Result:
        """Stream the named entries of `staging` (symlinks followed) into `remote_dir` as one tar,
        received by remote/receive.sh (which refuses to write under a running trainer in mode keep).

        One session for any number of files; base64 only where the channel is not binary-safe,
        since it adds a third to the bytes on the wire."""
        quoted = " ".join(shlex.quote(n) for n in names)
        encoding = "raw" if self.binary_safe else "base64"
        encode = "" if self.binary_safe else " | base64 -w0"
        receive = script_command("receive.sh", remote_dir, run_dir, encoding, mode, *names)
        # 1 MiB tar records instead of 10 KiB: fewer, larger writes through every pipe (bench/transfer.py).
        return self.run_local_pipeline(
            f"tar -b 2048 {TAR_EXCLUDES} -chf - -C {shlex.quote(str(staging))} {quoted}{encode} | {self.remote(receive)}")

    def fetch_base64(self, remote_path: str, partial: Path) -> tuple[Result, int]:
        """Append the base64 of `remote_path` to `partial`, resuming after what `partial` already
        holds; returns the result and the archive offset it resumed at.

        The local file is base64 either way (seed §3.5's adapter_base64.txt); on a binary-safe
        channel the bytes travel raw and are encoded here, a third less on the wire."""
        offset = _resume_point(partial) // 4 * 3
        tail = f"tail -c +{offset + 1} {shlex.quote(remote_path)}"
        if self.binary_safe:
            shell = f"{self.remote(tail)} | base64 -w0 >> {shlex.quote(str(partial))}"
        else:
            shell = f"{self.remote(tail + ' | base64 -w0')} >> {shlex.quote(str(partial))}"
        return self.run_local_pipeline(shell), offset

    def run_local_pipeline(self, shell: str, timeout: float | None = None) -> Result:
        """Run a local bash pipeline that contains `{remote}` calls already expanded by remote_argv."""
        return self._exec(["bash", "-o", "pipefail", "-c", shell], timeout=timeout, counts=False)

    def remote(self, command: str) -> str:
        """The shell text that runs `command` on the pod, for use inside a local pipeline."""
        self.counter.sessions += 1
        return shlex.join(self.argv(command))

    def _exec(self, argv: list[str], *, stdin: Any = None, out: Any = None, timeout: float | None = None,
              counts: bool = True) -> Result:
        if counts:
            self.counter.sessions += 1
        sink = io.BytesIO() if out is None else out
        err: list[str] = []
        try:
            proc = sh.Command(argv[0])(
                *argv[1:], _in=stdin, _out=sink, _out_bufsize=1, _err=err.append, _ok_code=range(256),
                _timeout=timeout, _env=self.env(), _return_cmd=True,
            )
        except sh.TimeoutException:
            raise TransportError(f"{self.describe()}: command timed out after {timeout}s") from None
        stdout = sink.getvalue() if out is None else b""
        return Result(proc.exit_code, stdout, "".join(err))


@dataclass
class LocalConnection(Connection):
    """The local provider's 'pod': bash on this machine, in the pod folder."""

    cwd: Path = Path(".")
    mode: ConnectionMode = ConnectionMode.LOCAL

    def argv(self, command: str) -> list[str]:
        return ["bash", "-c", f"cd {shlex.quote(str(self.cwd))} && {command}"]

    def env(self) -> dict[str, str]:
        """The local 'pod' trains here: a gated base model is downloaded with the hub token."""
        return child_env(keep=(HF_TOKEN_ENV,))


@dataclass
class SshConnection(Connection):
    """The system ssh client: no PTY, no prompts, keep-alives, a per-run known_hosts file."""

    user: str = "root"
    host: str = "127.0.0.1"
    port: int = 22
    key_path: str = ""
    known_hosts: Path = Path("known_hosts")
    connect_timeout_s: int = 15
    server_alive_interval_s: int = 15
    server_alive_count_max: int = 4
    mode: str = "direct"

    def describe(self) -> str:
        return f"ssh {self.user}@{self.host}:{self.port}"

    def argv(self, command: str) -> list[str]:
        opts = {
            "BatchMode": "yes",
            "ConnectTimeout": str(self.connect_timeout_s),
            "ServerAliveInterval": str(self.server_alive_interval_s),
            "ServerAliveCountMax": str(self.server_alive_count_max),
            "StrictHostKeyChecking": "accept-new",
            "UserKnownHostsFile": str(self.known_hosts),
            "IdentitiesOnly": "yes",
            # AES-GCM first: hardware-accelerated almost everywhere, ~10% faster bulk transfer than
            # the default chacha20 on this kind of machine (bench/transfer.py); chacha20 stays as fallback.
            "Ciphers": "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com",
            "LogLevel": "ERROR",
        }
        argv = ["ssh", "-F", "none", "-T", "-p", str(self.port)]
        if self.key_path:
            argv += ["-i", str(Path(self.key_path).expanduser())]
        for key, value in opts.items():
            argv += ["-o", f"{key}={value}"]
        return argv + [f"{self.user}@{self.host}", command]


def _resume_point(partial: Path) -> int:
    """Bytes of `partial` that are whole base64 groups of the stream so far (a cut stream may end
    in a padded group, which is not part of the whole)."""
    if not partial.exists():
        return 0
    have = partial.stat().st_size // 4 * 4
    if have:
        with partial.open("rb") as fh:
            fh.seek(have - 4)
            if b"=" in fh.read(4):
                have -= 4
    with partial.open("ab") as fh:
        fh.truncate(have)
    return have


@dataclass
class PtyConnection(SshConnection):
    """A proxy that only offers an interactive PTY shell: one framed `bash -s` session per stage
    (tasks/transport/pty.py). Nothing is binary-safe there: uploads and downloads are base64."""

    mode: ConnectionMode = ConnectionMode.GATEWAY_PTY
    ready_timeout_s: float = 30.0
    _pty: Any = field(default=None, init=False, repr=False)

    def describe(self) -> str:
        return f"ssh -tt {self.user}@{self.host}:{self.port} (PTY shell)"

    def pty_argv(self) -> list[str]:
        argv = super().argv("")[:-1]  # every option of the exec form, no command
        return [a if a != "-T" else "-tt" for a in argv]

    def _session(self) -> Any:
        from tasks.transport.pty import PtySession

        if self._pty is None or not self._pty.alive:
            self.counter.sessions += 1
            self._pty = PtySession(self.pty_argv(), self.env(), self.ready_timeout_s)
        return self._pty

    def run(self, command: str, *, stdin: IO[bytes] | bytes | None = None, out: Any = None,
            timeout: float | None = None) -> Result:
        try:
            session = self._session()
        except TransportError as exc:
            return Result(SSH_CONNECT_FAILED, b"", str(exc))
        code, stdout, err = session.run(command, stdin=stdin, out=out, timeout=timeout)
        if code == SSH_CONNECT_FAILED and not session.alive:
            self._pty = None
        return Result(code, stdout, err)

    def close(self) -> None:
        if self._pty is not None:
            self._pty.close()
            self._pty = None

    def send_tree(self, staging: Path, names: list[str], remote_dir: str, run_dir: str, mode: str = "keep") -> Result:
        """The tar is made here and fed through the session as base64: streamed, never whole. A PTY
        carries ~30 MB/s at best here, so the stream is gzipped first (JSONL shrinks several-fold;
        gzip -1 keeps up with the terminal)."""
        import subprocess

        tar = subprocess.Popen(["bash", "-o", "pipefail", "-c",
                                f"tar -b 2048 {TAR_EXCLUDES} -chf - -C {shlex.quote(str(staging))} "
                                f"{' '.join(shlex.quote(n) for n in names)} | gzip -1 | base64 -w0"],
                               stdout=subprocess.PIPE, env=self.env())
        try:
            receive = script_command("receive.sh", remote_dir, run_dir, "base64-gzip", mode, *names)
            result = self.run(receive, stdin=tar.stdout)
        finally:
            tar.stdout.close()
            tar.wait()
        return result

    def fetch_base64(self, remote_path: str, partial: Path) -> tuple[Result, int]:
        offset = _resume_point(partial) // 4 * 3
        with partial.open("ab") as sink:
            result = self.run(f"tail -c +{offset + 1} {shlex.quote(remote_path)} | base64 -w0", out=sink)
        return result, offset


def check(result: Result, what: str, conn: Connection) -> Result:
    """Turn a non-zero exit into an error that says which step failed and how."""
    if result.exit_code == SSH_CONNECT_FAILED and isinstance(conn, SshConnection):
        raise TransportError(f"{what}: ssh to {conn.describe()} failed: {result.stderr.strip() or 'connection lost'}")
    if result.exit_code != 0:
        raise TransportError(f"{what}: exited with {result.exit_code} on {conn.describe()}: {result.stderr.strip()[-2000:]}")
    return result
