"""Running commands on the pod: a `Connection` per way of reaching it (connection.py: local bash,
ssh, a PTY-only gateway), the framed PTY session (pty.py), and the modes' one list of names (modes.py).

The connections load `sh` and are named here lazily: the record reads a mode's name without them.
"""

from typing import Any

from tasks.transport.modes import ConnectionMode

__all__ = ["Connection", "ConnectionMode", "LocalConnection", "PtyConnection", "Result", "SshConnection", "check"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tasks.transport import connection

        return getattr(connection, name)
    raise AttributeError(f"module 'tasks.transport' has no attribute {name!r}")
