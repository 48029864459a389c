"""The trainer's entry point (remote/train_unsloth.py): thin, its steps in order, settings that must
come before torch set before anything imports it."""

from __future__ import annotations

from tests.helpers import REMOTE

ENTRY = REMOTE / "train_unsloth.py"


def test_the_allocator_setting_comes_before_torch():
    """torch's CUDA allocator reads PYTORCH_ALLOC_CONF when torch loads: the entry sets it before it
    imports a step, and no step imports torch when it is imported (only when it runs)."""
    import ast

    source = ENTRY.read_text()
    assert source.index('os.environ.setdefault("PYTORCH_ALLOC_CONF", "expandable_segments:True")') < source.index(
        "from trainer import")
    for step in sorted((REMOTE / "trainer").glob("*.py")):
        top = [n for n in ast.parse(step.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))]
        names = {a.name.split(".")[0] for n in top for a in n.names} | {(getattr(n, "module", "") or "").split(".")[0]
                                                                         for n in top}
        assert not names & {"torch", "transformers", "trl", "peft", "unsloth", "datasets"}, (step.name, names)
