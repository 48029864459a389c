"""connection.json (seed §3.2): a person's override of how the pod is reached, read and checked
field by field before it is trusted, so a typo is named instead of becoming an ssh argument."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from tasks.core import modes
from tasks.core.errors import ProviderError
from tasks.core.files import read_record

CONNECTION_FIELDS = ("ssh_user", "ssh_host", "ssh_key_path")


class ConnectionFileError(ProviderError):
    pass


# What a login name and a host may be: never anything ssh could read as an option (a leading '-'),
# never whitespace, quotes or control characters that would split or bend a command line.
USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}")
HOST = re.compile(r"[A-Za-z0-9_\[][A-Za-z0-9_.:\[\]-]{0,252}")


def read_connection_file(path: Path) -> dict[str, Any] | None:
    """The seed §3.2 override, validated field by field; None when there is no such file. Whatever the
    file holds (not JSON, not UTF-8, a folder, a value ssh would read as an option) is one error that
    names the file, the field and what to do; it never reaches ssh."""
    problems: list[str] = []
    data = read_record(path, problems)
    if problems:
        raise ConnectionFileError(f"{problems[0]}; it must be a JSON object with {', '.join(CONNECTION_FIELDS)}: "
                                  f"fix it or delete it to let the API say")
    if not data:
        return None if not path.exists() else _empty(path)
    for name in CONNECTION_FIELDS:
        if not isinstance(data.get(name), str) or not data[name].strip():
            raise ConnectionFileError(f"{path}: field {name!r} is missing or not a non-empty string")
    for name, form in (("ssh_user", USER), ("ssh_host", HOST)):
        if not form.fullmatch(data[name]):
            raise ConnectionFileError(f"{path}: field {name!r} is {data[name][:80]!r}, which is no {name[4:]} name "
                                      f"(letters, digits, '.', '_', '-'; never a leading '-' or spaces)")
    mode = data.get("connection_mode")
    if mode is not None:
        try:
            modes.parse(mode)
        except (ValueError, TypeError):
            raise ConnectionFileError(f"{path}: field 'connection_mode' must be one of {modes.CHOICES} "
                                      f"(or absent to detect it), got {mode!r}") from None
    port = data.get("ssh_port", 22)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConnectionFileError(f"{path}: field 'ssh_port' must be an integer port, got {port!r}")
    try:
        key = Path(data["ssh_key_path"]).expanduser()
        found = key.is_file()
    except (RuntimeError, OSError, ValueError) as exc:  # "~nobody/key", a NUL in the path
        raise ConnectionFileError(f"{path}: ssh_key_path {data['ssh_key_path'][:200]!r} is no usable path ({exc})") from None
    if not found:
        raise ConnectionFileError(f"{path}: ssh_key_path {key} does not exist")
    return {**data, "ssh_port": port, "ssh_key_path": str(key)}


def _empty(path: Path) -> dict[str, Any]:
    raise ConnectionFileError(f"{path}: is an empty object; it needs {', '.join(CONNECTION_FIELDS)}, or delete it")
