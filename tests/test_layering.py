"""The README's import order is true: every ``microsr`` import of every module (top-level or
inside a function, parsed with ``ast``) points to an earlier layer of the order the README
states, or stays inside its own package. Peers (``a / b``) do not import each other."""

from __future__ import annotations

import ast
import re
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
