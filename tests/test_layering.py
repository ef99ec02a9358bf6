"""The README's import order is true: every ``microsr`` import of every module (top-level or
inside a function, parsed with ``ast``) points to an earlier layer of the order the README
states, or stays inside its own package. Peers (``a / b``) do not import each other. No
module imports itself back through others, inside a package included."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "microsr"


def stated_order() -> dict[str, int]:
    """Layer name -> position, from the README's ``imports run one way: `...``` sentence."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    found = re.search(r"imports run one way[^`]*`([^`]+)`", text)
    assert found, "README.md no longer states the import order"
    order = {}
    for i, layer in enumerate(found.group(1).split("->")):
        for name in layer.split("/"):
            order[name.strip()] = i
    return order


def layer_of(module: str) -> str:
    """``microsr.a.b`` -> ``a`` (a package or a top-level module); ``microsr`` -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def imports(path: Path) -> list[tuple[int, str]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return [(line, m) for line, m in out if m == "microsr" or m.startswith("microsr.")]


def test_every_module_has_a_stated_layer():
    order = stated_order()
    own = {p.relative_to(PACKAGE).with_suffix("").parts[0] for p in PACKAGE.rglob("*.py")}
    assert own - {"__init__", "__main__"} <= set(order), own - set(order)


def test_imports_follow_the_stated_order():
    order = stated_order() | {"": -1, "__init__": -1}  # the package root (its version)
    order["__main__"] = order["cli"] + 1  # `python -m microsr`: the CLI
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = path.relative_to(PACKAGE).with_suffix("").parts[0]
        for line, module in imports(path):
            there = layer_of(module)
            if there != here and order[there] >= order[here]:
                wrong.append(f"{path.relative_to(PACKAGE)}:{line} ({here}) imports {module}")
    assert not wrong, "imports against the README's order:\n" + "\n".join(wrong)


def test_only_the_cli_imports_the_demo_app():
    users = {
        str(p.relative_to(PACKAGE))
        for p in PACKAGE.rglob("*.py")
        for _, m in imports(p)
        if m == "microsr.demo"
    }
    assert users <= {"cli/pipeline.py"}, users


def module_name(path: Path) -> str:
    """``src/microsr/a/b.py`` -> ``microsr.a.b``; a package's ``__init__.py`` -> the package."""
    parts = ("microsr", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """The ``microsr`` modules ``path`` imports (anywhere in it, relative imports resolved);
    ``from pkg import name`` counts as importing ``pkg.name`` when that is a module."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {m for m in out if m in known and m != here}


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected set of more than one module (Tarjan), sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            members = []
            while not members or members[-1] != node:
                members.append(stack.pop())
            if len(members) > 1:
                cycles.append(sorted(members))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(cycles)


def package_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, known) for p in paths}


def test_the_cycle_finder_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    """The pattern that once lived in ``study``: ``pipeline`` imports ``crossval`` at the top,
    ``crossval`` imports ``pipeline`` inside a function (or relatively)."""
    root = tmp_path / "microsr"
    (root / "study").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "study" / "__init__.py").write_text("")
    (root / "study" / "pipeline.py").write_text("from microsr.study.crossval import run_folds\n")
    (root / "study" / "crossval.py").write_text(
        "def run_folds():\n    from microsr.study.pipeline import run_study\n"
    )
    (root / "study" / "other.py").write_text("from . import crossval\n")
    (root / "study" / "back.py").write_text("from .other import x\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", root)
    graph = package_graph()
    assert graph["microsr.study.other"] == {"microsr.study.crossval"}
    assert graph["microsr.study.back"] == {"microsr.study.other"}
    assert import_cycles(graph) == [["microsr.study.crossval", "microsr.study.pipeline"]]


def test_no_import_cycles():
    cycles = import_cycles(package_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)
