"""What the pod receives (tasks/data/manifest.py): the trainer and every one of its steps, and the files
whose change makes the upload run again."""

from __future__ import annotations

from tasks.context import RunContext
from tasks.core.paths import TRAINER_PACKAGE, PodNames
from tasks.data import manifest
from tests.helpers import make_project


def _ctx(tmp_path, monkeypatch) -> RunContext:
    proj = make_project(tmp_path)
    monkeypatch.setenv("FULLCYCLE_CONFIG", proj.env["FULLCYCLE_CONFIG"])
    return RunContext.load(date=proj.date)


def test_the_trainer_package_travels_and_each_of_its_files_is_a_file_dep(tmp_path, monkeypatch):
    ctx = _ctx(tmp_path, monkeypatch)
    assert manifest.inputs(ctx.settings, ctx.paths)[PodNames.PACKAGE] == TRAINER_PACKAGE
    deps = set(manifest.file_deps(ctx.settings, ctx.paths))
    steps = {p for p in TRAINER_PACKAGE.glob("*.py")}
    assert len(steps) >= 8 and steps <= deps, steps - deps
    assert not any("__pycache__" in p.parts or p.suffix == ".pyc" for p in deps)


def test_a_changed_trainer_file_changes_what_was_uploaded(tmp_path):
    package = tmp_path / "trainer"
    package.mkdir()
    (package / "fit.py").write_text("STEP = 1\n")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "fit.cpython-311.pyc").write_bytes(b"cache")
    before = manifest.checksums({PodNames.PACKAGE: package})
    assert list(before) == ["trainer/fit.py"]  # caches never travel, so they never count
    (package / "fit.py").write_text("STEP = 2\n")
    assert manifest.checksums({PodNames.PACKAGE: package}) != before


def test_folders_that_appear_later_are_not_file_deps(tmp_path, monkeypatch):
    """The tiny model counts by its build's targets and the previous adapter by config.json: a folder
    that appears after the first run must not make a finished date's upload look stale."""
    ctx = _ctx(tmp_path, monkeypatch)
    ctx.paths.tiny_model_dir.mkdir(parents=True)
    (ctx.paths.tiny_model_dir / "tokenizer.json").write_text("{}")
    deps = manifest.file_deps(ctx.settings, ctx.paths)
    assert not any(ctx.paths.tiny_model_dir in p.parents for p in deps)
