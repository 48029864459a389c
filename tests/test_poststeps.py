"""Post-steps end to end: adapter.gguf, Modelfile, the latest link, user commands, `doit report`."""

from __future__ import annotations

import os

from tests.helpers import EXAMPLES, make_project, ran

GOOD_DAY, BAD_DAY = "2026-11-20", "2026-11-21"


def test_post_steps_latest_link_and_report(tmp_path):
    marker = tmp_path / "posted.txt"
    builder = f"[ {{date}} = {BAD_DAY} ] && exit 1; cat {EXAMPLES}/*.jsonl > {{out}}"
    proj = make_project(tmp_path / "proj", dataset={"builder": "command", "command": builder},
                        post={"commands": [f"echo {{date}} {{gguf}} >> {marker}", "true"]})
    proj.doit("full_cycle", "--date", GOOD_DAY, check=True)
    out_root = proj.root / "out" / "adapters"
    assert (out_root / GOOD_DAY / "adapter.gguf").stat().st_size > 0
    modelfile = (out_root / GOOD_DAY / "Modelfile").read_text()
    assert "ADAPTER ./adapter.gguf" in modelfile and "FROM tiny" in modelfile
    assert os.readlink(out_root / "latest") == GOOD_DAY
    assert marker.read_text().split() == [GOOD_DAY, str(out_root / GOOD_DAY / "adapter.gguf")]
    proj.date = GOOD_DAY
    post = proj.summary["post_steps"]
    assert [c["exit_code"] for c in post["commands"]] == [0, 0]
    assert post["gguf"]["validated"]["pairs"] == 8  # qwen3_moe, the default shape: q/k/v/o in 2 layers

    again = proj.doit("full_cycle", "--date", GOOD_DAY, check=True).stdout
    assert not any(ran(again, s) for s in ("post_gguf", "post_modelfile", "post_latest", "post_commands"))

    failed = proj.doit("full_cycle", "--date", BAD_DAY)
    assert failed.returncode != 0
    assert os.readlink(out_root / "latest") == GOOD_DAY, "a failed run moved latest"

    report = proj.doit("report", check=True).stdout
    assert GOOD_DAY in report and BAD_DAY in report and "final loss" in report
    png = proj.root / "metahuman-runs" / GOOD_DAY / "loss.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_failing_user_post_step_fails_the_run_and_is_recorded(tmp_path):
    proj = make_project(tmp_path, post={"commands": ["exit 7"]})
    proc = proj.doit("full_cycle")
    assert proc.returncode != 0
    summary = proj.summary
    assert summary["post_steps"]["commands"] == [{"command": "exit 7", "exit_code": 7}]
    assert summary["training_success"] is True and summary["success"] is False
    assert "post-step exited with 7" in summary["error"]


def _stand_in(folder, name: str, body: str):
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / name
    tool.write_text("#!/bin/sh\n" + body)
    tool.chmod(0o755)
    return tool


def test_ollama_that_accepts_the_adapter(tmp_path):
    bin_dir = tmp_path / "bin"
    _stand_in(bin_dir, "ollama", f'echo "$@" >> {tmp_path}/ollama.log\ngrep -q ADAPTER "$4" && echo success\n')
    proj = make_project(tmp_path / "proj")
    proj.env["PATH"] = f"{bin_dir}:{proj.env['PATH']}"
    proj.doit("full_cycle", check=True)
    outcome = proj.summary["post_steps"]["modelfile"]
    assert outcome["runtime"] == "ollama ADAPTER" and outcome["ollama"].startswith("created fullcycle-")
    assert (tmp_path / "ollama.log").read_text().startswith("create fullcycle-")


def test_ollama_that_refuses_falls_back_to_a_merge_then_to_llama_server(tmp_path):
    bin_dir = tmp_path / "bin"
    _stand_in(bin_dir, "ollama", 'if grep -q ADAPTER "$4"; then echo "Error: loras are not yet implemented" >&2; exit 1; fi\n'
                                 'echo created\n')
    proj = make_project(tmp_path / "proj")
    proj.env["PATH"] = f"{bin_dir}:{proj.env['PATH']}"
    proj.doit("full_cycle", check=True)
    outcome = proj.summary["post_steps"]["modelfile"]
    assert outcome["runtime"] == "llama-server --lora" and "no [post] base_gguf" in outcome["why"]
    assert "loras are not yet implemented" in outcome["ollama"]
    assert "--lora" in (proj.root / "out" / "adapters" / proj.date / "serve-with-llama-server.sh").read_text()

    base = tmp_path / "base.gguf"
    base.write_bytes(b"GGUF")
    _stand_in(bin_dir, "llama-export-lora", 'while [ $# -gt 0 ]; do [ "$1" = -o ] && cp "$0" "$2"; shift; done\n')
    settings = proj.root / "fullcycle.toml"
    settings.write_text(settings.read_text() + f'[post]\nbase_gguf = "{base}"\n')
    proj.doit("forget", "post_modelfile")
    proj.doit("post_modelfile", check=True)
    outcome = proj.summary["post_steps"]["modelfile"]
    assert outcome["runtime"] == "ollama FROM merged.gguf", outcome
    modelfile = (proj.root / "out" / "adapters" / proj.date / "Modelfile").read_text()
    assert "FROM ./merged.gguf" in modelfile and "ADAPTER" not in modelfile


def test_a_post_step_that_cannot_apply_is_a_warning_not_a_failure(tmp_path):
    """An architecture llama.cpp has no GGUF LoRA for: the adapter is home, the run succeeds, and the
    summary, the console and the log say which post-steps were skipped and why."""
    import json

    proj = make_project(tmp_path / "proj")
    proj.doit("full_cycle", check=True)
    base = proj.adapter / "base_model_config.json"
    base.write_text(json.dumps({**json.loads(base.read_text()), "architectures": ["MambaForCausalLM"]}))
    run = proj.doit("full_cycle", check=True)
    assert ran(run.stdout, "post_gguf") and "full_cycle SUCCEEDED" in run.stdout
    summary = proj.summary
    assert summary["success"] is True and summary["training_success"] is True and summary["error"] is None
    assert summary["post_steps"]["gguf"]["skipped"].startswith("no adapter.gguf: llama.cpp has no GGUF LoRA")
    assert summary["post_steps"]["modelfile"]["skipped"].startswith("no Modelfile: there is no adapter.gguf")
    assert [w.split(":")[0] for w in summary["warnings"]] == ["post-step gguf skipped", "post-step modelfile skipped"]
    assert "warning: post-step gguf skipped" in run.stdout
    assert not (proj.adapter.parent / "adapter.gguf").exists() and not (proj.adapter.parent / "Modelfile").exists()
    assert os.readlink(proj.root / "out" / "adapters" / "latest") == proj.date  # the adapter is today's
