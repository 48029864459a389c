"""`doit volume`: a network volume that keeps the base model and the Python stack between runs,
when it pays.

A volume is billed every month whether a run uses it or not ($0.07/GB-month under 1 TB), is
Secure Cloud only, and pins every pod to its data center. So the plan is printed first (size,
monthly cost, the download and install each run no longer pays for, where), a volume is created
only when asked (`doit volume --create`), never twice, and the setting that uses it is named
rather than written into a person's fullcycle.toml.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

from tasks.context import RunContext
from tasks.core.dates import now
from tasks.core.errors import ProviderError
from tasks.core.files import read_record, write_json

log = logging.getLogger("fullcycle")

STACK_GB = 12  # the pinned CUDA stack as a venv (torch, its CUDA libraries, unsloth, xformers, bitsandbytes)
HEADROOM = 1.2  # a new build of the model, the hub's temporary files
GB_MONTH_USD = (0.07, 0.05)  # under 1 TB, above (RunPod's price list, December 2026)
RUNS_PER_MONTH = 30  # one run a day
VOLUME_READ_MB_S = 237  # a network volume read, as one user measured it with dd (quoted: 200-400)
LOCAL_READ_MB_S = 2000  # the pod's own disk (NVMe; an assumption, stated)
LEVELS = {"HIGH": 3, "MEDIUM": 2, "LOW": 1}


@dataclass
class Plan:
    name: str
    size_gb: int
    data_center: str
    why_here: str
    model: str
    model_gb: float
    monthly_usd: float
    saved_minutes_per_run: float
    price_per_hr: float | None
    saved_usd_per_month: float | None

    @property
    def pays(self) -> bool | None:
        return None if self.saved_usd_per_month is None else self.saved_usd_per_month >= self.monthly_usd

    def lines(self) -> list[str]:
        saved = (f"${self.saved_usd_per_month:.2f}/month at ${self.price_per_hr:.2f}/h, one run a day"
                 if self.saved_usd_per_month is not None else "its worth unknown: no price for the GPU")
        verdict = {True: "it pays", False: "it does not pay: each run's download is cheaper", None: "judge for yourself"}
        return [f"network volume {self.name!r}: {self.size_gb} GB in {self.data_center} ({self.why_here})",
                f"  holds {self.model} (~{self.model_gb:.1f} GB) and the Python stack (~{STACK_GB} GB), with headroom",
                f"  costs ${self.monthly_usd:.2f}/month; saves ~{self.saved_minutes_per_run:.1f} billed min per run: "
                f"the download, less the slower load from the volume ({saved}): {verdict[self.pays]}",
                "  pods then rent Secure Cloud only, in that data center"]


def monthly_usd(size_gb: int) -> float:
    return round(size_gb * (GB_MONTH_USD[0] if size_gb < 1000 else GB_MONTH_USD[1]), 2)


def saved_minutes(model_gb: float, download_mb_s: float) -> float:
    """The download a volume saves, less what it costs back: the model is then read over the network
    at every load instead of from the pod's own disk."""
    megabytes = model_gb * 1000
    slower_read = megabytes / VOLUME_READ_MB_S - megabytes / LOCAL_READ_MB_S
    return (megabytes / download_mb_s - slower_read) / 60


def size_gb(model_gb: float) -> int:
    """The model build and the stack, with headroom; within RunPod's 10-4096 GB."""
    return min(max(math.ceil((model_gb + STACK_GB) * HEADROOM), 10), 4096)


def pick_data_center(centers: list[dict[str, Any]], gpu_types: tuple[str, ...]) -> tuple[str, str]:
    """Where the first GPU type is most available among the data centers that offer volumes; the
    other GPU types break ties (they are the fallbacks a pinned pod still has)."""
    offered = [dc for dc in centers if "STANDARD" in (dc.get("networkVolumeTypes") or [])]
    if not offered:
        raise ProviderError("no data center in RunPod's catalogue offers network volumes now; nothing was created")

    def levels(dc: dict[str, Any]) -> dict[str, int]:
        return {g.get("id"): LEVELS.get(g.get("availability"), 0) for g in dc.get("gpuAvailability") or []
                if isinstance(g, dict)}

    def rank(dc: dict[str, Any]) -> tuple[int, int, str]:
        found = levels(dc)
        return (-found.get(gpu_types[0], 0), -sum(found.get(g, 0) for g in gpu_types[1:]), dc["id"])

    best = min(offered, key=rank)
    level = next((k for k, v in LEVELS.items() if v == -rank(best)[0]), "NONE")
    return best["id"], f"{gpu_types[0]} availability {level} there"


def _model(ctx: RunContext) -> tuple[str, float]:
    """What the pod downloads each run, as the hub check says (asked now when the date has none)."""
    t, r = ctx.settings.training, ctx.settings.runpod
    if t.is_local:
        raise ProviderError(f"[training] base_model {t.base_model!r} travels with the inputs: a volume would save "
                            f"no download; nothing was created")
    verdict = read_record(ctx.paths.model_check_file)
    if verdict.get("base_model") != t.base_model or not verdict.get("download_bytes"):
        from tasks.model.hubcheck import check

        verdict = check(t.base_model, r.gpu_types, t.quantize, link_mb_s=r.download_mb_s, volume=True,
                        moe_build=t.moe_build)
    if not verdict.get("download_bytes"):
        raise ProviderError(f"the model hub did not say how large {t.base_model} is ({verdict.get('warning')}); "
                            f"nothing was created")
    return str(verdict.get("model_to_load") or t.base_model), verdict["download_bytes"] / 1e9


def plan(ctx: RunContext, api: Any) -> Plan:
    r = ctx.settings.runpod
    model, model_gb = _model(ctx)
    where, why = pick_data_center(api.data_centers(), tuple(r.gpu_types))
    offers = {(o.gpu, o.cloud): o.price_per_hr for o in api.catalog(("SECURE",), r.gpu_count) or []}
    price = offers.get((r.gpu_types[0], "SECURE"))
    minutes = saved_minutes(model_gb, r.download_mb_s) + _stack_minutes(ctx)
    size = size_gb(model_gb)
    return Plan(name=f"{r.name_prefix}-models", size_gb=size, data_center=where, why_here=why, model=model,
                model_gb=round(model_gb, 2), monthly_usd=monthly_usd(size), saved_minutes_per_run=round(minutes, 1),
                price_per_hr=price,
                saved_usd_per_month=round(minutes / 60 * price * RUNS_PER_MONTH, 2) if price else None)


def _stack_minutes(ctx: RunContext) -> float:
    """The Python stack's set-up as the last run on a pod measured it (0 when the image's was used)."""
    seconds = read_record(ctx.paths.summary_file).get("phases") or {}
    spent = seconds.get("python_stack") if isinstance(seconds, dict) else None
    return spent / 60 if isinstance(spent, (int, float)) else 0.0


def volume(ctx: RunContext, create: bool) -> dict[str, Any]:
    """Print the plan; with `create`, make the volume (or find the one made before) and say the setting."""
    from tasks.providers.runpod.rest import RestApi

    r = ctx.settings.runpod
    if not ctx.settings.api_key:
        raise ProviderError("RUNPOD_API_KEY is not set: export your RunPod API key first; nothing was created")
    api = RestApi(ctx.settings.api_key)
    if r.network_volume_id:
        mine = [v for v in api.volumes() if v.get("id") == r.network_volume_id]
        if not mine:
            raise ProviderError(f"[runpod] network_volume_id {r.network_volume_id!r} is not on this account: check the "
                                f"id, or remove the setting and run `doit volume`")
        print(f"[runpod] network_volume_id {r.network_volume_id!r} is in use: {mine[0].get('size')} GB in "
              f"{mine[0].get('dataCenter')}, ${monthly_usd(int(mine[0].get('size') or 0)):.2f}/month")
        return mine[0]
    chosen = plan(ctx, api)
    print("\n".join(chosen.lines()))
    existing = [v for v in api.volumes() if v.get("name") == chosen.name]
    record = {"plan": asdict(chosen), "pays": chosen.pays, "at": now()}
    if existing:
        found = existing[0]
        print(f"a volume named {chosen.name!r} exists already ({found['id']}, {found.get('size')} GB in "
              f"{found.get('dataCenter')}): nothing created; use it with\n  [runpod] network_volume_id = \"{found['id']}\"")
        record["volume"] = found
    elif create:
        made = api.create_volume(chosen.name, chosen.size_gb, chosen.data_center)
        log.info("Created network volume %s (%s GB in %s)", made.get("id"), made.get("size"), made.get("dataCenter"))
        print(f"created {made['id']}: add to fullcycle.toml\n  [runpod] network_volume_id = \"{made['id']}\"")
        record["volume"] = made
    else:
        print("nothing created: `doit volume --create` creates it")
    write_json(ctx.paths.volume_file, record)
    return record
