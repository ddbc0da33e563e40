"""Checks for the exercises of notebook 03 (the transformer block).

Each check prints one line, '✓ ...' or '✗ ...' with a hint, and returns True or False.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vit_lib.classroom.exercises.common import (
    CheckResult,
    Exercise,
    Mismatch,
    exercise_check,
    expect_close,
    expect_shape,
    grading_cases,
    run_check,
    seeded,
)

__all__ = ["check_layer_norm", "check_post_norm_block", "check_block_parameters",
           "check_drop_path"]

# The lesson's exercises, in notebook order: what the grader expects to find.
EXERCISES = (
    Exercise("03", 1, "LayerNorm by hand", "check_layer_norm", ("layer_norm",)),
    Exercise("03", 2, "post-norm block", "check_post_norm_block", ("PostNormBlock",)),
    Exercise("03", 3, "parameters of one block", "check_block_parameters", ("block_parameters",)),
    Exercise("03", 4, "drop path", "check_drop_path", ("drop_path",)),
)


def _close(a: torch.Tensor, b: torch.Tensor, atol: float = 1e-5) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a.float(), b.float(), atol=atol))


# --------------------------------------------------------------------------------------------
# Exercise 1: LayerNorm by hand
# --------------------------------------------------------------------------------------------

@exercise_check()
def check_layer_norm(layer_norm: Callable[..., torch.Tensor]) -> CheckResult:
    """Check `layer_norm(x, gamma, beta, eps)`: x [..., D], gamma/beta [D] -> [..., D],
    against torch.nn.functional.layer_norm on a batch of tokens."""
    def body() -> str:
        g = torch.Generator().manual_seed(seeded(3))
        x = torch.randn(2, 5, 8, generator=g) * 3.0 + 1.5        # [B, N, D], far from N(0, 1)
        # one nearly constant token (variance ~1e-6, below eps = 1e-5): only there does it
        # matter whether eps goes inside the square root or outside
        x[0, 0] = 1e-3 * torch.randn(8, generator=g)
        gamma = torch.rand(8, generator=g) + 0.5
        beta = torch.randn(8, generator=g)
        eps = 1e-5
        expected = F.layer_norm(x, (8,), gamma, beta, eps)
        try:
            out = layer_norm(x.clone(), gamma.clone(), beta.clone(), eps)
        except RuntimeError as exc:
            if "must match the size" not in str(exc):
                raise
            raise Mismatch("the shapes do not broadcast: reduce with keepdim=True so the mean "
                           "and variance have shape [B, N, 1]") from None
        expect_shape(out, expected.shape, "your output",
                     "LayerNorm keeps the shape: reduce with keepdim=True so mean and variance "
                     "broadcast back over the last dimension")
        if not _close(out, expected):
            mean, var = x.mean(-1, keepdim=True), x.var(-1, keepdim=True, unbiased=False)
            unit = (x - mean) / torch.sqrt(var + eps)
            wrong = {
                "you used the unbiased variance (divides by D-1); LayerNorm divides by D: "
                "use x.var(dim=-1, unbiased=False, keepdim=True)":
                    (x - mean) / torch.sqrt(x.var(-1, keepdim=True) + eps) * gamma + beta,
                "gamma and beta are missing: multiply by gamma, then add beta":
                    unit,
                "beta is missing: add it after scaling by gamma":
                    unit * gamma,
                "the order of the affine step is reversed: scale by gamma first, then add beta":
                    (unit + beta) * gamma,
                "you normalised each channel over the tokens (dim=1); LayerNorm normalises each "
                "token over its channels (dim=-1)":
                    F.layer_norm(x.transpose(1, 2), (5,)).transpose(1, 2) * gamma + beta,
                "eps goes inside the square root: (x - mean) / sqrt(var + eps)":
                    (x - mean) / (var.sqrt() + eps) * gamma + beta,
                "eps is missing: add it to the variance before the square root, "
                "(x - mean) / sqrt(var + eps) (it matters for nearly constant tokens)":
                    (x - mean) / var.sqrt() * gamma + beta,
                "you normalised over the whole tensor; compute the mean and variance of each "
                "token on its own, over the last dimension":
                    (x - x.mean()) / torch.sqrt(x.var(unbiased=False) + eps) * gamma + beta,
            }
            for hint, candidate in wrong.items():
                if _close(out, candidate, atol=1e-4):
                    raise Mismatch(hint)
            expect_close(out, expected, "your output",
                         hint="subtract the mean over the last dimension, divide by "
                              "sqrt(variance + eps), then scale by gamma and shift by beta")
        degenerate = torch.full((1, 1, 8), 4.0)                 # a constant token: variance 0
        out = layer_norm(degenerate, torch.ones(8), torch.zeros(8), eps)
        if not torch.isfinite(torch.as_tensor(out)).all():
            raise Mismatch("a constant token gives NaN or inf: add eps to the variance before "
                           "taking the square root")
        return "matches F.layer_norm, constant tokens stay finite"
    return run_check("LayerNorm by hand", body)


# --------------------------------------------------------------------------------------------
# Exercise 2: a post-norm block
# --------------------------------------------------------------------------------------------

@exercise_check()
def check_post_norm_block(block_class: type[nn.Module]) -> CheckResult:
    """Check a post-norm block class built as block_class(dim, heads, mlp_dim) with submodules
    norm1, attn, norm2, mlp: [B, N, dim] -> [B, N, dim], y = norm2(h + mlp(h)),
    h = norm1(x + attn(x))."""
    def body() -> str:
        torch.manual_seed(seeded(0))
        block = block_class(16, 4, 64)
        missing = [n for n in ("norm1", "attn", "norm2", "mlp") if not hasattr(block, n)]
        if missing:
            raise Mismatch(f"your block has no attribute(s) {missing}; name the submodules "
                           "norm1, attn, norm2 and mlp like vit_lib.block.Block")
        block.eval()
        x = torch.randn(2, 17, 16) * 2.0 + 0.5
        with torch.no_grad():
            out = block(x)
            expect_shape(out, (2, 17, 16), "your output",
                         "a block must keep the shape [B, N, dim]")
            token_rms = out.pow(2).mean(-1).sqrt()          # at init: gamma = 1, beta = 0
            # At init both LayerNorms are the same function, so swapping them would go unseen:
            # give each its own gamma and beta first.
            g = torch.Generator().manual_seed(seeded(5))
            for norm in (block.norm1, block.norm2):
                if getattr(norm, "weight", None) is not None:
                    norm.weight.copy_(torch.rand(norm.weight.shape, generator=g) + 0.5)
                if getattr(norm, "bias", None) is not None:
                    norm.bias.copy_(torch.randn(norm.bias.shape, generator=g))
            out = block(x)
            a, m, n1, n2 = block.attn, block.mlp, block.norm1, block.norm2
            h = n1(x + a(x))
            expected = n2(h + m(h))
            if not _close(out, expected, atol=1e-5):
                h_pre = x + a(n1(x))
                wrong = {
                    "that is the pre-norm block: in post-norm the LayerNorm comes AFTER the "
                    "residual addition, norm1(x + attn(x))": h_pre + m(n2(h_pre)),
                    "the residual connections are missing: add the sub-layer's input back "
                    "before normalising, norm1(x + attn(x))": n2(m(n1(a(x)))),
                    "the second residual is missing: norm2(h + mlp(h))": n2(m(h)),
                    "the first residual is missing: norm1(x + attn(x))":
                        n2(n1(a(x)) + m(n1(a(x)))),
                    "the norms are swapped: norm1 belongs to the attention half, norm2 to the "
                    "MLP half": n1(n2(x + a(x)) + m(n2(x + a(x)))),
                    "the MLP half should start from h = norm1(x + attn(x)), not from x":
                        n2(h + m(x)),
                }
                for hint, candidate in wrong.items():
                    if _close(out, candidate, atol=1e-5):
                        raise Mismatch(hint)
                expect_close(out, expected, "your output",
                             hint="compute h = norm1(x + attn(x)), then norm2(h + mlp(h))")
        return (f"output is LayerNorm'ed: every token has RMS {token_rms.mean().item():.2f} "
                "(gamma=1, beta=0 at init)")
    return run_check("post-norm block", body)


# --------------------------------------------------------------------------------------------
# Exercise 3: parameters of one block by formula
# --------------------------------------------------------------------------------------------

def _block_parts(dim: int, mlp_dim: int) -> dict[str, int]:
    return {"norms": 2 * 2 * dim,
            "qkv": dim * 3 * dim + 3 * dim,
            "proj": dim * dim + dim,
            "mlp": dim * mlp_dim + mlp_dim + mlp_dim * dim + dim}


@exercise_check()
def check_block_parameters(block_parameters: Callable[[int, int], int]) -> CheckResult:
    """Check `block_parameters(dim, mlp_dim) -> int` against real vit_lib Blocks
    (qkv biases on), including the seed's dim 16 / MLP 64 = 3,280."""
    from vit_lib.block import Block
    from vit_lib.model import count_parameters

    def body() -> str:
        for dim, mlp_dim in grading_cases(((16, 64), (32, 128), (48, 96), (8, 8)),
                                          lambda rng: (4 * rng.randint(1, 16), rng.randint(1, 128))):
            heads = 4 if dim % 4 == 0 else 1
            truth = count_parameters(Block(dim, heads, mlp_dim))
            got = block_parameters(dim, mlp_dim)
            if isinstance(got, torch.Tensor):
                got = int(got.item())
            if not isinstance(got, int) or isinstance(got, bool):
                raise Mismatch(f"return a whole number (int), got {type(got).__name__}")
            if got == truth:
                continue
            parts = _block_parts(dim, mlp_dim)
            biases = 3 * dim + dim + mlp_dim + dim
            diff = truth - got
            hints = {
                parts["norms"]: "the two LayerNorms are missing: each has gamma and beta, "
                                "2 * dim parameters",
                parts["norms"] // 2: "only one LayerNorm's gamma/beta counted: there are two, "
                                     "each with gamma and beta (2 * dim)",
                parts["proj"]: "the attention output projection (Linear dim -> dim, with bias) "
                               "is missing",
                2 * dim * dim + 2 * dim: "q, k and v each need their own dim x dim weights: "
                                         "the fused qkv Linear is dim -> 3 * dim",
                biases: "the biases are missing: every Linear has out_features biases",
                dim * mlp_dim + mlp_dim: "the MLP has two Linear layers, dim -> mlp_dim and "
                                         "mlp_dim -> dim",
                mlp_dim * dim + dim: "the MLP has two Linear layers, dim -> mlp_dim and "
                                     "mlp_dim -> dim",
            }
            hint = hints.get(diff, "")
            if not hint and diff == -2 * dim:
                hint = "LayerNorm has 2 * dim parameters (gamma and beta), not more"
            if not hint:
                hint = ("add up: two LayerNorms (2*dim each), qkv (dim*3*dim + 3*dim), "
                        "output projection (dim*dim + dim), MLP (dim*mlp + mlp + mlp*dim + dim)")
            raise Mismatch(f"for dim={dim}, mlp_dim={mlp_dim} you count {got:,}, the block has "
                           f"{truth:,} (off by {diff:+,}): {hint}")
        return f"dim 16 / MLP 64 -> {block_parameters(16, 64):,} parameters, right for 4 sizes"
    return run_check("parameters of one block", body)


# --------------------------------------------------------------------------------------------
# Exercise 4: drop path as a function
# --------------------------------------------------------------------------------------------

@exercise_check()
def check_drop_path(drop_path: Callable[[torch.Tensor, float, bool], torch.Tensor]) -> CheckResult:
    """Check `drop_path(x, p, training) -> tensor like x`: per-sample zeroing with 1/(1-p)
    rescaling in training, identity in evaluation."""
    def body() -> str:
        x = torch.ones(4000, 3, 5)
        out = drop_path(x.clone(), 0.0, True)
        expect_close(out, x, "with p=0 your output", hint="p=0 must change nothing")
        out = drop_path(x.clone(), 0.25, False)
        expect_close(out, x, "in evaluation (training=False) your output",
                     hint="outside training drop path is the identity: return x unchanged")
        torch.manual_seed(seeded(0))
        try:
            dropped_out = drop_path(x.clone(), 0.25, True)
        except RuntimeError as exc:
            if "must match the size" not in str(exc):
                raise
            raise Mismatch("your mask does not broadcast against x [B, N, D]: a mask of shape [B] "
                           "lines up with the LAST dimension; give it shape [B, 1, 1], "
                           "(x.shape[0],) + (1,) * (x.dim() - 1)") from None
        out = expect_shape(dropped_out, x.shape, "your output",
                           "drop path must keep the input's shape")
        flat = out.reshape(out.shape[0], -1)
        per_sample_same = bool((flat == flat[:, :1]).all())
        values = set(torch.unique(out).tolist())
        if not per_sample_same:
            if values <= {0.0, 1.0} or any(abs(v - 4 / 3) < 1e-4 for v in values):
                raise Mismatch("values inside one sample differ: you dropped single elements "
                               "(that is ordinary dropout); draw ONE random number per sample, "
                               "a mask of shape [B, 1, 1]")
            raise Mismatch("values inside one sample differ: the mask must have shape "
                           "[B, 1, ..., 1] so a whole sample is kept or zeroed")
        kept = flat[:, 0]
        if not bool((kept == 0).any()):
            raise Mismatch("no sample was zeroed with p=0.25: draw the mask with keep "
                           "probability 1 - p")
        nonzero = kept[kept != 0]
        if torch.allclose(nonzero, torch.full_like(nonzero, 1.0)):
            raise Mismatch("kept samples must be scaled by 1 / (1 - p) so the expected output "
                           "equals the input; yours are not rescaled")
        if torch.allclose(nonzero, torch.full_like(nonzero, 0.75)):
            raise Mismatch("you multiplied by (1 - p); divide by (1 - p) instead")
        if not torch.allclose(nonzero, torch.full_like(nonzero, 4 / 3)):
            raise Mismatch(f"kept samples should equal 1 / (1 - p) = 1.3333 for an input of ones, "
                           f"got {nonzero[0].item():.4f}")
        dropped = (kept == 0).float().mean().item()
        if abs(dropped - 0.25) > 0.05:
            hint = (" - did you use p as the keep probability?" if abs(dropped - 0.75) < 0.05
                    else "")
            raise Mismatch(f"{dropped:.0%} of samples were zeroed, expected about 25%{hint}")
        return "whole samples are zeroed, the rest scaled by 1/(1-p), identity in eval"
    return run_check("drop path", body)
