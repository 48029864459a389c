"""Any path layout a user has: the seed's absolute PROJECT_ROOT, spaces, templates built on
{out_root}, a settings file elsewhere. Run folders are known from the index the runs write."""

from __future__ import annotations

import dataclasses
import os
import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from tasks.core import paths as layout
from tasks.core.settings import SettingsError, load
from tests.helpers import make_project, write_settings


def _seed_layout(root: Path) -> dict[str, str]:
    """Seed §2.1, under an absolute PROJECT_ROOT."""
    return {"out_root": f"{root}/out/adapters/{{date}}", "work_local": f"{root}/metahuman-runs/{{date}}",
            "raw_data_file": "{out_root}/{date}.jsonl", "final_adapter_dir": "{out_root}/adapter",
            "trainer_log": f"{root}/docs/run_logs/{{date}}/trainer.log"}


@pytest.mark.parametrize("style", ["seed-absolute", pytest.param("out_root-based", marks=pytest.mark.slow)])
def test_full_cycle_report_reap_and_latest_in_any_layout(tmp_path, style):
    root = tmp_path / "my projects" / "metahuman"  # a space, and not the working directory
    elsewhere = tmp_path / "settings elsewhere"
    elsewhere.mkdir(parents=True)
    if style == "seed-absolute":
        paths = _seed_layout(root)
    else:  # every date's files under its out_root: every run folder is called "run"
        paths = {"out_root": "results/{date}", "work_local": "{out_root}/run", "trainer_log": "{out_root}/run/trainer.log"}
    proj = make_project(elsewhere, project={"root": str(root)}, paths=paths)
    for date in ("2026-11-26", "2026-11-27"):
        proj.doit("full_cycle", "--date", date, check=True)
    settings = dataclasses.replace(_load(proj), date="2026-11-27")
    run = layout.run_paths(settings)
    assert run.summary_file.is_file() and (run.final_adapter_dir / "adapter_model.safetensors").is_file()
    assert [d for d, _ in layout.run_folders(settings)] == ["2026-11-26", "2026-11-27"]
    link = layout.latest_link(settings)
    assert link.resolve() == run.out_root.resolve()
    report = proj.doit("report", check=True).stdout
    assert "2026-11-26" in report and "2026-11-27" in report and "Traceback" not in report
    reap = proj.doit("reap_pods", check=True)
    assert "Traceback" not in reap.stdout + reap.stderr


def _load(proj) -> object:
    old = os.environ.get("FULLCYCLE_CONFIG")
    os.environ["FULLCYCLE_CONFIG"] = proj.env["FULLCYCLE_CONFIG"]
    try:
        return load()
    finally:
        if old is None:
            os.environ.pop("FULLCYCLE_CONFIG")
        else:
            os.environ["FULLCYCLE_CONFIG"] = old


@pytest.mark.parametrize(("paths", "message"), [
    ({"work_local": "runs/all"}, "[paths] work_local 'runs/all' must contain {date} or {out_root}"),
    ({"out_root": "out/{out_root}"}, "names {out_root}; it may use {date}"),
    ({"cache_dir": ".cache/{date}"}, "it may use no {name} (it is shared by every date)"),
    ({"trainer_log": "logs/{day}/t.log"}, "names {day}"),
    ({"work_local": "runs/{date"}, "is not a valid template"),
])
def test_path_templates_are_checked_when_the_settings_load(tmp_path, monkeypatch, paths, message):
    monkeypatch.setenv("FULLCYCLE_CONFIG", str(write_settings(tmp_path, {"paths": paths})))
    with pytest.raises(SettingsError) as err:
        load()
    assert message in str(err.value)


# --------------------------------------------------------------------------- properties, no doit

segment = st.text(alphabet=string.ascii_letters + string.digits + " _-.", min_size=1, max_size=8).filter(
    lambda s: s.strip(". ") == s and s not in (".", ".."))
dates = st.dates(min_value=__import__("datetime").date(2020, 1, 1), max_value=__import__("datetime").date(2030, 12, 31))


@st.composite
def layouts(draw):
    absolute = draw(st.booleans())
    base = "/".join(draw(st.lists(segment, min_size=1, max_size=3)))
    out_root = f"{base}/{{date}}" + ("/" + draw(segment) if draw(st.booleans()) else "")
    work = draw(st.sampled_from(["runs/{date}", "{out_root}/run", "x/{date}/y"]))
    return {"out_root": out_root, "work_local": work, "absolute": absolute}


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layout_=layouts(), run_dates=st.lists(dates, min_size=1, max_size=4, unique=True))
def test_any_template_finds_its_runs_and_latest_points_at_the_newest(tmp_path_factory, layout_, run_dates):
    root = tmp_path_factory.mktemp("layout")
    out_root = (f"{root}/" if layout_["absolute"] else "") + layout_["out_root"]
    path = write_settings(root, {"paths": {"out_root": out_root, "work_local": layout_["work_local"]}})
    os.environ["FULLCYCLE_CONFIG"] = str(path)
    try:
        base = load()
    finally:
        os.environ.pop("FULLCYCLE_CONFIG")
    seen = {}
    for day in run_dates:
        run = layout.run_paths(dataclasses.replace(base, date=day.isoformat()))
        run.work_local.mkdir(parents=True, exist_ok=True)
        layout.remember_run(run)
        seen[day.isoformat()] = run
    assert len({r.work_local for r in seen.values()}) == len(seen), "two dates share a run folder"
    assert [d for d, _ in layout.run_folders(base)] == sorted(seen)
    assert all(folder == seen[d].work_local for d, folder in layout.run_folders(base))
    links = {layout.latest_link(dataclasses.replace(base, date=d)) for d in seen}
    assert len(links) == 1, "latest moved with the date"
    newest = seen[max(seen)]
    target = Path(os.path.relpath(newest.out_root, next(iter(links)).parent))
    assert (next(iter(links)).parent / target).resolve() == newest.out_root.resolve()
