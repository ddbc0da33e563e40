"""Checks for the exercises of notebook 01 (patches and the patch embedding).

Each check prints one line of feedback (✓ or ✗ with a hint) and returns a `CheckResult` (truthy
when passed); a wrong answer, or learner code that crashes, never raises.
"""
from __future__ import annotations

import random
from typing import Callable

import torch

from vit_lib.classroom.exercises.common import (
    CheckResult,
    Exercise,
    Mismatch,
    exercise_check,
    expect_close,
    expect_shape,
    expect_tensor,
    grading_cases,
    run_check,
    seeded,
)
from vit_lib.patches import image_to_patches

__all__ = ["check_patches", "check_num_patches", "check_unpatchify"]

# The lesson's exercises, in notebook order: what the grader expects to find.
EXERCISES = (
    Exercise("01", 1, "patches of a given size", "check_patches", ("patches4", "batch", "4")),
    Exercise("01", 2, "number of patches", "check_num_patches", ("count_patches",)),
    Exercise("01", 3, "patches back to an image", "check_unpatchify", ("patches_to_image",)),
)


def _function_name(fn: Callable) -> str:
    """The name the learner gave their function ("your function" for a lambda or a callable)."""
    name = getattr(fn, "__name__", "")
    return name if name.isidentifier() else "your function"


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.float(), b.float(), atol=1e-6))


@exercise_check()
def check_patches(patches: torch.Tensor, images: torch.Tensor, patch_size: int) -> CheckResult:
    """patches: [B, N, C*P*P] cut from images [B, C, H, W] with patch_size P, row by row."""

    def body() -> str:
        x = images.detach().cpu()
        b, c, h, w = x.shape
        p = patch_size
        rows, cols = h // p, w // p
        n, size = rows * cols, c * p * p
        expected = image_to_patches(x, p)
        tensor = expect_tensor(patches, "your patches")
        if (tuple(tensor.shape) == (b, size, n) and n != size
                and _same(tensor.detach().cpu().transpose(1, 2), expected)):
            raise Mismatch(f"your patches has shape {list(tensor.shape)}, expected [{b}, {n}, "
                           f"{size}]: patches go on dim 1 and their values on dim 2; add "
                           ".transpose(1, 2) (nn.functional.unfold returns [B, C*P*P, N])")
        for q in range(1, min(h, w) + 1):
            if q != p and h % q == 0 and w % q == 0 and \
                    tuple(tensor.shape) == (b, (h // q) * (w // q), c * q * q):
                raise Mismatch(f"your patches has shape {list(tensor.shape)}, expected [{b}, {n}, "
                               f"{size}]: those look like {q}x{q} patches; this exercise asks "
                               f"for patch_size={p}")
        if tuple(tensor.shape) == (n, size):
            raise Mismatch(f"your patches has shape {list(tensor.shape)}, expected [{b}, {n}, "
                           f"{size}]: keep the batch dimension in front")
        got = expect_shape(tensor, expected.shape, "your patches",
                           hint=f"a {h}x{w} image cut into {p}x{p} patches gives "
                                f"({h}/{p})*({w}/{p}) = {n} patches of C*{p}*{p} = {size} values")
        got = got.detach().cpu()
        if _same(got, expected):
            return f"{n} patches of {size} values each, in row-major order"
        grid = x.reshape(b, c, rows, p, cols, p)
        wrong = [
            (x.reshape(b, n, size),
             "a plain reshape mixes pixel rows of different patches: reshape to "
             "[B, C, H/P, P, W/P, P] and permute to [B, H/P, W/P, C, P, P] before flattening"),
            (grid.permute(0, 4, 2, 1, 3, 5).reshape(b, n, size),
             "your patches run column by column: the patch order must be row-major "
             "(patch k is grid row k // cols, column k % cols); put the grid-row axis before "
             "the grid-column axis in your permute"),
            (grid.permute(0, 2, 4, 1, 5, 3).reshape(b, n, size),
             "each patch holds the right pixels but is flattened column by column: inside a "
             "patch the order is channel, row, column, so the pixel-row axis comes before the "
             "pixel-column axis"),
        ]
        if c > 1:
            wrong.append((grid.permute(0, 2, 4, 3, 5, 1).reshape(b, n, size),
                          "inside a patch the channel must come first (channel, row, column): "
                          "permute to [B, H/P, W/P, C, P, P], not [B, H/P, W/P, P, P, C]"))
        for candidate, hint in wrong:
            if not _same(candidate, expected) and _same(got, candidate):
                raise Mismatch(hint)
        if _same(got.sort(dim=-1).values, expected.sort(dim=-1).values):
            raise Mismatch("every patch has the right pixels, in the wrong order: flatten each "
                           "patch as channel, row, column")
        expect_close(got, expected, "your patches", atol=1e-6,
                     hint="compare patch k with images[:, :, r*P:(r+1)*P, q*P:(q+1)*P] "
                          "for r, q = divmod(k, W // P)")
        return ""

    return run_check(f"patches of size {patch_size}", body)


_PATCH_CASES = ((28, 28, 7), (28, 28, 4), (28, 28, 14), (32, 32, 4), (224, 224, 16),
                (32, 64, 8), (48, 16, 4))


def _draw_patch_case(rng: random.Random) -> tuple[int, int, int]:
    p = rng.randint(2, 16)
    return p * rng.randint(1, 16), p * rng.randint(1, 16), p


@exercise_check()
def check_num_patches(fn: Callable[[int, int, int], int]) -> CheckResult:
    """fn(height, width, patch_size) -> number of patches; tried on square and oblong images."""

    def body() -> str:
        name = _function_name(fn)
        cases = grading_cases(_PATCH_CASES, _draw_patch_case)
        for h, w, p in cases:
            expected = (h // p) * (w // p)
            got = fn(h, w, p)
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = got.item()
            call = f"{name}({h}, {w}, {p})"
            if isinstance(got, float):
                if got == expected:
                    raise Mismatch(f"{call} returned {got}, a float: use integer division // so "
                                   "the count can size tensors and ranges")
            if not isinstance(got, int) or isinstance(got, bool):
                raise Mismatch(f"{call} returned {got!r} ({type(got).__name__}), expected the "
                               f"int {expected}")
            if got == expected:
                continue
            if got == expected + 1:
                hint = "that counts the CLS token too; count only the patches"
            elif got == (h * w) // p:
                hint = "each patch covers P*P pixels, so divide the pixel count by P squared"
            elif got == (h // p) ** 2 or got == (w // p) ** 2:
                hint = "the image is not square here: multiply patches per column by patches per row"
            elif got == h * w:
                hint = "that is the number of pixels, not of patches"
            elif got == p * p:
                hint = "that is the number of pixels in one patch"
            else:
                hint = "there are (H // P) patches down and (W // P) across"
            raise Mismatch(f"{call} returned {got}, expected {expected}: {hint}")
        return f"right for {len(cases)} sizes, e.g. 224x224 with 16x16 patches -> 196"

    return run_check("number of patches", body)


@exercise_check()
def check_unpatchify(fn: Callable[[torch.Tensor, int, int, int], torch.Tensor]) -> CheckResult:
    """fn(patches [B, N, C*P*P], patch_size, height, width) -> images [B, C, H, W].

    It must undo image_to_patches exactly; tried on a square grey image, an oblong one and
    a three-channel one.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(seeded(0))
        cases = (("a 28x28 grey image, 7x7 patches", (2, 1, 28, 28), 7),
                 ("a 12x20 grey image, 4x4 patches (not square)", (2, 1, 12, 20), 4),
                 ("a 3-channel 8x8 image, 4x4 patches", (2, 3, 8, 8), 4))
        for what, shape, p in cases:
            images = torch.rand(shape, generator=g)
            b, c, h, w = shape
            patches = image_to_patches(images, p)
            try:
                got = fn(patches.clone(), p, h, w)
            except Exception as exc:
                hint = (": here H and W differ, so use H // P grid rows and W // P grid columns"
                        if h != w else "")
                raise Mismatch(f"on {what}, your code raised {type(exc).__name__}: {exc}{hint}") from None
            tensor = expect_tensor(got, f"on {what}, your image")
            if tuple(tensor.shape) != tuple(shape):
                hint = ("keep the batch and channel dimensions: the result is [B, C, H, W]"
                        if tensor.numel() == images.numel() else
                        "the result must hold exactly the values of the patches")
                expect_shape(tensor, shape, f"on {what}, your image", hint=hint)
            tensor = tensor.detach().cpu()
            if _same(tensor, images):
                continue
            grid = patches.reshape(b, h // p, w // p, c, p, p)
            if _same(tensor, patches.reshape(b, c, h, w)):
                hint = ("a plain reshape does not undo the cut: reshape to [B, H/P, W/P, C, P, P], "
                        "permute to [B, C, H/P, P, W/P, P], then reshape to [B, C, H, W]")
            elif _same(tensor, grid.permute(0, 3, 1, 5, 2, 4).reshape(b, c, h, w)):
                hint = ("every patch is transposed: the inverse permute is (0, 3, 1, 4, 2, 5), "
                        "pixel rows next to grid rows")
            elif _same(tensor, patches.reshape(b, w // p, h // p, c, p, p)
                       .permute(0, 3, 2, 4, 1, 5).reshape(b, c, h, w)):
                hint = ("patches land in the wrong grid cells: they come row by row, so patch k "
                        "belongs to grid row k // (W/P) and column k % (W/P)")
            elif c > 1:
                hint = ("inside a patch the values are ordered channel, row, column: split them "
                        "as [C, P, P] before moving C to dim 1")
            else:
                hint = "check the order of your permute against the one in image_to_patches"
            expect_close(tensor, images, f"on {what}, your image", atol=1e-6, hint=hint)
        return "image_to_patches followed by your function gives back the original images"

    return run_check("patches back to an image", body)
