"""`doit volume`: a network volume that keeps the base model, the Python stack and the compile caches
between runs, and what that is worth.

A volume is billed every month whether a run uses it or not ($0.07/GB-month under 1 TB), is
Secure Cloud only, and pins every pod to its data center. So the plan is printed first: its size and
monthly cost against each thing it saves a run (the base model's download, less the slower load over
the network; the Python stack's build, as the last run on a pod measured it; the compile caches'
warm start), each figure said. It is created only when asked (`doit volume --create`), then even
where it does not pay (a person may know better, and is told), never twice, and the setting that
uses it is named rather than written into a person's fullcycle.toml.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

from tasks.context import RunContext
from tasks.core.dates import now
from tasks.core.errors import ProviderError
from tasks.core.files import read_record, write_json
from tasks.model.hubcheck import DOWNLOAD_MB_S

log = logging.getLogger("fullcycle")

STACK_GB = 12  # the pinned CUDA stack as a venv (torch, its CUDA libraries, unsloth, xformers, bitsandbytes)
HEADROOM = 1.2  # a new build of the model, the hub's temporary files
GB_MONTH_USD = (0.07, 0.05)  # under 1 TB, above (RunPod's price list, December 2026)
RUNS_PER_MONTH = 30  # one run a day
VOLUME_READ_MB_S = 237  # a network volume read, as one user measured it with dd (quoted: 200-400)
LOCAL_READ_MB_S = 2000  # the pod's own disk (NVMe; an assumption, stated)
LEVELS = {"HIGH": 3, "MEDIUM": 2, "LOW": 1}
# The compile caches kept warm: the preflight took 140 s on a fresh H200 and 64-75 s where its caches
# were warm (docs/reference/training.md); on a volume the preflight has no download to hide behind.
# What warm caches save the real model's own compile is unmeasured, so it is not counted.
COMPILE_WARM_SAVES_S = 70
STACK = "the Python stack's build"  # one of the savings, named alike wherever it is said


@dataclass
class Saving:
    """One thing a volume saves each run: billed minutes, and how the figure was had."""

    what: str
    minutes: float
    how: str


@dataclass
class Plan:
    name: str
    size_gb: int
    data_center: str
    why_here: str
    model: str
    model_gb: float
    monthly_usd: float
    price_per_hr: float | None
    savings: list[Saving] = field(default_factory=list)

    @property
    def saved_minutes_per_run(self) -> float:
        return round(sum(s.minutes for s in self.savings), 1)

    @property
    def saved_usd_per_month(self) -> float | None:
        if self.price_per_hr is None:
            return None
        return round(self.saved_minutes_per_run / 60 * self.price_per_hr * RUNS_PER_MONTH, 2)

    @property
    def pays(self) -> bool | None:
        saved = self.saved_usd_per_month
        return None if saved is None else saved >= self.monthly_usd

    def record(self) -> dict[str, Any]:
        return {**asdict(self), "saved_minutes_per_run": self.saved_minutes_per_run,
                "saved_usd_per_month": self.saved_usd_per_month, "pays": self.pays}

    def lines(self) -> list[str]:
        saved = (f"${self.saved_usd_per_month:.2f}/month at ${self.price_per_hr:.2f}/h, one run a day"
                 if self.saved_usd_per_month is not None else "its worth unknown: no price for the GPU")
        verdict = {True: "it pays", False: "it does not pay: each run's download and build are cheaper",
                   None: "judge for yourself"}
        held = f"{self.model} (~{self.model_gb:.1f} GB), " if self.model_gb else ""
        return [f"network volume {self.name!r}: {self.size_gb} GB in {self.data_center} ({self.why_here})",
                f"  holds {held}the Python stack (~{STACK_GB} GB) and the compile caches, with headroom",
                "  saves each run:",
                *(f"    {s.what}: {s.minutes:.1f} min ({s.how})" for s in self.savings),
                f"  in all ~{self.saved_minutes_per_run:.1f} billed min per run, {saved}",
                f"  costs ${self.monthly_usd:.2f}/month: {verdict[self.pays]}",
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
    """What the pod downloads each run, as the hub check says (asked now when the date has none); a
    model that travels with the inputs downloads nothing."""
    t, r = ctx.settings.training, ctx.settings.runpod
    if t.is_local:
        return t.base_model, 0.0
    verdict = read_record(ctx.paths.model_check_file)
    if verdict.get("base_model") != t.base_model or not verdict.get("download_bytes"):
        from tasks.model.hubcheck import check

        verdict = check(t.base_model, r.gpu_types, t.quantize, volume=True,
                        moe_build=t.moe_build)
    if not verdict.get("download_bytes"):
        raise ProviderError(f"the model hub did not say how large {t.base_model} is ({verdict.get('warning')}); "
                            f"nothing was created")
    return str(verdict.get("model_to_load") or t.base_model), verdict["download_bytes"] / 1e9


def savings(ctx: RunContext, model: str, model_gb: float) -> list[Saving]:
    """Each thing a volume saves a run, with how its figure was had."""
    found = [Saving("the base model's download", round(saved_minutes(model_gb, DOWNLOAD_MB_S), 1),
                    f"{model_gb:.1f} GB at {DOWNLOAD_MB_S:g} MB/s, less reading it at ~{VOLUME_READ_MB_S} MB/s "
                    f"instead of ~{LOCAL_READ_MB_S} MB/s") if model_gb else
             Saving("the base model's download", 0.0, f"{model} travels with the inputs: nothing is downloaded")]
    found.append(_stack(ctx))
    found.append(Saving("the compile caches", round(COMPILE_WARM_SAVES_S / 60, 1),
                        f"the preflight warm instead of cold, {COMPILE_WARM_SAVES_S} s as measured on an H200"))
    return found


def _stack(ctx: RunContext) -> Saving:
    """The Python stack's build as the latest run on a pod measured it (phases.python_stack): a volume
    keeps the venv; where the image's own stack was used there is nothing to keep."""
    from tasks.record.history import summaries

    for date, _, summary in reversed(summaries(ctx.settings)):
        spent = (summary.get("phases") or {}).get("python_stack") if isinstance(summary.get("phases"), dict) else None
        source = str((summary.get("training") or {}).get("python_source") or "")
        if isinstance(spent, (int, float)) and summary.get("provider") == "runpod":
            if "bootstrapped" in source:
                return Saving(STACK, round(spent / 60, 1), f"{spent:g} s on {date}'s pod ({source})")
            return Saving(STACK, 0.0, f"{date}'s pod used {source or 'a stack it had'}: none built")
    return Saving(STACK, 0.0, "not measured yet: no run on a pod has recorded python_stack")


def plan(ctx: RunContext, api: Any) -> Plan:
    r = ctx.settings.runpod
    model, model_gb = _model(ctx)
    where, why = pick_data_center(api.data_centers(), tuple(r.gpu_types))
    offers = {(o.gpu, o.cloud): o.price_per_hr for o in api.catalog(("SECURE",), r.gpu_count) or []}
    size = size_gb(model_gb)
    return Plan(name=f"{r.name_prefix}-models", size_gb=size, data_center=where, why_here=why, model=model,
                model_gb=round(model_gb, 2), monthly_usd=monthly_usd(size),
                price_per_hr=offers.get((r.gpu_types[0], "SECURE")), savings=savings(ctx, model, model_gb))


def volume(ctx: RunContext, create: bool) -> dict[str, Any]:
    """Print the plan; with `create`, make the volume (or find the one made before) and say the setting."""
    from tasks.providers.runpod.rest import RestApi

    r = ctx.settings.runpod
    if not ctx.settings.api_key:
        raise ProviderError("RUNPOD_API_KEY is not set: export your RunPod API key first; nothing was created")
    api = RestApi(ctx.settings.api_key, retry_base_s=r.retry_base_s)  # volumes are REST only, whatever [runpod] api
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
    record = {"plan": chosen.record(), "pays": chosen.pays, "at": now()}
    if existing:
        found = existing[0]
        print(f"a volume named {chosen.name!r} exists already ({found['id']}, {found.get('size')} GB in "
              f"{found.get('dataCenter')}): nothing created; use it with\n  [runpod] network_volume_id = \"{found['id']}\"")
        record["volume"] = found
    elif create:
        if chosen.pays is not True:
            why = "it does not pay" if chosen.pays is False else "its worth is unknown"
            print(f"creating it as asked, although {why}"
                  f": ${chosen.monthly_usd:.2f}/month for ~{chosen.saved_minutes_per_run:.1f} billed min saved per run")
        made = _create(api, chosen, r.retry_base_s)
        log.info("Created network volume %s (%s GB in %s)", made.get("id"), made.get("size"), made.get("dataCenter"))
        print(f"created {made['id']}: add to fullcycle.toml\n  [runpod] network_volume_id = \"{made['id']}\"")
        record["volume"] = made
    else:
        print("nothing created: `doit volume --create` creates it")
    write_json(ctx.paths.volume_file, record)
    return record


def _create(api: Any, chosen: Plan, retry_base_s: float) -> dict[str, Any]:
    """POST the volume once per try, through the same retry as every call to RunPod; after an
    unanswered try the volume it may have made is looked for by name first: a volume bills monthly,
    so it is never made twice."""
    from tasks.providers.runpod.client import with_retries

    def once() -> dict[str, Any]:
        made = [v for v in api.volumes() if v.get("name") == chosen.name]
        return made[0] if made else api.create_volume(chosen.name, chosen.size_gb, chosen.data_center)

    return with_retries(once, "create the network volume", base_delay=retry_base_s)
