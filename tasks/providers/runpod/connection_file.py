"""connection.json (seed §3.2): a person's override of how the pod is reached, read and checked
field by field before it is trusted, so a typo is named instead of becoming an ssh argument."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.core.errors import ProviderError
from tasks.core.files import read_json
from tasks.transport import modes

CONNECTION_FIELDS = ("ssh_user", "ssh_host", "ssh_key_path")


class ConnectionFileError(ProviderError):
    pass


def read_connection_file(path: Path) -> dict[str, Any] | None:
    """The seed §3.2 override, validated field by field; None when there is no such file."""
    if not path.exists():
        return None
    try:
        data = read_json(path)
    except ValueError as exc:
        raise ConnectionFileError(f"{path}: not valid JSON ({exc}); fix or delete it") from None
    if not isinstance(data, dict):
        raise ConnectionFileError(f"{path}: must be a JSON object with {', '.join(CONNECTION_FIELDS)}")
    for name in CONNECTION_FIELDS:
        if not isinstance(data.get(name), str) or not data[name].strip():
            raise ConnectionFileError(f"{path}: field {name!r} is missing or not a non-empty string")
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
    key = Path(data["ssh_key_path"]).expanduser()
    if not key.is_file():
        raise ConnectionFileError(f"{path}: ssh_key_path {key} does not exist")
    return {**data, "ssh_port": port}
