"""Running commands on the pod: a `Connection` per way of reaching it (connection.py: local bash,
ssh, a PTY-only gateway) and the framed PTY session (pty.py); the modes' names are tasks/core/modes.py.
"""

from tasks.transport.connection import Connection, LocalConnection, PtyConnection, Result, SshConnection, check

__all__ = ["Connection", "LocalConnection", "PtyConnection", "Result", "SshConnection", "check"]
