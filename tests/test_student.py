"""The student edition: generated from the lessons, current, free of solutions, runnable."""
from __future__ import annotations

import ast
import copy
import json
import os
import re
from pathlib import Path

import pytest

from vit_lib.classroom import student
from vit_lib.classroom.student import (
    BEGIN,
    CODE_STUB,
    DETAILS_STUB,
    END,
    StudentEditionError,
    build_student_edition,
    cell_source,
    check_student_edition,
    clear_solution_regions,
    mark_nbgrader_cells,
    rewrite_links,
    strip_details,
    student_notebook,
)

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ROOT / "notebooks"
STUDENT = LESSONS / "student"


# ----------------------------------------------------------------------------------------------
# The committed edition

@pytest.fixture(scope="module")
def edition() -> dict[str, str]:
    return build_student_edition(LESSONS)


def test_committed_student_edition_is_current(edition):
    """notebooks/student/ is exactly what `make student` writes today, and the lessons carry
    the nbgrader metadata; otherwise run `make student` and commit the result."""
    assert check_student_edition(LESSONS, STUDENT) == []
    assert sorted(p.name for p in STUDENT.glob("[0-9][0-9]_*.ipynb")) == sorted(edition)
    for name, text in edition.items():
        assert (STUDENT / name).read_text(encoding="utf-8") == text, f"run `make student` ({name})"


def test_same_bytes_every_run(edition):
    assert build_student_edition(LESSONS) == edition


def test_one_student_notebook_per_lesson(edition):
    assert sorted(edition) == sorted(p.name for p in LESSONS.glob("[0-9][0-9]_*.ipynb"))
    assert len(edition) >= 7


def test_student_notebooks_hold_no_solution_and_no_output(edition):
    for name, text in edition.items():
        nb = json.loads(text)
        assert nb["metadata"]["vit_lib"]["edition"] == "student"
        assert "BEGIN SOLUTION" not in text and "END SOLUTION" not in text, name
        assert "<details" not in text.lower(), name
        for cell in nb["cells"]:
            assert "solution" not in cell["metadata"].get("tags", []), name
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, name
                ast.parse(re.sub(r"(?m)^(\s*)[%!]", r"\1pass #", cell_source(cell)))


def test_every_exercise_keeps_its_attempt_cell(edition):
    """Each exercise of the lesson's EXERCISES table is still called in the student edition."""
    import importlib

    for name, text in edition.items():
        nb = json.loads(text)
        lesson = nb["metadata"]["vit_lib"].get("lesson", name[:2])
        table = importlib.import_module(f"vit_lib.classroom.exercises.lesson{lesson}").EXERCISES
        code = "\n".join(cell_source(c) for c in nb["cells"] if c["cell_type"] == "code")
        for ex in table:
            assert re.search(rf"\b{ex.check}\(", code), f"{name}: no call of {ex.check} left"
        assert code.count(CODE_STUB) >= len(table), f"{name}: fewer attempt cells than exercises"


def test_full_edition_solution_cells_carry_nbgrader_metadata():
    import importlib

    for path in sorted(LESSONS.glob("[0-9][0-9]_*.ipynb")):
        nb = json.loads(path.read_text(encoding="utf-8"))
        lesson = nb["metadata"]["vit_lib"]["lesson"]
        exercises = importlib.import_module(f"vit_lib.classroom.exercises.lesson{lesson}").EXERCISES
        numbers = {ex.number for ex in exercises}
        ids = []
        for cell in nb["cells"]:
            if BEGIN in cell_source(cell):
                meta = cell["metadata"].get("nbgrader")
                assert meta is not None, f"{path.name}: a solution cell lacks nbgrader metadata"
                assert meta["solution"] and not meta["grade"] and meta["schema_version"] == 3
                m = re.fullmatch(rf"lesson{lesson}-ex(\d+)(-\d+)?", meta["grade_id"])
                assert m and int(m.group(1)) in numbers, meta["grade_id"]
                ids.append(meta["grade_id"])
        assert len(ids) == len(set(ids)), f"{path.name}: grade_id used twice"
        assert {int(i.split("-ex")[1].split("-")[0]) for i in ids} == numbers, \
            f"{path.name}: every exercise has a solution region"


def test_student_links_resolve(edition, tmp_path):
    """Relative links in a student notebook point to files that exist from notebooks/student/."""
    for name, text in edition.items():
        for cell in json.loads(text)["cells"]:
            if cell["cell_type"] != "markdown":
                continue
            for target in re.findall(r"\]\(([^)\s]+)", cell_source(cell)):
                if re.match(r"^[a-z]+:|^#", target):
                    continue
                path = target.split("#")[0]
                resolved = Path(os.path.normpath(STUDENT / path))
                assert path in edition or resolved.exists(), f"{name}: broken link {target}"


# ----------------------------------------------------------------------------------------------
# The pieces, on small made-up cells

def test_region_in_a_function_becomes_raise():
    src = ("def f(x):\n    ### BEGIN SOLUTION\n    y = x + 1\n    return y\n    ### END SOLUTION\n\n\n"
           "result = check(f)")
    out, found = clear_solution_regions(src, "code", "t")
    assert found
    assert out == ("def f(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\n\n"
                   "result = check(f)")


def test_region_at_top_level_assigns_none_to_each_name():
    src = ("### BEGIN SOLUTION\np = 4\na, (b, *c) = 1, (2, 3)\ndef helper():\n    z = 1\n"
           "import numpy as np\nfor i in range(2):\n    total = i\n### END SOLUTION\nresult = check(a)")
    out, _ = clear_solution_regions(src, "code", "t")
    assert out.split("\n") == [CODE_STUB, "p = None", "a = None", "b = None", "c = None",
                               "helper = None", "np = None", "i = None", "total = None",
                               "result = check(a)"]


def test_indented_region_outside_a_function_stays_valid():
    src = "for k in range(3):\n    ### BEGIN SOLUTION\n    print(k)\n    ### END SOLUTION\n"
    out, _ = clear_solution_regions(src, "code", "t")
    assert out == f"for k in range(3):\n    {CODE_STUB}\n    pass\n"
    ast.parse(out)


def test_region_in_a_method():
    src = ("class Block:\n    def forward(self, x):\n        ### BEGIN SOLUTION\n        return x\n"
           "        ### END SOLUTION\n")
    out, _ = clear_solution_regions(src, "code", "t")
    assert "        raise NotImplementedError()" in out and "return x" not in out


@pytest.mark.parametrize("src,message", [
    (f"{BEGIN}\nx = 1\n", "without an"),
    (f"x = 1\n{END}\n", "without a"),
    (f"{BEGIN}\n{BEGIN}\n{END}\n{END}\n", "inside another"),
    ("## BEGIN SOLUTION please\nx = 1\n### END SOLUTION\n", "alone on its line"),
])
def test_malformed_markers_fail_loudly(src, message):
    with pytest.raises(StudentEditionError, match=message):
        clear_solution_regions(src, "code", "cell 3")


def test_details_blocks_are_replaced():
    md = "1. Why?\n\n<details><summary>Answer</summary>\n\nBecause.\n\n</details>\n\n2. Next"
    assert strip_details(md) == f"1. Why?\n\n{DETAILS_STUB}\n\n2. Next"


def test_links_from_one_folder_deeper(tmp_path):
    (tmp_path / "figure.png").write_bytes(b"")
    (tmp_path.parent / "README.md").touch()
    names = {"01_patches.ipynb", "02_attention.ipynb"}
    md = ("[next](02_attention.ipynb) [sec](01_patches.ipynb#goals) ![f](figure.png) "
          "[readme](../README.md) [web](https://arxiv.org/abs/2010.11929) ![a](attachment:x.png) "
          "[top](#summary) <img src=\"figure.png\"> "
          "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
          "(https://colab.research.google.com/github/o/r/blob/main/notebooks/01_patches.ipynb)")
    out = rewrite_links(md, tmp_path, names, "t")
    assert out == ("[next](02_attention.ipynb) [sec](01_patches.ipynb#goals) ![f](../figure.png) "
                   "[readme](../../README.md) [web](https://arxiv.org/abs/2010.11929) "
                   "![a](attachment:x.png) [top](#summary) <img src=\"../figure.png\"> "
                   "[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                   "(https://colab.research.google.com/github/o/r/blob/main/notebooks/student/01_patches.ipynb)")
    with pytest.raises(StudentEditionError, match="points to no file"):
        rewrite_links("[gone](07_missing.ipynb)", tmp_path, names, "t")


def _cell(kind: str, text: str, tags: list[str] | None = None, i: int = 0) -> dict:
    cell = {"cell_type": kind, "id": f"c{i}", "metadata": {"tags": tags} if tags else {},
            "source": text.splitlines(True)}
    if kind == "code":
        cell.update(execution_count=3, outputs=[{"output_type": "stream", "name": "stdout",
                                                 "text": ["✓\n"]}])
    return cell


def _tiny_lesson() -> dict:
    cells = [
        _cell("markdown", "# Lesson 01\n\n[next](02_b.ipynb)", i=0),
        _cell("markdown", "### Exercise 1 · Count", i=1),
        _cell("code", "def count(n):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n\n\n"
                      "result = check(count)", i=2),
        _cell("markdown", "#### Worked solution\n\nTry first.", ["solution"], i=3),
        _cell("code", "def count(n):\n    ### BEGIN SOLUTION\n    return n * 2  # secret\n"
                      "    ### END SOLUTION\n\n\nresult = check(count)", ["solution"], i=4),
        _cell("markdown", "Twice as many, because secret reasons.", ["solution"], i=5),
        _cell("markdown", "### Exercise 2 · Value", i=6),
        _cell("code", "### BEGIN SOLUTION\nvalue = 42\n### END SOLUTION\nresult = check(value)", i=7),
        _cell("markdown", "Q?\n<details><summary>Answer</summary>\n\nThe hidden answer.\n\n</details>",
              i=8),
    ]
    return {"cells": cells, "metadata": {"vit_lib": {"lesson": "01"}}, "nbformat": 4,
            "nbformat_minor": 5}


def test_student_notebook_of_a_tiny_lesson(tmp_path):
    full = _tiny_lesson()
    original = copy.deepcopy(full)
    out = student_notebook(full, tmp_path, {"01_a.ipynb", "02_b.ipynb"}, "01_a.ipynb")
    assert full == original, "the full edition is not modified"
    sources = [cell_source(c) for c in out["cells"]]
    assert [c["id"] for c in out["cells"]] == [
        "student-edition-banner", "c0", "c1", "c2", "c6", "c7", "c8"]
    assert sources[5] == f"{CODE_STUB}\nvalue = None\nresult = check(value)"
    assert sources[6] == f"Q?\n{DETAILS_STUB}"
    text = json.dumps(out)
    assert "secret" not in text and "42" not in text and "hidden answer" not in text
    assert all(c.get("outputs", []) == [] and c.get("execution_count") is None for c in out["cells"])


def test_a_leaked_solution_line_is_caught(tmp_path):
    full = _tiny_lesson()
    leaky = student_notebook(full, tmp_path, {"02_b.ipynb"}, "t")
    leaky["cells"].append(_cell("code", "    return n * 2  # secret", i=99))
    leaky["cells"][-1].update(outputs=[], execution_count=None)
    with pytest.raises(StudentEditionError, match="a line of a solution is left"):
        student.verify_student_notebook(full, leaky, "t")


def test_nbgrader_metadata_is_idempotent_and_touches_only_metadata():
    nb = _tiny_lesson()
    assert mark_nbgrader_cells(nb, "01") is True
    ids = [c["metadata"].get("nbgrader", {}).get("grade_id") for c in nb["cells"]]
    assert ids == [None, None, None, None, "lesson01-ex1", None, None, "lesson01-ex2", None]
    assert nb["cells"][4]["metadata"]["nbgrader"] == {
        "grade": False, "grade_id": "lesson01-ex1", "locked": False, "schema_version": 3,
        "solution": True, "task": False}
    snapshot = copy.deepcopy(nb)
    assert mark_nbgrader_cells(nb, "01") is False and nb == snapshot
    stripped = copy.deepcopy(nb)
    for cell in stripped["cells"]:
        cell["metadata"].pop("nbgrader", None)
    assert stripped == _tiny_lesson(), "only cell metadata changed"
    set_text = "x = 1\n"                       # the region is gone: its metadata goes too
    nb["cells"][7]["source"] = [set_text]
    assert mark_nbgrader_cells(nb, "01") is True and "nbgrader" not in nb["cells"][7]["metadata"]


def test_command_writes_and_checks(tmp_path, capsys):
    src = tmp_path / "notebooks"
    src.mkdir()
    lesson = _tiny_lesson()
    lesson["cells"][0]["source"] = ["# Lesson 01"]
    (src / "01_a.ipynb").write_text(json.dumps(lesson), encoding="utf-8")
    assert student.main(["--source", str(src), "--check"]) == 1
    assert "missing" in capsys.readouterr().err
    assert student.main(["--source", str(src)]) == 0
    first = (src / "student" / "01_a.ipynb").read_bytes()
    marked = (src / "01_a.ipynb").read_bytes()
    assert student.main(["--source", str(src)]) == 0
    assert (src / "student" / "01_a.ipynb").read_bytes() == first
    assert (src / "01_a.ipynb").read_bytes() == marked
    assert student.main(["--source", str(src), "--check"]) == 0
    (src / "student" / "09_old.ipynb").write_text("{}", encoding="utf-8")
    assert student.main(["--source", str(src), "--check"]) == 1
    assert student.main(["--source", str(src)]) == 0
    assert not (src / "student" / "09_old.ipynb").exists(), "a stale lesson is removed"
    capsys.readouterr()


# ----------------------------------------------------------------------------------------------
# TEACHING.md stays true to the lessons

def test_teaching_lessons_table_is_current():
    teaching = ROOT / "TEACHING.md"
    assert student.teaching_text(teaching, LESSONS) == teaching.read_text(encoding="utf-8"), \
        "run `make student` to rewrite the lessons table of TEACHING.md"


def test_teaching_homework_table_names_every_exercise():
    """The in-class / homework split lists each lesson's exercises exactly once, by number and title."""
    import importlib

    text = (ROOT / "TEACHING.md").read_text(encoding="utf-8")
    section = text.split("## Which exercises suit homework", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(2)
            for m in re.finditer(r"^\| (\d\d) \|(.*)\|\s*$", section, re.MULTILINE)}
    lessons = sorted(p.name[:2] for p in LESSONS.glob("[0-9][0-9]_*.ipynb"))
    assert sorted(rows) == lessons
    for lesson, cells in rows.items():
        table = importlib.import_module(f"vit_lib.classroom.exercises.lesson{lesson}").EXERCISES
        named = [int(n) for n in re.findall(r"(?:^\s*|\|\s*|,\s*)(\d) ", cells)]
        assert sorted(named) == [ex.number for ex in table], f"lesson {lesson}: {named}"
        for ex in table:
            assert re.search(rf"\b{ex.number} {re.escape(ex.title.split()[0])}", cells, re.IGNORECASE), \
                f"lesson {lesson}: exercise {ex.number} ({ex.title}) is not named"


def test_the_student_edition_stands_alone():
    """Every student notebook opens with the banner, and none of its markdown points to a worked
    solution it does not have."""
    from vit_lib.classroom.student import BANNER_TAG, SOLUTION_TALK
    for path in sorted((ROOT / "notebooks" / "student").glob("[0-9][0-9]_*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        assert BANNER_TAG in cells[0]["metadata"].get("tags", []), path.name
        assert f"(../{path.name})" in "".join(cells[0]["source"]), path.name
        for cell in cells[1:]:
            if cell["cell_type"] == "markdown":
                text = "".join(cell["source"])
                assert not SOLUTION_TALK.search(text), (path.name, text[:200])


def test_a_sentence_about_the_solution_is_refused():
    from vit_lib.classroom.student import SOLUTION_TALK
    assert SOLUTION_TALK.search("The worked solution then draws it.")
    assert SOLUTION_TALK.search("as the solution shows")
    assert not SOLUTION_TALK.search("Each exercise has a statement, a cell for your attempt and a "
                                    "check.")
