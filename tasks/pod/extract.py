"""Seed §3.5: the downloaded adapter (adapter_base64.txt) decoded and hashed as a stream, checked
against the pod's sha256, and unpacked into FINAL_ADAPTER_DIR only if every member is a plain file
inside it. Nothing is held whole in memory."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import shutil
import tarfile
from pathlib import Path
from typing import Any

from tasks.context import RunContext
from tasks.core import logs
from tasks.core.errors import TransportError
from tasks.core.files import read_record

log = logging.getLogger(logs.LOGGER)


class _Base64Reader(io.RawIOBase):
    """Decode a base64 file as a stream and hash what comes out: nothing is held whole."""

    def __init__(self, path: Path) -> None:
        self.fh = path.open("rb")
        self.sha = hashlib.sha256()
        self.buffer = b""
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, out: Any) -> int:
        while not self.buffer:
            chunk = self.fh.read(4 * 65536)
            if not chunk:
                return 0
            self.buffer = base64.b64decode(chunk, validate=True)
            self.sha.update(self.buffer)
            self.size += len(self.buffer)
        n = min(len(out), len(self.buffer))
        out[:n], self.buffer = self.buffer[:n], self.buffer[n:]
        return n

    def close(self) -> None:
        self.fh.close()
        super().close()


def _safe_member(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
    """Refuse anything an adapter archive has no reason to hold, then apply tarfile's data filter."""
    name = member.name
    parts = Path(name).parts
    if name.startswith("/") or ".." in parts:
        raise TransportError(f"extract: refusing archive member {name!r} (absolute or '..' path)")
    if not (member.isfile() or member.isdir()):
        raise TransportError(f"extract: refusing archive member {name!r} (links and special files are not allowed)")
    return tarfile.data_filter(member, dest)


def _discard(ctx: RunContext, why: str) -> TransportError:
    """A bad download is deleted, so that the one command named next fetches it again."""
    ctx.paths.adapter_b64.unlink(missing_ok=True)
    return TransportError(f"extract: {why}; the bad download was deleted: `doit full_cycle --date {ctx.paths.date}` "
                          f"downloads it again (or, if the pod is gone, rents a new one and trains again)")


def extract_adapter(ctx: RunContext) -> Path:
    """The extract_adapter stage: decode, verify against the pod's sha256 and unpack into
    FINAL_ADAPTER_DIR, atomically."""
    record = read_record(ctx.paths.train_file)
    final = ctx.paths.final_adapter_dir
    final.parent.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(f".{final.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    reader = _Base64Reader(ctx.paths.adapter_b64)
    try:
        with tarfile.open(fileobj=io.BufferedReader(reader, 1 << 20), mode="r|*") as archive:
            for member in archive:
                archive.extract(member, partial, filter=_safe_member)
        while reader.read(1 << 20):  # hash the archive's trailing padding too
            pass
    except (tarfile.TarError, ValueError) as exc:
        shutil.rmtree(partial, ignore_errors=True)
        log.error("adapter_base64.txt could not be decoded: %s", exc)
        raise _discard(ctx, f"{ctx.paths.adapter_b64} is not a valid archive ({exc})") from None
    except TransportError:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    finally:
        reader.close()
    digest = reader.sha.hexdigest()
    if record.get("tar_sha256") and digest != record["tar_sha256"]:
        shutil.rmtree(partial, ignore_errors=True)
        raise _discard(ctx, f"archive sha256 {digest} differs from the pod's {record['tar_sha256']}")
    if not (partial / "adapter_config.json").is_file():
        shutil.rmtree(partial, ignore_errors=True)
        raise TransportError("extract: the archive holds no adapter_config.json: the trainer saved no adapter")
    old = final.with_name(f".{final.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    partial.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    log.info("adapter_base64.txt decoded and verified (sha256 %s); adapter in %s", digest[:12], final)
    return final
