"""The local web page (`doit serve`): a button over the same doit pipeline, and its record made visible.

Needs the `web` extra (Starlette, uvicorn): dodo.py imports only this face, the page's code loads when
`doit serve` runs.
"""

from __future__ import annotations

from typing import Any

from tasks.context import RunContext


def serve(ctx: RunContext, dodo: str, host: str, port: int) -> Any:
    """`doit serve`: the page, or what to install when the `web` extra is missing."""
    try:
        from tasks.web.app import serve as run_server
    except ModuleNotFoundError as exc:
        from doit.exceptions import TaskFailed

        return TaskFailed(f"the web page needs the `web` extra ({exc.name} is missing): pip install -e '.[web]'")
    run_server(ctx, dodo, host, port)
    return None
