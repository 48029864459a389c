"""The user's own post-steps ([post] commands), run in order after a success; their exit codes go
into the summary, and the first that fails fails the run."""

from __future__ import annotations

import logging
import shlex

from tasks.context import RunContext
from tasks.core.errors import FullcycleError
from tasks.core.secrets import child_env
from tasks.post.outcomes import gguf_path, record

log = logging.getLogger("fullcycle")


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
        proc = sh.bash("-c", command, _cwd=str(ctx.paths.project_root), _env=child_env(), _ok_code=range(256),
                       _return_cmd=True,
                       _out=lambda line: log.info("post | %s", line.rstrip()),
                       _err=lambda line: log.info("post | %s", line.rstrip()))
        results.append({"command": command, "exit_code": proc.exit_code})
        if proc.exit_code != 0:
            record(ctx, "commands", results)
            raise FullcycleError(f"post-step exited with {proc.exit_code}: {command}")
    record(ctx, "commands", results)
