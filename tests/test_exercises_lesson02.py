"""The checks of notebook 02 accept the worked solutions and explain typical mistakes."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vit_lib.classroom.exercises.lesson02 import (
    check_attention_params,
    check_masked_attention,
    check_split_merge_heads,
)


def _out(capsys) -> str:
    out = capsys.readouterr().out.strip()
    assert "\n" not in out, "a check prints exactly one line"
    return out


def masked_attention(q, k, v, mask):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
    weights = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1)
    return weights @ v, weights


def test_masked_attention_accepts_solution_and_sdpa(capsys):
    assert check_masked_attention(masked_attention)
    assert _out(capsys).startswith("✓ attention with a mask")

    def with_sdpa(q, k, v, mask):
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return out, masked_attention(q, k, v, mask)[1]

    assert check_masked_attention(with_sdpa)
    capsys.readouterr()


def test_masked_attention_hints(capsys):
    def inverted(q, k, v, mask):
        return masked_attention(q, k, v, ~mask)

    def after_softmax(q, k, v, mask):
        w = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).softmax(-1).masked_fill(~mask, 0)
        return w @ v, w

    def zero_fill(q, k, v, mask):
        w = (q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))).masked_fill(~mask, 0).softmax(-1)
        return w @ v, w

    def unscaled(q, k, v, mask):
        w = (q @ k.transpose(-2, -1)).masked_fill(~mask, float("-inf")).softmax(-1)
        return w @ v, w

    def only_output(q, k, v, mask):
        return masked_attention(q, k, v, mask)[0]

    def wrong_output(q, k, v, mask):
        out, w = masked_attention(q, k, v, mask)
        return w @ q, w

    def softmax_over_queries(q, k, v, mask):
        scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))
        w = scores.masked_fill(~mask, float("-inf")).softmax(dim=-2)
        return w @ v, w

    cases = [(inverted, "inverted"), (after_softmax, "after the softmax"),
             (zero_fill, "exp(0) = 1"), (unscaled, "sqrt(d)"), (only_output, "return a pair"),
             (wrong_output, "the weights are right"), (softmax_over_queries, "over the keys, dim=-1")]
    for fn, hint in cases:
        assert not check_masked_attention(fn)
        out = _out(capsys)
        assert out.startswith("✗") and hint in out, out


def attention_params(dim: int, heads: int, qkv_bias: bool = True) -> int:
    qkv = dim * 3 * dim + (3 * dim if qkv_bias else 0)
    return qkv + dim * dim + dim


def test_attention_params(capsys):
    assert check_attention_params(attention_params)
    assert "1088" in _out(capsys)
    cases = [(lambda d, h, b: h * attention_params(d, h, b), "more heads do not add"),
             (lambda d, h, b: 4 * d * d, "left out the biases"),
             (lambda d, h, b: 3 * d * d + 3 * d, "output projection"),
             (lambda d, h, b: attention_params(d, h, True), "no bias"),
             (lambda d, h, b: attention_params(d, h, b) - (0 if b else d), "output projection keeps its bias"),
             (lambda d, h, b: 2 * d * d + 2 * d, "own dim x dim weights"),
             (lambda d, h, b: 1088.5, "whole number"),
             (lambda d, h, b: 7, "count qkv")]
    for fn, hint in cases:
        assert not check_attention_params(fn)
        out = _out(capsys)
        assert out.startswith("✗") and hint in out, out


def split_heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    b, n, dim = x.shape
    return x.reshape(b, n, heads, dim // heads).transpose(1, 2)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    b, h, n, d = x.shape
    return x.transpose(1, 2).reshape(b, n, h * d)


def test_split_merge_accepts_solution(capsys):
    assert check_split_merge_heads(split_heads, merge_heads)
    assert _out(capsys).startswith("✓ split and merge heads")


def test_split_merge_hints(capsys):
    def split_direct(x, heads):
        b, n, dim = x.shape
        return x.reshape(b, heads, n, dim // heads)

    def split_no_transpose(x, heads):
        b, n, dim = x.shape
        return x.reshape(b, n, heads, dim // heads)

    def split_strided(x, heads):
        b, n, dim = x.shape
        return x.reshape(b, n, dim // heads, heads).permute(0, 3, 1, 2)

    def merge_direct(x):
        b, h, n, d = x.shape
        return x.reshape(b, n, h * d)

    cases = [(split_direct, merge_heads, "mixes tokens inside a head"),
             (split_no_transpose, merge_heads, "transpose(1, 2)"),
             (split_strided, merge_heads, "contiguous columns"),
             (split_heads, merge_direct, "a plain reshape mixes tokens"),
             (split_heads, lambda x: x[:, 0], "your merge has shape")]
    for split, merge, hint in cases:
        assert not check_split_merge_heads(split, merge)
        out = _out(capsys)
        assert out.startswith("✗") and hint in out, out


# ---------------------------------------------------------------- the notebook follows the table

def test_exercise_2_question_is_answered_in_its_worked_solution():
    """The structure of the exercises is tested for every lesson in test_exercise_convention.py."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "notebooks" / "02_attention.ipynb"
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    text = ["".join(c["source"]) for c in cells]
    tags = [c["metadata"].get("tags", []) for c in cells]
    # the question of exercise 2 is answered after its solution, inside the solution block
    answer = next(t for t in text if t.startswith("**Does the number of heads matter?**"))
    assert tags[text.index(answer)] == ["solution"] and "1,088" in answer
