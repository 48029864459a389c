"""A post-step that cannot apply (tasks/post/outcomes.py) is a warning, never a failed run."""

from __future__ import annotations

import os

from tests.helpers import make_project, ran


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
