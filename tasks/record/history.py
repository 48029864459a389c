"""Run history: every date's run-summary.json, the previous promoted adapter a new date is compared
with, and `doit report` (one row per date, its attempts under it, a loss curve per run folder).

Everything comes from the files runs left behind (run-summary.json, the adapter's metrics.json),
so the report covers failed runs too. The text needs only the base install; the PNG needs the
`report` extra, and says so when it is missing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.context import RunContext
from tasks.core.files import read_record, section
from tasks.core.paths import run_folders
from tasks.core.settings import Settings
from tasks.record.phases import ORDER
from tasks.record.summary import short

UNREADABLE = "unreadable"  # the key a summary that could not be read is reported under


def summaries(settings: Settings) -> list[tuple[str, Path, dict[str, Any]]]:
    """(date, run folder, run-summary.json) of each run that has one, oldest date first. A summary
    that is truncated or not the object this tool writes comes as {"unreadable": why, "date": ...}:
    the report and the page name its file, and nothing takes it for a success."""
    found = []
    for date, folder in run_folders(settings):
        path = folder / "run-summary.json"
        problems: list[str] = []
        summary = read_record(path, problems)
        if problems:
            summary = {UNREADABLE: f"{problems[0]}: `doit summarize --date {date}` writes it again from the "
                                   f"date's records", "date": date}
        if summary or path.is_file():
            found.append((date, folder, summary))
    return found


def previous_adapter(settings: Settings, date: str, base_model: str) -> tuple[str, Path] | None:
    """The newest promoted adapter before `date`, of the same base model: what that date is compared
    with (and may start from)."""
    found = None
    for when, _folder, summary in summaries(settings):
        if when >= date or summary.get("base_model") != base_model or not summary.get("training_success"):
            continue
        promoted = section(summary, "eval").get("promoted")
        adapter = Path(str(summary.get("adapter_path") or ""))
        if promoted is not False and (adapter / "adapter_model.safetensors").is_file():
            found = (when, adapter)
    return found


def one_gpu_rate(settings: Settings, date: str, base_model: str, gpu: str | None) -> dict[str, Any] | None:
    """The newest earlier run of this base model on one GPU of this type that says how fast it trained:
    what a multi-GPU run's speed-up is measured against (None when there is none to compare with)."""
    found = None
    for when, _folder, summary in summaries(settings):
        scale = section(summary, "scale")
        rate = scale.get("tokens_per_s")
        if (when < date and summary.get("base_model") == base_model and scale.get("gpus") == 1
                and section(summary, "pod").get("gpu") == gpu and isinstance(rate, (int, float)) and rate > 0):
            found = {"date": when, "tokens_per_s": rate}
    return found


COLUMNS = ("date", "attempts", "samples", "final loss", "eval loss", "verdict", "train min", "pod min",
           "not training", "cost $", "billed $", "result")
REPORT_EXTRA = "pip install -e '.[report]'"


def _minutes(seconds: Any) -> str:
    return f"{seconds / 60:.1f}" if isinstance(seconds, (int, float)) else "-"


def _money(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def _share(value: Any) -> str:
    return f"{value:.0%}" if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def phase_line(summary: dict[str, Any]) -> str | None:
    """Where the latest pod's billed seconds went, phase by phase (those that happened), the model
    download with its size and speed."""
    spent = section(summary, "phases")
    parts = [f"{name.replace('_', ' ')} {spent[name]:.{2 if spent[name] < 1 else 1 if spent[name] < 10 else 0}f}s" for name in ORDER
             if isinstance(spent.get(name), (int, float)) and not isinstance(spent.get(name), bool) and spent[name] > 0]
    got = section(summary, "model_download")
    if isinstance(got.get("bytes"), int) and got.get("bytes") and isinstance(got.get("mb_s"), (int, float)):
        parts = [p + f" ({got['bytes'] / 1e9:.2f} GB, {got['mb_s']:.0f} MB/s)" if p.startswith("model download")
                 else p for p in parts]
    return "    phases: " + ", ".join(parts) if parts else None


def _loss(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def _verdict(judged: dict[str, Any]) -> str:
    if not judged.get("verdict"):
        return "-"
    return str(judged["verdict"]) + ("" if judged.get("promoted") else " (kept, not promoted)")


def _result(summary: dict[str, Any], folder: Path) -> str:
    if summary.get(UNREADABLE):
        return "unreadable (below)"
    return "succeeded" if summary.get("success") is True else f"failed: {short(summary.get('error'), 70)}"


def _attempts(summary: dict[str, Any]) -> list[dict[str, Any]]:
    listed = summary.get("attempts")
    return [a for a in listed if isinstance(a, dict)] if isinstance(listed, list) else []


def rows(ctx: RunContext) -> list[dict[str, Any]]:
    found = []
    for date, folder, summary in summaries(ctx.settings):
        training, totals = section(summary, "training"), section(summary, "totals")
        samples = summary.get("samples_used")
        found.append({
            "date": date,
            "attempts": len(_attempts(summary)),
            "samples": samples if isinstance(samples, int) else "-",
            "final loss": _loss(training.get("final_loss")),
            "eval loss": _loss(section(summary, "eval").get("adapter_loss")),
            "verdict": _verdict(section(summary, "eval")),
            "train min": _minutes(training.get("seconds")),
            "pod min": _minutes(totals.get("pod_seconds", summary.get("billed_seconds"))),
            "not training": _share(summary.get("not_training_share")),
            "cost $": _money(totals.get("cost_usd", summary.get("cost_usd"))),
            "billed $": _money(totals.get("cost_usd_billed")),
            "result": _result(summary, folder),
            "_folder": folder, "_summary": summary,
        })
    return found


def _attempt_lines(summary: dict[str, Any]) -> list[str]:
    lines = []
    for n, a in enumerate(_attempts(summary), 1):
        pod = f"pod {a['pod_id']} ({a.get('gpu') or '?'}, {a.get('cloud_type') or '-'})" if a.get("pod_id") else "no pod"
        error = f" — {short(a['error'], 90)}" if a.get("error") else ""
        lines.append(f"    attempt {n}: {a.get('started_at')} {a.get('outcome')} at {a.get('stage_reached') or '-'}; "
                     f"{pod}, {_minutes(a.get('pod_seconds'))} pod min, ${_money(a.get('cost_usd'))}{error}")
    return lines


def table(found: list[dict[str, Any]]) -> str:
    widths = [max(len(c), *(len(str(r[c])) for r in found)) if found else len(c) for c in COLUMNS]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths))]
    for r in found:
        lines.append("  ".join(str(r[c]).ljust(w) for c, w in zip(COLUMNS, widths)))
        if r["_summary"].get(UNREADABLE):
            lines.append(f"    unreadable: {r['_summary'][UNREADABLE]}")
        lines += _attempt_lines(r["_summary"])
        if phases := phase_line(r["_summary"]):
            lines.append(phases)
    return "\n".join(lines)


def plot_loss(summary: dict[str, Any], out: Path) -> Path | None:
    """loss.png in the run folder: loss per optimizer step, readable at a glance."""
    metrics = read_record(Path(str(summary.get("adapter_path") or "")) / "metrics.json")
    steps = [s for s in metrics.get("steps") or [] if isinstance(s, dict)
             and isinstance(s.get("step"), (int, float)) and isinstance(s.get("loss"), (int, float))]
    if not steps or not isinstance(metrics.get("steps"), list):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    xs, ys = [s["step"] for s in steps], [s["loss"] for s in steps]
    ax.plot(xs, ys, marker="o" if len(xs) <= 60 else None, linewidth=1.8, color="#1f77b4")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss")
    ax.set_title(f"{summary.get('date')} — {summary.get('base_model')} — {summary.get('samples_used')} samples, "
                 f"final loss {ys[-1]:.4f}", fontsize=10)
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def report(ctx: RunContext) -> str:
    found = rows(ctx)
    if not found:
        return "no runs yet"
    text = table(found)
    try:
        for row in found:
            plot_loss(row["_summary"], row["_folder"] / "loss.png")
    except ModuleNotFoundError:
        text += f"\n\nloss.png not drawn: the loss curves need matplotlib ({REPORT_EXTRA})"
    return text
