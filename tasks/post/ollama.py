"""The Ollama post-step: a Modelfile that serves the adapter with the very prompt format it was
trained on, `ollama create` when Ollama is installed, and the fallbacks for an Ollama that refuses
ADAPTER (merge into the base GGUF, or a `llama-server --lora` command line)."""

from __future__ import annotations

import logging
import shlex
import shutil
from pathlib import Path
from typing import Any

from tasks.context import RunContext
from tasks.core.files import read_record
from tasks.core.secrets import child_env
from tasks.post.outcomes import gguf_path, modelfile_path, record, skip, skipped

EXPORT_LORA = "llama-export-lora"  # llama.cpp's merge tool, found on PATH

log = logging.getLogger("fullcycle")

CHATML = ('{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}'
          '<|im_start|>assistant\n')
LLAMA3 = ('{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>'
          '{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n')



def _go_literal(text: str) -> str:
    """Text inside an Ollama (Go) template: only a `{{` could be read as an action."""
    return text.replace("{{", '{{ "{{" }}')


def served_template(ctx: RunContext) -> tuple[str, str] | None:
    """The prompt exactly as the trainer rendered it (metrics.json's prompt_format: the tokenizer's
    own chat template, thinking off), as an Ollama TEMPLATE and its stop token."""
    fmt = (read_record(ctx.paths.final_adapter_dir / "metrics.json")).get("prompt_format")
    if not fmt or not fmt.get("eos"):
        return None
    template = (_go_literal(fmt["user_prefix"]) + "{{ .Prompt }}" + _go_literal(fmt["assistant_prefix"])
                + "{{ .Response }}" + _go_literal(fmt["eos"]))
    return template, fmt["eos"]


def _modelfile_text(ctx: RunContext, source: str, adapter: bool) -> str:
    base = (read_record(ctx.paths.final_adapter_dir / "base_model_config.json")).get("model_type", "")
    template = LLAMA3 if base == "llama" else CHATML
    stop = "<|eot_id|>" if base == "llama" else "<|im_end|>"
    served = served_template(ctx)
    if served:
        template, stop = served
    head = (f"# Ollama Modelfile for the {ctx.paths.date} adapter. FROM must name the base model in Ollama's\n"
            f"# library or a GGUF of it ([post] ollama_from); the adapter does not work on another base.\n"
            if adapter else f"# Ollama Modelfile for the {ctx.paths.date} adapter, merged into the base GGUF.\n")
    return (head + f"FROM {source}\n" + ("ADAPTER ./adapter.gguf\n" if adapter else "")
            + f"TEMPLATE \"\"\"{template}\"\"\"\nPARAMETER stop {stop}\n")


def _ollama_create(ctx: RunContext, ollama: str, name: str) -> tuple[bool, str]:
    import sh

    try:
        proc = sh.Command(ollama)("create", name, "-f", str(modelfile_path(ctx)), _cwd=str(ctx.paths.out_root),
                                  _env=child_env(), _timeout=600, _ok_code=range(256), _return_cmd=True, _err_to_out=True)
    except sh.TimeoutException:
        return False, "ollama create timed out"
    said = str(proc).strip()[-300:]
    return proc.exit_code == 0, said or f"exit {proc.exit_code}"


def _merge(ctx: RunContext) -> tuple[Path | None, str]:
    """llama-export-lora: the adapter merged into the configured base GGUF."""
    import sh

    post = ctx.settings.post
    tool = shutil.which(EXPORT_LORA)
    if not post.base_gguf or not tool:
        return None, ("no [post] base_gguf configured" if not post.base_gguf
                      else f"{EXPORT_LORA} is not on PATH")
    merged = ctx.paths.out_root / "merged.gguf"
    proc = sh.Command(tool)("-m", str(Path(post.base_gguf).expanduser()), "--lora", str(gguf_path(ctx)),
                            "-o", str(merged), _env=child_env(), _ok_code=range(256), _return_cmd=True, _err_to_out=True, _timeout=3600)
    if proc.exit_code != 0 or not merged.is_file():
        return None, f"llama-export-lora failed: {str(proc).strip()[-300:]}"
    return merged, "merged with llama-export-lora"


def make_modelfile(ctx: RunContext) -> None:
    """The Modelfile with ADAPTER; `ollama create` when Ollama is there. Ollama has refused ADAPTER
    for qwen3/qwen3moe (0.12-0.29) and is reported to have dropped it (0.34.1): on any refusal,
    merge into the base GGUF (when configured) and create `FROM merged.gguf`, else leave a
    `llama-server --lora` command line that loads the adapter as it is."""
    if not gguf_path(ctx).is_file():
        modelfile_path(ctx).unlink(missing_ok=True)
        skip(ctx, "modelfile", f"no Modelfile: there is no adapter.gguf ({skipped(ctx, 'gguf') or 'not made'})")
        return
    source = ctx.settings.post.ollama_from or ctx.settings.training.base_model
    modelfile_path(ctx).write_text(_modelfile_text(ctx, source, adapter=True))
    outcome: dict[str, Any] = {"path": str(modelfile_path(ctx)), "from": source, "ollama": "not on PATH",
                               "runtime": "Modelfile with ADAPTER (ollama not run)"}
    ollama = shutil.which("ollama")
    judged = read_record(ctx.paths.eval_file)
    promoted = judged.get("promoted") is not False
    if ollama and ctx.settings.post.ollama_create and not promoted:
        outcome["ollama"] = f"not run: today's adapter was not promoted ({judged.get('verdict')}: {judged.get('why')})"
    elif ollama and ctx.settings.post.ollama_create:
        name = ctx.settings.post.ollama_model_name.replace("{date}", ctx.paths.date)
        ok, said = _ollama_create(ctx, ollama, name)
        outcome["ollama"] = f"created {name}" if ok else f"ollama create refused the adapter: {said}"
        outcome["runtime"] = "ollama ADAPTER" if ok else None
        if not ok:
            log.warning("ollama create refused the Modelfile with ADAPTER (%s): trying the fallbacks", said)
            merged, why = _merge(ctx)
            if merged:
                modelfile_path(ctx).write_text(_modelfile_text(ctx, f"./{merged.name}", adapter=False))
                ok, said = _ollama_create(ctx, ollama, name)
                outcome.update(runtime="ollama FROM merged.gguf" if ok else None, merged=str(merged),
                               ollama=f"created {name} from merged.gguf" if ok else f"ollama create failed: {said}")
            if not outcome["runtime"]:
                outcome.update(runtime="llama-server --lora", why=why, command=_write_serve(ctx))
    log.info("Modelfile written: %s (ollama: %s; runtime: %s)", modelfile_path(ctx), outcome["ollama"],
             outcome["runtime"])
    record(ctx, "modelfile", outcome)


def _write_serve(ctx: RunContext) -> str:
    """A command line that serves base + adapter without Ollama, kept beside the adapter."""
    base = ctx.settings.post.base_gguf or "<a GGUF of the base model>"
    command = (f"llama-server -m {shlex.quote(base)} "
               f"--lora {shlex.quote(str(gguf_path(ctx)))}")
    serve = ctx.paths.out_root / "serve-with-llama-server.sh"
    serve.write_text(f"#!/bin/sh\n# Ollama refused the adapter; llama.cpp's server loads it as it is.\nexec {command}\n")
    serve.chmod(0o755)
    log.info("Serve the adapter with: %s (also in %s)", command, serve)
    return command
