"""The exercise-check protocol every lesson module follows, and the grader relies on.

Each vit_lib.classroom.exercises.lessonNN has an EXERCISES table numbered 1..n whose entries name checks
decorated with @exercise_check; a check returns a CheckResult, appends it to RESULTS, writes it
as a JSON line to $VIT_LIB_RESULTS, and reports None answers and NotImplementedError stubs as
"not attempted", whether the answer is a value or a function.
"""
from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
from types import ModuleType

import pytest
import torch

import vit_lib.classroom.exercises
from vit_lib.classroom.exercises import common
from vit_lib.classroom.exercises.common import NOT_ATTEMPTED, RESULTS_ENV, CheckResult, Exercise

LESSON_MODULES = sorted(m.name for m in pkgutil.iter_modules(vit_lib.classroom.exercises.__path__)
                        if re.fullmatch(r"lesson\d\d", m.name))


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"vit_lib.classroom.exercises.{name}")


def _checks(name: str) -> list[tuple[Exercise, object]]:
    module = _module(name)
    return [(ex, getattr(module, ex.check)) for ex in module.EXERCISES]


def _required(fn: object) -> list[str]:
    return [p.name for p in inspect.signature(fn).parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


ALL_CHECKS = [(name, ex.number) for name in LESSON_MODULES for ex in _module(name).EXERCISES]


def _stub(*args: object, **kwargs: object) -> object:
    # YOUR CODE HERE
    raise NotImplementedError()


def test_every_lesson_has_a_table():
    assert [f"lesson{n:02d}" for n in range(7)] == LESSON_MODULES[:7]


@pytest.mark.parametrize("name", LESSON_MODULES)
def test_table_names_decorated_checks_numbered_from_1(name):
    module = _module(name)
    table = module.EXERCISES
    assert 3 <= len(table) <= 7, "each lesson has 3 to 7 exercises"
    assert [ex.number for ex in table] == list(range(1, len(table) + 1))
    assert {ex.lesson for ex in table} == {name[-2:]}
    assert len({ex.check for ex in table}) == len(table), "one check per exercise"
    for ex in table:
        fn = getattr(module, ex.check, None)
        assert callable(fn), f"{name}.EXERCISES names {ex.check}, which the module lacks"
        assert hasattr(fn, "exercise_answers"), f"{name}.{ex.check} lacks @exercise_check()"
        assert ex.title and ex.key == f"{ex.lesson}.{ex.number}"
    decorated = {n for n, f in vars(module).items()
                 if hasattr(f, "exercise_answers") and getattr(f, "__module__", "") == module.__name__}
    assert decorated == {ex.check for ex in table}, "every decorated check is in the table"


@pytest.mark.parametrize("name,number", ALL_CHECKS)
def test_none_is_not_attempted_and_recorded(name, number, capsys, monkeypatch, tmp_path):
    ex, fn = _checks(name)[number - 1]
    results_file = tmp_path / "results.jsonl"
    monkeypatch.setenv(RESULTS_ENV, str(results_file))
    before = len(common.RESULTS)
    args = [None] * len(_required(fn))          # the answers and any other argument: all None
    result = fn(*args)
    assert isinstance(result, CheckResult) and not result and not result.passed
    assert (result.lesson, result.exercise, result.status) == (ex.lesson, ex.number, "not attempted")
    assert result.feedback == NOT_ATTEMPTED
    assert common.RESULTS[before:] == [result]
    assert capsys.readouterr().out == f"✗ {ex.title}: {NOT_ATTEMPTED}\n"
    lines = results_file.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"lesson": ex.lesson, "exercise": ex.number, "title": ex.title,
         "status": "not attempted", "feedback": NOT_ATTEMPTED}]


STUBBABLE = [(name, number) for name, number in ALL_CHECKS
             if len(_required(_checks(name)[number - 1][1]))
             == _checks(name)[number - 1][1].exercise_answers]


@pytest.mark.parametrize("name,number", STUBBABLE)
def test_not_implemented_stub_is_not_attempted(name, number, capsys):
    """A learner function left as `raise NotImplementedError()` (the student edition's stub)."""
    ex, fn = _checks(name)[number - 1]
    result = fn(*[_stub] * fn.exercise_answers)
    assert (result.lesson, result.exercise, result.status) == (ex.lesson, ex.number, "not attempted")
    assert result.feedback == NOT_ATTEMPTED
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and out.startswith("✗ ") and NOT_ATTEMPTED in out


def test_stub_wrapped_by_a_check_is_still_not_attempted(capsys):
    """A check that turns the learner's exception into its own message keeps 'not attempted'."""
    from vit_lib.classroom.exercises.common import Mismatch, run_check

    def body() -> str:
        try:
            _stub()
        except Exception as exc:
            raise Mismatch(f"your code raised {type(exc).__name__}") from exc
        return "unreachable"

    assert run_check("wrapped", body).status == "not attempted"
    assert capsys.readouterr().out == f"✗ wrapped: {NOT_ATTEMPTED}\n"


def test_value_and_function_answers_report_the_same_way(capsys, monkeypatch, tmp_path):
    """Lesson 01: exercise 1 takes a tensor, exercise 2 a function; both pass and fail alike."""
    from vit_lib.classroom.exercises.lesson01 import check_num_patches, check_patches

    results_file = tmp_path / "results.jsonl"
    monkeypatch.setenv(RESULTS_ENV, str(results_file))
    images = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    right = images.reshape(2, 1, 2, 4, 2, 4).permute(0, 2, 4, 1, 3, 5).reshape(2, 4, 16)
    results = [check_patches(right, images, 4),
               check_num_patches(lambda h, w, p: (h // p) * (w // p)),
               check_patches(images.reshape(2, 4, 16), images, 4),      # strips, not squares
               check_num_patches(lambda h, w, p: h * w // p)]           # forgot one p
    printed = capsys.readouterr().out.splitlines()
    assert [r.status for r in results] == ["passed", "passed", "failed", "failed"]
    assert [bool(r) for r in results] == [True, True, False, False]
    assert [(r.lesson, r.exercise) for r in results] == [("01", 1), ("01", 2), ("01", 1), ("01", 2)]
    assert all(r.feedback for r in results), "every result has a feedback line"
    assert [line[0] for line in printed] == ["✓", "✓", "✗", "✗"]
    for line, r in zip(printed, results, strict=True):
        assert line.endswith(r.feedback)
    recorded = [json.loads(line) for line in results_file.read_text(encoding="utf-8").splitlines()]
    assert [CheckResult(**d) for d in recorded] == results


def test_nothing_is_written_without_the_variable(monkeypatch, tmp_path, capsys):
    from vit_lib.classroom.exercises.lesson01 import check_num_patches

    monkeypatch.delenv(RESULTS_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    before = len(common.RESULTS)
    assert check_num_patches(lambda h, w, p: (h // p) * (w // p))
    assert len(common.RESULTS) == before + 1
    assert list(tmp_path.iterdir()) == []
    capsys.readouterr()
