"""Small file helpers: atomic writes and streamed hashing.

A half-written summary or target is worse than none (doit would trust it), so every file a stage
produces is written next to its destination and renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

CHUNK = 1 << 20


@contextlib.contextmanager
def atomic_writer(path: Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Yield a file that replaces `path` only if the block finishes without an exception."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, data: Any) -> None:
    with atomic_writer(path) as fh:
        fh.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS) + b"\n")


def read_json(path: Path) -> Any:
    """Read a JSON file; None when it does not exist (a stage that has not run yet)."""
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return None


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def read_record(path: Path, problems: list[str] | None = None) -> dict[str, Any]:
    """A record this tool wrote (a summary, pod.json, train.json, ...), read back by a report, the
    page or the next stage: {} when there is none. One that was truncated (a full disk, a killed
    process) or hand-edited into something else is named, in `problems` and the log, never a traceback.
    """
    try:
        data = orjson.loads(path.read_bytes())
    except FileNotFoundError:
        return {}
    except (OSError, orjson.JSONDecodeError) as exc:
        _problem(problems, f"{path} is not readable ({_why(exc)})")
        return {}
    if not isinstance(data, dict):
        _problem(problems, f"{path} holds a JSON {type(data).__name__}, not the object this tool writes")
        return {}
    return data


def _why(exc: Exception) -> str:
    if isinstance(exc, orjson.JSONDecodeError):
        return f"not valid JSON: {exc.msg} at byte {exc.pos}"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return str(exc)


def _problem(problems: list[str] | None, text: str) -> None:
    import logging

    logging.getLogger("fullcycle").warning("record: %s", text)
    if problems is not None:
        problems.append(text)


def section(data: Any, key: str) -> dict[str, Any]:
    """data[key] when it is an object, else {}: a hand-edited record's wrong type reads as empty."""
    value = data.get(key) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else {}
