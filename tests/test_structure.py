"""The shape of the code: no import cycles inside tasks/, lazy imports included."""

from __future__ import annotations

import ast
from pathlib import Path

TASKS = Path(__file__).resolve().parent.parent / "tasks"


def _module(path: Path) -> str:
    parts = path.relative_to(TASKS.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(node: ast.If) -> bool:
    return isinstance(node.test, (ast.Name, ast.Attribute)) and ast.unparse(node.test).endswith("TYPE_CHECKING")


def imports(path: Path, known: set[str]) -> set[str]:
    """Every tasks module `path` imports at any depth (in functions too), except under TYPE_CHECKING,
    which never runs, and its own parent packages, which Python loads before it in any case."""
    tree = ast.parse(path.read_text())
    skipped = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If) and _type_checking(node)
               for n in ast.walk(node)}
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names}
        elif isinstance(node, ast.Call) and ast.unparse(node.func).endswith("import_module") and node.args:
            if isinstance(node.args[0], ast.Constant):
                found.add(node.args[0].value)
    me = _module(path)
    ancestors = {me.rsplit(".", n)[0] for n in range(1, me.count(".") + 1)}  # loaded before `me`, always
    return {m for m in found if m in known and m != me and m not in ancestors}


def graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in TASKS.rglob("*.py")}
    return {name: imports(path, set(files)) for name, path in files.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    found, state, stack = [], {}, []

    def visit(node: str) -> None:
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                found.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycles_in_tasks():
    found = cycles(graph())
    assert not found, "\n".join(" -> ".join(c) for c in found)


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_the_tiny_architectures_the_settings_offer_are_the_families():
    """settings.py offers tinymodel.ARCHITECTURES without importing families (light for doit list)."""
    from tasks import families, tinymodel

    built = {families.family(name).model_type for name in tinymodel.ARCHITECTURES}
    assert built == set(families.FAMILIES), set(families.FAMILIES) ^ built
    assert tinymodel.SPEC["architecture"] in tinymodel.ARCHITECTURES
