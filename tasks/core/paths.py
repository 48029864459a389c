"""Every file a run reads or writes, derived once from the settings and the date.

The names follow the seed's layout (§2.1); each folder is a setting with the seed's value as default.
"""

from __future__ import annotations

import fcntl
import time
from dataclasses import dataclass
from pathlib import Path

from tasks.core import dates
from tasks.core.files import read_record, write_json
from tasks.core.settings import Settings

REMOTE_DIR = Path(__file__).resolve().parents[2] / "remote"  # what runs on the pod, as files
TRAIN_SCRIPT = REMOTE_DIR / "train_unsloth.py"
SHARDED_SCRIPT = REMOTE_DIR / "train_fsdp.py"  # a base model sharded over several GPUs (FSDP2)
TRAINER_PACKAGE = REMOTE_DIR / "trainer"  # the trainer's named steps, uploaded beside the script


class PodNames:
    """What the pod's input folder holds, by name: the contract between the upload (data/manifest.py),
    the training config (data/trainconfig.py), the record and the trainer on the pod."""

    DATASET = "unsloth_dataset.jsonl"
    CONFIG = "config.json"  # the same name here (RunPaths.config_file) and there
    SCRIPT = "train_unsloth.py"
    SHARDED_SCRIPT = "train_fsdp.py"
    PACKAGE = "trainer"
    HELDOUT = "heldout.jsonl"
    BASE_MODEL_DIR = "base_model"  # the tiny model travels with the inputs; a hub model is downloaded there
    PREVIOUS_DIR = "previous_adapter"  # the previous promoted adapter: compared with, or started from


def _in(folder: str, name: str, doc: str = "") -> property:
    """A file of the run, `name` in one of its folders."""
    return property(lambda self: getattr(self, folder) / name, doc=doc or None)


@dataclass(frozen=True)
class RunPaths:
    date: str
    project_root: Path
    out_root: Path
    work_local: Path
    final_adapter_dir: Path
    raw_data_file: Path
    clean_data_file: Path
    config_file: Path
    summary_file: Path
    trainer_log: Path
    cache_dir: Path

    # The rest live in WORK_LOCAL, named as in the seed where it names them (each a property, so a
    # RunPaths made with other folders, gpu_check's or run_remote_training's, names them there too).
    clean_stats_file = _in("work_local", "dataset-stats.json")
    dataset_sources_file = _in("work_local", "dataset-sources.json", "which raw lines came from which file")
    heldout_file = _in("work_local", "heldout.jsonl", "the held-out samples (never trained on), chosen by content")
    eval_file = _in("work_local", "eval.json", "the held-out evaluation as judged here (tasks/post/verdict.py)")
    previous_file = _in("work_local", "previous.json", "the earlier adapter today is compared with, or starts from")
    model_check_file = _in("work_local", "model-check.json", "what the model hub said, and where the model trains")
    gpu_choice_file = _in("work_local", "gpu-choice.json", "every GPU candidate, the verdict on each, and why")
    post_steps_file = _in("work_local", "post-steps.json", "the local post-steps' outcomes")
    notify_file = _in("work_local", "notify.json", "what the last notification returned ([notify])")
    container_log = _in("work_local", "pod-container.log", "the pod's own log, kept when it never became reachable")
    pod_file = _in("work_local", "pod.json")
    connection_file = _in("work_local", "connection.json")
    known_hosts_file = _in("work_local", "known_hosts")
    upload_ok = _in("work_local", "upload.ok")
    upload_staging = _in("work_local", "upload")
    train_file = _in("work_local", "train.json")
    pod_train_log = _in("work_local", "pod-train.log", "the pod's training log, byte for byte (a reconnect resumes)")
    adapter_b64 = _in("work_local", "adapter_base64.txt")
    lock_file = _in("work_local", ".lock")
    local_pod_root = _in("work_local", "local-pod", "the local provider's 'pod' (workspace and output)")
    attempts_file = _in("work_local", "attempts.jsonl", "append-only: every event of every attempt at this date")
    tiny_model_dir = _in("cache_dir", "tiny-model")
    volume_file = _in("cache_dir", "volume.json", "`doit volume`'s last plan and volume: one per project")

    @property
    def doit_db(self) -> Path:
        """doit's state, one file per date: another date's run must not make this one stale."""
        return self.cache_dir / "doit-state" / f"{self.date}.sqlite3"

    @property
    def runs_index(self) -> Path:
        return runs_index(self.cache_dir)


def runs_index(cache_dir: Path) -> Path:
    """date -> run folder, for every date that ever ran a stage: how the report, `latest`, the
    reaper and the page find the runs, whatever the path templates (no glob of a template)."""
    return cache_dir / "runs.json"


def remember_run(paths: RunPaths) -> None:
    """Add this date's run folder to the index (once; under a lock: two dates may start together)."""
    index = paths.runs_index
    index.parent.mkdir(parents=True, exist_ok=True)
    with (index.parent / "runs.json.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        problems: list[str] = []
        known = _index(index, problems)
        if problems and index.exists():  # kept for a person to look at, never silently overwritten
            index.replace(index.with_name(f"runs.json.unreadable-{int(time.time())}"))
        if known.get(paths.date) == str(paths.work_local):
            return
        known[paths.date] = str(paths.work_local)
        write_json(index, dict(sorted(known.items())))


def _index(index: Path, problems: list[str] | None = None) -> dict[str, str]:
    """The index's date -> folder entries that are both; a hand-edited or torn index reads as what
    of it is usable (the runs it forgot are found again by their folders)."""
    known = read_record(index, problems)
    return {d: f for d, f in known.items() if isinstance(f, str) and dates.FORM.match(d)}


def run_folders(settings: Settings) -> list[tuple[str, Path]]:
    """Every date's run folder, oldest date first: the index, plus folders of runs made before it
    existed (the work_local template globbed; their date from their summary or folder name)."""
    found = {date: Path(folder) for date, folder in _index(runs_index(cache_dir(settings))).items()}
    for folder in _legacy_folders(settings):
        summary = read_record(folder / "run-summary.json")
        date = summary.get("date") or folder.name
        if dates.FORM.match(str(date)) and date not in found:
            found[date] = folder
    return sorted((date, folder) for date, folder in found.items() if folder.is_dir())


def _legacy_folders(settings: Settings) -> list[Path]:
    pattern = settings.paths.work_local.replace("{out_root}", settings.paths.out_root).replace("{date}", "*")
    path = Path(pattern).expanduser()
    if not path.is_absolute():
        path = settings.project_root / path
    anchor = Path(path.anchor)
    try:
        return [p for p in anchor.glob(str(path.relative_to(anchor))) if p.is_dir()]
    except (OSError, ValueError):
        return []


def latest_link(settings: Settings) -> Path:
    """out/adapters/latest: beside the dates' folders, where out_root's template first names the date."""
    parts = Path(settings.paths.out_root).parts
    cut = next((i for i, part in enumerate(parts) if "{date}" in part), len(parts))
    return _resolve(settings.project_root, str(Path(*parts[:cut])) if cut else ".") / "latest"


def _resolve(root: Path, template: str, **names: str) -> Path:
    path = Path(template.format(**names)).expanduser()
    return path if path.is_absolute() else root / path


def cache_dir(settings: Settings) -> Path:
    """[paths] cache_dir, resolved: the project's state that is not a date's (doit's, the tiny model, logs)."""
    return _resolve(settings.project_root, settings.paths.cache_dir)


def run_paths(settings: Settings) -> RunPaths:
    root, date, p = settings.project_root, settings.date, settings.paths
    out_root = _resolve(root, p.out_root, date=date)
    names = {"date": date, "out_root": str(out_root)}
    work_local = _resolve(root, p.work_local, **names)
    return RunPaths(
        date=date,
        project_root=root,
        out_root=out_root,
        work_local=work_local,
        final_adapter_dir=_resolve(root, p.final_adapter_dir, **names),
        raw_data_file=_resolve(root, p.raw_data_file, **names),
        clean_data_file=work_local / "unsloth_dataset.jsonl",
        config_file=work_local / PodNames.CONFIG,
        summary_file=work_local / "run-summary.json",
        trainer_log=_resolve(root, p.trainer_log, **names),
        cache_dir=_resolve(root, p.cache_dir),
    )
