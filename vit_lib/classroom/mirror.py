"""Keep the notebooks and vit_lib saying the same thing.

A notebook code cell whose first line is `# export: vit_lib.MODULE` holds the finished form of
one or more functions or classes of that module. Every top-level `def` / `class` in such a cell
must be, character for character (trailing spaces aside), the definition in vit_lib; every name in
the `__all__` of a mirrored module must be exported by some notebook.

    python -m vit_lib mirror          # prints each drift with a diff; exit 1 if any
"""
from __future__ import annotations

import ast
import difflib
import importlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from vit_lib import LESSONS

# every module a lesson shows character for character, from the one LESSONS table
MIRRORED_MODULES = tuple(f"vit_lib.{m}" for lesson in LESSONS for m in lesson.mirrored)
EXPORT = re.compile(r"^#\s*export:\s*(vit_lib(?:\.\w+)+)\s*$")
ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Export:
    notebook: str
    cell: int
    module: str
    name: str
    source: str


def _definitions(source: str) -> dict[str, str]:
    """Top-level function and class definitions of `source`: {name: exact source text}."""
    tree = ast.parse(source)
    out = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
            lines = source.splitlines()[start - 1:node.end_lineno]
            out[node.name] = "\n".join(line.rstrip() for line in lines)
    return out


def notebook_exports(notebook: Path) -> list[Export]:
    """Every definition in the `# export:` cells of one notebook."""
    cells = json.loads(notebook.read_text())["cells"]
    found = []
    for index, cell in enumerate(cells):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"])
        match = EXPORT.match(source.splitlines()[0]) if source.strip() else None
        if match:
            for name, text in _definitions(source).items():
                found.append(Export(notebook.name, index, match.group(1), name, text))
    return found


def library_source(module_name: str) -> str:
    """The source text of a vit_lib module."""
    return Path(importlib.import_module(module_name).__file__).read_text()


def check(notebooks_dir: Path | None = None,
          read_library: Callable[[str], str] = library_source) -> list[str]:
    """All drifts between notebooks and vit_lib, as readable messages (empty list: in sync)."""
    notebooks_dir = notebooks_dir or ROOT / "notebooks"
    problems: list[str] = []
    exported: set[tuple[str, str]] = set()
    for nb in sorted(notebooks_dir.glob("*.ipynb")):
        for ex in notebook_exports(nb):
            exported.add((ex.module, ex.name))
            try:
                library = _definitions(read_library(ex.module)).get(ex.name)
            except ImportError:
                problems.append(f"{ex.notebook} cell {ex.cell}: exports to {ex.module}, "
                                "which does not exist")
                continue
            if library is None:
                problems.append(f"{ex.notebook} cell {ex.cell}: `{ex.name}` is not defined at "
                                f"the top level of {ex.module}; add it there too")
            elif library != ex.source:
                diff = "\n".join(difflib.unified_diff(
                    library.splitlines(), ex.source.splitlines(), f"{ex.module} (library)",
                    f"{ex.notebook} cell {ex.cell}", lineterm=""))
                problems.append(f"{ex.notebook} cell {ex.cell}: `{ex.name}` differs from "
                                f"{ex.module}; make both the same\n{diff}")
    for name in MIRRORED_MODULES:
        module = importlib.import_module(name)
        for symbol in getattr(module, "__all__", []):
            if (name, symbol) not in exported:
                problems.append(f"{name}.{symbol} is not shown in any notebook: add it to an "
                                f"`# export: {name}` cell of its lesson")
    return problems


def main(argv: list[str] | None = None) -> int:
    """`python -m vit_lib mirror`: print each drift with a diff; exit 1 if any."""
    if argv:
        print(f"error: mirror takes no arguments, got {' '.join(argv)}", file=sys.stderr)
        return 2
    problems = check()
    for p in problems:
        print(p, end="\n\n")
    print("notebooks and vit_lib are in sync" if not problems else
          f"{len(problems)} difference(s) between notebooks and vit_lib")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
