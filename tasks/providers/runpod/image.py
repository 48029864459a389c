"""What the pod's image cost and whether it can change under us.

The image pull is billed and can be the largest start-up cost (a 16 GB image ~165 s cold, ~33 s
when the host has it). RunPod does not report it as a field: its pod log does, in the container
runtime's own words, which nobody documents, stamped to the second (the API's own example) or finer.
So the pull is bounded by the log's order, never by comparing stamps: from its first pull line to the
last pull, extract or digest line before the container is created or started, whatever came in the
same second; the stamps only measure that span, and the record says their resolution. A container
created before the pull began does not end it; a log with no pull line but a container start means
the host had the image; when the log says nothing of the kind the record says so instead of guessing.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any

_PULL_BEGINS = re.compile(r"pulling (from|image|fs layer)|\bpull(ing)? image|image pull\b", re.IGNORECASE)
_PULL_GOES_ON = re.compile(r": (waiting|downloading|verifying checksum|download complete|extracting|pull complete|"
                           r"already exists)\b|^digest: sha256|^status: (downloaded newer image|image is up to date)|"
                           r"(successfully )?pulled image|image pulled|unpacking|extracting", re.IGNORECASE)
_PULL_DONE = re.compile(r"^digest: sha256|^status: (downloaded newer image|image is up to date)|pulled image|"
                        r"image pulled|: pull complete", re.IGNORECASE)
_DOWNLOADED = re.compile(r": (downloading|download complete|extracting|pull complete)\b|downloaded newer image|"
                         r"successfully pulled", re.IGNORECASE)
_CACHED = re.compile(r"image is up to date|already (exists|present)|image .*present on (the )?(host|machine)",
                     re.IGNORECASE)
_CONTAINER = re.compile(r"(create|creat(ed|ing)|start(ed|ing)?) container|container (is )?(creat|start)", re.IGNORECASE)
_LINE = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:[.,](\d+))?(Z|[+-]\d\d:?\d\d)?\s+(?:\[(\w*)\]\s?)?(.*)$")
_DIGEST = re.compile(r"\bdigest:\s*(sha256:[0-9a-f]{64})\b", re.IGNORECASE)
# Tags that name a moment (a date) or a release (a version), or a digest, do not move.
_IMMUTABLE = re.compile(r"@sha256:[0-9a-f]{64}$|:[^:/]*(\d{4}[.-]?\d{2}[.-]?\d{2}|\d+\.\d+)[^:/]*$")


@dataclass(frozen=True)
class Line:
    at: dt.datetime
    resolution: float  # seconds: 1 for whole-second stamps, 0.001 for milliseconds, 1e-9 for nanoseconds
    source: str
    text: str


def parse_line(raw: str) -> Line | None:
    """One line as the REST client writes the log ("<ts> [<source>] <line>"); any fraction of a second
    (nanoseconds too, which Python's own parser refuses); None for a line with no stamp."""
    match = _LINE.match(raw.strip())
    if not match:
        return None
    whole, fraction, zone, source, text = match.groups()
    try:
        at = dt.datetime.fromisoformat(whole)
    except ValueError:
        return None
    if zone and zone != "Z":
        sign, hours, minutes = (1 if zone[0] == "+" else -1), int(zone[1:3]), int(zone[-2:])
        at = at.replace(tzinfo=dt.timezone(sign * dt.timedelta(hours=hours, minutes=minutes)))
    else:
        at = at.replace(tzinfo=dt.UTC)
    if fraction:
        at += dt.timedelta(microseconds=int(fraction[:6].ljust(6, "0")))
    return Line(at, 10.0 ** -len(fraction) if fraction else 1.0, source or "", text)


def _lines(text: str) -> list[Line]:
    """The stamped lines in the order the log gave them; the host's own (`system`) where it names any:
    a container's output may speak of downloads too."""
    found = [line for line in map(parse_line, text.splitlines()) if line is not None]
    system = [line for line in found if line.source == "system"]
    return system or found


def pull_from_log(text: str | None) -> dict[str, Any]:
    """{seconds, cached, from, resolution_s} for the image pull the pod's log shows, or {seconds: None,
    why}; with the image's `digest` where the runtime printed one: the one name of that stack that
    cannot move."""
    if not text:
        return {"seconds": None, "why": "the pod's log could not be read"}
    found = _timed(_lines(text))
    digest = _DIGEST.search(text)
    return {**found, "digest": digest.group(1).lower()} if digest else found


def _timed(lines: list[Line]) -> dict[str, Any]:
    first = next((i for i, line in enumerate(lines) if _PULL_BEGINS.search(line.text)), None)
    if first is None:
        if any(_CONTAINER.search(line.text) for line in lines):  # started with no pull: the host had it
            return {"seconds": 0.0, "cached": True, "from": "pod log", "resolution_s": _resolution(lines[:1])}
        return {"seconds": None, "why": "the pod's log names no image pull"}
    boundary = next((i for i in range(first + 1, len(lines)) if _CONTAINER.search(lines[i].text)
                     and not _PULL_BEGINS.search(lines[i].text)), len(lines))
    pulling = [line for line in lines[first:boundary]
               if _PULL_BEGINS.search(line.text) or _PULL_GOES_ON.search(line.text)]
    if boundary == len(lines) and not any(_PULL_DONE.search(line.text) for line in pulling):
        return {"seconds": None, "why": "the pod's log shows a pull that had not finished when it was read",
                "started_at": lines[first].at.isoformat()}
    begun, ended = pulling[0], pulling[-1]
    cached = any(_CACHED.search(line.text) for line in pulling) and not any(
        _DOWNLOADED.search(line.text) for line in pulling)
    seconds = max((ended.at - begun.at).total_seconds(), 0.0)
    return {"seconds": round(seconds, 3), "cached": cached, "from": "pod log",
            "resolution_s": _resolution([begun, ended])}


def _resolution(lines: list[Line]) -> float:
    """How finely the span is known: the coarser of its two stamps."""
    return max((line.resolution for line in lines), default=1.0)


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
