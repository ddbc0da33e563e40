"""No arrow runs backwards in vit_lib: read from the source files (ast), not by importing.

- no import cycle, counting imports inside functions too;
- a lesson's module never reaches (directly or through the machinery) a later lesson's module;
- the machinery never reaches the command-line or classroom drawers;
- the top level of vit_lib is the lessons' modules (vit_lib.LESSONS), each naming its lesson.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import vit_lib
from vit_lib.machinery.imports import PACKAGE, closure, import_graph, module_files

LESSON_OF = {f"vit_lib.{m}": int(lesson.number) for lesson in vit_lib.LESSONS for m in lesson.modules}
DRAWERS = ("vit_lib.machinery", "vit_lib.cli", "vit_lib.classroom")


def _cycles(graph: dict[str, frozenset[str]]) -> list[list[str]]:
    """Every cycle found by a depth-first walk (each reported once, from where it closes)."""
    found, state = [], {}

    def walk(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                walk(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            walk(node, [node])
    return found


def test_there_is_no_import_cycle():
    assert _cycles(import_graph()) == []


def test_the_cycle_finder_finds_a_cycle():
    graph = {"a": frozenset({"b"}), "b": frozenset({"c"}), "c": frozenset({"a"}), "d": frozenset()}
    assert _cycles(graph) == [["a", "b", "c", "a"]]


@pytest.mark.parametrize("module", sorted(LESSON_OF))
def test_a_lesson_never_reaches_a_later_lesson(module):
    later = {m for m in closure({module}) if LESSON_OF.get(m, -1) > LESSON_OF[module]}
    assert not later, f"{module} (lesson {LESSON_OF[module]:02d}) imports {sorted(later)}"


@pytest.mark.parametrize("module", sorted(m for m in import_graph()
                                          if m.startswith("vit_lib.machinery")))
def test_the_machinery_never_reaches_the_cli_or_the_classroom(module):
    reached = {m for m in closure({module}) if m.startswith(("vit_lib.cli", "vit_lib.classroom"))}
    assert not reached, f"{module} imports {sorted(reached)}"


def test_the_graph_sees_imports_inside_functions(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text("def f():\n    from pkg.b import g\n    return g\n")
    (package / "b.py").write_text("from pkg import a\ndef g():\n    pass\n")
    assert import_graph(package) == {"pkg": frozenset(), "pkg.a": frozenset({"pkg.b"}),
                                     "pkg.b": frozenset({"pkg.a"})}


def test_the_top_level_is_the_lessons():
    files = {p.stem for p in PACKAGE.glob("*.py")}
    assert files == {m.split(".")[1] for m in LESSON_OF} | {"__init__", "__main__"}
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders <= {d.split(".")[1] for d in DRAWERS} | {"weights"}


@pytest.mark.parametrize("module", sorted(LESSON_OF))
def test_each_lesson_module_names_its_lesson(module):
    doc = ast.get_docstring(ast.parse(module_files()[module].read_text())) or ""
    assert f"Lesson {LESSON_OF[module]:02d}" in doc


@pytest.mark.parametrize("drawer", DRAWERS)
def test_each_drawer_says_what_it_is_for(drawer):
    doc = " ".join((ast.get_docstring(ast.parse(module_files()[drawer].read_text())) or "").split())
    assert "do not teach" in doc or "does not teach" in doc, doc


def test_every_lesson_in_the_table_has_its_notebook():
    notebooks = Path(vit_lib.__file__).resolve().parents[1] / "notebooks"
    for lesson in vit_lib.LESSONS:
        assert (notebooks / lesson.notebook).is_file(), lesson.notebook
        assert lesson.notebook.startswith(lesson.number + "_")
        assert set(lesson.mirrored) <= set(lesson.modules)
