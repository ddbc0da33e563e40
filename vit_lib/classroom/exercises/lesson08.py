"""Checks for the exercises of notebook 08 (your own digits): preparing a digit like MNIST and
handing it to a model.

Each check takes the learner's function, runs it on its own test images, prints one line of
feedback (✓, or ✗ naming the typical mistake it recognised) and returns a `CheckResult`; none
raises on a wrong answer.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

from vit_lib.classroom.exercises.common import (
    CheckResult,
    Exercise,
    Mismatch,
    exercise_check,
    expect_tensor,
    run_check,
    seeded,
)
from vit_lib.digits import centre_by_mass, scale_to_box

__all__ = ["check_centre_of_mass", "check_scale_into_box", "check_paste_centred",
           "check_model_input"]

# The lesson's exercises, in notebook order: what the grader expects to find.
EXERCISES = (
    Exercise("08", 1, "centre of mass", "check_centre_of_mass", ("centre_of_mass",)),
    Exercise("08", 2, "scaling into the 20x20 box", "check_scale_into_box", ("scale_into_box",)),
    Exercise("08", 3, "pasting by the centre of mass", "check_paste_centred", ("paste_centred",)),
    Exercise("08", 4, "the model's input", "check_model_input", ("model_input",)),
)


def _function_name(fn: Callable) -> str:
    name = getattr(fn, "__name__", "")
    return name if name.isidentifier() else "your function"


def _call(fn: Callable, *args):
    """The learner's function on args; its exception becomes one line of feedback."""
    try:
        return fn(*args)
    except NotImplementedError:
        raise
    except Exception as exc:
        raise Mismatch(f"{_function_name(fn)} raised {type(exc).__name__}: {exc}") from exc


def _stroke_image(h: int, w: int, seed: int) -> torch.Tensor:
    """A [h, w] test digit: a heavy bar along the top and a thin stroke down the left, plus
    noise, so its centre of mass is far from its box's centre; ink touches all four edges."""
    g = torch.Generator().manual_seed(seeded(seed))
    image = 0.3 * torch.rand(h, w, generator=g) * (torch.rand(h, w, generator=g) > 0.5)
    image[: max(1, h // 5)] = 1.0                           # the heavy bar at the top
    image[:, : max(1, w // 6)] = torch.maximum(image[:, : max(1, w // 6)], torch.tensor(0.8))
    image[-1, -1] = 0.5                                      # ink in the far corner
    return image


def _moments(image: torch.Tensor) -> tuple[float, float]:
    rows = torch.arange(image.shape[0], dtype=torch.float64)
    cols = torch.arange(image.shape[1], dtype=torch.float64)
    x = image.double()
    mass = x.sum()
    return float((x.sum(1) * rows).sum() / mass), float((x.sum(0) * cols).sum() / mass)


def _pair(value, what: str) -> tuple[float, float]:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().flatten().tolist()
    try:
        a, b = value
        return float(a), float(b)
    except (TypeError, ValueError):
        raise Mismatch(f"{what} returned {value!r}; return two numbers: (row, column)") from None


# ---------------------------------------------------------------------------------------------
# Exercise 1: the centre of mass
# ---------------------------------------------------------------------------------------------

@exercise_check()
def check_centre_of_mass(fn: Callable[[torch.Tensor], tuple[float, float]]) -> CheckResult:
    """fn(image [H, W] >= 0) -> (row, column) of its centre of mass, pixel centres at 0, 1, ...;
    tried on oblong test digits (so rows and columns cannot be mixed up unnoticed)."""

    def body() -> str:
        name = _function_name(fn)
        for h, w, seed in ((20, 9, 0), (13, 20, 1), (28, 28, 2)):
            image = _stroke_image(h, w, seed)
            cy, cx = _moments(image)
            got = _pair(_call(fn, image.clone()), f"{name} on a {h}x{w} image")
            if all(math.isfinite(v) for v in got) and max(abs(got[0] - cy), abs(got[1] - cx)) <= 1e-3:
                continue
            call = f"{name} on a {h}x{w} image returned ({got[0]:.3f}, {got[1]:.3f}), expected " \
                   f"({cy:.3f}, {cx:.3f})"
            mask = (image > 0).double()
            mcy, mcx = _moments(mask)
            mass = float(image.sum())
            if abs(got[0] - cx) <= 1e-3 and abs(got[1] - cy) <= 1e-3:
                hint = "row and column are swapped: the row (y) comes first, like image[row, col]"
            elif abs(got[0] - cy * mass) <= 1e-2 * mass and abs(got[1] - cx * mass) <= 1e-2 * mass:
                hint = "divide the weighted sums by the total mass image.sum()"
            elif abs(got[0] - cy - 1) <= 1e-3 and abs(got[1] - cx - 1) <= 1e-3:
                hint = "pixel centres are at 0, 1, 2, ... (torch.arange(H)), not 1, 2, 3, ..."
            elif abs(got[0] - cy - 0.5) <= 1e-3 and abs(got[1] - cx - 0.5) <= 1e-3:
                hint = "pixel centres are at whole numbers 0, 1, 2, ...; no + 0.5"
            elif abs(got[0] - mcy) <= 1e-3 and abs(got[1] - mcx) <= 1e-3:
                hint = ("that is the centre of the inked pixels, each counted once: weight every "
                        "pixel by its value (bright ink counts more)")
            elif abs(got[0] - (h - 1) / 2) <= 1e-3 and abs(got[1] - (w - 1) / 2) <= 1e-3:
                hint = "that is the image's middle; weight each pixel position by its value"
            else:
                hint = ("row = sum over pixels of value * row index / total value (and the "
                        "same for columns)")
            raise Mismatch(f"{call}: {hint}")
        return "right on three test digits, oblong ones too"

    return run_check("centre of mass", body)


# ---------------------------------------------------------------------------------------------
# Exercise 2: scaling into the box
# ---------------------------------------------------------------------------------------------

_SCALE_CASES = ((60, 47), (30, 90), (100, 100), (11, 7))


@exercise_check()
def check_scale_into_box(fn: Callable[[torch.Tensor, int], torch.Tensor]) -> CheckResult:
    """fn(cropped [h, w], box) -> [h', w']: longer side box, shorter side round(side * box /
    longer), values stretched so the strongest ink is 1; any interpolation that keeps the
    picture passes (its values must correlate with scale_to_box's: 0.88 for nearest, 0.1 for
    a scrambled crop; at least 0.7 passes)."""

    def body() -> str:
        name = _function_name(fn)
        for index, (h, w) in enumerate(_SCALE_CASES):
            cropped = 0.8 * _stroke_image(h, w, 10 + index)
            expected = scale_to_box(cropped.clone(), 20)
            eh, ew = expected.shape
            got = expect_tensor(_call(fn, cropped.clone(), 20), f"{name}'s result")
            got = got.detach().cpu().float()
            call = f"{name} on a {h}x{w} crop with box 20"
            if got.ndim != 2:
                raise Mismatch(f"{call} returned shape {list(got.shape)}, expected [{eh}, {ew}]: "
                               "return a 2-D [height, width] tensor (drop the [1, 1] that "
                               "F.interpolate needs with [0, 0])")
            shape = tuple(got.shape)
            if shape != (eh, ew):
                if shape == (20, 20) and h != w:
                    hint = "both sides became 20, which squashes the digit: keep the aspect ratio"
                elif shape == (ew, eh):
                    hint = "height and width are swapped: size=(height, width)"
                elif min(shape) == 20 and h != w:
                    hint = "the shorter side became 20: scale the longer side to the box"
                elif shape in ((math.floor(h * 20 / max(h, w)), math.floor(w * 20 / max(h, w))),):
                    hint = "use round(), not int(): int() cuts 15.7 down to 15"
                else:
                    hint = f"scale both sides by box / max(h, w) = {20 / max(h, w):.3f} and round"
                raise Mismatch(f"{call} returned shape {list(shape)}, expected [{eh}, {ew}]: {hint}")
            if not torch.isfinite(got).all():
                raise Mismatch(f"{call} returned NaN or infinite values")
            if abs(float(got.max()) - 1.0) > 1e-3:
                raise Mismatch(f"{call}: the strongest ink is {float(got.max()):.3f}; divide by "
                               "the maximum so it is 1, as in MNIST")
            if float(got.min()) < -1e-3:
                raise Mismatch(f"{call}: some values are below 0 ({float(got.min()):.3f}); clamp "
                               "at 0 (bicubic interpolation overshoots)")
            if torch.corrcoef(torch.stack([got.flatten(), expected.flatten()]))[0, 1] < 0.7:
                raise Mismatch(f"{call}: the result does not look like the crop: resize it with "
                               "F.interpolate (reshape or view only rearrange the numbers)")
        return "right shapes for tall, wide and square crops, strongest ink 1"

    return run_check("scaling into the 20x20 box", body)


# ---------------------------------------------------------------------------------------------
# Exercise 3: pasting into 28x28 by the centre of mass
# ---------------------------------------------------------------------------------------------

def _corner_image() -> torch.Tensor:
    """A 20x20 digit whose ink sits in its top-left corner: centring its mass would push it
    off the 28x28 canvas, so the offsets must stop at the canvas's edge."""
    image = _stroke_image(20, 20, 23) * 0.2
    image[:6, :6] = 1.0
    image[-1, -1] = 0.5
    return image


def _paste_cases() -> list[torch.Tensor]:
    return [_stroke_image(20, 9, 20), _stroke_image(13, 20, 21), _stroke_image(20, 20, 22),
            _corner_image()]


@exercise_check()
def check_paste_centred(fn: Callable[[torch.Tensor], torch.Tensor]) -> CheckResult:
    """fn(scaled [h, w]) -> [28, 28]: the digit pasted unchanged at whole-pixel offsets, its
    centre of mass within half a pixel of (14, 14) where the canvas allows, no ink cut off."""

    def body() -> str:
        name = _function_name(fn)
        for scaled in _paste_cases():
            h, w = scaled.shape
            expected = centre_by_mass(scaled.clone())
            got = expect_tensor(_call(fn, scaled.clone()), f"{name}'s result").detach().cpu().float()
            call = f"{name} on a {h}x{w} digit"
            if tuple(got.shape) != (28, 28):
                raise Mismatch(f"{call} returned shape {list(got.shape)}, expected [28, 28]")
            if float(got.sum()) < float(scaled.sum()) - 1e-3:
                raise Mismatch(f"{call}: {1 - float(got.sum()) / float(scaled.sum()):.0%} of the ink "
                               "was cut off: clamp the offsets to 0 .. 28 - h (and 28 - w) so the "
                               "whole digit stays on the canvas")
            rows, cols = torch.nonzero(got > 0, as_tuple=True)
            y0, x0 = int(rows.min()), int(cols.min())
            placed = got[y0:y0 + h, x0:x0 + w]
            outside = float(got.sum() - placed.sum()) if placed.shape == scaled.shape else 1.0
            if placed.shape != scaled.shape or outside > 1e-4 or \
                    not torch.allclose(placed, scaled, atol=1e-5):
                raise Mismatch(f"{call}: the digit is not pasted unchanged: copy it into "
                               "canvas[y0:y0 + h, x0:x0 + w] at whole-pixel offsets (no resizing, "
                               "no interpolation)")
            cy, cx = _moments(got)
            ey, ex = _moments(expected)
            if abs(cy - ey) <= 0.5 + 1e-4 and abs(cx - ex) <= 0.5 + 1e-4:
                continue
            box_y, box_x = (28 - h) // 2, (28 - w) // 2
            my, mx = _moments(scaled)
            if (y0, x0) in ((box_y, box_x), (round((28 - h) / 2), round((28 - w) / 2))):
                hint = ("that centres the bounding box; MNIST centres the centre of mass: offset "
                        "= 14 - centre of mass, rounded")
            elif abs(cy - 13.5) <= 0.5 and abs(cx - 13.5) <= 0.5:
                hint = "MNIST puts the centre of mass at (14, 14), not the middle 13.5"
            elif (y0, x0) == (min(max(round(14 - mx), 0), 28 - h), min(max(round(14 - my), 0), 28 - w)):
                hint = "row and column offsets are swapped: the row offset comes from the row centre"
            else:
                hint = "the offset is 14 minus the centre of mass, rounded to whole pixels"
            raise Mismatch(f"{call}: its centre of mass lands at ({cy:.2f}, {cx:.2f}), expected "
                           f"within half a pixel of ({ey:.2f}, {ex:.2f}): {hint}")
        return "centre of mass at (14, 14) for three digits; the fourth stops at the edge, uncut"

    return run_check("pasting by the centre of mass", body)


# ---------------------------------------------------------------------------------------------
# Exercise 4: what the model takes
# ---------------------------------------------------------------------------------------------

@exercise_check()
def check_model_input(fn: Callable[[torch.Tensor, float, float], torch.Tensor]) -> CheckResult:
    """fn(prepared [1, 28, 28] in [0, 1], mean, std) -> [1, 1, 28, 28]: a batch of one,
    normalised as in training: (x - mean) / std."""

    def body() -> str:
        name = _function_name(fn)
        g = torch.Generator().manual_seed(seeded(3))
        for mean, std in ((0.1307, 0.3081), (0.2860, 0.3530)):
            prepared = torch.rand(1, 28, 28, generator=g)
            expected = ((prepared - mean) / std)[None]
            got = expect_tensor(_call(fn, prepared.clone(), mean, std), f"{name}'s result")
            got = got.detach().cpu().float()
            call = f"{name}(digit, {mean}, {std})"
            if got.numel() != expected.numel():
                raise Mismatch(f"{call} returned shape {list(got.shape)}, expected [1, 1, 28, 28]")
            flat = got.reshape(expected.shape)
            if tuple(got.shape) != (1, 1, 28, 28):
                values_ok = torch.allclose(flat, expected, atol=1e-4)
                hint = ("add the batch dimension in front: digit[None] or digit.unsqueeze(0); a "
                        "model takes [B, 1, 28, 28]" if values_ok else
                        "it must be [batch, channel, height, width]")
                raise Mismatch(f"{call} returned shape {list(got.shape)}, expected [1, 1, 28, 28]: "
                               f"{hint}")
            if torch.allclose(flat, expected, atol=1e-4):
                continue
            x = prepared[None]
            wrong = [(x, "not normalised: subtract the training mean and divide by its std, as "
                         "the model's training batches were"),
                     ((x - mean) * std, "divide by std, do not multiply: (x - mean) / std"),
                     ((x - std) / mean, "mean and std are swapped: (x - mean) / std"),
                     ((x / 255 - mean) / std, "the prepared digit is already in [0, 1]: do not "
                                              "divide by 255 again"),
                     (x / std - mean, "subtract the mean first, then divide: (x - mean) / std"),
                     ((x - mean) / std ** 2, "divide by the standard deviation, not the variance")]
            for candidate, hint in wrong:
                if torch.allclose(flat, candidate, atol=1e-4):
                    raise Mismatch(f"{call}: {hint}")
            worst = float((flat - expected).abs().max())
            raise Mismatch(f"{call} differs from (x - mean) / std by up to {worst:.3g}")
        return "a batch of one, normalised like the training data"

    return run_check("the model's input", body)
