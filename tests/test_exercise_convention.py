"""Every lesson asks its exercises the same way, in the order of its EXERCISES table:
a `### Exercise k · Title` heading, an attempt cell (a `# YOUR CODE HERE` stub whose saved check
output says "not attempted"), then a worked solution tagged `solution` that calls the same check
between nbgrader's markers and was saved passing. The student edition and the grader rely on it."""
from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_exercises_follow_the_lesson_table(path: Path):
    lesson = path.name[:2]
    table = importlib.import_module(f"vit_lib.classroom.exercises.lesson{lesson}").EXERCISES
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"]["vit_lib"] == {"lesson": lesson}
    headings, calls, worked = [], [], 0
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        heading = re.match(r"### Exercise (\d+) · ", source)
        if cell["cell_type"] == "markdown" and heading:
            headings.append(int(heading.group(1)))
        if cell["cell_type"] == "markdown" and source.startswith("#### Worked solution"):
            assert "solution" in cell["metadata"].get("tags", []), source[:60]
            worked += 1
        if cell["cell_type"] != "code":
            continue
        printed = "".join("".join(o.get("text", "")) for o in cell.get("outputs", []))
        solution = "solution" in cell["metadata"].get("tags", [])
        for name in re.findall(r"^result = (check_\w+)\(", source, flags=re.M):
            if solution:
                assert "### BEGIN SOLUTION" in source and "### END SOLUTION" in source, name
                assert re.search(r"^✓ ", printed, flags=re.M), (name, printed)
            else:
                assert "# YOUR CODE HERE" in source, name
                assert "not attempted yet" in printed, (name, printed)
            calls.append((name, solution))
    assert headings == [ex.number for ex in table]
    assert worked == len(table), "one '#### Worked solution' heading per exercise"
    assert calls == [(ex.check, solution) for ex in table for solution in (False, True)]
