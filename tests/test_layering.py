"""The package's layers: every import between subpackages goes down the order of :data:`LAYERS`,
and no two modules import each other, directly or through others (module-level and
function-level imports alike). Read from the source with ``ast``; nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "frozenseg"
#: Subpackages from the bottom up: each may import only from those before it. ``models`` sits on
#: the engine (its jobs use the trainer); the engine reaches models only through the registry.
LAYERS = ("structures", "utils", "config", "layers", "data", "modeling", "checkpoint", "evaluation",
          "engine", "models", "apps")


def _module(path: Path) -> tuple[str, bool]:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def _imports(path: Path) -> list[tuple[str, int]]:
    """``(imported frozenseg module, line)`` of every import of a source file, at any depth
    (relative imports resolved; ``from m import n`` counts as importing ``m`` and ``m.n``)."""
    name, is_package = _module(path)
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found += [(t, node.lineno) for t in targets if t == "frozenseg" or t.startswith("frozenseg.")]
    return found


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py")


def test_layers_cover_every_subpackage():
    subpackages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file()}
    assert subpackages == set(LAYERS)


def test_imports_go_down_the_layers():
    upward = []
    for path in _sources():
        source = _layer(_module(path)[0])
        for target, line in _imports(path):
            layer = _layer(target)
            if layer in LAYERS and LAYERS.index(layer) > LAYERS.index(source):
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} ({source}) imports {target} ({layer})")
            elif target == "frozenseg":
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line} imports the package root")
    assert upward == []


def test_no_import_cycles():
    known = {_module(p)[0] for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in _sources():
        name = _module(path)[0]
        graph[name] = {t for t, _ in _imports(path) if t in known and t != name}
    # a package's __init__ importing its own modules is not a cycle of the modules
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):
                continue
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    assert cycles == []
