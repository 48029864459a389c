"""The pod, reached over real ssh: an OpenSSH sshd on 127.0.0.1, and a gateway double.

The gateway double behaves like ssh.runpod.io as far as this tool can tell: it accepts any
`<podHostId>` user with the client's key, routes the session to that pod's sshd, and refuses PTYs,
interactive shells, scp, sftp and rsync.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import asyncssh

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


POD_KEY = "pod-key-sshd"  # the pod-scoped key the fake API knows (what the pod's watchdog ends it with)
POD_TAGS = ("fullcycle-trainer", "fullcycle-watchdog")  # argv[3] of what remote/*.sh start detached


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (torchrun starts its workers in sessions of their own, out of the group)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def end_pod_processes(folder: Path) -> list[int]:
    """What terminating a real pod does to its processes, for the pods whose folders lie under
    `folder`: end the process groups the pod-side scripts recorded in their pid files, each proven
    ours by the tag in its argv (as remote/lib.sh's alive() does), and every process below them.
    Never by a name pattern: that would also end another test session's pods, or a user's own watchdog."""
    ended = []
    for name in ("train.pid", "watchdog.pid"):
        for pid_file in folder.rglob(name):
            try:
                pid = int(pid_file.read_text().strip())
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except (OSError, ValueError):
                continue
            if len(argv) > 3 and argv[3].decode(errors="replace") in POD_TAGS:
                below = _descendants(pid)
                try:
                    os.killpg(pid, signal.SIGKILL)
                    ended.append(pid)
                except ProcessLookupError:
                    pass
                for child in below:
                    try:
                        os.kill(child, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
    return ended


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PortForward:
    """One pod's own public port: a TCP relay on 127.0.0.1 to the shared sshd. Closing it is what a
    stopped or deleted pod does to its direct ssh: the port refuses, and every session on it drops."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open: set[socket.socket] = set()
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.open |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(262144):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self) -> None:
        self.listener.close()
        with self.lock:
            for sock in self.open:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                    sock.close()
                except OSError:
                    pass
            self.open.clear()


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


class Sshd:
    """A real sshd as the pod; the client key is authorised for root (direct mode is root@ip).

    A cluster's node is one of its own: `env` is what its sessions see (RunPod's NODE_RANK, MASTER_ADDR...),
    and `binds` = (what the pod sees, where it really is) gives it a filesystem of its own, a private mount
    namespace in which the pod's folder is the node's (nodes on one machine must not share their files)."""

    def __init__(self, folder: Path, client_key: Path | None = None, env: dict[str, str] | None = None,
                 binds: tuple[Path, Path] | None = None) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.host_key = keygen(folder / "host_ed25519")
        self.client_key = client_key or keygen(folder / "client_ed25519")
        self.binds = binds
        (folder / "authorized_keys").write_text(Path(str(self.client_key) + ".pub").read_text())
        env_line = " ".join(f"{k}={v}" for k, v in {"RUNPOD_API_KEY": POD_KEY, **(env or {})}.items())
        self.port = free_port()
        self.config = folder / "sshd_config"
        self.config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {folder / 'authorized_keys'}", "PasswordAuthentication no",
            "KbdInteractiveAuthentication no", "PubkeyAuthentication yes", "PermitRootLogin prohibit-password",
            "UsePAM no", "StrictModes no", f"PidFile {folder / 'sshd.pid'}", "LogLevel ERROR",
            "MaxStartups 100:30:200", "MaxSessions 100", "ClientAliveInterval 5",
            f"SetEnv {env_line}",  # what RunPod puts in every pod: a key of the pod's own
            "",
        ]))
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Sshd":
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)
        argv = [SSHD, "-D", "-e", "-f", str(self.config)]
        if self.binds:
            seen, real = self.binds
            argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                    'mkdir -p "$1" "$2" && mount --bind "$2" "$1" && shift 2 && exec "$@"', "node", str(seen), str(real),
                    *argv]
        self.proc = subprocess.Popen(argv, stderr=open(self.folder / "sshd.log", "wb"))
        deadline = time.time() + 10
        while time.time() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError(f"sshd did not start: {(self.folder / 'sshd.log').read_text()}")

    def drop_connections(self) -> int:
        """Kill every session sshd serves now (what a network drop looks like from both ends)."""
        out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout.split()
        for pid in out:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        return len(out)

    def stop(self) -> None:
        if self.proc:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class GatewayDouble:
    """ssh.runpod.io's behaviour: route `<podHostId>` to the pod; no scp/sftp/rsync.

    It plays each reading of the proxy that the evidence allows (`behaviour`):
    - "exec": `ssh -T host cmd` works; PTYs are refused;
    - "pty-only": exec is refused the way users report it (the message on stdout, exit 1) and an
      interactive PTY shell is the only thing offered; it is bridged to a real PTY on the pod.
    One-shot faults also include "blind_first" (the first command's stdout is lost) and
    "blind_follow" (the training follow's stdout is lost).
    """

    PTY_REFUSAL = b"Error: Your SSH client doesn't support PTY\r\n"

    REFUSED = ("scp", "sftp", "sftp-server", "rsync")

    def __init__(self, folder: Path, route: Callable[[str], int | None], client_key: Path,
                 keys: Callable[[str], list[str]] | None = None) -> None:
        self.host_key = keygen(folder / "gateway_host_ed25519")
        self.client_pub = Path(str(client_key) + ".pub")
        self.client_key = client_key
        self.route = route
        # Who may log in as a pod's user: as RunPod documents its proxy, the account's registered keys and
        # that pod's SSH_PUBLIC_KEY (the fake API says which); without `keys`, the client's key.
        self.keys = keys or (lambda _user: [self.client_pub.read_text()])
        self.denied: list[str] = []
        self.port = free_port()
        self.sessions = 0
        self.refused: list[str] = []
        # one-shot faults: "drop_upload", "corrupt_upload", "truncate_download"
        self.faults: set[str] = set()
        self.behaviour = "exec"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _session(self, process: asyncssh.SSHServerProcess) -> None:
        user = process.get_extra_info("username")
        command = process.command
        self.sessions += 1
        port = self.route(user)
        reason = None
        if port is not None and self.behaviour == "pty-only":
            if command or not process.get_terminal_type():
                self.refused.append("exec without a PTY")
                process.stdout.write(self.PTY_REFUSAL)
                process.exit(1)
                return
            await self._bridge_pty(process, port)
            return
        if port is None:
            reason = f"no running pod for {user}"
        elif process.get_terminal_type():
            reason = "PTY not supported by this gateway double"
        elif not command:
            reason = "interactive shells are not supported"
        elif command.split()[0] in self.REFUSED:
            reason = f"{command.split()[0]} is not supported through the gateway"
        if reason:
            self.refused.append(reason)
            process.stderr.write(f"gateway: {reason}\n".encode())
            process.exit(1)
            return
        upstream = await asyncio.create_subprocess_exec(
            "ssh", "-F", "none", "-T", "-p", str(port), "-i", str(self.client_key), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "root@127.0.0.1", command,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)

        connection = process.get_extra_info("connection")
        is_upload = " receive.sh " in command  # remote/receive.sh, named as its $0
        is_download = "base64 -w0" in command and "tail -c" in command
        blind = self._take("blind_first") or (" train_runner.sh " in command and self._take("blind_follow"))
        drop_in = is_upload and self._take("drop_upload")
        corrupt = is_upload and self._take("corrupt_upload")
        cut_out = is_download and self._take("truncate_download")

        async def pump_in() -> None:
            sent = 0
            try:
                while data := await process.stdin.read(65536):
                    if corrupt and sent <= 900 < sent + len(data):  # one base64 char inside the dataset
                        i = 900 - sent
                        data = data[:i] + (b"B" if data[i:i + 1] != b"B" else b"C") + data[i + 1:]
                    if drop_in and sent + len(data) > 1000:
                        upstream.kill()
                        connection.abort()
                        return
                    sent += len(data)
                    upstream.stdin.write(data)
                    await upstream.stdin.drain()
            except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged, ConnectionError):
                pass
            finally:
                upstream.stdin.close()

        async def pump_out(src: asyncio.StreamReader, dst: asyncssh.SSHWriter) -> None:
            sent = 0
            while data := await src.read(65536):
                if cut_out and dst is process.stdout and sent + len(data) > 30000:
                    dst.write(data[: 30000 - sent])
                    await dst.drain()
                    upstream.kill()
                    connection.abort()
                    return
                sent += len(data)
                if blind and dst is process.stdout:
                    continue  # the proxy lost this command's stdout
                dst.write(data)
                await dst.drain()

        await self._relay(process, upstream, pump_in(), asyncio.gather(pump_out(upstream.stdout, process.stdout),
                                                                        pump_out(upstream.stderr, process.stderr)))

    async def _bridge_pty(self, process: asyncssh.SSHServerProcess, port: int) -> None:
        """An interactive shell on a real PTY on the pod; the bytes pass as they are."""
        upstream = await asyncio.create_subprocess_exec(
            "ssh", "-F", "none", "-tt", "-p", str(port), "-i", str(self.client_key), "-o", "BatchMode=yes",
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
            "root@127.0.0.1", stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE)
        connection = process.get_extra_info("connection")
        state = {"download": False, "sent": 0}

        async def pump_in() -> None:
            try:
                while data := await process.stdin.read(65536):
                    if b"tail -c +" in data and b"base64 -w0" in data and self._take("truncate_download"):
                        state["download"] = True
                    upstream.stdin.write(data)
                    await upstream.stdin.drain()
            except (asyncssh.BreakReceived, asyncssh.TerminalSizeChanged, ConnectionError, BrokenPipeError):
                pass
            finally:
                if not upstream.stdin.is_closing():
                    upstream.stdin.close()

        async def pump_out() -> None:
            while data := await upstream.stdout.read(65536):
                if state["download"]:
                    state["sent"] += len(data)
                    if state["sent"] > 30000:  # the session drops in the middle of the download
                        upstream.kill()
                        connection.abort()
                        return
                process.stdout.write(data)
                await process.stdout.drain()

        await self._relay(process, upstream, pump_in(), pump_out())

    @staticmethod
    async def _relay(process: asyncssh.SSHServerProcess, upstream, feed, drain) -> None:
        """Feed the pod from the client while its output drains back, then pass on its exit status."""
        feeder = asyncio.ensure_future(feed)
        try:
            await drain
            code = await upstream.wait()
        except (ConnectionError, asyncssh.Error):
            upstream.kill()
            code = 255
        feeder.cancel()
        try:
            process.exit(code)
        except (OSError, asyncssh.Error):
            pass  # the connection was dropped on purpose

    def _take(self, fault: str) -> bool:
        if fault in self.faults:
            self.faults.discard(fault)
            return True
        return False

    def allows(self, user: str, key: asyncssh.SSHKey) -> bool:
        for line in self.keys(user):
            try:
                if asyncssh.import_public_key(line.strip()).public_data == key.public_data:
                    return True
            except (asyncssh.KeyImportError, ValueError):
                continue
        self.denied.append(user)
        return False

    def start(self) -> "GatewayDouble":
        gateway = self

        class Server(asyncssh.SSHServer):
            def begin_auth(self, username: str) -> bool:
                return True

            def public_key_auth_supported(self) -> bool:
                return True

            def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
                return gateway.allows(username, key)

        async def serve() -> asyncssh.SSHAcceptor:
            return await asyncssh.create_server(
                Server, "127.0.0.1", self.port, server_host_keys=[str(self.host_key)],
                process_factory=self._session, encoding=None, line_editor=False,
                allow_scp=False, sftp_factory=None)

        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(serve(), self.loop).result(10)
        return self

    def stop(self) -> None:
        self.server.close()
        self.loop.call_soon_threadsafe(self.loop.stop)
