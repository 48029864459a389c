"""Where the billed seconds went: one number per phase of the pod's life, from the records the
stages already keep (pod.json, train.json, the trainer's metrics, stages.json), and the share of
the bill that was not training.

Each phase is measured where it happens (the provider, the runner on the pod, the trainer), so
the phases are separate clocks; `other` is the bill left over (ssh handshakes, the follow loop,
packing the adapter). A phase that did not happen or was not measured is None, never a guess.
"""

from __future__ import annotations

from typing import Any

from tasks.core.dates import parse_stamp
from tasks.core.files import section

ORDER = ("create_to_running", "image_pull", "ssh_reachable", "upload", "python_stack", "preflight",
         "model_download", "trainer_start", "model_load", "data_prep", "training", "evaluation", "save",
         "adapter_transfer", "terminate_to_billed", "other")
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


def phases(pod: dict[str, Any], train: dict[str, Any], metrics: dict[str, Any], stages: dict[str, Any],
           billed: float | None) -> dict[str, float | None]:
    """Seconds per phase, in the order they happen, and `other`: the billed seconds none of them explains."""
    pull = _number(section(pod, "image_pull").get("seconds"))
    starting = _between(pod.get("created_at"), pod.get("running_at"))
    trainer = section(metrics, "phases")
    found: dict[str, float | None] = {
        "create_to_running": round(max(starting - (pull or 0.0), 0.0), 1) if starting is not None else None,
        "image_pull": pull,
        "ssh_reachable": _between(pod.get("running_at"), pod.get("ready_at")),
        "upload": _stage(stages, "upload"),
        "python_stack": _number(train.get("setup_seconds")),
        "preflight": _number(section(train, "preflight").get("seconds")),
        "model_download": _number(section(train, "download").get("seconds")),
        **{name: _number(trainer.get(name)) for name in TRAINER_PHASES},
        "adapter_transfer": _stage(stages, "download_adapter"),
        "terminate_to_billed": _between(pod.get("terminate_requested_at"), pod.get("terminated_at")),
    }
    known = sum(v for v in found.values() if v is not None)
    found["other"] = round(max(billed - known, 0.0), 1) if billed else None
    return found


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
            "instead", "error")
    return {k: report[k] for k in keys if k in report} or None
