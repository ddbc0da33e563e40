"""Shared tools for exercise checks: compare a learner's answer and explain what is off.

Every exercise of a lesson is listed once, in its lesson module's `EXERCISES` table, and checked by
a function decorated with `@exercise_check`. A check prints one line of feedback (✓, or ✗ with a
hint) and returns a `CheckResult`: truthy when passed, with `status` "passed", "failed" or
"not attempted". It never raises on a wrong or missing answer (only on a check's own misuse).

An answer that is `None`, or a learner function that raises `NotImplementedError` (the stubs of
the student edition), counts as "not attempted". Every result is also appended to `RESULTS`, and,
when the environment variable `VIT_LIB_RESULTS` names a file, written to it as one JSON line, for
the learner's own tools. `python -m vit_lib grade` ignores both: it decides every verdict itself
(vit_lib.classroom.probe), running the same checks in its own process on what the learner's code
returned for inputs drawn from a secret seed (`seeded`, `grading`).
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import os
import random
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator, Mapping, Sequence, TypeVar

import torch

RESULTS_ENV = "VIT_LIB_RESULTS"
NOT_ATTEMPTED = "not attempted yet: write your answer where it says # YOUR CODE HERE, then run the check again"


@dataclass(frozen=True)
class Exercise:
    """One exercise of a lesson: `lesson` "01", `number` 2, its `title` and its check's name."""

    lesson: str
    number: int
    title: str
    check: str
    args: tuple[str, ...] = ()    # the check's arguments in the lesson notebook, e.g. ("count_patches",)

    @property
    def key(self) -> str:
        return f"{self.lesson}.{self.number}"


@dataclass(frozen=True)
class CheckResult:
    """What one run of a check found; truthy when the answer passed."""

    lesson: str | None
    exercise: int | None
    title: str
    status: str          # "passed", "failed" or "not attempted"
    feedback: str        # the line printed after ✓ / ✗

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def __bool__(self) -> bool:
        return self.passed


RESULTS: list[CheckResult] = []
_CURRENT: contextvars.ContextVar[Exercise | None] = contextvars.ContextVar("exercise", default=None)
# Set by the grader's probe and judge (vit_lib.classroom.probe): the secret added to every seed of
# the checks' inputs, and whether a check stays silent and unrecorded.
_SEED_OFFSET: contextvars.ContextVar[int] = contextvars.ContextVar("seed_offset", default=0)
_QUIET: contextvars.ContextVar[bool] = contextvars.ContextVar("quiet", default=False)


def seeded(seed: int) -> int:
    """The seed a check uses for its inputs: `seed` itself, plus the grader's secret when grading."""
    return seed + _SEED_OFFSET.get()


T = TypeVar("T")


def grading_cases(cases: Sequence[T], draw: Callable[[random.Random], T], extra: int = 3) -> list[T]:
    """The check's fixed cases, plus `extra` drawn by draw(rng) from the grader's secret while it
    grades (none otherwise): inputs an answer hard-coded for the fixed cases cannot know."""
    if not _SEED_OFFSET.get():
        return list(cases)
    rng = random.Random(_SEED_OFFSET.get())
    return [*cases, *(draw(rng) for _ in range(extra))]


@contextlib.contextmanager
def grading(secret: int) -> Iterator[None]:
    """Inside: checks draw their inputs with `secret` added to each seed, print nothing and record
    nothing (the grader's probe and judge run them so)."""
    offset, quiet = _SEED_OFFSET.set(secret), _QUIET.set(True)
    try:
        yield
    finally:
        _SEED_OFFSET.reset(offset)
        _QUIET.reset(quiet)


class Mismatch(Exception):
    """Raised inside a check when the answer is wrong; the message is the feedback shown."""


class NotAttempted(Exception):
    """Raised inside a check when there is no answer yet (None, or a NotImplementedError stub)."""


def _record(result: CheckResult) -> CheckResult:
    if _QUIET.get():
        return result
    RESULTS.append(result)
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(asdict(result), ensure_ascii=False) + "\n")
    return result


def expect_tensor(value: Any, what: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise Mismatch(f"{what} should be a torch.Tensor, got {type(value).__name__}")
    return value


def expect_shape(value: Any, expected: Sequence[int], what: str, hint: str = "") -> torch.Tensor:
    """Fail with 'your X has shape [..], expected [..]' plus a hint when the shape is wrong."""
    tensor = expect_tensor(value, what)
    if tuple(tensor.shape) != tuple(expected):
        msg = f"{what} has shape {list(tensor.shape)}, expected {list(expected)}"
        raise Mismatch(msg + (f": {hint}" if hint else ""))
    return tensor


def expect_close(value: Any, expected: torch.Tensor, what: str, atol: float = 1e-5,
                 hint: str = "") -> torch.Tensor:
    """Fail with the largest difference when values differ by more than atol."""
    tensor = expect_shape(value, expected.shape, what)
    diff = (tensor.detach().float() - expected.detach().float()).abs()
    if not torch.isfinite(diff).all():
        raise Mismatch(f"{what} contains NaN or infinite values")
    worst = diff.max().item() if diff.numel() else 0.0
    if worst > atol:
        index = tuple(int(i) for i in torch.nonzero(diff == diff.max())[0])
        msg = (f"{what} differs from the expected values by up to {worst:.3g} "
               f"(at index {list(index)}: got {tensor[index].item():.5g}, "
               f"expected {expected[index].item():.5g})")
        raise Mismatch(msg + (f": {hint}" if hint else ""))
    return tensor


def name_mistake(value: torch.Tensor, mistakes: Mapping[str, torch.Tensor], atol: float = 1e-5) -> None:
    """Fail with a typical mistake's hint when `value` is what that mistake computes (`mistakes`:
    hint -> the mistake's output); return quietly when it is none of them."""
    for hint, candidate in mistakes.items():
        if value.shape == candidate.shape and torch.allclose(value.float(), candidate.float(), atol=atol):
            raise Mismatch(hint)


def run_check(title: str, body: Callable[[], str | None]) -> CheckResult:
    """Run one check; print '✓ title: ...' or '✗ title: feedback'; return and record the result.

    Inside an `@exercise_check` function the result names that exercise.
    """
    exercise = _CURRENT.get()
    try:
        detail = body()
    except NotAttempted as exc:
        status, feedback = "not attempted", str(exc) or NOT_ATTEMPTED
    except NotImplementedError:
        status, feedback = "not attempted", NOT_ATTEMPTED
    except Mismatch as exc:
        if isinstance(exc.__cause__ or exc.__context__, NotImplementedError):
            status, feedback = "not attempted", NOT_ATTEMPTED   # a stub, wrapped by the check
        else:
            status, feedback = "failed", str(exc)
    except Exception as exc:   # the learner's code crashed: say so, in one line
        status, feedback = "failed", f"your code raised {type(exc).__name__}: {exc}"
    else:
        status, feedback = "passed", detail or ""
    mark = "✓" if status == "passed" else "✗"
    if not _QUIET.get():
        print(f"{mark} {title}" + (f": {feedback}" if feedback else ""))
    return _record(CheckResult(exercise.lesson if exercise else None,
                               exercise.number if exercise else None, title, status, feedback))


F = TypeVar("F", bound=Callable[..., CheckResult])


def exercise_check(answers: int = 1) -> Callable[[F], F]:
    """Mark a lesson module's check function: its first `answers` arguments are the learner's.

    The exercise is looked up in the module's `EXERCISES` table by the function's name. An answer
    given as None is reported as not attempted, without running the check's body.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> CheckResult:
            exercise = find_exercise(fn.__module__, fn.__name__)
            token = _CURRENT.set(exercise)
            try:
                given = list(args[:answers]) + list(kwargs.values())[:max(0, answers - len(args))]
                if any(a is None for a in given):
                    def body() -> str:
                        raise NotAttempted(NOT_ATTEMPTED)
                    return run_check(exercise.title if exercise else fn.__name__, body)
                return fn(*args, **kwargs)
            finally:
                _CURRENT.reset(token)

        wrapper.exercise_answers = answers  # type: ignore[attr-defined]  # marks a decorated check
        return wrapper  # type: ignore[return-value]

    return decorate


def find_exercise(module: str, check_name: str) -> Exercise | None:
    """The entry of `module`'s EXERCISES table whose check is `check_name` (None if absent)."""
    import importlib
    table = getattr(importlib.import_module(module), "EXERCISES", ())
    return next((e for e in table if e.check == check_name), None)
