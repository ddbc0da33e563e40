"""The lesson-03 checks accept the worked solutions and explain typical mistakes."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from vit_lib.attention import MultiHeadSelfAttention
from vit_lib.block import MLP
from vit_lib.classroom.exercises import lesson03


def _feedback(capsys: pytest.CaptureFixture[str]) -> str:
    out = capsys.readouterr().out.strip()
    assert "\n" not in out, "a check prints exactly one line"
    return out


# ---------------------------------------------------------------- LayerNorm by hand

def layer_norm(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor, eps: float = 1e-5):
    mean = x.mean(dim=-1, keepdim=True)
    var = x.var(dim=-1, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps) * gamma + beta


def test_layer_norm_accepts_solution(capsys):
    assert lesson03.check_layer_norm(layer_norm).passed is True
    assert _feedback(capsys).startswith("✓ LayerNorm by hand")


@pytest.mark.parametrize("wrong, hint", [
    (lambda x, g, b, eps=1e-5: (x - x.mean(-1, keepdim=True))
     / torch.sqrt(x.var(-1, keepdim=True) + eps) * g + b, "unbiased variance"),
    (lambda x, g, b, eps=1e-5: (x - x.mean(-1, keepdim=True))
     / torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + eps), "gamma and beta are missing"),
    (lambda x, g, b, eps=1e-5: (x - x.mean(1, keepdim=True))
     / torch.sqrt(x.var(1, unbiased=False, keepdim=True) + eps) * g + b, "over the tokens"),
    (lambda x, g, b, eps=1e-5: (x - x.mean(-1, keepdim=True))
     / x.std(-1, unbiased=False, keepdim=True) * g + b, "eps is missing"),
    (lambda x, g, b, eps=1e-5: (x - x.mean(-1, keepdim=True))
     / (x.std(-1, unbiased=False, keepdim=True) + eps) * g + b, "eps goes inside the square root"),
    (lambda x, g, b, eps=1e-5: (x - x.mean(-1))
     / torch.sqrt(x.var(-1, unbiased=False) + eps), "keepdim=True"),
])
def test_layer_norm_rejects_mistakes(capsys, wrong, hint):
    assert lesson03.check_layer_norm(wrong).passed is False
    out = _feedback(capsys)
    assert out.startswith("✗ LayerNorm by hand") and hint in out


# ---------------------------------------------------------------- post-norm block

class PostNormBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.mlp(x))


class PreNormBlock(PostNormBlock):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class NoResidualBlock(PostNormBlock):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm2(self.mlp(self.norm1(self.attn(x))))


class SwappedNorms(PostNormBlock):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.norm2(x + self.attn(x))
        return self.norm1(x + self.mlp(x))


class BadNames(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x)


def test_post_norm_accepts_solution(capsys):
    assert lesson03.check_post_norm_block(PostNormBlock).passed is True
    assert _feedback(capsys).startswith("✓ post-norm block")


@pytest.mark.parametrize("wrong, hint", [
    (PreNormBlock, "that is the pre-norm block"),
    (NoResidualBlock, "residual connections are missing"),
    (SwappedNorms, "the norms are swapped"),          # identical at init: caught after randomising
    (BadNames, "no attribute"),
])
def test_post_norm_rejects_mistakes(capsys, wrong, hint):
    assert lesson03.check_post_norm_block(wrong).passed is False
    out = _feedback(capsys)
    assert out.startswith("✗ post-norm block") and hint in out


# ---------------------------------------------------------------- parameters of a block

def block_parameters(dim: int, mlp_dim: int) -> int:
    norms = 2 * (2 * dim)
    attention = (dim * 3 * dim + 3 * dim) + (dim * dim + dim)
    mlp = (dim * mlp_dim + mlp_dim) + (mlp_dim * dim + dim)
    return norms + attention + mlp


def test_block_parameters_accepts_solution(capsys):
    assert block_parameters(16, 64) == 3280
    assert lesson03.check_block_parameters(block_parameters).passed is True
    out = _feedback(capsys)
    assert out.startswith("✓ parameters of one block") and "3,280" in out


@pytest.mark.parametrize("wrong, hint", [
    (lambda d, m: block_parameters(d, m) - 4 * d, "two LayerNorms are missing"),
    (lambda d, m: block_parameters(d, m) - (d * d + d), "output projection"),
    (lambda d, m: block_parameters(d, m) - (2 * d * d + 2 * d), "fused qkv"),
    (lambda d, m: block_parameters(d, m) - (5 * d + m), "biases are missing"),
    (lambda d, m: 3280, "for dim=32"),
    (lambda d, m: float(block_parameters(d, m)), "whole number"),
])
def test_block_parameters_rejects_mistakes(capsys, wrong, hint):
    assert lesson03.check_block_parameters(wrong).passed is False
    out = _feedback(capsys)
    assert out.startswith("✗ parameters of one block") and hint in out


# ---------------------------------------------------------------- drop path

def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if not training or p == 0.0:
        return x
    keep = 1.0 - p
    mask = (torch.rand(x.shape[0], *([1] * (x.ndim - 1))) < keep).to(x.dtype)
    return x * mask / keep


def test_drop_path_accepts_solution(capsys):
    assert lesson03.check_drop_path(drop_path).passed is True
    assert _feedback(capsys).startswith("✓ drop path")


def _elementwise(x, p, training):
    return nn.functional.dropout(x, p, training)


def _no_rescale(x, p, training):
    if not training:
        return x
    return x * (torch.rand(x.shape[0], 1, 1) >= p).to(x.dtype)


def _always(x, p, training):
    keep = 1.0 - p
    return x * (torch.rand(x.shape[0], 1, 1) < keep).to(x.dtype) / keep


def _p_as_keep(x, p, training):
    if not training or p == 0.0:
        return x
    return x * (torch.rand(x.shape[0], 1, 1) < p).to(x.dtype) / (1 - p)


def _mask_of_shape_b(x, p, training):
    if not training or p == 0.0:
        return x
    return x * (torch.rand(x.shape[0]) < 1 - p).to(x.dtype) / (1 - p)     # [B]: broadcasts wrongly


@pytest.mark.parametrize("wrong, hint", [
    (_elementwise, "ordinary dropout"),
    (_mask_of_shape_b, "give it shape [B, 1, 1]"),
    (_no_rescale, "not rescaled"),
    (_always, "in evaluation"),
    (_p_as_keep, "keep probability"),
])
def test_drop_path_rejects_mistakes(capsys, wrong, hint):
    assert lesson03.check_drop_path(wrong).passed is False
    out = _feedback(capsys)
    assert out.startswith("✗ drop path") and hint in out


# ---------------------------------------------------------------- stubs and the notebook

class _StubBlock(nn.Module):
    """The attempt cell's class: its constructor still raises NotImplementedError."""

    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        raise NotImplementedError()


def test_post_norm_stub_class_is_not_attempted(capsys):
    result = lesson03.check_post_norm_block(_StubBlock)
    assert result.status == "not attempted" and not result
    assert _feedback(capsys).startswith("✗ post-norm block: not attempted yet")


def test_exercise_3_question_is_answered_in_its_worked_solution():
    """The structure of the exercises is tested for every lesson in test_exercise_convention.py."""
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "notebooks" / "03_transformer_block.ipynb"
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    text = ["".join(c["source"]) for c in cells]
    tags = [c["metadata"].get("tags", []) for c in cells]
    # the question of exercise 3 is answered after its solution, inside the solution block
    answer = next(t for t in text if t.startswith("**Why do the heads not appear?**"))
    assert tags[text.index(answer)] == ["solution"] and "3,280" in answer


# ---------------------------------------------------------------- RMSNorm

class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + self.eps) * self.weight


def _rms_variant(scale) -> type[nn.Module]:  # noqa: ANN001
    """An RMSNorm whose forward is `scale(x, eps) * weight`."""
    class Variant(RMSNorm):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return scale(x, self.eps) * self.weight
    return Variant


class RMSNormWithBias(RMSNorm):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__(dim, eps)
        self.bias = nn.Parameter(torch.zeros(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x) + self.bias


class RMSNormPlainWeight(RMSNorm):
    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__(dim, eps)
        del self.weight
        self.weight = torch.ones(dim)            # not an nn.Parameter: never trained


class RMSNormFixedEps(RMSNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + 1e-6) * self.weight


def test_rms_norm_accepts_solution(capsys):
    assert lesson03.check_rms_norm(RMSNorm).passed is True
    out = _feedback(capsys)
    assert out.startswith("✓ RMSNorm: matches F.rms_norm") and "for dim=8, 8 learned numbers" in out


@pytest.mark.parametrize("wrong, hint", [
    (_rms_variant(lambda x, eps: (x - x.mean(-1, keepdim=True))
                  / torch.sqrt((x - x.mean(-1, keepdim=True)).pow(2).mean(-1, keepdim=True) + eps)),
     "that is LayerNorm"),
    (_rms_variant(lambda x, eps: x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps)),
     "eps goes inside the square root"),
    (_rms_variant(lambda x, eps: x / x.pow(2).mean(-1, keepdim=True).sqrt()), "eps is missing"),
    (_rms_variant(lambda x, eps: x / (x.pow(2).mean(-1, keepdim=True) + eps)), "square root is missing"),
    (_rms_variant(lambda x, eps: x / torch.sqrt(x.pow(2).mean(1, keepdim=True) + eps)), "over the tokens"),
    (_rms_variant(lambda x, eps: x / torch.sqrt(x.pow(2).mean() + eps)), "over the whole tensor"),
    (_rms_variant(lambda x, eps: x / torch.sqrt(x.pow(2).mean(-1) + eps)), "keepdim=True"),
    (_rms_variant(lambda x, eps: x / torch.sqrt(x.pow(2).sum(-1, keepdim=True) + eps)), "MEAN"),
    (_rms_variant(lambda x, eps: x / x.norm(dim=-1, keepdim=True)), "you divided by x.norm()"),
    (_rms_variant(lambda x, eps: x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-5)), "use self.eps"),
    (RMSNormWithBias, "no bias"),
    (RMSNormPlainWeight, "nn.Parameter"),
    (RMSNormFixedEps, "use the eps given"),
])
def test_rms_norm_rejects_mistakes(capsys, wrong, hint):
    assert lesson03.check_rms_norm(wrong).passed is False
    out = _feedback(capsys)
    assert out.startswith("✗ RMSNorm") and hint in out


# ---------------------------------------------------------------- LayerScale block

class LayerScaleBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int, init: float = 1e-5) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, mlp_dim)
        self.scale1 = nn.Parameter(init * torch.ones(dim))
        self.scale2 = nn.Parameter(init * torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.scale1 * self.attn(self.norm1(x))
        return x + self.scale2 * self.mlp(self.norm2(x))


class ScaleAfterResidual(LayerScaleBlock):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.scale1 * (x + self.attn(self.norm1(x)))
        return self.scale2 * (x + self.mlp(self.norm2(x)))


class ScaleBeforeNorm(LayerScaleBlock):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(self.scale1 * x))
        return x + self.mlp(self.norm2(self.scale2 * x))


class SwappedScales(LayerScaleBlock):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.scale2 * self.attn(self.norm1(x))
        return x + self.scale1 * self.mlp(self.norm2(x))


class ScalesNotParameters(LayerScaleBlock):
    def __init__(self, dim: int, heads: int, mlp_dim: int, init: float = 1e-5) -> None:
        super().__init__(dim, heads, mlp_dim, init)
        del self.scale1, self.scale2
        self.scale1 = init * torch.ones(dim)        # plain tensors: the optimiser never sees them
        self.scale2 = init * torch.ones(dim)


class OneNumberScales(LayerScaleBlock):
    def __init__(self, dim: int, heads: int, mlp_dim: int, init: float = 1e-5) -> None:
        super().__init__(dim, heads, mlp_dim, init)
        self.scale1 = nn.Parameter(torch.full((1,), init))
        self.scale2 = nn.Parameter(torch.full((1,), init))


class ScalesStartAtOne(LayerScaleBlock):
    def __init__(self, dim: int, heads: int, mlp_dim: int, init: float = 1e-5) -> None:
        super().__init__(dim, heads, mlp_dim, 1.0)


class OwnMLP(LayerScaleBlock):
    def __init__(self, dim: int, heads: int, mlp_dim: int, init: float = 1e-5) -> None:
        super().__init__(dim, heads, mlp_dim, init)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))


def test_layer_scale_block_accepts_solution(capsys):
    assert lesson03.check_layer_scale_block(LayerScaleBlock).passed is True
    out = _feedback(capsys)
    assert out.startswith("✓ LayerScale block") and "3,312 parameters" in out and "changes the check's tokens by" in out


def test_layer_scale_block_built_on_block_passes(capsys):
    """Subclassing the lesson's Block, as many learners will, is just as right."""
    from vit_lib.block import Block

    class FromBlock(Block):
        def __init__(self, dim: int, heads: int, mlp_dim: int, init: float = 1e-5) -> None:
            super().__init__(dim, heads, mlp_dim)
            self.scale1 = nn.Parameter(torch.full((dim,), init))
            self.scale2 = nn.Parameter(torch.full((dim,), init))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.drop_path(self.scale1 * self.attn(self.norm1(x)))
            return x + self.drop_path(self.scale2 * self.mlp(self.norm2(x)))

    assert lesson03.check_layer_scale_block(FromBlock).passed is True
    capsys.readouterr()


@pytest.mark.parametrize("wrong, hint", [
    (ScaleAfterResidual, "after the residual addition"),
    (ScaleBeforeNorm, "before the LayerNorm"),
    (SwappedScales, "swapped"),
    (ScalesNotParameters, "not a learned parameter"),
    (OneNumberScales, "one scale per channel"),
    (ScalesStartAtOne, "should start at init"),
    (PreNormBlock, "no attribute"),
    (OwnMLP, "do not fit"),
])
def test_layer_scale_block_rejects_mistakes(capsys, wrong, hint):
    assert lesson03.check_layer_scale_block(wrong).passed is False
    out = _feedback(capsys)
    assert out.startswith("✗ LayerScale block") and hint in out


# ---------------------------------------------------------------- parallel block

class ParallelBlock(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.attn = MultiHeadSelfAttention(dim, heads)
        self.mlp = MLP(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return x + self.attn(h) + self.mlp(h)


class SequentialShared(ParallelBlock):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm(x))
        return x + self.mlp(self.norm(x))


class NoResidualParallel(ParallelBlock):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        return self.attn(h) + self.mlp(h)


class TwoNormsParallel(ParallelBlock):
    def __init__(self, dim: int, heads: int, mlp_dim: int) -> None:
        super().__init__(dim, heads, mlp_dim)
        self.norm2 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(self.norm(x)) + self.mlp(self.norm2(x))


class UnnormalisedMLP(ParallelBlock):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.attn(self.norm(x)) + self.mlp(x)


def test_parallel_block_accepts_solution(capsys):
    assert lesson03.check_parallel_block(ParallelBlock).passed is True
    out = _feedback(capsys)
    assert out.startswith("✓ parallel block") and "3,248 parameters" in out


@pytest.mark.parametrize("wrong, hint", [
    (SequentialShared, "that is the sequential block"),
    (NoResidualParallel, "the residual is missing"),
    (TwoNormsParallel, "second LayerNorm"),
    (UnnormalisedMLP, "the MLP reads x unnormalised"),
    (PreNormBlock, "ONE LayerNorm, shared"),
])
def test_parallel_block_rejects_mistakes(capsys, wrong, hint):
    assert lesson03.check_parallel_block(wrong).passed is False
    out = _feedback(capsys)
    assert out.startswith("✗ parallel block") and hint in out
