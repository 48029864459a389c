"""The Ollama post-step (tasks/post/ollama.py): the Modelfile serves the trained format; an Ollama that
accepts the adapter, and one that refuses it (merge, then llama-server)."""

from __future__ import annotations

import json

import pytest

from tests.helpers import make_project, trainer


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


@pytest.mark.slow  # the fast tier keeps a minute; the whole suite runs it
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


def test_the_modelfile_serves_the_trained_format(tmp_path, monkeypatch, qwen3_tokenizer):
    from tasks.context import RunContext
    from tasks.post import ollama

    proj = make_project(tmp_path)
    monkeypatch.setenv("FULLCYCLE_CONFIG", proj.env["FULLCYCLE_CONFIG"])
    ctx = RunContext.load(date=proj.date)
    ctx.paths.final_adapter_dir.mkdir(parents=True)
    (ctx.paths.final_adapter_dir / "metrics.json").write_text(json.dumps(
        {"prompt_format": trainer("data").prompt_format(qwen3_tokenizer)}))
    text = ollama._modelfile_text(ctx, "qwen3:30b-a3b", adapter=True)
    assert ('TEMPLATE """<|im_start|>user\n{{ .Prompt }}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n'
            '{{ .Response }}<|im_end|>"""') in text
    assert "PARAMETER stop <|im_end|>" in text
