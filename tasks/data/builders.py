"""Today's raw dataset (seed §2.2), from the configured builder: a folder of the user's JSONL
files, a command (e.g. an existing TypeScript adapter-builder) or a Python callable.

The folder builder reads whatever encoding a person's editor left (UTF-8 with or without a BOM,
UTF-16, UTF-32, CR-only line ends), streams it as UTF-8 into one raw file, and records which raw
lines came from which file, so every later message names the user's own file and line.
"""

from __future__ import annotations

import codecs
import importlib
import logging
import shlex
from pathlib import Path
from typing import Any

import orjson

from tasks.core.files import atomic_writer
from tasks.core.secrets import child_env
from tasks.data.cleaning import DatasetError

log = logging.getLogger("fullcycle")


def build_raw(settings_dataset: Any, date: str, out: Path, root: Path, sources_out: Path | None = None) -> None:
    """Produce the raw JSONL for `date` at `out` with the configured builder. The folder builder
    also writes `sources_out`: which raw lines came from which of the user's files, so every
    message can name the user's own file and line."""
    builder = settings_dataset.builder
    if sources_out is not None:
        sources_out.unlink(missing_ok=True)
    if builder == "folder":
        _build_from_folder(_under(root, settings_dataset.source), out, sources_out)
    elif builder == "command":
        _build_from_command(settings_dataset.command, date, out, root)
    else:
        _build_from_callable(settings_dataset.callable, date, out)
    if not out.is_file():
        raise DatasetError(f"the {builder!r} dataset builder did not write {out}")


def _under(root: Path, path: str) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else root / p


def _is_jsonl(path: Path) -> bool:
    return path.suffix.lower() == ".jsonl"


def source_files(folder: Path) -> list[Path]:
    """The JSONL files the folder builder reads (any letter case of .jsonl), in a stable order
    (also doit's file_dep)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.rglob("*") if p.is_file() and _is_jsonl(p) and not _hidden(p, folder))


def skipped_files(folder: Path) -> list[Path]:
    """What in the folder the builder does not read: other files, and hidden ones (`.notes.jsonl`,
    an editor's backup; a hidden folder is named once, not file by file). Listed, never ignored in
    silence."""
    if not folder.is_dir():
        return []
    found = []
    for path in folder.rglob("*"):
        parts = path.relative_to(folder).parts
        if path.name.startswith("."):
            if not any(part.startswith(".") for part in parts[:-1]):  # not inside a hidden folder already named
                found.append(path)
        elif path.is_file() and not _is_jsonl(path) and not _hidden(path, folder):
            found.append(path)
    return sorted(found)


def _hidden(path: Path, folder: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(folder).parts)


MARK = "fullcycle-mark-undecodable"


def _mark(error: UnicodeError) -> tuple[str, int]:
    """A unit that is no character in the file's encoding becomes a byte that is no UTF-8 (0xff): its
    line is then dropped as not_utf8 with the user's file:line, and the rest of the file is kept."""
    return "\udcff", error.end  # type: ignore[attr-defined]


codecs.register_error(MARK, _mark)

BOMS = ((b"\xff\xfe\x00\x00", "utf-32"), (b"\x00\x00\xfe\xff", "utf-32"), (b"\xef\xbb\xbf", "utf-8-sig"),
        (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))


def _sniff(path: Path) -> tuple[str | None, bool]:
    """(encoding named by a byte-order mark or None, whether lines end in CR only)."""
    with path.open("rb") as fh:
        head = fh.read(1 << 16)
    encoding = next((name for bom, name in BOMS if head.startswith(bom)), None)
    sample = head.decode(encoding, "replace").encode() if encoding and encoding != "utf-8-sig" else head
    return encoding, b"\r" in sample and b"\n" not in sample


def _chunks(path: Path, encoding: str | None, cr_only: bool):
    """The file as UTF-8 bytes, streamed: BOM dropped, UTF-16/32 decoded, CR line ends made LF."""
    if encoding is None:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                yield chunk.replace(b"\r", b"\n") if cr_only else chunk
        return
    with path.open("r", encoding=encoding, errors=MARK, newline="") as fh:
        while chunk := fh.read(1 << 18):
            data = chunk.encode("utf-8", "surrogateescape")  # a marked unit becomes one invalid UTF-8 byte
            yield data.replace(b"\r", b"\n") if cr_only else data


def _build_from_folder(folder: Path, out: Path, sources_out: Path | None) -> None:
    files = source_files(folder)
    skipped = skipped_files(folder)
    for path in skipped:
        why = "hidden" if path.name.startswith(".") else "only *.jsonl files are"
        log.warning("dataset: %s is not read (%s)", path, why)
    if not files:
        raise DatasetError(
            f"dataset source folder {folder} has no *.jsonl files; set [dataset] source in fullcycle.toml"
            + (f" (it holds {len(skipped)} other file(s), e.g. {skipped[0].name})" if skipped else "")
        )
    sources, line = [], 1
    with atomic_writer(out) as dst:
        for path in files:
            encoding, cr_only = _sniff(path)
            notes = [n for n, on in ((f"decoded from {encoding}", encoding and encoding != "utf-8-sig"),
                                     ("UTF-8 byte-order mark removed", encoding == "utf-8-sig"),
                                     ("CR line endings read as lines", cr_only)) if on]
            for note in notes:
                log.info("dataset: %s: %s", path, note)
            lines, last = 0, b"\n"
            for chunk in _chunks(path, encoding, cr_only):
                dst.write(chunk)
                lines += chunk.count(b"\n")
                last = chunk[-1:]
            if last != b"\n":
                dst.write(b"\n")
                lines += 1
            sources.append({"file": str(path), "first_line": line, "lines": lines, "notes": notes})
            line += lines
    if sources_out is not None:
        from tasks.core.files import write_json

        write_json(sources_out, {"folder": str(folder), "files": sources, "skipped": [str(p) for p in skipped]})


def _build_from_command(template: str, date: str, out: Path, root: Path) -> None:
    import sh

    if not template:
        raise DatasetError("[dataset] builder is 'command' but [dataset] command is empty")
    tmp = out.with_name(out.name + ".partial")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    # Only the two placeholders are filled: a command may well contain other braces (JSON, shell).
    command = template.replace("{date}", shlex.quote(date)).replace("{out}", shlex.quote(str(tmp)))
    log.info("Building raw dataset with: %s", command)
    try:
        sh.bash("-c", command, _cwd=str(root), _env=child_env(), _out=lambda line: log.info("builder: %s", line.rstrip()),
                _err=lambda line: log.info("builder: %s", line.rstrip()))
    except sh.ErrorReturnCode as exc:
        raise DatasetError(f"dataset command exited with {exc.exit_code}: {command}") from None
    if not tmp.is_file():
        raise DatasetError(f"dataset command finished but did not write {{out}} ({tmp}): {command}")
    tmp.replace(out)


def _build_from_callable(spec: str, date: str, out: Path) -> None:
    module_name, _, func_name = spec.partition(":")
    if not module_name or not func_name:
        raise DatasetError(f"[dataset] callable {spec!r} must look like 'package.module:function'")
    try:
        func = getattr(importlib.import_module(module_name), func_name)
    except (ImportError, AttributeError) as exc:
        raise DatasetError(f"[dataset] callable {spec!r} cannot be loaded: {exc}") from None
    tmp = out.with_name(out.name + ".partial")
    tmp.parent.mkdir(parents=True, exist_ok=True)
    try:
        records = func(date=date, out=tmp)
        if records is not None:  # the callable may return records instead of writing the file
            with atomic_writer(tmp) as fh:
                for number, record in enumerate(records, 1):
                    fh.write(_line(record, number))
    except DatasetError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's code: its failure is named, not a traceback of ours
        raise DatasetError(f"[dataset] callable {spec!r} raised {type(exc).__name__}: {exc}") from exc
    if not tmp.is_file():
        raise DatasetError(f"[dataset] callable {spec!r} neither wrote {tmp} nor returned records")
    tmp.replace(out)


def _line(record: Any, number: int) -> bytes:
    """One returned record as a JSONL line. What JSON cannot hold as it is (dates, sets, keys that are
    not strings) is written as text; a record that cannot be written at all becomes a line the cleanup
    names (invalid_json at its line), never a crash that loses the others."""
    try:
        return orjson.dumps(record, default=str, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)
    except (TypeError, ValueError, orjson.JSONEncodeError) as exc:
        log.warning("dataset: record %d from the callable cannot be written as JSON (%s)", number, exc)
        return f"<record {number}: not JSON: {type(exc).__name__}>\n".encode()
