"""The seed's contract: run_remote_training(opts) as one call, with the seed's keys and return value."""

from __future__ import annotations

import json

from tasks.context import RunContext
from tasks.data import build_dataset, clean_dataset, write_config
from tasks.model import build_tiny_model
from tasks.pipeline import run_remote_training
from tests.helpers import make_project


def test_run_remote_training_in_one_call(tmp_path, monkeypatch):
    proj = make_project(tmp_path)
    monkeypatch.setenv("FULLCYCLE_CONFIG", proj.env["FULLCYCLE_CONFIG"])
    ctx = RunContext.load(date=proj.date)
    # full-cycle's part (seed §2): dataset, config and the tiny model, through the same stage bodies
    for body in (build_dataset, clean_dataset, write_config, build_tiny_model):
        body(ctx)
    p = ctx.paths
    opts = {"DATE_STR": proj.date, "WORK_LOCAL": str(p.work_local), "OUT_ROOT": str(p.out_root),
            "FINAL_ADAPTER_DIR": str(p.final_adapter_dir), "RAW_DATA_FILE": str(p.raw_data_file),
            "CLEAN_DATA_FILE": str(p.clean_data_file), "CONFIG_FILE": str(p.config_file),
            "SUMMARY_FILE": str(p.summary_file), "samples_used": 36}
    result = run_remote_training(opts, ctx)
    assert set(result) == {"pod_id", "ssh_user", "ssh_host", "training_success", "terminated", "upload_verification"}
    assert result["training_success"] is True and result["terminated"] is True
    assert result["pod_id"].startswith("local-")
    assert result["upload_verification"].endswith("  config.json")
    summary = json.loads(p.summary_file.read_text())
    assert summary["samples_used"] == 36 and summary["training_success"] is True
    assert (p.final_adapter_dir / "adapter_model.safetensors").is_file()
