"""How this tool talks to a pod: the one list of connection modes and their names.

pod.json, run-summary.json, connection.json and the logs all use these values. Older records and
connection.json files may say "direct", "gateway" or "local": they still read.
"""

from __future__ import annotations

from enum import StrEnum


class ConnectionMode(StrEnum):
    DIRECT = "direct-ssh"  # ssh to the pod's public tcp/22: full ssh, raw bytes
    GATEWAY_EXEC = "gateway-exec"  # RunPod's ssh gateway runs `ssh -T host cmd` (stdout may be lost)
    GATEWAY_PTY = "gateway-pty"  # the gateway offers only a PTY shell: framed commands in one session
    LOCAL = "local-bash"  # the local provider: bash in a folder on this machine

    @property
    def binary_safe(self) -> bool:
        """Whether raw bytes survive the channel; RunPod's gateway gets base64 (seed §3.3)."""
        return self in (ConnectionMode.DIRECT, ConnectionMode.LOCAL)

    @property
    def is_gateway(self) -> bool:
        return self in (ConnectionMode.GATEWAY_EXEC, ConnectionMode.GATEWAY_PTY)


ALIASES = {"direct": ConnectionMode.DIRECT, "gateway": ConnectionMode.GATEWAY_EXEC, "local": ConnectionMode.LOCAL}
CHOICES = ", ".join(m.value for m in ConnectionMode if m is not ConnectionMode.LOCAL)


def parse(text: str) -> ConnectionMode:
    """A mode from a record or connection.json; ValueError names the values that are accepted."""
    if text in ALIASES:
        return ALIASES[text]
    try:
        return ConnectionMode(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a connection mode ({CHOICES})") from None
