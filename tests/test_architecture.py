"""The package's layers (ARCHITECTURE.md): a module imports only from its own layer or below,
and no two modules import each other, directly or through others (lazy imports included).

    python -m pytest -q tests/test_architecture.py
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "crlprompt"

#: bottom to top; a module may import modules of its own layer or of a lower one
LAYERS: list[tuple[str, ...]] = [
    ("errors", "distributed", "registry", "lazy", "atomic"),
    ("data",),
    ("tasks",),
    ("models",),
    ("pooling", "prompts", "prompt_io", "prompt_encoder", "modelcard", "batching"),
    ("scoring", "losses", "checkpoint"),
    ("build", "floors", "rundir"),
    ("envs",),
    ("agents",),
    ("runners",),
    ("api",),
    ("cli",),
]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _layer(module: str) -> int | None:
    parts = module.split(".")
    if len(parts) < 2:
        return None  # the package root (crlprompt/__init__.py): exports lazily, imports errors + registry
    for i, names in enumerate(LAYERS):
        if parts[1] in names:
            return i
    raise AssertionError(f"{module} is in no layer of tests/test_architecture.py; add it to LAYERS")


def _imports(path: Path, module: str) -> set[str]:
    """crlprompt modules imported anywhere in the file (top level and inside functions)."""
    tree = ast.parse(path.read_text())
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("crlprompt")}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith("crlprompt"):
                continue
            for a in node.names:  # `from . import x` may import submodule x
                sub = f"{target}.{a.name}"
                out.add(sub if (PKG.parent / (sub.replace(".", "/") + ".py")).exists()
                        or (PKG.parent / sub.replace(".", "/")).is_dir() else target)  # fmt: skip
    return out


MODULES = {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}
GRAPH = {m: {i for i in _imports(p, m) if i != m} for m, p in MODULES.items()}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_upward_import(module):
    own = _layer(module)
    if own is None:
        return
    upward = sorted(i for i in GRAPH[module] if (_layer(i) or 0) > own)
    assert not upward, f"{module} (layer {LAYERS[own]}) imports higher layers: {upward}"


def test_no_import_cycle():
    """Depth-first search over every import (module level and lazy) between crlprompt modules.

    A package's ``__init__`` re-exporting its own submodules is not a cycle."""

    def edges(m: str) -> set[str]:
        return {i for i in GRAPH.get(m, ()) if i in MODULES and not m.startswith(i + ".")}

    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for n in sorted(edges(m)):
            if state.get(n) == 1:
                cycle = stack[stack.index(n):] + [n]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(MODULES):
        if m not in state:
            visit(m)


def test_no_module_over_400_lines():
    long = {m: n for m, p in MODULES.items() if (n := len(p.read_text().splitlines())) > 420}
    assert not long, f"modules over ~400 lines: {long}"
