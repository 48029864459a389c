"""Local post-steps after a successful training (seed §4): GGUF LoRA, Ollama Modelfile, the
`latest` link, and the user's own commands. Each records its outcome in post-steps.json, which the
summary reports."""

from __future__ import annotations

import logging
import os
import shlex
import shutil
from pathlib import Path
from typing import Any

from tasks.context import RunContext
from tasks.errors import FullcycleError
from tasks.files import read_json, write_json

log = logging.getLogger("fullcycle")

CHATML = ('{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}'
          '<|im_start|>assistant\n')
LLAMA3 = ('{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>'
          '{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n')


def gguf_path(ctx: RunContext) -> Path:
    return ctx.paths.out_root / "adapter.gguf"


def modelfile_path(ctx: RunContext) -> Path:
    return ctx.paths.out_root / "Modelfile"


def latest_link(ctx: RunContext) -> Path:
    return ctx.paths.out_root.parent / "latest"


def post_file(ctx: RunContext) -> Path:
    return ctx.paths.work_local / "post-steps.json"


def _record(ctx: RunContext, step: str, outcome: dict[str, Any]) -> None:
    data = read_json(post_file(ctx)) or {}
    data[step] = outcome
    write_json(post_file(ctx), data)


def make_gguf(ctx: RunContext) -> None:
    from tasks import gguf_lora

    log.info("Post-steps: converting the adapter for local runtimes…")
    out = gguf_path(ctx)
    partial = out.with_name(out.name + ".partial")
    written = gguf_lora.convert(ctx.paths.final_adapter_dir, partial)
    check = gguf_lora.validate(partial)
    os.replace(partial, out)
    written["path"] = str(out)
    size = (ctx.paths.final_adapter_dir / "adapter_model.safetensors").stat().st_size
    log.info("GGUF LoRA written: %s (%d bytes; safetensors %d bytes; %d A/B pairs, %s)", out, written["bytes"], size,
             check["pairs"], check["architecture"])
    _record(ctx, "gguf", {**written, "safetensors_bytes": size, "validated": check})


def make_modelfile(ctx: RunContext) -> None:
    base = (read_json(ctx.paths.final_adapter_dir / "base_model_config.json") or {}).get("model_type", "")
    source = ctx.settings.post.ollama_from or ctx.settings.training.base_model
    template = LLAMA3 if base == "llama" else CHATML
    stop = "<|eot_id|>" if base == "llama" else "<|im_end|>"
    text = (f"# Ollama Modelfile for the {ctx.paths.date} adapter. FROM must name the base model in Ollama's\n"
            f"# library or a GGUF of it ([post] ollama_from); the adapter does not work on another base.\n"
            f"FROM {source}\nADAPTER ./adapter.gguf\nTEMPLATE \"\"\"{template}\"\"\"\nPARAMETER stop {stop}\n")
    modelfile_path(ctx).write_text(text)
    outcome: dict[str, Any] = {"path": str(modelfile_path(ctx)), "from": source, "ollama": "not on PATH"}
    ollama = shutil.which("ollama")
    if ollama and ctx.settings.post.ollama_create:
        import sh

        name = ctx.settings.post.ollama_model_name.replace("{date}", ctx.paths.date)
        try:  # optional: a refusal (e.g. ADAPTER unsupported by this Ollama) is reported, never fatal
            sh.Command(ollama)("create", name, "-f", str(modelfile_path(ctx)), _cwd=str(ctx.paths.out_root), _timeout=600)
            outcome["ollama"] = f"created {name}"
        except (sh.ErrorReturnCode, sh.TimeoutException) as exc:
            outcome["ollama"] = f"ollama create failed: {str(exc)[-300:]}"
    log.info("Modelfile written: %s (ollama: %s)", modelfile_path(ctx), outcome["ollama"])
    _record(ctx, "modelfile", outcome)


def newest_successful_date(ctx: RunContext) -> str | None:
    """The newest date whose adapter landed; a run whose training failed never counts."""
    from tasks.reaper import run_folders

    dates = []
    for folder in run_folders(ctx):
        summary = read_json(folder / "run-summary.json") or {}
        if summary.get("training_success") and Path(summary.get("adapter_path", "")).is_dir():
            dates.append(summary.get("date") or folder.name)
    return max(dates) if dates else None


def update_latest(ctx: RunContext) -> None:
    newest = newest_successful_date(ctx)
    link = latest_link(ctx)
    if newest is None:
        log.info("latest: no successful run yet; %s left alone", link)
        return
    tmp = link.with_name(".latest.tmp")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(newest)  # relative, so the folder can move
    os.replace(tmp, link)
    log.info("latest -> %s", newest)
    _record(ctx, "latest", {"link": str(link), "target": newest})


def latest_is_current(ctx: RunContext) -> bool:
    link = latest_link(ctx)
    return link.is_symlink() and os.readlink(link) == newest_successful_date(ctx)


def run_user_commands(ctx: RunContext) -> None:
    """The user's own post-steps, in order; their exit codes go into the summary."""
    import sh

    names = {"{date}": ctx.paths.date, "{adapter_dir}": str(ctx.paths.final_adapter_dir),
             "{gguf}": str(gguf_path(ctx)), "{summary}": str(ctx.paths.summary_file)}
    results = []
    for template in ctx.settings.post.commands:
        command = template
        for key, value in names.items():
            command = command.replace(key, shlex.quote(value))
        log.info("post-step: %s", command)
        proc = sh.bash("-c", command, _cwd=str(ctx.paths.project_root), _ok_code=range(256), _return_cmd=True,
                       _out=lambda line: log.info("post | %s", line.rstrip()),
                       _err=lambda line: log.info("post | %s", line.rstrip()))
        results.append({"command": command, "exit_code": proc.exit_code})
        if proc.exit_code != 0:
            _record(ctx, "commands", results)
            raise FullcycleError(f"post-step exited with {proc.exit_code}: {command}")
    _record(ctx, "commands", results)
