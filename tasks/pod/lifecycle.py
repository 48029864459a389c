"""The pod's life (seed §3.1, §3.6): rent or resume, check it is still there, terminate, always.

Every stage that needs the pod asks here first. A pod recorded in pod.json may be gone; what a
stage does then depends on what the date already has, so that no message ever points at a
command that would fail the same way:
- the adapter from that pod is already downloaded: the stage has nothing to do and says so;
- it is not: the stage fails and names `doit full_cycle`, which then rents a new pod, because
  `pod_in_use()` (create_pod's up-to-date check) is false in exactly that case.
"""

from __future__ import annotations

import logging

from tasks.context import RunContext
from tasks.core import logs
from tasks.core.dates import now
from tasks.core.errors import ProviderError
from tasks.core.files import read_record
from tasks.core.paths import RunPaths
from tasks.data import manifest
from tasks.providers.base import Fate, Pod, PodUnknown
from tasks.record.attempts import append_event
from tasks.transport.connection import Connection

log = logging.getLogger(logs.LOGGER)


class PodGone(ProviderError):
    """The recorded pod no longer runs and the adapter it was making never arrived."""


def load_pod(ctx: RunContext) -> Pod | None:
    return Pod.load(ctx.paths.pod_file)


def delivered(ctx: RunContext, pod: Pod | None = None) -> bool:
    """Whether the adapter trained on the recorded pod is already here, complete (base64 of the
    whole archive the pod reported). Only then may the pod be gone without loss."""
    pod = pod or load_pod(ctx)
    train = read_record(ctx.paths.train_file)
    if pod is None or train.get("pod_id") != pod.pod_id or train.get("exit_code") != 0:
        return False
    size = train.get("tar_bytes")
    b64 = ctx.paths.adapter_b64
    return isinstance(size, int) and b64.is_file() and b64.stat().st_size == 4 * -(-size // 3)


def inputs_unchanged(ctx: RunContext) -> bool:
    return manifest.unchanged(ctx.settings, ctx.paths)


def record_terminated(paths: RunPaths, attempt_id: str, pod: Pod, how: str) -> None:
    """The one way a pod's end is recorded (after the provider confirmed it gone following a DELETE):
    pod.json, then the date's attempts log."""
    pod.mark_terminated(now(), how)
    pod.save(paths.pod_file)
    append_event(paths, attempt_id, "pod_terminated", pod_id=pod.pod_id, how=how)


def end_unusable(ctx: RunContext, pod: Pod, fate: Fate, status: str) -> str:
    """A pod that can run nothing more: deleted and verified gone, whatever its state. A stopped pod
    (EXITED, ERROR) still bills its disk; one already gone is deleted all the same (idempotent), so
    the record says "terminated" only where the provider confirmed it after a DELETE. Returns why."""
    if fate is Fate.STOPPED:
        how = f"stopped outside this run (RunPod said {status}); deleted"
    else:
        how = f"ended outside this run (RunPod said {status})"
    log.warning("Pod %s recorded in %s: %s", pod.pod_id, ctx.paths.pod_file, how)
    ctx.provider.terminate(pod)
    record_terminated(ctx.paths, ctx.attempt.id, pod, how)
    return how


def is_live(ctx: RunContext, pod: Pod) -> bool:
    """Fresh provider data, not pod.json: alive, or ended here and recorded (deleted and verified).
    An unanswered question raises PodUnknown: a pod that may live is never replaced."""
    if pod.terminated:
        return False
    fate, status = ctx.provider.fate(pod)
    if fate is Fate.ALIVE:
        return True
    end_unusable(ctx, pod, fate, status)
    return False


def pod_in_use(ctx: RunContext) -> bool:
    """create_pod's up-to-date check: the recorded pod is alive, or it already delivered the adapter.
    Asked once, without waiting: an unanswered question makes the stage run, and the stage asks
    patiently before it rents anything."""
    pod = load_pod(ctx)
    if pod is None:
        return False
    if not pod.terminated:
        try:
            if ctx.provider.fate(pod, patient=False)[0] is Fate.ALIVE:
                return True
        except PodUnknown:
            return False
    return delivered(ctx, pod)


def connect_or_keep(ctx: RunContext, stage: str) -> tuple[Pod, Connection] | None:
    """The live pod and a connection for `stage`; None when the pod is gone but its work is here."""
    pod = load_pod(ctx)
    if pod is None:
        raise PodGone(f"{stage}: no pod is recorded in {ctx.paths.pod_file}: run `doit full_cycle --date {ctx.paths.date}`")
    if is_live(ctx, pod):
        return pod, ctx.provider.connect(pod)
    if delivered(ctx, pod) and inputs_unchanged(ctx):
        log.info("%s: pod %s is gone, and its adapter is already here (%s): nothing to do",
                 stage, pod.pod_id, ctx.paths.adapter_b64)
        return None
    raise PodGone(f"{stage}: pod {pod.pod_id} is no longer running and the adapter it was training never "
                  f"arrived: `doit full_cycle --date {ctx.paths.date}` rents a new pod and trains again")


def create_pod(ctx: RunContext) -> Pod | None:
    """Rent a pod, or resume a live one the date already has, or do nothing when the adapter is here."""
    provider = ctx.provider
    old = load_pod(ctx)
    if old and is_live(ctx, old):
        log.info("Resuming with live pod %s recorded in %s (no new rental)", old.pod_id, ctx.paths.pod_file)
        append_event(ctx.paths, ctx.attempt.id, "pod_resumed", pod_id=old.pod_id)
        if not old.ready_at:  # the earlier run died before the pod was reachable
            old = provider.wait_ready(old)
            old.save(ctx.paths.pod_file)
        return old
    if old and delivered(ctx, old) and inputs_unchanged(ctx):
        log.info("Nothing to rent: the adapter trained on pod %s from these inputs is already downloaded", old.pod_id)
        return None
    if old:
        why = ("the inputs changed since it trained" if delivered(ctx, old)
               else "the adapter it was training never arrived")
        log.info("Pod %s is gone and %s: renting a new pod to train again", old.pod_id, why)
    log.info("Spawning remote run… (provider %s)", provider.name)
    pod = provider.create()
    pod.save(ctx.paths.pod_file)  # recorded before anything else, so a teardown can always find it
    append_event(ctx.paths, ctx.attempt.id, "pod_created", pod={
        k: getattr(pod, k) for k in ("pod_id", "name", "gpu", "cloud_type", "cost_per_hr", "created_at")})
    log.info("Pod %s created (gpu %s, cloud %s)", pod.pod_id, pod.gpu, pod.cloud_type)
    pod = provider.wait_ready(pod)
    pod.save(ctx.paths.pod_file)
    log.info("Connection mode: %s (%s@%s)", pod.connection_mode, pod.ssh_user, pod.ssh_host)
    return pod


def is_terminated(ctx: RunContext) -> bool:
    pod = load_pod(ctx)
    return pod is None or pod.terminated


def terminate_pod(ctx: RunContext) -> bool:
    """Terminate the recorded pod (idempotent) and record what was verified in pod.json."""
    pod = load_pod(ctx)
    if pod is None or pod.terminated:
        return True
    pod.terminate_requested_at = now()  # from here until the provider says gone, the pod still bills
    try:
        ctx.provider.terminate(pod)
    except ProviderError as exc:
        pod.terminate_error = str(exc)
        pod.save(ctx.paths.pod_file)
        log.error("podTerminate FAILED for %s: %s", pod.pod_id, exc)
        raise
    record_terminated(ctx.paths, ctx.attempt.id, pod, "terminate")
    log.info("Pod %s terminated (podTerminate succeeded)", pod.pod_id)
    record_billed(ctx, pod)
    return True


def record_billed(ctx: RunContext, pod: Pod) -> None:
    """What the provider billed for the pod, beside our estimate; a missing answer never fails a run."""
    cost = ctx.provider.billed(pod)
    if cost is None:
        return
    pod.cost_usd_billed = cost
    pod.save(ctx.paths.pod_file)
    append_event(ctx.paths, ctx.attempt.id, "pod_billed", pod_id=pod.pod_id, cost_usd_billed=cost)
    log.info("RunPod billed $%.4f for pod %s", cost, pod.pod_id)


def vanished(ctx: RunContext, pod: Pod, stage: str) -> None:
    """Before giving up on a pod that stopped answering: if it was stopped or ended outside this run,
    delete it, verify, record why, and say so."""
    fate, status = ctx.provider.fate(pod)
    if fate is Fate.ALIVE:
        return
    how = end_unusable(ctx, pod, fate, status)
    what = "stopped" if fate is Fate.STOPPED else "terminated"
    raise PodGone(f"{stage}: pod {pod.pod_id} was {what} outside this run ({how}); "
                  f"`doit full_cycle --date {ctx.paths.date}` rents a new pod and trains again")


def ensure_terminated(ctx: RunContext) -> None:
    """The forced cleanup: doit runs it after all tasks, also after a failure or Ctrl-C."""
    if is_terminated(ctx):
        return
    from tasks.record.stage import recording

    with recording(ctx, "terminate_pod"):
        terminate_pod(ctx)
