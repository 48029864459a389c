"""Secrets for a run nobody starts by hand: the RunPod key and tokens, read when the run starts from a
file only its owner can read, never from a unit file, a crontab or fullcycle.toml.

`~/.config/fullcycle/secrets.env` (or `[project] secrets_file`, or $FULLCYCLE_SECRETS) holds lines of
`NAME=value` (`export NAME=value` and quotes are fine). What the environment already has wins. A file
that anyone but its owner may read, or that someone else owns, is refused with the command that fixes
it: a key readable by others is a key others have.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path

from tasks.core.errors import FullcycleError

SECRETS_ENV = "FULLCYCLE_SECRETS"
DEFAULT_FILE = "~/.config/fullcycle/secrets.env"
API_KEY_ENV = "RUNPOD_API_KEY"
HF_TOKEN_ENV = "HF_TOKEN"
NOTIFY_URL_ENV = "FULLCYCLE_NOTIFY_URL"  # a webhook's URL is a secret: it may come from the secrets file
WEB_TOKEN_ENV = "FULLCYCLE_WEB_TOKEN"
NAMES = (API_KEY_ENV, HF_TOKEN_ENV, NOTIFY_URL_ENV, WEB_TOKEN_ENV)  # never in a child's environment, nor a log
_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")
LOADED: set[str] = set()  # names this process took from the file: logs.redact scrubs their values too


class SecretsError(FullcycleError):
    """The secrets file is unsafe or unreadable; nothing was rented."""


def location(configured: str = "") -> Path:
    return Path(os.environ.get(SECRETS_ENV) or configured or DEFAULT_FILE).expanduser()


def read(path: Path) -> dict[str, str]:
    """NAME=value pairs of a file only its owner may read; {} when there is no file."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise SecretsError(f"secrets file {path}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise SecretsError(f"secrets file {path} is not a regular file")
    if info.st_uid != os.getuid():
        raise SecretsError(f"secrets file {path} belongs to uid {info.st_uid}, not to you (uid {os.getuid()}): "
                           f"it was not read; nothing was rented")
    if info.st_mode & 0o077:
        raise SecretsError(f"secrets file {path} can be read by others (mode {stat.S_IMODE(info.st_mode):o}): "
                           f"run `chmod 600 {path}`; it was not read, nothing was rented")
    found = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            raise SecretsError(f"secrets file {path}:{number}: not a NAME=value line (the value is not shown)")
        value = match.group(2)
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[match.group(1)] = value
    return found


def fill_environment(configured: str = "") -> list[str]:
    """Put the file's secrets into this process's environment where it has none of that name; returns
    the names taken (never the values)."""
    taken = []
    for name, value in read(location(configured)).items():
        if value and not os.environ.get(name):
            os.environ[name] = value
            taken.append(name)
    LOADED.update(taken)
    return taken


def child_env(keep: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """The environment of every process this tool starts: its own, less every secret (the names above
    and whatever the secrets file gave), but those a child needs by name in `keep` (the local trainer
    downloads a gated model with HF_TOKEN; the page's run is this tool itself), plus `extra`."""
    hidden = (set(NAMES) | LOADED) - set(keep)
    return {**{k: v for k, v in os.environ.items() if k not in hidden}, **extra}
