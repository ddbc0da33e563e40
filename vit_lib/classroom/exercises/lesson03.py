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
    name_mistake,
    run_check,
    seeded,
)

__all__ = ["check_layer_norm", "check_post_norm_block", "check_block_parameters",
           "check_drop_path", "check_rms_norm", "check_layer_scale_block", "check_parallel_block"]

# The lesson's exercises, in notebook order: what the grader expects to find.
EXERCISES = (
    Exercise("03", 1, "LayerNorm by hand", "check_layer_norm", ("layer_norm",)),
    Exercise("03", 2, "post-norm block", "check_post_norm_block", ("PostNormBlock",)),
    Exercise("03", 3, "parameters of one block", "check_block_parameters", ("block_parameters",)),
    Exercise("03", 4, "drop path", "check_drop_path", ("drop_path",)),
    Exercise("03", 5, "RMSNorm", "check_rms_norm", ("RMSNorm",)),
    Exercise("03", 6, "LayerScale block", "check_layer_scale_block", ("LayerScaleBlock",)),
    Exercise("03", 7, "parallel block", "check_parallel_block", ("ParallelBlock",)),
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
            name_mistake(out, wrong, atol=1e-4)
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
                name_mistake(out, wrong, atol=1e-5)
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


# --------------------------------------------------------------------------------------------
# What a learner's module holds, asked in a way the grader can replay
# --------------------------------------------------------------------------------------------

def _learned(module: nn.Module) -> dict[str, torch.Tensor]:
    """name -> tensor of every learned parameter of `module` (what `module.parameters()` yields).

    state_dict with a plain dict as destination returns data only (names and tensors), which the
    grader's transcript can carry; keep_vars keeps requires_grad, so a buffer or a plain tensor
    attribute does not count as learned.
    """
    state = module.state_dict(destination={}, keep_vars=True)
    return {name: t for name, t in dict(state).items()
            if isinstance(t, torch.Tensor) and t.requires_grad}


def _randomise_norm(norm: nn.Module, g: torch.Generator) -> None:
    """Give a LayerNorm its own gamma and beta (at init every LayerNorm is the same function)."""
    if getattr(norm, "weight", None) is not None:
        norm.weight.copy_(torch.rand(norm.weight.shape, generator=g) + 0.5)
    if getattr(norm, "bias", None) is not None:
        norm.bias.copy_(torch.randn(norm.bias.shape, generator=g))


def _missing(module: nn.Module, names: tuple[str, ...]) -> list[str]:
    return [n for n in names if not hasattr(module, n)]


# --------------------------------------------------------------------------------------------
# Exercise 5: RMSNorm
# --------------------------------------------------------------------------------------------

@exercise_check()
def check_rms_norm(norm_class: type[nn.Module]) -> CheckResult:
    """Check a class built as norm_class(dim, eps=1e-6) with one learned `weight` [dim] (ones at
    init) and no bias: y = x / sqrt(mean(x^2 over the last dim) + eps) * weight, against
    torch.nn.functional.rms_norm with a random weight."""
    def body() -> str:
        dim, eps = 8, 1e-6
        norm = norm_class(dim)
        learned = _learned(norm)
        names = sorted(learned)
        total = sum(t.numel() for t in learned.values())
        if "weight" not in learned:
            if hasattr(norm, "weight"):
                raise Mismatch("`weight` is not a learned parameter: wrap it in nn.Parameter so "
                               "that the optimiser sees it")
            raise Mismatch(f"your RMSNorm has no learned `weight` (its parameters: {names or 'none'}): "
                           "store the per-channel scale as self.weight = nn.Parameter(torch.ones(dim))")
        if names != ["weight"]:
            extra = [n for n in names if n != "weight"]
            hint = (" RMSNorm has no bias (beta): only the scale is learned"
                    if any("bias" in n or "beta" in n for n in extra) else "")
            raise Mismatch(f"your RMSNorm learns {total} numbers ({names}); it should learn only "
                           f"`weight`, {dim} numbers for dim={dim}:{hint}")
        weight = learned["weight"]
        expect_shape(weight, (dim,), "your weight", "one scale per channel, shape [dim]")
        if not torch.equal(weight.detach(), torch.ones(dim)):
            raise Mismatch("initialise `weight` to ones, so that at first the layer only normalises")
        g = torch.Generator().manual_seed(seeded(7))
        x = torch.randn(2, 5, dim, generator=g) * 3.0 + 1.5      # [B, N, D], mean far from 0
        # one token of tiny magnitude (mean square ~1e-8, below eps = 1e-6): only there does it
        # matter whether eps goes inside the square root
        x[0, 0] = 1e-4 * torch.randn(dim, generator=g)
        w = torch.rand(dim, generator=g) + 0.5
        with torch.no_grad():
            norm.weight.copy_(w)
            try:
                out = norm(x.clone())
            except RuntimeError as exc:
                if "must match the size" not in str(exc):
                    raise
                raise Mismatch("the shapes do not broadcast: take the mean with keepdim=True so "
                               "it has shape [B, N, 1]") from None
        expected = F.rms_norm(x, (dim,), w, eps)
        expect_shape(out, expected.shape, "your output", "RMSNorm keeps the shape [..., dim]")
        if not _close(out, expected, atol=1e-4):
            ms = x.pow(2).mean(-1, keepdim=True)
            wrong = {
                "you subtracted the mean: that is LayerNorm; RMSNorm divides x itself by its root "
                "mean square, sqrt(mean(x**2) + eps), with no centring":
                    F.layer_norm(x, (dim,), w, None, eps),
                "you subtracted the mean (that is LayerNorm, here without eps): RMSNorm divides x "
                "itself by sqrt(mean(x**2) + eps)":
                    F.layer_norm(x, (dim,), w, None, 0.0),
                "eps goes inside the square root: x / sqrt(mean(x**2) + eps) (it matters for "
                "tokens of tiny magnitude)":
                    x / (ms.sqrt() + eps) * w,
                "eps is missing: x / sqrt(mean(x**2) + eps) (it matters for tokens of tiny "
                "magnitude, and keeps an all-zero token finite)":
                    x / ms.sqrt() * w,
                "the square root is missing: divide by sqrt(mean(x**2) + eps), the ROOT mean square":
                    x / (ms + eps) * w,
                "you averaged over the tokens (dim=1); RMSNorm takes the mean square of each "
                "token over its own channels (dim=-1)":
                    x / torch.sqrt(x.pow(2).mean(1, keepdim=True) + eps) * w,
                "you averaged over the whole tensor; take the mean square of each token on its "
                "own, over the last dimension":
                    x / torch.sqrt(x.pow(2).mean() + eps) * w,
                "you summed the squares (x.norm() is sqrt(sum(x**2))); RMSNorm uses their MEAN":
                    x / torch.sqrt(x.pow(2).sum(-1, keepdim=True) + eps) * w,
                "you divided by x.norm(), the square root of the SUM of the squares; RMSNorm uses "
                "their MEAN, plus eps: x / sqrt(mean(x**2) + eps)":
                    x / x.norm(dim=-1, keepdim=True) * w,
                "you used eps = 1e-5 (section 2's LayerNorm eps?), not the eps given to __init__: "
                "store it (self.eps = eps) and use self.eps":
                    x / torch.sqrt(ms + 1e-5) * w,
                "`weight` is not applied: multiply the normalised x by self.weight":
                    x / torch.sqrt(ms + eps),
            }
            name_mistake(out, wrong, atol=1e-4)
            expect_close(out, expected, "your output", atol=1e-4,
                         hint="divide x by sqrt(mean(x**2, last dim, keepdim=True) + eps), then "
                              "multiply by weight")
        coarse = norm_class(dim, eps=1e-2)                  # eps must come from the argument
        with torch.no_grad():
            out = coarse(x[:1, :1].clone())
        expect_close(out, F.rms_norm(x[:1, :1], (dim,), None, 1e-2), "with eps=1e-2 your output",
                     atol=1e-4, hint="use the eps given to __init__ (store it: self.eps = eps)")
        zero = norm_class(dim)(torch.zeros(1, 1, dim))
        if not torch.isfinite(torch.as_tensor(zero)).all():
            raise Mismatch("an all-zero token gives NaN or inf: add eps before the square root")
        return (f"matches F.rms_norm; for dim={dim}, {dim} learned numbers (LayerNorm has {2 * dim})")
    return run_check("RMSNorm", body)


# --------------------------------------------------------------------------------------------
# Exercise 6: a LayerScale block
# --------------------------------------------------------------------------------------------

@exercise_check()
def check_layer_scale_block(block_class: type[nn.Module]) -> CheckResult:
    """Check a class built as block_class(dim, heads, mlp_dim, init=1e-5) with Block's submodules
    norm1, attn, norm2, mlp and two learned per-channel scales scale1, scale2 [dim] (init at
    `init`): h = x + scale1 * attn(norm1(x)), y = h + scale2 * mlp(norm2(h))."""
    from vit_lib.block import Block
    from vit_lib.model import count_parameters

    def body() -> str:
        dim, heads, mlp_dim, init = 16, 4, 64, 1e-5
        torch.manual_seed(seeded(0))
        block = block_class(dim, heads, mlp_dim)
        missing = _missing(block, ("norm1", "attn", "norm2", "mlp", "scale1", "scale2"))
        if missing:
            raise Mismatch(f"your block has no attribute(s) {missing}; name the submodules norm1, "
                           "attn, norm2 and mlp like vit_lib.block.Block, and the two scales "
                           "scale1 (attention branch) and scale2 (MLP branch)")
        learned = _learned(block)
        for name in ("scale1", "scale2"):
            if name not in learned:
                raise Mismatch(f"{name} is not a learned parameter: wrap it in nn.Parameter, "
                               "otherwise the optimiser never updates it (and the parameter "
                               "count is 2 * dim short)")
            scale = learned[name]
            if tuple(scale.shape) != (dim,):
                raise Mismatch(f"{name} has shape {list(scale.shape)}: LayerScale learns one scale "
                               f"per channel, shape [dim] = [{dim}], not one number for the whole "
                               "branch")
            if not torch.allclose(scale.detach(), torch.full((dim,), init), rtol=1e-3, atol=0.0):
                raise Mismatch(f"{name} should start at init = {init:g} in every channel (got values "
                               f"from {scale.min().item():.3g} to {scale.max().item():.3g}): "
                               "nn.Parameter(init * torch.ones(dim))")
        truth = count_parameters(Block(dim, heads, mlp_dim)) + 2 * dim
        total = sum(t.numel() for t in learned.values())
        if total != truth:
            raise Mismatch(f"your block learns {total:,} numbers, expected {truth:,}: Block's "
                           f"{truth - 2 * dim:,} plus 2 * dim = {2 * dim} for the two scales")
        block.eval()
        g = torch.Generator().manual_seed(seeded(6))
        x = torch.randn(2, 17, dim, generator=g) * 2.0 + 0.5
        with torch.no_grad():
            out = block(x)
            expect_shape(out, x.shape, "your output", "a block must keep the shape [B, N, dim]")
            change_at_init = ((out - x).norm() / x.norm()).item()
            # Put the scales and the LayerNorms far from their initial values, so that every
            # place a scale could go gives a different output.
            s1 = torch.rand(dim, generator=g) + 0.5
            s2 = torch.rand(dim, generator=g) + 0.5
            block.scale1.copy_(s1)
            block.scale2.copy_(s2)
            _randomise_norm(block.norm1, g)
            _randomise_norm(block.norm2, g)
            out = block(x)
            a, m, n1, n2 = block.attn, block.mlp, block.norm1, block.norm2
            h = x + s1 * a(n1(x))
            expected = h + s2 * m(n2(h))
            if not _close(out, expected, atol=1e-5):
                h_after = s1 * (x + a(n1(x)))
                h_before = x + a(n1(s1 * x))
                h_stream = s1 * x + a(n1(x))
                h_swap = x + s2 * a(n1(x))
                h_plain = x + a(n1(x))
                wrong = {
                    "you scaled after the residual addition, s * (x + f(x)): scale only the "
                    "branch's output, x + s * f(x), so the identity path stays untouched":
                        s2 * (h_after + m(n2(h_after))),
                    "the attention half scales after the residual addition, scale1 * (x + f(x)): "
                    "scale only the branch's output, x + scale1 * attn(norm1(x))":
                        h_after + s2 * m(n2(h_after)),
                    "you scaled the branch's input, before the LayerNorm: scale its OUTPUT, "
                    "x + s * attn(norm1(x))": h_before + m(n2(s2 * h_before)),
                    "you scaled the residual stream, s * x + f(x); scale the branch instead, "
                    "x + s * f(x)": s2 * h_stream + m(n2(h_stream)),
                    "the scales are swapped: scale1 belongs to the attention branch, scale2 to "
                    "the MLP branch": h_swap + s1 * m(n2(h_swap)),
                    "the scales are not applied at all: multiply each branch's output by its "
                    "scale before adding it, x + scale1 * attn(norm1(x))":
                        h_plain + m(n2(h_plain)),
                    "the MLP branch is not scaled: h + scale2 * mlp(norm2(h))": h + m(n2(h)),
                    "the attention branch is not scaled: x + scale1 * attn(norm1(x))":
                        h_plain + s2 * m(n2(h_plain)),
                }
                name_mistake(out, wrong, atol=1e-5)
                expect_close(out, expected, "your output",
                             hint="h = x + scale1 * attn(norm1(x)), then h + scale2 * mlp(norm2(h))")
        if change_at_init > 1e-3:
            raise Mismatch(f"at init your block changes its input by {change_at_init:.2g} (relative): "
                           "with scales of 1e-5 it should be nearly the identity")
        # With both scales at 1 a LayerScale block is exactly Block: load Block's weights into it.
        reference = Block(dim, heads, mlp_dim).eval()
        with torch.no_grad():
            for param in reference.parameters():
                param.copy_(torch.randn(param.shape, generator=g) * 0.3)
            keys = block.load_state_dict(reference.state_dict(), strict=False)
            only_yours = sorted(str(k) for k in keys.missing_keys if k not in ("scale1", "scale2"))
            only_block = sorted(str(k) for k in keys.unexpected_keys)
            if only_yours or only_block:
                raise Mismatch(f"Block's weights do not fit your block (Block has {only_block[:3]}, "
                               f"yours has {only_yours[:3]} instead): build it from the lesson's parts, "
                               "MultiHeadSelfAttention(dim, heads) and MLP(dim, mlp_dim), under "
                               "Block's names")
            block.scale1.copy_(torch.ones(dim))
            block.scale2.copy_(torch.ones(dim))
            expect_close(block(x), reference(x), "with both scales at 1 your output",
                         hint="with scales of 1 a LayerScale block must compute exactly Block")
        return (f"at init it changes the check's tokens by {change_at_init:.1e} of their size; "
                f"{total:,} parameters = Block's + 2 x {dim}; with scales of 1 it is Block")
    return run_check("LayerScale block", body)


# --------------------------------------------------------------------------------------------
# Exercise 7: the parallel block
# --------------------------------------------------------------------------------------------

@exercise_check()
def check_parallel_block(block_class: type[nn.Module]) -> CheckResult:
    """Check a class built as block_class(dim, heads, mlp_dim) with submodules norm (ONE shared
    LayerNorm), attn and mlp: y = x + attn(norm(x)) + mlp(norm(x))."""
    from vit_lib.block import Block
    from vit_lib.model import count_parameters

    def body() -> str:
        dim, heads, mlp_dim = 16, 4, 64
        torch.manual_seed(seeded(0))
        block = block_class(dim, heads, mlp_dim)
        missing = _missing(block, ("norm", "attn", "mlp"))
        if missing:
            two = "norm" in missing and not _missing(block, ("norm1", "norm2"))
            raise Mismatch(f"your block has no attribute(s) {missing}; "
                           + ("the parallel block has ONE LayerNorm, shared by both branches: "
                              "call it norm" if two else
                              "name the shared LayerNorm norm, the attention attn and the MLP mlp"))
        learned = _learned(block)
        total = sum(t.numel() for t in learned.values())
        truth = count_parameters(Block(dim, heads, mlp_dim)) - 2 * dim
        if total != truth:
            hint = ("you have a second LayerNorm: the parallel block shares ONE between the two "
                    "branches" if total - truth == 2 * dim else
                    "Block's parameters minus one LayerNorm (gamma and beta, 2 * dim)")
            raise Mismatch(f"your block learns {total:,} numbers, expected {truth:,}: {hint}")
        block.eval()
        g = torch.Generator().manual_seed(seeded(8))
        x = torch.randn(2, 17, dim, generator=g) * 2.0 + 0.5
        with torch.no_grad():
            _randomise_norm(block.norm, g)
            out = block(x)
            expect_shape(out, x.shape, "your output", "a block must keep the shape [B, N, dim]")
            a, m, n = block.attn, block.mlp, block.norm
            expected = x + a(n(x)) + m(n(x))
            if not _close(out, expected, atol=1e-5):
                h = x + a(n(x))
                wrong = {
                    "that is the sequential block, h = x + attn(norm(x)), then h + mlp(norm(h)): "
                    "in the parallel block both branches read the SAME norm(x), "
                    "y = x + attn(norm(x)) + mlp(norm(x))": h + m(n(h)),
                    "the residual is missing: add x, y = x + attn(norm(x)) + mlp(norm(x))":
                        a(n(x)) + m(n(x)),
                    "the MLP reads x unnormalised: both branches read norm(x)": h + m(x),
                    "the LayerNorm comes after the sum (post-norm); in the parallel block it "
                    "comes first: y = x + attn(norm(x)) + mlp(norm(x))": n(x + a(x) + m(x)),
                    "the attention branch is missing: y = x + attn(norm(x)) + mlp(norm(x))":
                        x + m(n(x)),
                    "the MLP branch is missing: y = x + attn(norm(x)) + mlp(norm(x))": h,
                }
                name_mistake(out, wrong, atol=1e-5)
                expect_close(out, expected, "your output",
                             hint="y = x + attn(norm(x)) + mlp(norm(x)), with one shared norm")
        return (f"y = x + attn(norm(x)) + mlp(norm(x)); {total:,} parameters, one LayerNorm "
                f"({2 * dim}) fewer than Block")
    return run_check("parallel block", body)
