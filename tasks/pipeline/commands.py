"""The commands that are not stages of the full cycle: the reaper, the history report, the final
line of `doit full_cycle`, and the web page. Each imports what it needs when it runs.
"""

from __future__ import annotations

import logging
from typing import Any

from tasks.context import RunContext

log = logging.getLogger("fullcycle")


def reap(ctx: RunContext, terminate: bool) -> Any:
    """Report (or end) this project's pods that no live run owns; `doit reap_pods` ends them."""
    from tasks.core import logs
    from tasks.core.errors import FullcycleError
    from tasks.pod import reaper

    logs.setup(ctx.paths.trainer_log)
    try:
        reaper.reap(ctx, terminate)
    except FullcycleError as exc:
        if terminate:
            from doit.exceptions import TaskFailed

            return TaskFailed(logs.redact(str(exc)))
        log.warning("reaper: could not check for stale pods: %s", exc)
    return None


def check_stale_pods(ctx: RunContext) -> Any:
    """Before a run: what a crashed run left, reported (or ended, per [runpod] reap). The date's lock is
    taken first, so the pod a crashed run left for this very date counts as this run's own (create_pod
    resumes it) and is never reaped just before it would have been; another live run's pod is spared."""
    from tasks.core import lock

    try:
        lock.acquire(ctx.paths.lock_file, ctx.attempt.locks)
    except lock.RunLocked as exc:
        log.warning("reaper: not checking: %s", exc)  # the first stage says the same, and stops
        return None
    return reap(ctx, ctx.settings.runpod.reap == "terminate")


def gpu_check(ctx: RunContext) -> Any:
    """Rent the cheapest GPU, run only the preflight there, terminate: the first day's stack, checked."""
    from doit.exceptions import TaskFailed

    from tasks.pod.gpu_check import check_gpu as check

    record = check(ctx)
    if record.get("terminate_error"):
        return TaskFailed(f"the pod could not be terminated: {record['terminate_error']}")
    if not record["ok"]:
        return TaskFailed(f"gpu_check failed: {record.get('error')}")
    return None


def volume(ctx: RunContext, create: bool) -> Any:
    """Plan (and with --create, make) the network volume that keeps the model and the stack."""
    from doit.exceptions import TaskFailed

    from tasks.core.errors import FullcycleError
    from tasks.pipeline.volume import volume as plan_volume

    try:
        plan_volume(ctx, create)
    except FullcycleError as exc:
        return TaskFailed(str(exc))
    return None


def schedule(ctx: RunContext, dodo: str, at: str, off: bool, crontab: bool) -> Any:
    """Install (--at), remove (--off) or show the daily run of `doit full_cycle` for this project."""
    from doit.exceptions import TaskFailed

    from tasks.core.errors import FullcycleError
    from tasks.pipeline import schedule as daily

    try:
        if off:
            said = daily.remove(ctx.settings, dodo)
        elif at:
            said = daily.install(ctx.settings, dodo, at, crontab)
        else:
            said = daily.status(ctx.settings, dodo)
    except FullcycleError as exc:
        return TaskFailed(str(exc))
    print("\n".join(said))
    return None


def plan(ctx: RunContext, model: str) -> None:
    """Where a base model would train (one GPU, N GPUs on a pod, a cluster), from the shapes kept here or
    the model check's last answer about it: no network."""
    from tasks.model import hubcheck
    from tasks.model import plan as planning

    t, r = ctx.settings.training, ctx.settings.runpod
    model = model or t.base_model
    shape = planning.KNOWN.get(model)
    if shape is None:
        recalled = hubcheck.recalled(model) or {}
        if not recalled.get("parameters"):
            print(f"{model}: no shape kept here and no earlier answer from the model hub "
                  f"(known: {', '.join(planning.KNOWN)}); `doit check_model` with it as [training] base_model asks")
            return
        shape = planning.Shape.from_config(recalled["parameters"], recalled.get("config"))
    load = planning.Load(t.max_seq_length, t.per_device_train_batch_size, t.lora_rank)
    print("\n".join(planning.describe(model, shape, list(r.gpu_types), load, r.max_gpus, t.quantize)))


def report(ctx: RunContext) -> None:
    from tasks.record import history

    print(history.report(ctx))


def full_cycle_result(ctx: RunContext) -> Any:
    """The one line a person reads at the end: what happened to this date, and where things are."""
    from doit.exceptions import TaskFailed

    from tasks.record import summary as run_summary

    summary = run_summary.read(ctx.paths.summary_file)
    ok = summary.get("success")
    print(f"\nfull_cycle {'SUCCEEDED' if ok else 'FAILED'} for {ctx.paths.date}")
    print(f"  adapter: {summary.get('adapter_path')}\n  summary: {ctx.paths.summary_file}\n  log:     {ctx.paths.trainer_log}")
    for warning in summary.get("warnings") or []:
        print(f"  warning: {warning}")
    if not ok:
        return TaskFailed(f"run not successful: {summary.get('error')}")
    return None
