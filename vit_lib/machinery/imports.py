"""vit_lib's own import graph, read from the source files (ast), never by importing them.

`import_graph()` maps every module of the package to the vit_lib modules it imports, at the top
or inside a function; `closure()` follows those arrows. The run cache fingerprints the closure
of the code a training run executes, and `tests/test_import_graph.py` checks that no arrow runs
backwards (no cycle, no lesson importing a later lesson, no machinery importing a drawer).
"""
from __future__ import annotations

import ast
from functools import lru_cache
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent      # .../vit_lib


def module_name(path: Path, package: Path = PACKAGE) -> str:
    """vit_lib/machinery/errors.py -> 'vit_lib.machinery.errors'; a package's __init__.py ->
    the package's name."""
    parts = list(path.relative_to(package.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def module_files(package: Path = PACKAGE) -> dict[str, Path]:
    """Every module of the package by name (caches and build folders left out)."""
    return {module_name(p, package): p for p in sorted(package.rglob("*.py"))
            if "__pycache__" not in p.parts}


def _imported(tree: ast.AST, name: str, is_package: bool, known: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:       # relative: from . import x / from ..y import z
                parts = name.split(".")
                parts = parts if is_package else parts[:-1]
                parts = parts[:len(parts) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            # `from vit_lib.machinery import training` imports the module vit_lib.machinery.training
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                       for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


@lru_cache(maxsize=None)
def import_graph(package: Path = PACKAGE) -> dict[str, frozenset[str]]:
    """{module: the vit_lib modules it imports} for every module of the package."""
    files = module_files(package)
    known = set(files)
    return {name: frozenset(_imported(ast.parse(path.read_text(), str(path)), name,
                                      path.name == "__init__.py", known))
            for name, path in files.items()}


def closure(modules: set[str] | list[str], package: Path = PACKAGE) -> set[str]:
    """The modules given and every vit_lib module they import, directly or not."""
    graph = import_graph(package)
    seen: set[str] = set()
    todo = [m for m in modules if m in graph]
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph[name] - seen)
    return seen
