"""Commands through an ssh proxy that only offers an interactive PTY shell (RunPod's gateway, as
users report it: `Error: Your SSH client doesn't support PTY` for `ssh -T host cmd`).

One `ssh -tt` session carries a whole stage. The first line turns echo and output processing off
(`stty -echo -opost -iexten`) and replaces the login shell with `bash -s` (stderr off the
terminal, so it is not interactive), which reads the rest of the session as a script: no prompt,
no line editor, no job control. The terminal stays in canonical mode on purpose: bash and `read`
take a terminal for seekable and read ahead, which only a line-at-a-time terminal makes safe; so
everything sent is lines far below the 4095-byte limit. Every command is then framed:

    FCB<token><n>\\n  <the command's stdout, byte for byte>  \\nFCE<token><n>:<exit status>\\n
    <base64 of its stderr>\\nFCZ<token><n>\\n

The token is random per session and the markers are printed by printf from two arguments, so an
echo of the command text can never look like a marker. The exit status comes from the sentinel,
never from `ssh -tt`. Data sent to a command (base64: nothing a terminal could act on) travels
as chunks behind a 10-digit length, read on the pod with `head -c`, with the terminal switched to
raw mode for the transfer only: raw, a terminal neither cuts lines at 4095 bytes nor costs a read
per line, and `head -c` takes exactly what it is told. Output is streamed to the caller's sink as
it arrives, so a multi-GB download never sits in memory.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
import selectors
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import IO, Any

from tasks.core.errors import TransportError

ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\x1b[()][A-Z0-9]")
CHUNK = 1 << 20  # bytes behind one length header: few enough headers that forking head costs nothing
PTY_REFUSAL = re.compile(rb"(doesn't|does not|not) support (a )?pty|pty (is )?required|requires? a pty|"
                         rb"interactive shell only", re.IGNORECASE)


def refuses_exec(text: bytes) -> bool:
    """Whether an answer says the proxy wants a PTY: a permanent condition, not "not up yet"."""
    return bool(PTY_REFUSAL.search(text))


class PtySession:
    """A live `ssh -tt` session with `bash -s` on the other end; commands run one at a time."""

    def __init__(self, argv: list[str], env: dict[str, str], ready_timeout: float) -> None:
        self.token = secrets.token_hex(8)
        self.seq = 0
        self.buffer = b""
        self.cooked = False  # the terminal still translates \n to \r\n (stty failed): undo it
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=env, bufsize=0)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.proc.stdout, selectors.EVENT_READ)
        self.errors = b""
        threading.Thread(target=self._drain_stderr, daemon=True).start()
        # bash -s on a terminal would be interactive (readline, prompts): stderr off the terminal
        # keeps it a plain script reader. Each command's own stderr is captured separately.
        self._send(b"stty -echo -opost -iexten 2>/dev/null; exec bash --norc --noprofile -s 2>/dev/null\n"
                   + f"printf '%s%s\\n' FCREADY {self.token}\n".encode())
        seen = self._read_until(b"FCREADY" + self.token.encode(), time.monotonic() + ready_timeout)
        if seen is None:
            shown = ANSI.sub(b"", self.buffer + self.errors).decode("utf-8", "replace").strip()[-400:]
            self.close()
            raise TransportError(f"the PTY shell never answered (it said: {shown or 'nothing'})")
        self.cooked = self.buffer.startswith(b"\r\n")
        self.buffer = self.buffer.split(b"\n", 1)[1] if b"\n" in self.buffer else b""

    # ------------------------------------------------------------------ plumbing

    def _drain_stderr(self) -> None:
        for line in iter(self.proc.stderr.readline, b""):
            self.errors = (self.errors + line)[-4000:]

    def _send(self, data: bytes) -> None:
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, ValueError, OSError):
            raise TransportError("the PTY session closed while sending") from None

    def _read_some(self, deadline: float | None) -> bool:
        """Append what is available to the buffer; False on end of stream."""
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        if not self.selector.select(wait):
            if deadline is not None and time.monotonic() >= deadline:
                raise TransportError("the PTY session timed out")
            return True
        data = os.read(self.proc.stdout.fileno(), 1 << 16)
        if not data:
            return False
        self.buffer += data
        return True

    def _read_until(self, marker: bytes, deadline: float | None) -> bytes | None:
        """Consume through the line holding `marker` and return all of it, what came before the
        marker included; None if the stream ended first."""
        while True:
            at = self.buffer.find(marker)
            if at >= 0 and b"\n" in self.buffer[at:]:
                end = self.buffer.index(b"\n", at) + 1
                line, self.buffer = self.buffer[:end], self.buffer[end:]
                return line
            if not self._read_some(deadline):
                return None

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.alive:
            try:
                self._send(b"exit 0\n")
                self.proc.stdin.close()
                self.proc.wait(timeout=5)
            except (TransportError, subprocess.TimeoutExpired, OSError):
                self.proc.kill()
        self.selector.close()

    # ------------------------------------------------------------------ commands

    def _feed(self, source: IO[bytes] | bytes) -> None:
        """Chunks behind a 10-digit length, then a zero length. Sent only once the pod has put the
        terminal in raw mode, where `head -c` takes exactly what it is told."""
        stream = iter([source]) if isinstance(source, bytes) else iter(lambda: source.read(CHUNK), b"")
        try:
            for data in stream:
                for at in range(0, len(data), CHUNK):
                    piece = data[at:at + CHUNK]
                    self._send(b"%010d" % len(piece) + piece)
            self._send(b"0000000000")
        except TransportError:
            pass  # the reader sees the session end and reports it

    def run(self, command: str, stdin: IO[bytes] | bytes | None = None, out: Any = None,
            timeout: float | None = None) -> tuple[int, bytes, str]:
        """Run one command; its stdout goes to `out` as it arrives (or is returned)."""
        self.seq += 1
        tag = f"{self.token}{self.seq}"
        errf = f"/tmp/.fullcycle-{tag}.err"
        # Data for the command: the terminal goes raw for the transfer (3x faster than canonical
        # lines here) and back after it; a GO line says when the pod is ready for it.
        feed = (f"stty raw -echo -opost 2>/dev/null; printf '%s%s\\n' FCGO {tag}; "
                f'while fc_n=$(head -c 10) && [ "$fc_n" -gt 0 ] 2>/dev/null; do head -c "$fc_n"; done | '
                if stdin is not None else "")
        source = "" if stdin is not None else " </dev/null"
        restore = "stty -raw -echo -opost -iexten 2>/dev/null; " if stdin is not None else ""
        # The command runs in a subshell: an `exit` or `set -e` in it must not end the session's shell.
        line = (f"printf '%s%s\\n' FCB {tag}; {feed}( {command}\n){source} 2>{shlex.quote(errf)}; "
                f"fc_rc=$?; {restore}printf '\\n%s%s:%s\\n' FCE {tag} \"$fc_rc\"; base64 -w0 {shlex.quote(errf)}; "
                f"printf '\\n%s%s\\n' FCZ {tag}; rm -f {shlex.quote(errf)}\n")
        self._send(line.encode())
        deadline = None if timeout is None else time.monotonic() + timeout
        if self._read_until(b"FCB" + tag.encode(), deadline) is None:
            return 255, b"", self._ended()
        writer = None
        if stdin is not None:
            if self._read_until(b"FCGO" + tag.encode(), deadline) is None:
                return 255, b"", self._ended()
            writer = threading.Thread(target=self._feed, args=(stdin,), daemon=True)
            writer.start()
        captured: list[bytes] = []
        sink = out.write if out is not None else captured.append
        end = b"\nFCE" + tag.encode() + b":"
        for piece in self._stream_until(end, deadline):
            sink(piece.replace(b"\r\n", b"\n") if self.cooked else piece)
        if not self.buffer.startswith(end):
            return 255, b"".join(captured), self._ended()
        status_line = self._read_until(b"FCE" + tag.encode(), deadline) or b""
        code = status_line.rstrip(b"\r\n").rpartition(b":")[2].strip()
        trailer = self._read_until(b"FCZ" + tag.encode(), deadline)
        err = b""
        if trailer is not None:
            err_b64 = trailer.split(b"FCZ", 1)[0].strip()
            try:
                err = base64.b64decode(err_b64)
            except ValueError:
                err = err_b64
        if writer:
            writer.join(timeout=5)
        return (int(code) if code.isdigit() else 255), b"".join(captured), err.decode("utf-8", "replace")

    def _stream_until(self, end: bytes, deadline: float | None) -> Iterator[bytes]:
        """Yield output up to (not including) `end`, holding back only what could be its start."""
        while True:
            at = self.buffer.find(end)
            if at >= 0:
                if at:
                    yield self.buffer[:at]
                self.buffer = self.buffer[at:]
                return
            keep = len(end) - 1
            if len(self.buffer) > keep:
                yield self.buffer[:-keep] if keep else self.buffer
                self.buffer = self.buffer[-keep:] if keep else b""
            if not self._read_some(deadline):
                return

    def _ended(self) -> str:
        self.proc.poll()
        detail = ANSI.sub(b"", self.errors).decode("utf-8", "replace").strip()[-300:]
        return f"the PTY session ended ({detail or 'connection lost'})"
