"""Shared tools for exercise checks: compare a learner's answer and explain what is off.

Each check function of a lesson module returns True when the answer is right and prints one
line of feedback either way; it never raises on a wrong answer (only on a check's own misuse).
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import torch


class Mismatch(Exception):
    """Raised inside a check when the answer is wrong; the message is the feedback shown."""


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


def run_check(title: str, body: Callable[[], str | None]) -> bool:
    """Run one check; print '✓ title: ...' or '✗ title: feedback'; return whether it passed."""
    try:
        detail = body()
    except Mismatch as exc:
        print(f"✗ {title}: {exc}")
        return False
    except Exception as exc:   # the learner's code crashed: say so, in one line
        print(f"✗ {title}: your code raised {type(exc).__name__}: {exc}")
        return False
    print(f"✓ {title}" + (f": {detail}" if detail else ""))
    return True
