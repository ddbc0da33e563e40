"""Checks for the exercises of notebook 06 (inside the model): rollout, CLS focus, distances.

Every check takes the learner's function, runs it, prints one line of feedback ('✓ ...' or
'✗ ...' with a hint) and returns True or False; none raises on a wrong answer.
"""
from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from vit_lib.classroom.exercises.common import (
    CheckResult,
    Exercise,
    Mismatch,
    exercise_check,
    expect_close,
    expect_shape,
    expect_tensor,
    run_check,
    seeded,
)
from vit_lib.interpret import (
    attention_maps,
    attention_rollout,
    cls_attention_grid,
    mean_attention_distance,
)
from vit_lib.model import VisionTransformer

__all__ = ["check_plain_rollout", "check_most_attended_patch", "check_head_distance"]

# The lesson's exercises, in notebook order: what the grader expects to find.
EXERCISES = (
    Exercise("06", 1, "rollout without residual", "check_plain_rollout", ("plain_rollout",)),
    Exercise("06", 2, "most attended patch", "check_most_attended_patch", ("most_attended_patch", "model", "x[:6]")),
    Exercise("06", 3, "mean attention distance of one head", "check_head_distance", ("head_distance",)),
)


def _random_maps(batch: int, heads: int, tokens: int, depth: int, seed: int) -> list[torch.Tensor]:
    """`depth` row-stochastic attention maps [batch, heads, tokens, tokens] (softmax of noise)."""
    g = torch.Generator().manual_seed(seeded(seed))
    return [(2.0 * torch.randn(batch, heads, tokens, tokens, generator=g)).softmax(dim=-1)
            for _ in range(depth)]


# ---------------------------------------------------------------------------------------------
# Exercise 1: rollout without the residual path
# ---------------------------------------------------------------------------------------------

@exercise_check()
def check_plain_rollout(fn: Callable[[list[torch.Tensor]], torch.Tensor]) -> CheckResult:
    """fn(maps: `depth` tensors [B, heads, T, T]) -> [B, T, T]: the product of the head-averaged
    maps through depth, later blocks on the left, no identity added."""
    maps = _random_maps(batch=2, heads=4, tokens=17, depth=4, seed=11)
    expected = attention_rollout(maps, residual=0.0)

    def reversed_order() -> torch.Tensor:
        out = None
        for w in maps:
            a = w.mean(dim=1)
            out = a if out is None else out @ a
        return out

    def body() -> str:
        got = expect_tensor(fn([m.clone() for m in maps]), "your rollout")
        if got.ndim == 4:
            raise Mismatch(f"your rollout has shape {list(got.shape)}, expected "
                           f"{list(expected.shape)}: average the heads first, weights.mean(dim=1)")
        expect_shape(got, expected.shape, "your rollout")
        close = dict(atol=1e-5)
        if torch.allclose(got, expected, **close):
            return "rows sum to 1 and match attention_rollout(maps, residual=0.0)"
        if torch.allclose(got, attention_rollout(maps, residual=0.5), **close):
            raise Mismatch("you kept the residual path (0.5 * A + 0.5 * I): this exercise uses "
                           "the head-averaged A alone")
        if torch.allclose(got, reversed_order(), **close):
            raise Mismatch("the order of the product is reversed: a later block acts on the "
                           "result of the earlier ones, so multiply it on the left, "
                           "rollout = a @ rollout")
        if not torch.allclose(got.sum(-1), torch.ones_like(got.sum(-1)), atol=1e-4):
            raise Mismatch("the rows of your rollout do not sum to 1: average the heads with "
                           "mean(dim=1) (not sum or max) and multiply the maps as matrices (@)")
        if torch.allclose(got, maps[-1].mean(dim=1), **close):
            raise Mismatch("that is only the last block's attention: multiply the maps of all "
                           "blocks together")
        expect_close(got, expected, "your rollout",
                     hint="for each block a = weights.mean(dim=1); rollout = a @ rollout")
        return ""

    return run_check("rollout without residual", body)


# ---------------------------------------------------------------------------------------------
# Exercise 2: the patch the CLS token draws on most
# ---------------------------------------------------------------------------------------------

def _as_row_col(value: object, grid: int) -> tuple[int, int]:
    if isinstance(value, torch.Tensor):
        if value.numel() == 1:
            raise Mismatch(f"you returned one index ({int(value.item())}): give (row, col), e.g. "
                           f"row, col = divmod(index, {grid})")
        value = value.flatten().tolist()
    if isinstance(value, int) or (isinstance(value, float) and value.is_integer()):
        raise Mismatch(f"you returned one index ({int(value)}): give (row, col), e.g. "
                       f"row, col = divmod(index, {grid})")
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise Mismatch(f"return a pair (row, col), got {value!r}")
    try:
        return int(value[0]), int(value[1])
    except (TypeError, ValueError):
        raise Mismatch(f"return a pair of whole numbers (row, col), got {value!r}") from None


@exercise_check()
def check_most_attended_patch(fn: Callable[[VisionTransformer, torch.Tensor], Sequence[int]],
                              model: VisionTransformer, images: torch.Tensor) -> CheckResult:
    """fn(model, image [1, C, H, W]) -> (row, col) of the patch with the largest weight in the
    CLS row of the attention rollout (residual 0.5); checked on every image of images [B, C, H, W]."""
    grid = model.config.grid_size

    def body() -> str:
        answers = []
        for i in range(images.shape[0]):
            image = images[i:i + 1]
            maps = attention_maps(model, image)
            rollout = attention_rollout(maps)                              # [1, T, T]
            flat = int(cls_attention_grid(rollout, grid)[0].flatten().argmax())
            expected = divmod(flat, grid)
            got = _as_row_col(fn(model, image.clone()), grid)
            if got == expected:
                answers.append(expected)
                continue
            where = f"digit {i}: you say {got}, expected {expected}"
            with_cls = int(rollout[0, 0].argmax())
            last = int(maps[-1].mean(dim=1)[0, 0, 1:].argmax())
            if got == (expected[1], expected[0]):
                hint = "row and column are swapped: row, col = divmod(index, grid_size)"
            elif got == divmod(with_cls, grid):
                hint = ("you counted the CLS token as patch 0: keep only the patch columns, "
                        "rollout[:, 0, 1:]")
            elif got == divmod(last, grid) and last != flat:
                hint = ("that is the last block's attention alone: use the rollout over all "
                        "blocks, attention_rollout(attention_maps(model, image))")
            else:
                hint = ("take the CLS row of attention_rollout(attention_maps(model, image)), "
                        "drop its first entry, argmax, then divmod by grid_size")
            raise Mismatch(f"{where}: {hint}")
        return f"right for all {len(answers)} digits"

    return run_check("most attended patch", body)


# ---------------------------------------------------------------------------------------------
# Exercise 3: mean attention distance of one head
# ---------------------------------------------------------------------------------------------

def _distance_variant(weights: torch.Tensor, grid: int, patch: int, renormalise: bool = True,
                      manhattan: bool = False) -> float:
    n = grid * grid
    rows, cols = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    xy = torch.stack([rows.flatten(), cols.flatten()], dim=1).float() * patch
    dist = torch.cdist(xy, xy, p=1.0 if manhattan else 2.0)
    a = weights[:, -n:, -n:]
    if renormalise:
        a = a / a.sum(dim=-1, keepdim=True)
    return float((a * dist).sum(-1).mean())


@exercise_check()
def check_head_distance(fn: Callable[[torch.Tensor, int, int], float]) -> CheckResult:
    """fn(weights [B, T, T] of one head, CLS token first, grid_size, patch_size) -> the mean
    attention distance in pixels, the same as vit_lib.interpret.mean_attention_distance."""
    cases = [(4, 7, 3, 21), (3, 5, 2, 22)]          # grid, patch, batch, seed

    def body() -> str:
        for grid, patch, batch, seed in cases:
            weights = _random_maps(batch, 1, grid * grid + 1, 1, seed)[0][:, 0]   # [B, T, T]
            expected = float(mean_attention_distance([weights[:, None]], grid, patch)[0, 0])
            try:
                raw = fn(weights.clone(), grid, patch)
            except RuntimeError as exc:
                if "size of tensor" not in str(exc):
                    raise
                raise Mismatch(f"the weights are [B, {grid * grid + 1}, {grid * grid + 1}] with the "
                               f"CLS token first, the distances between the {grid * grid} patch "
                               "positions only: drop the CLS row and column, weights[:, 1:, 1:], "
                               f"before combining them ({exc})") from None
            if isinstance(raw, torch.Tensor) and raw.numel() != 1:
                raise Mismatch(f"return one number for the head, got a tensor of shape "
                               f"{list(raw.shape)}: average over queries and images with .mean()")
            got = float(raw)
            if math.isclose(got, expected, rel_tol=1e-4):
                continue
            where = (f"for a {grid}x{grid} grid of {patch}-pixel patches you return {got:.4f}, "
                     f"expected {expected:.4f}")
            if math.isclose(got * patch, expected, rel_tol=1e-4):
                hint = "that is in patches: multiply the grid coordinates by patch_size for pixels"
            elif math.isclose(got, _distance_variant(weights, grid, patch, renormalise=False),
                              rel_tol=1e-4):
                hint = ("after dropping the CLS token renormalise each row over the patches, "
                        "a / a.sum(dim=-1, keepdim=True)")
            elif math.isclose(got, _distance_variant(weights, grid, patch, manhattan=True),
                              rel_tol=1e-4):
                hint = "use the straight-line (Euclidean) distance, torch.cdist(xy, xy)"
            else:
                hint = ("keep weights[:, 1:, 1:], renormalise rows, weight the pixel distance "
                        "between patch positions, sum over keys, then average")
            raise Mismatch(f"{where}: {hint}")
        return "matches mean_attention_distance on two grids"

    return run_check("mean attention distance of one head", body)
