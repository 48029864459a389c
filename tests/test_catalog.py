"""The catalogue of stages (tasks/catalog.py): every body it names imports, and every "module:function"
reference in the code resolves, so a module that moves breaks this test instead of a run."""

from __future__ import annotations

import ast
import re

import pytest

from tasks import catalog
from tests.helpers import REPO

REF = re.compile(r"^tasks(\.\w+)+:\w+$")


@pytest.mark.parametrize("stage", catalog.STAGES, ids=[s.name for s in catalog.STAGES])
def test_every_stage_body_imports(stage):
    assert stage.body, f"{stage.name} names no body"
    body = catalog.resolve(stage.body)
    assert callable(body), stage.body


def _references() -> list[tuple[str, str]]:
    """Every "tasks.x.y:name" string in the code (bodies, up-to-date checks, teardowns)."""
    found = []
    for path in [*sorted((REPO / "tasks").rglob("*.py")), REPO / "dodo.py"]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and REF.match(node.value):
                found.append((str(path.relative_to(REPO)), node.value))
    return found


def test_every_reference_in_the_code_resolves():
    refs = _references()
    assert len(refs) >= len(catalog.STAGES) + 4, refs  # the bodies, and the up-to-date checks beside them
    broken = []
    for where, ref in refs:
        try:
            catalog.resolve(ref)
        except (ImportError, AttributeError) as exc:
            broken.append(f"{where}: {ref} ({exc})")
    assert not broken, broken


def test_a_reference_that_moved_fails():
    with pytest.raises((ImportError, AttributeError)):
        catalog.resolve("tasks.pod.nowhere:create_pod")
    with pytest.raises(AttributeError):
        catalog.resolve("tasks.pod.lifecycle:no_such_function")


def test_a_body_imports_nothing_until_it_runs():
    import subprocess
    import sys

    code = ("import sys; from tasks import catalog; b = catalog.body('upload'); "
            "print('tasks.pod.upload' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
