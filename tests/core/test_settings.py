"""Invalid settings fail at load, naming the file and field, before any provider is called."""

from __future__ import annotations

import pytest

from tasks.core.settings import SettingsError, load
from tests.helpers import make_project, write_settings


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({"training": {"learning_rate": -1}}, "[training] learning_rate: -1 is below the minimum"),
        ({"training": {"lora_rank": "eight"}}, "[training] lora_rank: expected an integer"),
        ({"training": {"learnig_rate": 0.1}}, "unknown setting [training] learnig_rate (did you mean 'learning_rate'?)"),
        ({"trainig": {}}, "unknown section [trainig] (did you mean 'training'?)"),
        ({"project": {"provider": "aws"}}, "[project] provider: 'aws' is not one of local, runpod"),
        ({"training": {"base_model": "not an id"}}, "neither 'tiny', a local path, nor an 'org/name' model id"),
        ({"training": {"quantize": "maybe"}}, "[training] quantize: 'maybe' is not one of auto, never, always"),
        ({"runpod": {"gpu_types": []}}, "[runpod] gpu_types: expected a non-empty list"),
        ({"runpod": {"watchdog_command": "runpodctl remove pod {pod_id}"}},
         "[runpod] watchdog_command is no longer a setting: the pod's watchdog ends the pod with its own key"),
        ({"ssh": {"train_timeout_h": 24}}, "[ssh] train_timeout_h is no longer a setting: a training is followed until"),
    ],
)
def test_bad_settings_name_the_field(tmp_path, monkeypatch, sections, message):
    path = write_settings(tmp_path, sections)
    monkeypatch.setenv("FULLCYCLE_CONFIG", str(path))
    with pytest.raises(SettingsError) as err:
        load()
    assert message in str(err.value)
    assert str(path) in str(err.value)


def test_date_sources_and_validation(tmp_path, monkeypatch):
    monkeypatch.setenv("FULLCYCLE_CONFIG", str(write_settings(tmp_path, {"project": {"date": "2026-01-02"}})))
    monkeypatch.delenv("FULLCYCLE_DATE", raising=False)
    assert load().date == "2026-01-02"
    monkeypatch.setenv("FULLCYCLE_DATE", "2026-03-04")
    assert load().date == "2026-03-04"
    assert load(date="2026-05-06").date == "2026-05-06"
    with pytest.raises(SettingsError, match="must be YYYY-MM-DD"):
        load(date="yesterday")
    with pytest.raises(SettingsError, match="not a calendar date"):
        load(date="2026-02-30")


def test_bad_config_stops_doit_before_any_stage(tmp_path):
    proj = make_project(tmp_path, training={"gradient_accumulation_steps": 0})
    proc = proj.doit("full_cycle")
    assert proc.returncode == 2
    assert "[training] gradient_accumulation_steps: 0 is below the minimum 1" in proc.stderr
    assert not (proj.work / "pod.json").exists() and not (proj.root / "out").exists()


def test_date_option_on_the_command_line(tmp_path):
    proj = make_project(tmp_path)
    proj.doit("write_config", "--date", "2026-11-20", check=True)
    assert (proj.root / "metahuman-runs" / "2026-11-20" / "config.json").is_file()


def test_doit_list_shows_every_stage_and_stays_light(tmp_path):
    proj = make_project(tmp_path)
    out = proj.doit("list", check=True).stdout
    for stage in ("build_dataset", "clean_dataset", "write_config", "create_pod", "upload", "train",
                  "download_adapter", "extract_adapter", "terminate_pod", "summarize", "full_cycle", "serve"):
        assert stage in out
    import subprocess
    import sys

    # What `doit list` does: import dodo.py and call every task creator (their file_dep, targets and
    # up-to-date checks are built then), without running any action.
    code = ("import sys; sys.argv=['doit','list']; import dodo; from doit.loader import load_tasks; "
            "tasks = load_tasks(vars(dodo)); assert len(tasks) >= 20, len(tasks); "
            "heavy=[m for m in ('torch','transformers','requests','peft','starlette','uvicorn','tasks.web.app') "
            "if m in sys.modules]; print(heavy)")
    probe = subprocess.run([sys.executable, "-c", code], cwd=str(proj.root.parent), env={**proj.env},
                           capture_output=True, text=True)
    assert probe.stdout.strip().endswith("[]"), probe.stdout + probe.stderr
