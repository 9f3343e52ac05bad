"""The package's import graph, read from its source (ast): no import cycles between its
modules, and no private name (``_x``) imported from another module of the package (issue 23).

Imports inside ``if TYPE_CHECKING:`` blocks do not run and are left out; imports inside
functions run and count (a deferred import that closes a loop is still a cycle).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import scaleeq

PACKAGE = Path(scaleeq.__file__).parent


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _is_type_checking(node: ast.If) -> bool:
    t = node.test
    return (isinstance(t, ast.Name) and t.id == "TYPE_CHECKING") or (
        isinstance(t, ast.Attribute) and t.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST):
    """Every import statement that can run (not under ``if TYPE_CHECKING:``)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child
            stack.append(child)


def _target(module: str, is_package: bool, node: ast.ImportFrom) -> str | None:
    if node.level == 0:
        return node.module
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(root: Path) -> tuple[dict[str, set[str]], list[tuple[str, str, str]]]:
    """``(edges, private)``: module -> the package modules it imports, and every
    ``(module, source, name)`` where a private name is imported from another module."""
    mods = _modules(root)
    top = root.name
    edges: dict[str, set[str]] = {m: set() for m in mods}
    private = []
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in _runtime_imports(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == top:
                        edges[mod].add(alias.name)
                continue
            src = _target(mod, path.name == "__init__.py", node)
            if src is None or src.split(".")[0] != top:
                continue
            for alias in node.names:
                full = f"{src}.{alias.name}"
                if full in mods:  # a submodule
                    edges[mod].add(full)
                    continue
                edges[mod].add(src)
                name = alias.name
                if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                    private.append((mod, src, name))
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), plus modules
    that import themselves."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 or v in edges.get(v, ()):
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "pkg"
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


# --- the reader itself, on small packages with known answers --------------------------------


def test_reader_finds_a_cycle_closed_by_a_deferred_import(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "",
            "a.py": "from .b import f\n",
            "b.py": "def f():\n    from .sub.c import g\n",
            "sub/__init__.py": "",
            "sub/c.py": "from ..a import x\n",
        },
    )
    edges, _ = import_graph(root)
    assert cycles(edges) == [["pkg.a", "pkg.b", "pkg.sub.c"]]


def test_reader_ignores_type_checking_imports_and_finds_private_names(tmp_path):
    root = _package(
        tmp_path,
        {
            "__init__.py": "from .a import A as A\n__version__ = '1'\n",
            "a.py": (
                "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\nA = 1\n"
            ),
            "b.py": "from .a import A, _hidden\nfrom . import __version__\nimport pkg.a\n",
        },
    )
    edges, private = import_graph(root)
    assert cycles(edges) == []
    assert edges["pkg.b"] == {"pkg.a", "pkg"}
    assert private == [("pkg.b", "pkg.a", "_hidden")]  # the dunder is not private


# --- the package ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def graph():
    return import_graph(PACKAGE)


def test_the_package_has_no_import_cycle(graph):
    edges, _ = graph
    assert len(edges) > 50  # the reader saw the package
    assert cycles(edges) == []


def test_no_private_name_is_imported_across_modules(graph):
    _, private = graph
    assert private == []


#: The package's layers, top to bottom (docs/design.md, "Layers and imports"): a module
#: imports only from rows below its own (inside one unit, e.g. ``scaleeq.layers``, freely but
#: without cycles). Units are ``scaleeq.X`` with everything under it.
ROWS = [
    ["__main__"],
    ["cli"],
    ["evaluate"],
    ["metrics", "onnx", "bench"],
    ["infer", "serve"],
    ["pretrained", "spandrel", "demo"],
    ["retrofit", "training"],
    ["models", "data"],
    ["arbitrary", "layers", "contracts", "resize", "images"],
    ["functional"],
    ["sampling"],
    ["geometry", "context"],
    ["scale", "ops", "allocator"],
    ["_checks", "_io", "_activation_checkpoint", "_config", "precision", "_torchvision"],
]


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_unit_has_a_row(graph):
    edges, _ = graph
    placed = {u for row in ROWS for u in row}
    units = {_unit(m) for m in edges} - {""}
    assert units <= placed, f"modules without a row in ROWS: {sorted(units - placed)}"


def test_imports_only_go_down_the_rows(graph):
    edges, _ = graph
    row = {u: len(ROWS) - i for i, r in enumerate(ROWS) for u in r}
    upward = sorted(
        (a, b)
        for a, targets in edges.items()
        for b in targets
        if _unit(a) and _unit(b) and _unit(a) != _unit(b) and row[_unit(a)] <= row[_unit(b)]
    )
    assert upward == []
