"""Where the billed seconds went: one number per phase of the pod's life, from the records the
stages already keep (pod.json, train.json, the trainer's metrics, the attempts log), and the share of
the bill that was not training.

Each phase is measured where it happens (the provider, the runner on the pod, the trainer), so
the phases are separate clocks; `other` is the bill left over (ssh handshakes, the follow loop,
packing the adapter). A phase that did not happen or was not measured is None, never a guess.

The base model's download runs beside the preflight (and, with the built-in trainer, beside the
trainer's own start): the download is the cost that was always there, so it counts whole, and what
ran beside it counts only for the seconds the download was not running: `preflight` is the
preflight's billed seconds beyond the download, and the phases still add up to the bill.
"""

from __future__ import annotations

from typing import Any

from tasks.core.dates import parse_stamp
from tasks.core.files import section

ORDER = ("create_to_running", "image_pull", "ssh_reachable", "upload", "python_stack", "model_download",
         "preflight", "trainer_start", "model_load", "data_prep", "training", "evaluation", "save",
         "adapter_transfer", "terminate_to_billed", "other")
# (the trainer's "download_wait" lap is no phase: those are the download's own seconds, counted whole)
TRAINER_PHASES = ("trainer_start", "model_load", "data_prep", "training", "evaluation", "save")


def _between(start: Any, end: Any) -> float | None:
    begun, ended = parse_stamp(start), parse_stamp(end)
    if begun is None or ended is None or ended < begun:
        return None
    return round((ended - begun).total_seconds(), 1)


def _number(value: Any) -> float | None:
    return round(float(value), 2) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _stage(stages: dict[str, Any], name: str) -> float | None:
    entry = section(stages, name)
    return _number(entry.get("seconds")) if entry.get("status") == "ok" else None


def _interval(report: dict[str, Any]) -> tuple[float, float] | None:
    """(start, end) in epoch seconds, as the pod's steps report them; None when not both."""
    start, end = _number(report.get("started_at")), _number(report.get("ended_at"))
    return (start, end) if start is not None and end is not None and end >= start else None


def _beyond(span: tuple[float, float], download: tuple[float, float] | None) -> float:
    """The seconds of `span` the download was not running for (all of them when none ran beside)."""
    start, end = span
    overlap = max(min(end, download[1]) - max(start, download[0]), 0.0) if download else 0.0
    return round(max(end - start - overlap, 0.0), 2)


def trainer_laps(metrics: dict[str, Any]) -> dict[str, tuple[float, float]]:
    """The trainer's laps as (start, end) epoch seconds: they run one after the other from its start."""
    begun = _number(metrics.get("started_at"))
    laps: dict[str, tuple[float, float]] = {}
    if begun is None:
        return laps
    for name, seconds in section(metrics, "phases").items():
        if _number(seconds) is not None:
            laps[name] = (begun, begun + float(seconds))
            begun += float(seconds)
    return laps


def _beside_download(train: dict[str, Any], metrics: dict[str, Any]) -> dict[str, float | None]:
    """model_download whole; the preflight and the trainer's phases, each only beyond the download."""
    download, preflight = section(train, "download"), section(train, "preflight")
    if download.get("skipped"):  # nothing was downloaded: no phase, and nothing ran beside one
        download = {}
    spans = _interval(download)
    laps = trainer_laps(metrics)
    found: dict[str, float | None] = {
        "model_download": round(spans[1] - spans[0], 2) if spans else _number(download.get("seconds"))}
    if "preflight" in laps:  # inside the trainer's process: its own lap, the trainer's start apart
        found["preflight"] = _beyond(laps["preflight"], spans)
    else:
        span = _interval(preflight)
        found["preflight"] = _beyond(span, spans) if span and spans else _number(preflight.get("seconds"))
    trainer = section(metrics, "phases")
    for name in TRAINER_PHASES:
        found[name] = _beyond(laps[name], spans) if name in laps else _number(trainer.get(name))
    return found


def phases(pod: dict[str, Any], train: dict[str, Any], metrics: dict[str, Any], stages: dict[str, Any],
           billed: float | None) -> dict[str, float | None]:
    """Seconds per phase, in the order they happen, and `other`: the billed seconds none of them explains."""
    pull = _number(section(pod, "image_pull").get("seconds"))
    starting = _between(pod.get("created_at"), pod.get("running_at"))
    beside = _beside_download(train, metrics)
    found: dict[str, float | None] = {
        "create_to_running": round(max(starting - (pull or 0.0), 0.0), 1) if starting is not None else None,
        "image_pull": pull,
        "ssh_reachable": _between(pod.get("running_at"), pod.get("ready_at")),
        "upload": _stage(stages, "upload"),
        "python_stack": _number(train.get("setup_seconds")),
        **{name: beside[name] for name in ("model_download", "preflight", *TRAINER_PHASES)},
        "adapter_transfer": _stage(stages, "download_adapter"),
        "terminate_to_billed": _between(pod.get("terminate_requested_at"), pod.get("terminated_at")),
    }
    known = sum(v for v in found.values() if v is not None)
    found["other"] = round(max(billed - known, 0.0), 1) if billed else None
    return {name: found[name] for name in ORDER}


def preflight_cost(train: dict[str, Any], metrics: dict[str, Any]) -> dict[str, float | None] | None:
    """The preflight's seconds in all, and those billed beyond the download it ran beside."""
    report = section(train, "preflight")
    if not report or report.get("skipped"):
        return None
    beyond = _beside_download(train, metrics)["preflight"]
    return {"seconds": _number(report.get("seconds")), "billed_beyond_download": beyond}


def not_training_share(found: dict[str, float | None], billed: float | None) -> float | None:
    """The part of the bill spent on anything but training steps (0.25 = a quarter)."""
    training = found.get("training")
    if not billed or training is None:
        return None
    return round(max(billed - training, 0.0) / billed, 3)


def model_download(train: dict[str, Any]) -> dict[str, Any] | None:
    """The base model's download as the pod measured it: bytes, MB/s, tries, the build it took."""
    report = section(train, "download")
    keys = ("ok", "repo", "bytes", "seconds", "mb_s", "tries", "fast_path", "memory_gb", "cached", "skipped",
            "stopped", "error", "started_at", "ended_at")
    return {k: report[k] for k in keys if k in report} or None
