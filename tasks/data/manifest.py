"""The upload manifest: what goes to the pod's input folder, under which names, and the proof it
arrived (upload.ok: one `sha256  name` line per file, as sha256sum writes them).

The upload writes it, the pod's scripts report the same lines back, a rerun compares the inputs on
disk with it, and the summary quotes its config line (seed §3.3's upload_verification).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tasks.core.files import atomic_writer, read_record, sha256_file
from tasks.core.paths import REMOTE_DIR, SHARDED_SCRIPT, TRAIN_SCRIPT, TRAINER_PACKAGE, PodNames, RunPaths
from tasks.core.settings import Settings

# the pod finds its Python (in the checked ranges) or builds it
POD_SETUP = ("setup_python.sh", "requirements-gpu.txt", "ranges-gpu.txt", "requirements-cpu.txt")

Sums = dict[str, str]  # name on the pod (dir/file for folders) -> sha256


def trainer(settings: Settings) -> Path:
    """The script the pod runs as train_unsloth.py: [remote] trainer (relative to the project root) or ours."""
    if not settings.remote.trainer:
        return TRAIN_SCRIPT
    path = Path(settings.remote.trainer).expanduser()
    return path if path.is_absolute() else settings.project_root / path


def inputs(settings: Settings, paths: RunPaths) -> dict[str, Path]:
    """What goes to the pod's input folder, by the name it gets there (also the upload's file_dep)."""
    found = {PodNames.DATASET: paths.clean_data_file, PodNames.CONFIG: paths.config_file,
             PodNames.SCRIPT: trainer(settings), PodNames.SHARDED_SCRIPT: SHARDED_SCRIPT, PodNames.PACKAGE: TRAINER_PACKAGE,
             PodNames.HELDOUT: paths.heldout_file}
    for name in POD_SETUP:
        found[name] = REMOTE_DIR / name
    if settings.training.is_tiny:
        found[PodNames.BASE_MODEL_DIR] = paths.tiny_model_dir
    previous = (read_record(paths.previous_file)).get("adapter")
    if previous:
        found[PodNames.PREVIOUS_DIR] = Path(previous)
    return found


def file_deps(settings: Settings, paths: RunPaths) -> list[Path]:
    """The files whose change makes the upload run again (doit's file_dep): every input file, the
    trainer package's modules included. The tiny model counts by its build's targets and the previous
    adapter by config.json, which names it: a folder that appears later must not make a finished
    date's upload look stale."""
    found = inputs(settings, paths)
    for later in (PodNames.BASE_MODEL_DIR, PodNames.PREVIOUS_DIR):
        found.pop(later, None)
    return files(found)


def files(found: Mapping[str, Path]) -> list[Path]:
    """Every file the inputs hold, folders walked in a stable order (what the sums cover)."""
    listed = []
    for path in found.values():
        listed += sorted(p for p in path.rglob("*") if _counted(p)) if path.is_dir() else [path]
    return listed


def _counted(path: Path) -> bool:
    """A file of a folder that travels: caches Python writes beside the trainer's modules never do."""
    return path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"


def checksums(found: Mapping[str, Path]) -> Sums:
    """sha256 of every file, folders walked in a stable order; streamed (a dataset may be GBs)."""
    sums = {}
    for name, path in found.items():
        if path.is_dir():
            for file in sorted(p for p in path.rglob("*") if _counted(p)):
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
    found = inputs(settings, paths)
    if uploaded is None or not all(p.exists() for p in found.values()):
        return False
    return checksums(found) == uploaded


def config_line(text_lines: list[str]) -> str | None:
    """upload_verification (seed §3.3): the sha256sum line of config.json among upload.ok's lines."""
    return next((line for line in text_lines if line.strip().partition("  ")[2] == PodNames.CONFIG), None)
