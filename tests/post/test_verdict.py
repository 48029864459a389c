"""Is today's adapter better than yesterday's? Held-out loss on the pod, verdict, promotion, training on.

The pipeline tests train the tiny model for real (local provider): the evaluation runs in the
trainer's process on the loaded model."""

from __future__ import annotations

import json
import os

import pytest

from tasks.post import verdict
from tests.helpers import make_project

EVAL = {"fraction": 0.25, "min_samples": 4, "max_samples": 8, "answers": 2, "max_new_tokens": 8}
LEARNS = {"learning_rate": 0.01, "num_train_epochs": 3}  # what the tiny model needs to learn the notes' words


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """One base model for every date (the built-in tiny one is rebuilt from each day's data): a dense
    tiny qwen2, which learns the notes' words in a few steps."""
    from tasks.data import cleaning as dataset
    from tasks.model import tiny as tinymodel
    from tests.helpers import EXAMPLES

    folder = tmp_path_factory.mktemp("base")
    raw = folder / "raw.jsonl"
    raw.write_bytes(b"".join(p.read_bytes() for p in sorted(EXAMPLES.glob("*.jsonl"))))
    dataset.clean(raw, folder / "clean.jsonl")
    return tinymodel.build(folder / "clean.jsonl", folder / "model", {"architecture": "qwen2"})


@pytest.mark.parametrize(("measured", "want"), [
    ({"adapter_loss": 2.0, "previous_loss": 2.5, "base_loss": 3.0}, "better"),
    ({"adapter_loss": 2.51, "previous_loss": 2.5, "base_loss": 3.0}, "not_worse"),
    ({"adapter_loss": 2.7, "previous_loss": 2.5, "base_loss": 3.0}, "worse"),
    ({"adapter_loss": 2.7, "previous_loss": None, "base_loss": 3.0}, "better"),  # no previous: against the base
    ({"adapter_loss": None, "previous_loss": None, "base_loss": None}, None),
])
def test_the_verdict(measured, want):
    assert verdict.verdict(measured, 0.02)[0] == want


@pytest.mark.slow
def test_three_dates_promotion_and_a_worse_adapter_kept(tmp_path, base):
    import shutil

    from tests.helpers import EXAMPLES

    notes = tmp_path / "notes"
    shutil.copytree(EXAMPLES, notes)
    proj = make_project(tmp_path / "proj", source=notes, real_training=True, eval=EVAL,
                        training={**LEARNS, "base_model": str(base)})
    days = ("2026-11-20", "2026-11-21", "2026-11-22")
    proj.doit("full_cycle", "--date", days[0], check=True)
    proj.doit("full_cycle", "--date", days[1], check=True)
    # The third day's data drowns the notes in noise: the held-out notes (the first ones by content,
    # [eval] max_samples) get a worse loss from an adapter trained mostly on the noise.
    (notes / "zz-noise.jsonl").write_text("".join(
        json.dumps({"instruction": f"zq {i} zq", "output": "xk vv " * 12 + str(i)}) + "\n" for i in range(120)))
    third = proj.doit("full_cycle", "--date", days[2], check=True)
    summaries = [json.loads((proj.root / "metahuman-runs" / d / "run-summary.json").read_text()) for d in days]
    e1, e2, e3 = (s["eval"] for s in summaries)
    for e in (e1, e2, e3):
        assert e["heldout_samples"] >= 4 and e["base_loss"] > 0 and e["seconds"] > 0
    assert e1["previous_loss"] is None and e1["previous_why"] and e1["verdict"] == "better" and e1["promoted"]
    assert e2["previous_date"] == days[0] and e2["previous_loss"] is not None and e2["promoted"] is True
    assert e2["verdict"] in ("better", "not_worse")
    assert e2["adapter_loss"] == e1["adapter_loss"]  # the same data and seed train the same adapter
    assert e3["previous_date"] == days[1] and e3["verdict"] == "worse" and e3["promoted"] is False, (e1, e2, e3)
    assert summaries[2]["success"] is True and any(w.startswith("eval: today's adapter is worse")
                                                   for w in summaries[2]["warnings"])
    assert "warning: eval: today's adapter is worse" in third.stdout
    latest = proj.root / "out" / "adapters" / "latest"
    assert os.readlink(latest) == days[1], "a worse adapter moved latest"
    assert (proj.root / "out" / "adapters" / days[2] / "adapter" / "adapter_model.safetensors").is_file()
    answers = json.loads((proj.root / "metahuman-runs" / days[1] / "eval.json").read_text())["answers"]
    assert len(answers) == 2 and all(a["base"] is not None and a["previous"] is not None and a["today"] is not None
                                     for a in answers)
    report = proj.doit("report", check=True).stdout
    assert "eval loss" in report and "worse (kept, not promoted)" in report
    for s in summaries:
        print(f"\n{s['date']}: base {s['eval']['base_loss']}, previous {s['eval']['previous_loss']}, today "
              f"{s['eval']['adapter_loss']} -> {s['eval']['verdict']} (promoted {s['eval']['promoted']}); eval "
              f"{s['eval']['seconds']}s vs training {s['training']['seconds']}s")


@pytest.mark.slow
def test_training_on_from_the_last_promoted_adapter(tmp_path, base):
    proj = make_project(tmp_path / "proj", real_training=True, eval=EVAL, training={**LEARNS, "base_model": str(base)})
    proj.doit("full_cycle", "--date", "2026-11-20", check=True)
    first = json.loads((proj.root / "out" / "adapters" / "2026-11-20" / "adapter" / "metrics.json").read_text())
    settings = proj.root / "fullcycle.toml"
    settings.write_text(settings.read_text().replace("[training]", '[training]\nstart_from = "latest"'))
    out = proj.doit("full_cycle", "--date", "2026-11-21", check=True).stdout
    second = json.loads((proj.root / "out" / "adapters" / "2026-11-21" / "adapter" / "metrics.json").read_text())
    summary = json.loads((proj.root / "metahuman-runs" / "2026-11-21" / "run-summary.json").read_text())
    assert summary["eval"]["started_from"] == "2026-11-20"
    assert "LoRA initialised from the adapter of 2026-11-20" in out
    # step 1 starts where the previous adapter ended, not where the base model starts
    assert second["steps"][0]["loss"] < first["steps"][0]["loss"] - 0.05, (first["steps"][:2], second["steps"][:2])


@pytest.mark.slow  # the fast tier keeps a minute; the whole suite runs it
def test_a_start_from_that_does_not_fit_is_refused_before_renting(tmp_path):
    proj = make_project(tmp_path / "proj", eval=EVAL)  # the stand-in's adapter has rank 8 too
    proj.doit("full_cycle", "--date", "2026-11-20", check=True)
    settings = proj.root / "fullcycle.toml"
    settings.write_text(settings.read_text().replace("[training]", '[training]\nstart_from = "latest"\nlora_rank = 4'))
    proc = proj.doit("full_cycle", "--date", "2026-11-21")
    assert proc.returncode != 0
    summary = json.loads((proj.root / "metahuman-runs" / "2026-11-21" / "run-summary.json").read_text())
    assert "has rank 8 (today's lora_rank is 4)" in summary["error"] and summary["pod_id"] is None


def _latest(proj) -> str:
    return os.readlink(proj.root / "out" / "adapters" / "latest")


def test_a_failed_evaluation_is_never_promoted(tmp_path):
    """The stand-in plants a failure in its measurement on the second day: the run succeeds (the adapter
    is home), the verdict says failed, and latest stays on the first day's adapter."""
    proj = make_project(tmp_path / "proj", eval=EVAL)
    proj.doit("full_cycle", "--date", "2026-11-20", check=True)
    assert _latest(proj).endswith("2026-11-20")
    proj.env["STANDIN_EVAL"] = "fail"
    proj.doit("full_cycle", "--date", "2026-11-21", check=True)
    summary = json.loads((proj.root / "metahuman-runs" / "2026-11-21" / "run-summary.json").read_text())
    assert summary["success"] is True and summary["eval"]["verdict"] == "failed"
    assert summary["eval"]["promoted"] is False and "planted in the evaluation" in summary["eval"]["why"]
    assert any(w.startswith("eval failed:") for w in summary["warnings"])
    assert _latest(proj).endswith("2026-11-20")


@pytest.mark.slow
def test_an_exception_planted_in_the_real_evaluation_keeps_latest(tmp_path, base):
    """The real trainer, its measurement made to raise: the adapter comes home, unmeasured, unpromoted."""
    from tests.helpers import REMOTE

    planted = tmp_path / "planted_trainer.py"
    planted.write_text(
        "import runpy, sys\nfrom pathlib import Path\n"
        "sys.path.insert(0, str(Path(__file__).resolve().parent))\n"
        "from trainer import measure\n"
        "def boom(*args, **kwargs):\n    raise RuntimeError('planted in the evaluation')\n"
        "measure._losses_and_answers = boom\n"
        f"runpy.run_path({str(REMOTE / 'train_unsloth.py')!r}, run_name='__main__')\n")
    proj = make_project(tmp_path / "proj", real_training=True, eval=EVAL, training={"base_model": str(base)},
                        remote={"trainer": str(planted)})
    proj.doit("full_cycle", check=True)
    summary = proj.summary
    assert summary["training_success"] is True and summary["eval"]["verdict"] == "failed"
    assert "RuntimeError: planted in the evaluation" in summary["eval"]["why"] and summary["eval"]["promoted"] is False
    assert not (proj.root / "out" / "adapters" / "latest").exists()
