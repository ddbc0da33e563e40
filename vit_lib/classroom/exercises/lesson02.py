"""Checks for the exercises of notebook 02 (attention).

Each check calls the learner's function on fresh inputs, compares with the reference, prints one
line of feedback (✓ or ✗ with a hint) and returns True / False; it never raises on a wrong answer.
"""
from __future__ import annotations

import math
import random
from typing import Callable

import torch

from vit_lib.attention import MultiHeadSelfAttention
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

__all__ = ["check_masked_attention", "check_attention_params", "check_split_merge_heads"]

# The lesson's exercises, in notebook order: what the grader expects to find.
EXERCISES = (
    Exercise("02", 1, "attention with a mask", "check_masked_attention", ("masked_attention",)),
    Exercise("02", 2, "parameters of the attention layer", "check_attention_params", ("attention_params",)),
    Exercise("02", 3, "split and merge heads", "check_split_merge_heads", ("split_heads", "merge_heads")),
)


def _same(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.detach().float(), b.float(), atol=atol,
                                                      equal_nan=True))


def _masked_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor,
                      scale: bool = True, fill: float = float("-inf"), keep: bool = True,
                      after_softmax: bool = False, axis: int = -1) -> tuple[torch.Tensor, torch.Tensor]:
    """Masked attention and its typical mistakes, selected by the flags. Shapes as the exercise."""
    scores = q @ k.transpose(-2, -1)
    if scale:
        scores = scores / math.sqrt(q.size(-1))
    blocked = ~mask if keep else mask
    if after_softmax:
        weights = scores.softmax(axis).masked_fill(blocked, 0.0)
    else:
        weights = scores.masked_fill(blocked, fill).softmax(axis)
    return weights @ v, weights


@exercise_check()
def check_masked_attention(fn: Callable[..., tuple[torch.Tensor, torch.Tensor]]) -> CheckResult:
    """fn(q, k, v, mask) -> (output [..., N, d], weights [..., N, N]).

    mask: bool, broadcastable to [..., N, N]; True where query i MAY look at key j (the
    convention of torch.nn.functional.scaled_dot_product_attention). Tried with a causal mask
    and with a padding mask that hides the last two keys.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(seeded(0))
        b, h, n, d = 2, 3, 6, 8
        q, k, v = (torch.randn(b, h, n, d, generator=g) for _ in range(3))
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        padding = torch.ones(n, n, dtype=torch.bool)
        padding[:, -2:] = False
        for name, mask in (("causal mask", causal), ("padding mask", padding)):
            answer = fn(q.clone(), k.clone(), v.clone(), mask.clone())
            if isinstance(answer, torch.Tensor):
                raise Mismatch("return a pair (output, weights), like scaled_dot_product_attention")
            if not isinstance(answer, (tuple, list)) or len(answer) != 2:
                raise Mismatch(f"return a pair (output, weights), got {type(answer).__name__}")
            out, weights = answer
            expect_shape(weights, (b, h, n, n), f"with a {name}, your weights",
                         hint="weights have one row per query and one column per key")
            expect_shape(out, (b, h, n, d), f"with a {name}, your output",
                         hint="the output is weights @ v")
            ref_out, ref_w = _masked_reference(q, k, v, mask)
            if _same(weights, ref_w) and _same(out, ref_out):
                continue
            mistakes = [
                (dict(keep=False), "your mask is inverted: True means the key may be attended to, "
                                   "so fill the scores where the mask is False (~mask)"),
                (dict(after_softmax=True), "you masked after the softmax, so rows no longer sum "
                                           "to 1: fill the scores with -inf before the softmax"),
                (dict(fill=0.0), "filling masked scores with 0 still gives them weight "
                                 "(exp(0) = 1): fill with float('-inf')"),
                (dict(scale=False), "the scores are not scaled: divide q @ k^T by sqrt(d)"),
                (dict(axis=-2), "your softmax runs over the queries (dim=-2), so each key's "
                                "column sums to 1: take it over the keys, dim=-1, so that each "
                                "query's row of weights sums to 1"),
            ]
            for flags, hint in mistakes:
                w_bad = _masked_reference(q, k, v, mask, **flags)[1]
                if _same(weights, w_bad):
                    raise Mismatch(f"with a {name}: {hint}")
            if weights.detach().masked_select(~mask.expand(b, h, n, n)).abs().max() > 1e-6:
                raise Mismatch(f"with a {name}, your weights are not 0 where the mask is False")
            expect_close(weights, ref_w, f"with a {name}, your weights", atol=1e-5,
                         hint="softmax(scores.masked_fill(~mask, -inf) / sqrt(d)) over the keys")
            expect_close(out, ref_out, f"with a {name}, your output", atol=1e-5,
                         hint="the weights are right: the output is weights @ v")
        return "causal and padding masks both give weight 0 to hidden keys; rows sum to 1"

    return run_check("attention with a mask", body)


_PARAM_CASES = ((16, 4, True), (16, 1, True), (64, 8, True), (48, 3, False), (768, 12, True))


def _draw_param_case(rng: random.Random) -> tuple[int, int, bool]:
    heads = rng.randint(1, 8)
    return heads * rng.randint(1, 12), heads, rng.random() < 0.5


@exercise_check()
def check_attention_params(fn: Callable[[int, int, bool], int]) -> CheckResult:
    """fn(dim, heads, qkv_bias) -> parameter count of MultiHeadSelfAttention(dim, heads, qkv_bias)."""

    def body() -> str:
        for dim, heads, bias in grading_cases(_PARAM_CASES, _draw_param_case):
            module = MultiHeadSelfAttention(dim, heads, qkv_bias=bias)
            expected = sum(p.numel() for p in module.parameters())
            got = fn(dim, heads, bias)
            if isinstance(got, torch.Tensor) and got.numel() == 1:
                got = got.item()
            call = f"for dim={dim}, heads={heads}, qkv_bias={bias}"
            if not isinstance(got, (int, float)) or isinstance(got, bool) or got != int(got):
                raise Mismatch(f"{call} you returned {got!r}, expected the whole number {expected}")
            got = int(got)
            if got == expected:
                continue
            qkv_w, qkv_b, proj = 3 * dim * dim, 3 * dim if bias else 0, dim * dim + dim
            if got == heads * expected or got == qkv_w * heads + qkv_b + proj:
                hint = ("more heads do not add weights: the heads split the dim outputs of the "
                        "same Linear layers, so heads does not appear in the count")
            elif got == qkv_w + 3 * dim + proj and not bias:
                hint = "with qkv_bias=False the qkv layer has no bias"
            elif got == qkv_w + proj - dim and not bias:
                hint = "qkv_bias=False removes only the qkv bias: the output projection keeps its bias"
            elif got == qkv_w + 3 * dim * dim or got == 4 * dim * dim:
                hint = "you left out the biases: the qkv layer has 3*dim, the output projection dim"
            elif got == qkv_w + qkv_b:
                hint = "you forgot the output projection proj: Linear(dim, dim), with a bias"
            elif got == dim * dim + dim + proj or got == dim * dim + proj:
                hint = "q, k and v each need their own dim x dim weights: the fused layer is Linear(dim, 3*dim)"
            else:
                hint = "count qkv = Linear(dim, 3*dim) and proj = Linear(dim, dim): weights plus biases"
            raise Mismatch(f"{call} you counted {got}, expected {expected}: {hint}")
        return "right for all sizes, e.g. the seed's dim 16 with 4 heads -> 1088 parameters"

    return run_check("parameters of the attention layer", body)


@exercise_check(answers=2)
def check_split_merge_heads(split: Callable[[torch.Tensor, int], torch.Tensor],
                            merge: Callable[[torch.Tensor], torch.Tensor]) -> CheckResult:
    """split(x [B, N, dim], heads) -> [B, heads, N, dim/heads]; merge: the inverse.

    Head h must hold the columns h*head_dim ... (h+1)*head_dim - 1 of every token.
    """

    def body() -> str:
        g = torch.Generator().manual_seed(seeded(0))
        b, n, dim, heads = 2, 5, 12, 3
        d = dim // heads
        x = torch.randn(b, n, dim, generator=g)
        expected = x.reshape(b, n, heads, d).transpose(1, 2)
        got = split(x.clone(), heads)
        tensor = expect_tensor(got, "your split")
        if tuple(tensor.shape) == (b, n, heads, d):
            raise Mismatch(f"your split has shape {list(tensor.shape)}, expected {[b, heads, n, d]}: "
                           "after the reshape, swap the token and head axes with .transpose(1, 2)")
        expect_shape(tensor, (b, heads, n, d), "your split",
                     hint="[B, N, dim] -> [B, N, heads, head_dim] -> [B, heads, N, head_dim]")
        if not _same(tensor, expected, 1e-7):
            if _same(tensor, x.reshape(b, heads, n, d), 1e-7):
                hint = ("reshaping straight to [B, heads, N, head_dim] mixes tokens inside a head: "
                        "reshape to [B, N, heads, head_dim] first, then transpose(1, 2)")
            elif _same(tensor, x.reshape(b, n, d, heads).permute(0, 3, 1, 2), 1e-7):
                hint = ("head h must take the contiguous columns h*head_dim to (h+1)*head_dim - 1, "
                        "not every heads-th column: reshape to [B, N, heads, head_dim]")
            else:
                hint = "head h of token i should be x[:, i, h*head_dim:(h+1)*head_dim]"
            expect_close(tensor, expected, "your split", atol=1e-7, hint=hint)
        heads_in = torch.randn(b, heads, n, d, generator=g)
        merged_expected = heads_in.transpose(1, 2).reshape(b, n, dim)
        merged = merge(heads_in.clone())
        tensor = expect_tensor(merged, "your merge")
        expect_shape(tensor, (b, n, dim), "your merge",
                     hint="[B, heads, N, head_dim] -> [B, N, heads, head_dim] -> [B, N, dim]")
        if not _same(tensor, merged_expected, 1e-7):
            if _same(tensor, heads_in.reshape(b, n, dim), 1e-7):
                hint = ("a plain reshape mixes tokens: transpose(1, 2) back to "
                        "[B, N, heads, head_dim] before reshaping to [B, N, dim]")
            else:
                hint = "merge must undo split: transpose(1, 2), then reshape to [B, N, dim]"
            expect_close(tensor, merged_expected, "your merge", atol=1e-7, hint=hint)
        if not _same(merge(split(x.clone(), heads)), x, 1e-7):
            raise Mismatch("merge(split(x, heads)) does not give back x")
        return "split puts contiguous slices of dim in each head; merge(split(x)) == x"

    return run_check("split and merge heads", body)
