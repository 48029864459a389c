"""run-summary.json (seed §3.7): composed from the date's files (never from memory) and rewritten at
each stage start and end, so even a run killed outright leaves a summary that says where it died.

The seed's fields describe the date's current adapter and the latest attempt; `attempts` and
`totals` describe all of them (tasks/record/attempts.py).
"""

from __future__ import annotations

import datetime as dt
import logging
import platform
import sys
import textwrap
from pathlib import Path
from typing import Any

import tasks
from tasks import catalog
from tasks.context import RunContext
from tasks.core import lock, modes
from tasks.core.dates import now
from tasks.core.dates import parse_stamp as _parse
from tasks.core.files import read_record, section, write_json
from tasks.core.logs import redact
from tasks.core.paths import PodNames, RunPaths
from tasks.record import phases
from tasks.record.attempts import attempts, cost_at, pod_lives, read_events, seconds_between, totals
from tasks.record.attempts import stages as stage_table

log = logging.getLogger("fullcycle")


def short(text: Any, width: int = 160) -> str:
    """Shorten on a word boundary, never mid-word."""
    return textwrap.shorten(str(text or ""), width=width, placeholder=" …")


def _upload_verification(paths: RunPaths) -> str | None:
    """The sha256sum line of config.json, from the upload or, failing that, the adapter's copy."""
    for source in (paths.upload_ok, paths.final_adapter_dir / "upload.ok"):
        try:
            lines = [line for line in source.read_text(errors="replace").splitlines() if line.strip()]
        except OSError:
            continue
        found = next((line for line in lines if line.strip().partition("  ")[2] == PodNames.CONFIG), None)
        if found:
            return found
    return None


def _warnings(paths: RunPaths, stats: dict[str, Any], post: dict[str, Any], judged: dict[str, Any],
              check: dict[str, Any], pod: dict[str, Any], problems: list[str]) -> list[str]:
    """What a person should know although the run succeeded: nothing here failed it."""
    found = [f"record: {problem}" for problem in problems]
    if pod.get("image_note"):
        found.append(f"image: {pod['image_note']}")
    for note in (check.get("warning"), check.get("gguf")):
        if note:
            found.append(f"model check: {note}")
    if stats.get("warning"):
        found.append(f"dataset: {stats['warning']}")
    if judged.get("verdict") == "worse" and not judged.get("promoted"):
        found.append(f"eval: today's adapter is worse ({judged.get('why')}); out/adapters/latest was not moved, the "
                     f"adapter is kept in {paths.final_adapter_dir}")
    elif judged.get("verdict") in ("failed", "unmeasured") and not judged.get("promoted"):
        found.append(f"eval {judged['verdict']}: {judged.get('why')}; out/adapters/latest was not moved, the "
                     f"adapter is kept in {paths.final_adapter_dir}")
    for step, outcome in post.items():
        if isinstance(outcome, dict) and outcome.get("skipped"):
            found.append(f"post-step {step} skipped: {outcome['skipped']}")
    return found


def _eval(judged: dict[str, Any] | None, stats: dict[str, Any]) -> dict[str, Any] | None:
    """The held-out evaluation: losses (missing ones null with a reason), verdict, promotion, seconds,
    and the answers side by side (the page shows them from here)."""
    if judged is None:
        skipped = stats.get("eval_skipped")
        return {"heldout_samples": 0, "verdict": None, "why": skipped, "promoted": None} if skipped else None
    keys = ("heldout_samples", "base_loss", "adapter_loss", "previous_loss", "previous_date", "verdict", "why",
            "promoted", "seconds", "started_from", "heldout_tokens", "base_perplexity", "adapter_perplexity",
            "previous_perplexity", "answers")
    found = {k: judged.get(k) for k in keys}
    if found["previous_loss"] is None:
        found["previous_why"] = "no earlier promoted adapter of this base model"
    return found


def _scale(metrics: dict[str, Any], train: dict[str, Any]) -> dict[str, Any] | None:
    """GPUs used, tokens/s in all and per GPU, and the speed-up over the last one-GPU run of this base
    model on this GPU type when there is one (else why not)."""
    scale = dict(section(metrics, "scale"))
    if not scale:
        return None
    baseline = section(train, "one_gpu_baseline")
    rate, before = scale.get("tokens_per_s"), baseline.get("tokens_per_s")
    if isinstance(scale.get("gpus"), int) and scale["gpus"] > 1:
        if isinstance(rate, (int, float)) and isinstance(before, (int, float)) and before > 0:
            scale["speedup_vs_one_gpu"] = round(rate / before, 2)
            scale["compared_with"] = baseline.get("date")
        else:
            scale["speedup_vs_one_gpu"] = None
            scale["why"] = "no earlier one-GPU run of this base model on this GPU type to compare with"
    return scale


def _sharding(check: dict[str, Any], metrics: dict[str, Any]) -> dict[str, Any] | None:
    """How the base model was shared: the plan made before renting, and what the ranks held."""
    planned, scale = section(check, "plan"), section(metrics, "scale")
    if not planned and not scale.get("sharding"):
        return None
    return {"mode": scale.get("sharding") or planned.get("sharding"), "ranks": scale.get("ranks"),
            "nodes": scale.get("nodes"), "frozen_bytes_per_rank": scale.get("frozen_bytes_per_rank"),
            "peak_memory_per_rank": scale.get("peak_memory_per_rank"), "plan": planned or None}


def _mode(recorded: str | None) -> str | None:
    try:
        return str(modes.parse(recorded)) if recorded else None
    except ValueError:
        return recorded  # an older record's word, shown as it is


def _versions(metrics: dict[str, Any]) -> dict[str, Any]:
    import doit

    return {
        "fullcycle": tasks.__version__,
        "python": platform.python_version(),
        "doit": ".".join(map(str, doit.__version__)) if isinstance(doit.__version__, tuple) else str(doit.__version__),
        "trainer": metrics.get("versions"),
    }


def _incomplete(stages: dict[str, Any]) -> str:
    missing = [s for s in catalog.NEEDED if section(stages, s).get("status") != "ok"]
    return (f"incomplete: no verified adapter yet; stages not done: {', '.join(missing) or 'none'} "
            f"(run `doit full_cycle`)")


def _billed(pod: dict[str, Any]) -> float | None:
    """The pod's life, created to terminated (to now while it lives), to the tenth of a second the
    record shows: the share, the cost and `other` are all read from this one figure, so a reader
    recomputing them from the summary gets the same numbers."""
    if not pod.get("created_at"):
        return None
    ended = _parse(pod.get("terminated_at")) or dt.datetime.now(dt.timezone.utc)
    return round(seconds_between(_parse(pod.get("created_at")), ended), 1)


def sources(paths: RunPaths) -> list[Path]:
    """Every record the summary is composed from (its up-to-date check compares their times with its own)."""
    return [paths.config_file, paths.clean_stats_file, paths.pod_file, paths.train_file, paths.post_steps_file,
            paths.final_adapter_dir / "metrics.json", paths.model_check_file, paths.eval_file, paths.attempts_file,
            paths.gpu_choice_file, paths.notify_file, paths.upload_ok]


def build(paths: RunPaths, provider: str, samples_used: int | None = None, live: bool = True) -> dict[str, Any]:
    """The summary from the date's files; a file truncated or hand-edited is named in `warnings`
    and read as empty: the summary of a broken record is still a summary."""
    problems: list[str] = []

    def read(path: Path) -> dict[str, Any]:
        return read_record(path, problems)

    config = read(paths.config_file)
    stats = read(paths.clean_stats_file)
    pod = read(paths.pod_file)
    train = read(paths.train_file)
    metrics = read(paths.final_adapter_dir / "metrics.json")
    post = read(paths.post_steps_file)
    check = read(paths.model_check_file)
    judged = read(paths.eval_file) or None
    events = read_events(paths)
    stages = stage_table(events)
    pods = pod_lives(events, pod)
    history = attempts(events, pods, live and lock.is_held(paths.lock_file))
    latest = history[-1] if history else None

    adapter_ok = (paths.final_adapter_dir / "adapter_config.json").is_file() and section(
        stages, "extract_adapter").get("status") == "ok"
    training_success = train.get("exit_code") == 0 and adapter_ok
    # The latest attempt's failure, if it failed; else, when there is no adapter, what is missing.
    error = latest["error"] if latest and latest["outcome"] in ("failed", "interrupted", "died") else None
    success = bool(training_success) and error is None
    if not training_success and error is None:
        error = _incomplete(stages)
    billed = _billed(pod)
    spent = phases.phases(pod, train, metrics, stages, billed) if pod else None

    return {
        "date": paths.date,
        "samples_used": samples_used if samples_used is not None else stats.get("samples_used"),
        "base_model": config.get("base_model"),
        "pod_id": pod.get("pod_id"),
        "ssh_user": pod.get("ssh_user"),
        "ssh_host": pod.get("ssh_host"),
        "ssh_key_path": pod.get("ssh_key_path"),
        "connection_mode": _mode(pod.get("connection_mode")),
        "adapter_path": str(paths.final_adapter_dir),
        "upload_verification": _upload_verification(paths),
        "terminated": bool(pod.get("terminated")) if pod else False,
        "training_success": bool(training_success),
        # Beyond the seed: what an auditor needs to explain the run.
        "success": success,
        "error": error,
        "warnings": _warnings(paths, stats, post, judged or {}, check, pod, problems),
        "outcome": latest["outcome"] if latest else None,
        "provider": provider,
        "pod": {k: pod.get(k) for k in ("name", "gpu", "cloud_type", "cost_per_hr", "image", "image_pull",
                                          "created_at", "running_at", "ready_at", "terminate_requested_at",
                                          "terminated_at", "terminated_how", "terminate_error", "ssh_port", "connection_source",
                                          "account_key", "cluster",
                                          "transport_notes", "network_volume_id", "data_center")}
        if pod else None,
        "billed_seconds": billed,
        # Where the billed seconds went (tasks/record/phases.py), and the share that was not training.
        "phases": spent,
        "not_training_share": phases.not_training_share(spent, billed) if spent else None,
        "model_download": phases.model_download(train),
        # what the model check planned before renting: the build downloaded, its size, and why that build
        "model_check": {k: check[k] for k in ("model_to_load", "moe_build", "load_in_4bit", "precision", "needed_gb", "plan",
                                              "download_gb", "download_minutes", "download_link_mb_s",
                                              "download_advice", "fallback_model") if k in check} or None,
        "gpus": section(metrics, "scale").get("gpus"),  # training processes, one per GPU (torchrun)
        "scale": _scale(metrics, train),
        "sharding": _sharding(check, metrics),
        "cost_usd": cost_at(billed, pod.get("cost_per_hr")) if billed is not None else None,
        "cost_usd_billed": pod.get("cost_usd_billed"),
        "gpu_choice": read(paths.gpu_choice_file) or None,
        "ssh_sessions": sum(s["ssh_sessions"] for s in stages.values()
                            if isinstance(s, dict) and isinstance(s.get("ssh_sessions"), int)),
        "attempts": history,
        "totals": totals(pods, pod),
        "training": {
            "exit_code": train.get("exit_code"),
            "seconds": train.get("seconds"),
            "reconnects": train.get("reconnects"),
            "python": train.get("python"),
            "python_source": train.get("python_source"),
            "setup_seconds": train.get("setup_seconds"),
            "stack": train.get("stack"),  # the pod's packages against the checked set (requirements-*.txt)
            "gpu": metrics.get("gpu"),  # name, driver, the CUDA version the driver supports
            "model_load_seconds": metrics.get("model_load_seconds"),
            "final_loss": metrics.get("final_loss"),
            "device": metrics.get("device"),
            "backend": metrics.get("backend"),
        },
        "notification": read(paths.notify_file) or None,  # the word sent when the last run ended ([notify])
        # the run's code path on a tiny model, beside the download: its report, and what it cost beyond the download
        "preflight": ({**train["preflight"], "cost": phases.preflight_cost(train, metrics)}
                      if isinstance(train.get("preflight"), dict) else train.get("preflight")),
        "dataset": {k: stats.get(k) for k in ("lines_read", "dropped", "dropped_fraction", "examples", "advice",
                                              "shapes", "cut_to_fit", "warning", "skipped_files", "conversions")
                    if k in stats} or None,
        "config": config or None,
        "post_steps": post or None,
        "eval": _eval(judged, stats),
        "stages": stages,
        "files": {
            "raw_data_file": str(paths.raw_data_file),
            "clean_data_file": str(paths.clean_data_file),
            "config_file": str(paths.config_file),
            "trainer_log": str(paths.trainer_log),
            "attempts_log": str(paths.attempts_file),
        },
        "versions": _versions(metrics),
        "argv": [redact(a) for a in sys.argv[1:]],
        "updated_at": now(),
    }


def write(paths: RunPaths, provider: str, samples_used: int | None = None, live: bool = True) -> dict[str, Any]:
    summary = build(paths, provider, samples_used, live)
    write_json(paths.summary_file, summary)
    return summary


read = read_record  # a run-summary.json as it is on disk: {} when there is none yet or it is not readable


def summarize(ctx: RunContext) -> None:
    """The summarize stage: the final run-summary.json, and the one line that says how the run ended."""
    from tasks.core import logs

    logs.setup(ctx.paths.trainer_log)
    summary = write(ctx.paths, ctx.provider_name, ctx.samples_used)
    if summary["success"]:
        log.info("Run complete.")
    else:
        log.info("Run finished without success: %s", summary["error"])
