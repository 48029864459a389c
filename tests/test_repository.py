"""The repository stands alone: nothing reads outside it (a fresh clone has nothing beside it)."""

from __future__ import annotations

import re
from pathlib import Path


def _escapes(path: Path, repo: Path) -> list[str]:
    """Places in `path` that reach above the repository: `..` in a string literal that names a
    path, or a chain of `.parent` / `.parents[N]` on `__file__` deeper than the file's own depth."""
    import ast

    depth = len(path.relative_to(repo).parts)  # parents a file may climb to reach the root
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        # `..` is also what path-traversal tests send as hostile input; a path to shared/ is never that
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and "shared" in node.value:
            if re.search(r"(^|/)\.\.(/|$)", node.value):
                found.append(f"line {node.lineno}: {node.value!r}")
        if isinstance(node, (ast.Attribute, ast.Subscript)) and "__file__" in ast.unparse(node):
            text = ast.unparse(node)
            climbs = text.count(".parent") - text.count(".parents")
            climbs += sum(int(n) + 1 for n in re.findall(r"\.parents\[(\d+)\]", text))
            if climbs > depth:
                found.append(f"line {node.lineno}: {text}")
    return sorted(found, key=lambda f: int(f.split(":")[0].split()[1]))


def test_no_test_reads_outside_the_repository():
    """A fresh clone has nothing beside it: no test, bench or stage may read `../anything`."""
    repo = Path(__file__).resolve().parent.parent
    files = [*(repo / "tests").rglob("*.py"), *(repo / "bench").glob("*.py"), *(repo / "tasks").rglob("*.py"),
             *(repo / "remote").rglob("*.py"),
             repo / "dodo.py"]
    escapes = {str(p.relative_to(repo)): e for p in files if (e := _escapes(p, repo))}
    assert not escapes, escapes


def test_the_escape_check_can_fail(tmp_path):
    repo = tmp_path
    (repo / "tests").mkdir()
    bad = repo / "tests" / "bad.py"
    beside = "shared"  # planted escapes, spelt so that no grep for them trips on this test itself
    bad.write_text(f'from pathlib import Path\nA = Path(__file__).resolve().parents[{2}] / "{beside}"\n'
                   f'B = Path(__file__).parent.parent.parent\nC = "{".."}/{beside}/DESIGN.md"\n'
                   'OK = Path(__file__).resolve().parent.parent\n')
    found = _escapes(bad, repo)
    assert [f.split(":")[0] for f in found] == ["line 2", "line 3", "line 4"], found


def test_the_documents_the_code_cites_are_in_the_repository():
    """A docstring that sends a newcomer to docs/... or to the seed's sections must find them in a clone."""
    repo = Path(__file__).resolve().parent.parent
    sources = [p for folder in ("tasks", "remote", "bench", "tests") for p in (repo / folder).rglob("*.py")]
    cited = {m for p in [*sources, repo / "dodo.py"] for m in re.findall(r"docs/[\w./-]+\.(?:md|json)", p.read_text())}
    if any("seed §" in p.read_text() for p in sources):
        cited.add("docs/seed.md")
    assert cited and not [c for c in cited if not (repo / c).is_file()]
