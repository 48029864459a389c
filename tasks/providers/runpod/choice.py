"""Which GPU to rent: read RunPod's catalogue first (price, memory, availability now), keep the
candidates that are free and that the model fits, and order them as the user asked (their
`gpu_types` order, or the cheapest first). Renting is then tried in that order; the record says
what was seen and why the one rented won.

When the catalogue cannot be read (GraphQL has none, the endpoint fails or answers nonsense) the
candidates keep the user's order and every one is tried, as before; the record says so.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from tasks.core.errors import ProviderError
from tasks.providers.runpod.client import Offer, PodApi

log = logging.getLogger("fullcycle")


@dataclass
class Candidate:
    gpu: str
    cloud: str
    price_per_hr: float | None = None
    memory_gb: int | None = None
    availability: str | None = None
    verdict: str = "not tried"  # "skipped: why", "rented", "no capacity: ...", "not tried"

    def row(self) -> dict[str, Any]:
        return {"gpu": self.gpu, "cloud": self.cloud, "price_per_hr": self.price_per_hr, "memory_gb": self.memory_gb,
                "availability": self.availability, "verdict": self.verdict}


@dataclass
class Choice:
    order: str  # "your order" or "cheapest"
    catalogue: str  # "read" or why it was not
    candidates: list[Candidate] = field(default_factory=list)
    chosen: str | None = None
    why: str | None = None

    def to_try(self) -> list[Candidate]:
        return [c for c in self.candidates if not c.verdict.startswith("skipped")]

    def rented(self, cand: Candidate) -> None:
        cand.verdict = "rented"
        self.chosen = f"{cand.gpu} / {cand.cloud}"
        before = [c for c in self.candidates if c.verdict.startswith("no capacity")]
        price = f" at ${cand.price_per_hr}/h" if cand.price_per_hr is not None else ""
        rank = ("the cheapest available" if self.order == "cheapest" else "the first available in your order")
        self.why = (f"{rank}{price}" + (f", after {len(before)} with no capacity" if before else "")
                    + ("" if self.catalogue == "read" else f" (catalogue not used: {self.catalogue})"))

    def record(self) -> dict[str, Any]:
        return {"order": self.order, "catalogue": self.catalogue, "chosen": self.chosen, "why": self.why,
                "candidates": [c.row() for c in self.candidates]}


def choose(api: PodApi, gpu_types: list[str], clouds: tuple[str, ...], gpu_count: int, order: str,
           needed_gb: float | None = None, data_center: str | None = None) -> Choice:
    """The candidates in the order to try them, each with what the catalogue said."""
    pairs = [Candidate(gpu, cloud) for gpu in gpu_types for cloud in clouds]
    try:
        offers = api.catalog(clouds, gpu_count)
        by_dc = api.datacenter_availability() if offers is not None else None
    except Exception as exc:  # noqa: BLE001 - an unreadable catalogue must never stop a run
        offers, by_dc, why = None, None, f"{type(exc).__name__}: {str(exc)[:200]}"
    else:
        why = "this API has no catalogue" if offers is None else ""
    if offers is None:
        log.warning("GPU catalogue not read (%s): trying %s in your order", why, ", ".join(gpu_types))
        return Choice(order="your order", catalogue=why, candidates=pairs)
    known = {(o.gpu, o.cloud): o for o in offers}
    for cand in pairs:
        _judge(cand, known.get((cand.gpu, cand.cloud)), needed_gb, data_center, by_dc or {})
    choice = Choice(order="cheapest" if order == "cheapest" else "your order", catalogue="read", candidates=pairs)
    if order == "cheapest":
        rank = {id(c): i for i, c in enumerate(pairs)}
        choice.candidates = sorted(pairs, key=lambda c: (c.verdict.startswith("skipped"),
                                                         c.price_per_hr if c.price_per_hr is not None else 1e9,
                                                         rank[id(c)]))
    for cand in choice.candidates:
        log.info("GPU candidate %s / %s: $%s/h, %s GB, availability %s: %s", cand.gpu, cand.cloud,
                 cand.price_per_hr, cand.memory_gb, cand.availability, cand.verdict)
    return choice


def _judge(cand: Candidate, offer: Offer | None, needed_gb: float | None, data_center: str | None,
           by_dc: dict[str, dict[str, str]]) -> None:
    if offer is None:
        cand.verdict = "skipped: not in RunPod's catalogue for this cloud (check the GPU id)"
        return
    cand.price_per_hr, cand.memory_gb, cand.availability = offer.price_per_hr, offer.memory_gb, offer.availability
    if data_center:  # a network volume pins the pod to its data center: availability there is what counts
        cand.availability = by_dc.get(data_center, {}).get(cand.gpu, "NONE")
    if cand.availability == "NONE":
        where = f" in {data_center}" if data_center else ""
        cand.verdict = f"skipped: none available{where} now"
    elif needed_gb and cand.memory_gb and cand.memory_gb < needed_gb:
        cand.verdict = f"skipped: the model needs ~{needed_gb:.0f} GB, it has {cand.memory_gb} GB"


def clouds(cloud_types: tuple[str, ...], data_center: str | None) -> tuple[str, ...]:
    """Network volumes are Secure Cloud only: with one, a COMMUNITY pod would be asked for in vain."""
    found = tuple(cloud_types)
    if data_center and "SECURE" in found and found != ("SECURE",):
        log.info("A network volume is Secure Cloud only: not asking for %s pods",
                 ", ".join(c for c in found if c != "SECURE"))
        return ("SECURE",)
    if data_center and "SECURE" not in found:
        raise ProviderError("[runpod] network_volume_id needs Secure Cloud, and [runpod] cloud_types does not "
                            "include \"SECURE\": add it or remove the volume; nothing was rented")
    return found


def volume_data_center(api: PodApi, s: Any) -> str | None:
    """With a network volume the pod must be in the volume's data center: every candidate is asked
    for there only (and fails over to the next GPU type, never to another place)."""
    volume = s.network_volume_id
    if not volume:
        return None
    center = api.volume_data_center(volume)
    if not center:
        raise ProviderError(f"[runpod] network_volume_id {volume!r} is not on this account, or RunPod names no data "
                            f"center for it: check the id (`doit volume` lists yours); nothing was rented")
    log.info("Network volume %s is in %s: pods are placed there only; the venv and models on it persist", volume, center)
    return center
