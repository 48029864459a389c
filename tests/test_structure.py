"""The shape of the code: packages by concern, each small, lower layers never importing higher ones,
no import cycle (lazy imports included), and no module too long to read."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
TASKS = REPO / "tasks"
MAX_MODULES = 12  # per package, and at the top of tasks/
MAX_LINES = 400  # per module: past that a module does more than one thing
# Lowest first: a package may import its own layer and the ones before it, never one after it.
LAYERS = (
    {"tasks.core"},
    {"tasks.catalog", "tasks.context"},
    {"tasks.transport", "tasks.model", "tasks.record"},
    {"tasks.data", "tasks.providers"},
    {"tasks.pod", "tasks.post"},
    {"tasks.pipeline", "tasks.web"},
)
# None: the provider is made by the factory the run was assembled with (tasks/pipeline/assemble.py).
ALLOWED_UPWARD: set[tuple[str, str]] = set()


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


def layer(module: str) -> int:
    for depth, members in enumerate(LAYERS):
        if any(module == m or module.startswith(m + ".") for m in members):
            return depth
    raise AssertionError(f"{module} is in no layer of tests/test_structure.py: give its package one")


def owner(module: str) -> str:
    """The package (or top-level module) of LAYERS that `module` belongs to."""
    return next(m for members in LAYERS for m in members if module == m or module.startswith(m + "."))


def upward(edges: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, targets in edges.items() for b in targets
                  if a != "tasks" and layer(b) > layer(a) and (owner(a), owner(b)) not in ALLOWED_UPWARD)


def test_no_import_cycles_in_tasks():
    found = cycles(graph())
    assert not found, "\n".join(" -> ".join(c) for c in found)


def test_the_cycle_check_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_package_imports_a_higher_layer():
    found = upward(graph())
    assert not found, "\n".join(found)


def test_the_layer_check_finds_an_upward_import():
    assert upward({"tasks.core.settings": {"tasks.model.tiny"}, "tasks.pod.upload": {"tasks.core.files"}}) == [
        "tasks.core.settings -> tasks.model.tiny"]
    assert upward({"tasks.record.summary": {"tasks.data.manifest"}}) == ["tasks.record.summary -> tasks.data.manifest"]


def _packages() -> list[Path]:
    return sorted(p.parent for p in TASKS.rglob("__init__.py"))


def test_packages_are_small_and_say_what_they_hold(capsys):
    """Prints the tree (modules per package); fails on a package over MAX_MODULES modules, a module over
    MAX_LINES lines, or a package whose __init__ does not say what it is for."""
    too_big, too_long, silent = [], [], []
    for package in _packages():
        modules = sorted(p for p in package.glob("*.py") if p.name != "__init__.py")
        name = _module(package / "__init__.py")
        print(f"{name}: {len(modules)} modules: {', '.join(p.stem for p in modules)}")
        if len(modules) > MAX_MODULES:
            too_big.append(f"{name} has {len(modules)} modules")
        if not ast.get_docstring(ast.parse((package / "__init__.py").read_text())):
            silent.append(name)
        for module in modules:
            lines = len(module.read_text().splitlines())
            if lines > MAX_LINES:
                too_long.append(f"{_module(module)}: {lines} lines")
    assert not too_big and not too_long and not silent, (too_big, too_long, silent)


@pytest.mark.parametrize("package", ["tasks.core", "tasks.data", "tasks.model", "tasks.transport", "tasks.providers",
                                     "tasks.providers.runpod", "tasks.pod", "tasks.post", "tasks.record",
                                     "tasks.pipeline"])
def test_each_package_names_its_entry_points(package):
    import importlib

    module = importlib.import_module(package)
    assert module.__all__, f"{package}.__init__ names no entry point"
    folder = Path(module.__file__).parent
    shadowed = [n for n in module.__all__ if (folder / f"{n}.py").exists()]
    assert not shadowed, f"{package}: entry points named as a module of it (one of them has the wrong name): {shadowed}"
    for name in module.__all__:
        assert callable(getattr(module, name)) or isinstance(getattr(module, name), type), f"{package}.{name}"


def test_the_trainer_is_a_thin_entry_over_named_steps():
    entry = REPO / "remote" / "train_unsloth.py"
    assert len(entry.read_text().splitlines()) <= 80
    steps = {p.stem for p in (REPO / "remote" / "trainer").glob("*.py")}
    assert {"config", "data", "lora", "load", "fit", "measure", "save"} <= steps, steps
    tree = ast.parse(entry.read_text())
    for node in ast.walk(tree):  # the pod has no orchestrator: the trainer imports nothing of it
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
            assert not any(n == "tasks" or n.startswith("tasks.") for n in names), ast.unparse(node)


def test_the_built_in_tiny_model_is_the_default_base_models_family():
    """Every pipeline test trains the tiny model: it has the shape the default base model has."""
    from tasks.core.settings import TrainingSettings
    from tasks.model import families
    from tasks.model import tiny as tinymodel

    assert TrainingSettings().base_model == "Qwen/Qwen3-30B-A3B"
    assert families.family(tinymodel.SPEC["architecture"]).model_class == "Qwen3MoeForCausalLM"


def test_the_reference_layout_names_every_module():
    """A newcomer walks the tree from the reference: a module it does not name is a room with no door."""
    readme = (REPO / "docs" / "reference.md").read_text()
    layout = readme[readme.index("## Layout"):readme.index("\n## ", readme.index("## Layout") + 1)]
    modules = [p for p in [*TASKS.rglob("*.py"), *(REPO / "remote" / "trainer").glob("*.py")]
               if p.name != "__init__.py" and "__pycache__" not in p.parts]
    unnamed = [str(p.relative_to(REPO)) for p in modules if not re.search(rf"\b{p.stem}\b", layout)]
    assert not unnamed, f"docs/reference.md's Layout section does not name {unnamed}"
