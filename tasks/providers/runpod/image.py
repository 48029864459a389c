"""What the pod's image cost and whether it can change under us.

The image pull is billed and can be the largest start-up cost (a 16 GB image ~165 s cold, ~33 s
when the host has it). RunPod does not report it as a field: its pod log does, in the container
runtime's own words, which nobody documents. So the log is read for the words a pull is known to
leave (docker's and containerd's), the phase is timed from its first to its last such line, and
when the log says nothing of the kind the record says so instead of guessing.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from tasks.core.dates import parse_stamp

_PULLING = re.compile(r"pull(ing)?\b.*\bimage|pulling fs layer|image pull|downloading\b.*layer|pulling from", re.I)
_PULLED = re.compile(r"pull complete|downloaded newer image|image is up to date|already exists|"
                     r"digest: sha256|pulled\b|successfully pulled", re.I)
_CACHED = re.compile(r"image is up to date|already (exists|present)|image .*present on (the )?(host|machine)", re.I)
_STARTED = re.compile(r"start(ing|ed)? container|container (is )?start(ed|ing)|create container", re.I)
_STAMP = re.compile(r"^(\S+)\s")
_DIGEST = re.compile(r"\bdigest:\s*(sha256:[0-9a-f]{64})\b", re.I)
# Tags that name a moment (a date) or a release (a version), or a digest, do not move.
_IMMUTABLE = re.compile(r"@sha256:[0-9a-f]{64}$|:[^:/]*(\d{4}[.-]?\d{2}[.-]?\d{2}|\d+\.\d+)[^:/]*$")


def _lines(text: str) -> list[tuple[dt.datetime, str]]:
    """Timestamped lines, as the REST client writes them ("<ts> [<source>] <line>")."""
    found = []
    for line in text.splitlines():
        match = _STAMP.match(line)
        stamp = parse_stamp(match.group(1).replace("Z", "+00:00")) if match else None
        if stamp is not None:
            found.append((stamp, line[match.end():]))
    return found


def pull_from_log(text: str | None) -> dict[str, Any]:
    """{seconds, cached, from} for the image pull the pod's log shows, or {seconds: None, why}; with
    the image's `digest` where the runtime printed one: the one name of that stack that cannot move."""
    if not text:
        return {"seconds": None, "why": "the pod's log could not be read"}
    found = _timed(_lines(text))
    digest = _DIGEST.search(text)
    return {**found, "digest": digest.group(1).lower()} if digest else found


def _timed(lines: list[tuple[dt.datetime, str]]) -> dict[str, Any]:
    starts = [at for at, line in lines if _PULLING.search(line)]
    cached = any(_CACHED.search(line) for _, line in lines) and not any(
        re.search(r"pulling fs layer|download(ing| complete)", line, re.I) for _, line in lines)
    if not starts:
        if cached:
            return {"seconds": 0.0, "cached": True, "from": "pod log"}
        return {"seconds": None, "why": "the pod's log names no image pull"}
    begun = starts[0]
    ended = [at for at, line in lines if at >= begun and _STARTED.search(line) and not _PULLING.search(line)]
    pulled = [at for at, line in lines if at >= begun and _PULLED.search(line)]
    end = ended[0] if ended else (pulled[-1] if pulled else None)
    if end is None:
        return {"seconds": None, "why": "the pod's log shows a pull that had not finished when it was read",
                "started_at": begun.isoformat(timespec="seconds")}
    return {"seconds": round((end - begun).total_seconds(), 1), "cached": cached, "from": "pod log"}


def pin_note(image: str | None, digest: str | None = None) -> str | None:
    """A warning for an image whose tag can move (`:latest`, `:core`, none at all): the stack may
    change between two runs with nothing changed here. None for a digest or a dated/versioned tag.
    With the digest the pod's log showed, the pin offered is the very image this run ran."""
    if not image:
        return None
    if _IMMUTABLE.search(image):
        return None
    repo = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    pin = (f"{repo}@{digest} (the image this run ran)" if digest
           else f"an immutable tag (e.g. {repo}:nightly-YYYY.MM.DD, or {repo}@sha256:<digest>)")
    return (f"the pod ran {image}, a tag that can move: the Python stack may change between runs with nothing "
            f"changed here; pin [runpod] image_name to {pin}; the stack this run used is in training.stack")
