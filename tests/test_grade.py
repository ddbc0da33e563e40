"""python -m vit_lib grade: runs submissions in fresh kernels and writes a gradebook.

The tests that run real lessons (01 and 02, a few seconds each) need MNIST and are marked slow.
"""
from __future__ import annotations

import csv
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from vit_lib.classroom import grade
from vit_lib.classroom.exercises.common import NOT_ATTEMPTED, Exercise
from vit_lib.classroom.grade import Row, Run, find_notebooks, grade_file, rows_for_run
from vit_lib.classroom.notebooks import lesson_number
from vit_lib.classroom.student import build_student_edition, cell_source

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ROOT / "notebooks"
TABLE = (Exercise("02", 1, "one", "check_one"), Exercise("02", 2, "two", "check_two"),
         Exercise("02", 3, "three", "check_three"))


def _notebook(*sources: str, lesson: str | None = "02") -> dict:
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {},
              "outputs": [], "source": src} for i, src in enumerate(sources)]
    meta = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    if lesson:
        meta["vit_lib"] = {"lesson": lesson}
    return {"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}


def _write(path: Path, nb: dict) -> Path:
    path.write_text(json.dumps(nb), encoding="utf-8")
    return path


def _record(number: int, status: str, feedback: str = "", lesson: str = "02") -> dict:
    return {"lesson": lesson, "exercise": number, "title": "t", "status": status, "feedback": feedback}


# ----------------------------------------------------------------------------------------------
# Without a kernel

def test_last_result_counts_and_missing_checks_say_why():
    run = Run(results=[_record(1, "failed", "scale it"), _record(1, "passed", "ok"),
                       _record(2, "not attempted", NOT_ATTEMPTED),
                       _record(3, "passed", "other lesson", lesson="01")],
              errors=["cell 7: NameError: name 'x' is not defined"])
    rows = rows_for_run("a.ipynb", "02", TABLE, run)
    assert [(r.exercise, r.status, r.passed) for r in rows] == [
        (1, "passed", True), (2, "not attempted", False), (3, "not run", False)]
    assert rows[0].feedback == "ok"
    assert rows[2].feedback == ("the grader could not check it: first error: cell 7: "
                                "NameError: name 'x' is not defined")
    never = rows_for_run("a.ipynb", "02", TABLE, Run(missing={1: "the notebook does not define f"}))
    assert never[0].feedback == "the grader could not check it: the notebook does not define f"
    assert never[1].feedback == "the grader could not check it: the grader's check gave no answer"
    unreadable = rows_for_run("a.ipynb", "02", TABLE, Run(unreadable="it is garbled"))
    assert [(r.status, r.feedback) for r in unreadable] == [
        ("failed", "the grader could not read what your code computed: it is garbled")] * 3


def test_timeout_and_dead_kernel_rows():
    late = rows_for_run("a", "02", TABLE, Run(results=[_record(1, "passed")], timed_out=True,
                                              stopped="the notebook was stopped at the time limit of 5 s"))
    assert [r.status for r in late] == ["passed", "timed out", "timed out"]
    assert late[1].feedback == ("the notebook was stopped at the time limit of 5 s before the grader "
                                "checked this exercise")
    loud = rows_for_run("a", "02", TABLE, Run(output_limit=10 * 1024**2, stopped="printed too much"))
    assert [r.status for r in loud] == ["output limit"] * 3
    assert loud[0].feedback.startswith("output limit (10 MB) exceeded")
    dead = rows_for_run("a", "02", TABLE, Run(stopped="the kernel died (x)"))
    assert [r.status for r in dead] == ["not run"] * 3 and "the kernel died" in dead[0].feedback


def test_bad_files_are_rows(tmp_path):
    broken = tmp_path / "broken.ipynb"
    broken.write_text("{not json", encoding="utf-8")
    (rows, run), = [grade_file(broken)]
    assert run is None and len(rows) == 1
    assert (rows[0].status, rows[0].exercise, rows[0].passed) == ("invalid notebook", None, False)
    assert "not a valid notebook" in rows[0].feedback
    not_nb = _write(tmp_path / "01_list.ipynb", {"cells": "nope"})
    assert grade_file(not_nb)[0][0].status == "invalid notebook"
    unknown = _write(tmp_path / "x.ipynb", _notebook("1", lesson="42"))
    rows, run = grade_file(unknown)
    assert run is None and rows[0].status == "unknown lesson" and "'42'" in rows[0].feedback
    nameless = _write(tmp_path / "homework.ipynb", _notebook("1", lesson=None))
    assert grade_file(nameless)[0][0].status == "unknown lesson"


def test_lesson_from_metadata_else_file_name():
    assert lesson_number(Path("x/03_block.ipynb"), {"metadata": {}}) == "03"
    assert lesson_number(Path("03_block.ipynb"), {"metadata": {"vit_lib": {"lesson": "04"}}}) == "04"
    assert lesson_number(Path("alice.ipynb"), {"metadata": {}}) is None


def test_finds_notebooks_in_folders(tmp_path):
    for name in ("b/02_x.ipynb", "a/01_y.ipynb", "a/.ipynb_checkpoints/01_y-checkpoint.ipynb",
                 "a/notes.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("{}", encoding="utf-8")
    found = find_notebooks([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found] == ["a/01_y.ipynb", "b/02_x.ipynb"]
    with pytest.raises(grade.UsageError, match="no such file"):
        find_notebooks([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(grade.UsageError, match="no \\*.ipynb notebook found"):
        find_notebooks([tmp_path / "empty"])


@pytest.mark.parametrize("argv", [["/no/such/folder"], ["--timeout", "0", "x.ipynb"],
                                  ["--timeout", "soon", "x.ipynb"], [], ["x.ipynb", "--out", "."],
                                  ["empty"], ["x.ipynb", "--out", "x.ipynb/book.csv"]])
def test_usage_errors_exit_2(argv, tmp_path, monkeypatch, capsys):
    from vit_lib.cli.common import run_cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.ipynb").write_text("{}", encoding="utf-8")
    (tmp_path / "empty").mkdir()
    try:
        code = run_cli(grade.main, argv)
    except SystemExit as exc:         # argparse's own usage errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert "error:" in err.strip().splitlines()[-1], err
    assert not (tmp_path / "gradebook.csv").exists()


def test_table_and_totals():
    rows = [Row("a.ipynb", "02", 1, "one", "passed", "fine"),
            Row("a.ipynb", "02", 2, "two", "failed", "divide by sqrt(d)")]
    run = Run(errors=["cell 4: NameError: name 'x' is not defined"], seconds=1.25)
    text = grade.format_file("a.ipynb", rows, run)
    assert text.splitlines() == ["a.ipynb  (lesson 02, ran 1.2 s)",
                                 "  ✓ 1. one  passed: fine",
                                 "  ✗ 2. two  failed: divide by sqrt(d)",
                                 "  1 cell(s) raised; the first: cell 4: NameError: name 'x' is not defined",
                                 "  total: 1/2 passed"]
    not_yet = Row("b.ipynb", "02", 1, "one", "not attempted", NOT_ATTEMPTED)
    assert grade.format_file("b.ipynb", [not_yet]).splitlines()[1] == f"  · 1. one  {NOT_ATTEMPTED}"


# ----------------------------------------------------------------------------------------------
# With a kernel: small made-up notebooks

CORRECT_PARAMS = ("from vit_lib.classroom.exercises.lesson02 import check_attention_params\n"
                  "attention_params = lambda d, h, b=True: 4 * d * d + 3 * d * b + d\n"
                  "result = check_attention_params(attention_params)")


def test_loop_times_out_within_the_limit_and_bad_files_get_rows(tmp_path):
    """End to end through the command: a looping notebook, a broken one; the gradebook is written."""
    folder = tmp_path / "submissions"
    folder.mkdir()
    _write(folder / "loop.ipynb", _notebook(CORRECT_PARAMS, "while True:\n    pass"))
    (folder / "broken.ipynb").write_text('{"cells": [', encoding="utf-8")
    out = tmp_path / "book.csv"
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "vit_lib.classroom.grade", str(folder), "--timeout", "20",
                           "--out", str(out), "--executed", str(tmp_path / "executed")],
                          capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    by_file = [(Path(r["file"]).name, r["exercise"], r["status"], r["passed"]) for r in rows]
    assert by_file == [("broken.ipynb", "", "invalid notebook", "false"),   # the grader checks after the last cell
                       ("loop.ipynb", "1", "timed out", "false"),
                       ("loop.ipynb", "2", "timed out", "false"),
                       ("loop.ipynb", "3", "timed out", "false")]
    assert rows[1]["feedback"] == ("the notebook was stopped at the time limit of 20 s before the grader "
                                   "checked this exercise")
    assert list(rows[0]) == list(grade.COLUMNS)
    assert "total: 0/3 passed" in proc.stdout and "gradebook written to" in proc.stdout
    assert elapsed < 20 + 90, f"the whole run took {elapsed:.0f} s for a limit of 20 s"
    saved = list((tmp_path / "executed").glob("*.ipynb"))
    assert len(saved) == 1 and saved[0].name.endswith("submissions_loop.ipynb")
    assert "✓ parameters of the attention layer" in saved[0].read_text(encoding="utf-8")


def test_dying_kernel_and_raising_cell(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dies = _write(tmp_path / "02_dies.ipynb", _notebook(CORRECT_PARAMS, "import os\nos._exit(1)",
                                                        "print('never')", lesson=None))
    rows, run = grade_file(dies, 120)
    assert [r.status for r in rows] == ["not run"] * 3    # a dead kernel leaves nothing to check
    assert "the kernel died" in rows[1].feedback
    raises = _write(tmp_path / "02_raises.ipynb", _notebook(
        "1 / 0", CORRECT_PARAMS, "from vit_lib.classroom.exercises.lesson02 import check_masked_attention\n"
        "masked_attention = None\nresult = check_masked_attention(masked_attention)",
        "import os\nassert os.path.basename(os.getcwd()) == 'work' and 'vit-grade-' in os.getcwd()\n"
        "open('left-behind.txt', 'w').write('x')"))
    rows, run = grade_file(raises, 120)
    assert [r.status for r in rows] == ["not attempted", "passed", "not run"]
    assert rows[2].feedback == ("the grader could not check it: the notebook does not define split_heads; "
                                "first error: cell 0: ZeroDivisionError: division by zero")
    assert run is not None and run.errors == ["cell 0: ZeroDivisionError: division by zero"]
    assert not (tmp_path / "left-behind.txt").exists(), "the notebook runs in a temporary folder"


# ----------------------------------------------------------------------------------------------
# With a kernel: the real lessons 01 and 02

def _lesson(prefix: str) -> Path:
    paths = sorted(LESSONS.glob(f"{prefix}_*.ipynb"))
    assert paths, f"no lesson {prefix} in {LESSONS}"
    return paths[0]


def _without_scaling(nb: dict) -> dict:
    """Lesson 02, exercise 1's worked solution with the typical mistake: no division by sqrt(d)."""
    pattern = re.compile(r"\s*/\s*(math\.sqrt\(\s*[\w.]+(\(\s*-?\d*\s*\))?\s*\)|[\w.]+\s*\*\*\s*0\.5"
                         r"|\(\s*[\w.]+(\(\s*-?\d*\s*\))?\s*\*\*\s*0\.5\s*\))")
    changed = 0
    for cell in nb["cells"]:
        source = cell_source(cell)
        if "### BEGIN SOLUTION" in source and "def masked_attention" in source:
            new, count = pattern.subn("", source)
            cell["source"] = new
            changed += count
    assert changed == 1, "could not find the division by sqrt(d) in the solution: update this test"
    return nb


@pytest.fixture(scope="module")
def graded_lessons(tmp_path_factory, data_dir_module):
    """Full edition of 01, student edition of 01, lesson 02 with the unscaled-scores mistake."""
    folder = tmp_path_factory.mktemp("submissions")
    student = build_student_edition(LESSONS)
    full01, full02 = _lesson("01"), _lesson("02")
    (folder / f"full_{full01.name}").write_bytes(full01.read_bytes())
    (folder / f"student_{full01.name}").write_text(student[full01.name], encoding="utf-8")
    wrong = _without_scaling(json.loads(full02.read_text(encoding="utf-8")))
    _write(folder / f"wrong_{full02.name}", wrong)
    return {name: grade_file(folder / name, 600)
            for name in (f"full_{full01.name}", f"student_{full01.name}", f"wrong_{full02.name}")}


@pytest.fixture(scope="module")
def data_dir_module():
    import os

    for candidate in (os.environ.get("VIT_DATA_DIR"), ROOT / "data", ROOT.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
            mp = pytest.MonkeyPatch()
            mp.setenv("VIT_DATA_DIR", str(candidate))    # the kernels inherit it
            yield Path(candidate)
            mp.undo()
            return
    if os.environ.get("CI"):
        pytest.fail("CI must provide MNIST: set VIT_DATA_DIR to a folder holding MNIST/raw")
    pytest.skip("MNIST not found: set VIT_DATA_DIR")


def _rows(graded: dict, prefix: str) -> tuple[list[Row], Run]:
    return next(v for k, v in graded.items() if k.startswith(prefix))


@pytest.mark.slow
def test_full_edition_passes_every_exercise(graded_lessons):
    rows, run = _rows(graded_lessons, "full_")
    from vit_lib.classroom.exercises.lesson01 import EXERCISES
    assert [r.exercise for r in rows] == [ex.number for ex in EXERCISES]
    assert all(r.status == "passed" for r in rows), [(r.exercise, r.status, r.feedback) for r in rows]
    assert run.errors == [] and not run.stopped


@pytest.mark.slow
def test_student_edition_is_not_attempted_and_runs_to_the_end(graded_lessons):
    rows, run = _rows(graded_lessons, "student_")
    assert [(r.status, r.feedback) for r in rows] == [("not attempted", NOT_ATTEMPTED)] * len(rows)
    assert run.errors == [] and not run.stopped, "Run all on a student notebook raises nothing"


@pytest.mark.slow
def test_typical_mistake_fails_exactly_that_exercise_with_its_hint(graded_lessons):
    rows, run = _rows(graded_lessons, "wrong_")
    assert [r.status for r in rows] == ["failed"] + ["passed"] * (len(rows) - 1)
    assert "the scores are not scaled: divide q @ k^T by sqrt(d)" in rows[0].feedback
    assert not run.stopped
