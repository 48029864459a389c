"""The upload manifest: what goes to the pod's input folder, under which names, and the proof it
arrived (upload.ok: one `sha256  name` line per file, as sha256sum writes them).

The upload writes it, the pod's scripts report the same lines back, a rerun compares the inputs on
disk with it, and the summary quotes its config line (seed §3.3's upload_verification).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tasks import tinymodel
from tasks.files import atomic_writer, read_json, sha256_file
from tasks.paths import REMOTE_DIR, TRAIN_SCRIPT, RunPaths
from tasks.settings import Settings

DATASET_NAME = "unsloth_dataset.jsonl"
CONFIG_NAME = "config.json"
SCRIPT_NAME = "train_unsloth.py"
POD_SETUP = ("setup_python.sh", "requirements-gpu.txt", "requirements-cpu.txt")  # the pod finds or builds its Python
# Where the uploaded base model lands in the input folder when it travels with the inputs (the
# locally built tiny model does; a hub model is downloaded on the pod instead).
UPLOADED_BASE_DIR = "base_model"
HELDOUT_NAME = "heldout.jsonl"
PREVIOUS_DIR = "previous_adapter"  # the previous promoted adapter: compared with, or started from
DIRS = (UPLOADED_BASE_DIR, PREVIOUS_DIR)  # folders: not doit file_deps

Sums = dict[str, str]  # name on the pod (dir/file for folders) -> sha256


def uploads_base_model(settings: Settings) -> bool:
    return tinymodel.is_tiny(settings.training.base_model)


def trainer(settings: Settings) -> Path:
    """The script the pod runs as train_unsloth.py: [remote] trainer (relative to the project root) or ours."""
    if not settings.remote.trainer:
        return TRAIN_SCRIPT
    path = Path(settings.remote.trainer).expanduser()
    return path if path.is_absolute() else settings.project_root / path


def inputs(settings: Settings, paths: RunPaths) -> dict[str, Path]:
    """What goes to the pod's input folder, by the name it gets there (also the upload's file_dep)."""
    found = {DATASET_NAME: paths.clean_data_file, CONFIG_NAME: paths.config_file, SCRIPT_NAME: trainer(settings),
             HELDOUT_NAME: paths.heldout_file}
    for name in POD_SETUP:
        found[name] = REMOTE_DIR / name
    if uploads_base_model(settings):
        found[UPLOADED_BASE_DIR] = paths.tiny_model_dir
    previous = (read_json(paths.previous_file) or {}).get("adapter")
    if previous:
        found[PREVIOUS_DIR] = Path(previous)
    return found


def checksums(files: Mapping[str, Path]) -> Sums:
    """sha256 of every file, folders walked in a stable order; streamed (a dataset may be GBs)."""
    sums = {}
    for name, path in files.items():
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if p.is_file()):
                sums[f"{name}/{file.relative_to(path).as_posix()}"] = sha256_file(file)
        else:
            sums[name] = sha256_file(path)
    return sums


def lines(sums: Sums) -> list[str]:
    return [f"{sums[n]}  {n}" for n in sorted(sums)]


def parse(text: str) -> tuple[str | None, Sums]:
    """upload.ok, or the pod's report (receive.sh / state.sh: `trainer=<state>` then upload.ok)."""
    state, sums = None, {}
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("trainer="):
            state = line.partition("=")[2]
            continue
        digest, _, name = line.partition("  ")
        if len(digest) == 64 and name:
            sums[name] = digest
    return state, sums


def write(path: Path, sums: Sums) -> list[str]:
    written = lines(sums)
    with atomic_writer(path, "w") as fh:
        fh.write("\n".join(written) + "\n")
    return written


def read(path: Path) -> Sums | None:
    try:
        return parse(path.read_text())[1]
    except FileNotFoundError:
        return None


def unchanged(settings: Settings, paths: RunPaths) -> bool:
    """Whether the inputs on disk are the ones last uploaded. Hashes them, so it is asked only
    when a stage runs, never in an up-to-date check."""
    uploaded = read(paths.upload_ok)
    files = inputs(settings, paths)
    if uploaded is None or not all(p.exists() for p in files.values()):
        return False
    return checksums(files) == uploaded


def config_line(text_lines: list[str]) -> str | None:
    """upload_verification (seed §3.3): the sha256sum line of config.json among upload.ok's lines."""
    return next((line for line in text_lines if line.strip().partition("  ")[2] == CONFIG_NAME), None)
