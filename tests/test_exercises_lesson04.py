"""The lesson-04 checks accept the worked solutions and explain typical mistakes."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vit_lib.classroom.exercises import lesson04
from vit_lib.config import ViTConfig


def _feedback(capsys: pytest.CaptureFixture[str]) -> str:
    out = capsys.readouterr().out.strip()
    assert "\n" not in out, "a check prints exactly one line"
    return out


# ---------------------------------------------------------------- parameters by formula

def vit_parameters(c: ViTConfig) -> int:
    d = c.dim
    patch = c.in_channels * c.patch_size ** 2 * d + d
    cls = d if c.pool == "cls" else 0
    pos = c.num_tokens * d if c.pos_embed == "learned" else 0
    attention = (d * 3 * d + (3 * d if c.qkv_bias else 0)) + (d * d + d)
    mlp = (d * c.mlp_dim + c.mlp_dim) + (c.mlp_dim * d + d)
    block = 2 * (2 * d) + attention + mlp
    return patch + cls + pos + c.depth * block + 2 * d + (d * c.num_classes + c.num_classes)


def test_vit_parameters_accepts_solution(capsys):
    assert vit_parameters(ViTConfig()) == 14410
    assert lesson04.check_vit_parameters(vit_parameters).passed is True
    out = _feedback(capsys)
    assert out.startswith("✓ parameters of a ViT config") and "14,410" in out


def _always_cls(c):
    return vit_parameters(ViTConfig()) if c == ViTConfig(pool="mean") else vit_parameters(c)


def _pos_without_cls_row(c):
    return vit_parameters(c) - (c.dim if c.pos_embed == "learned" and c.pool == "cls" else 0)


def _sincos_counted(c):
    return vit_parameters(c) + (c.num_tokens * c.dim if c.pos_embed == "sincos2d" else 0)


def _qkv_bias_always(c):
    return vit_parameters(c) + (0 if c.qkv_bias else 3 * c.dim * c.depth)


def _no_channels(c):
    return vit_parameters(c) - (c.in_channels - 1) * c.patch_size ** 2 * c.dim


def _no_final_norm(c):
    return vit_parameters(c) - 2 * c.dim


@pytest.mark.parametrize("wrong, hint", [
    (_pos_without_cls_row, "row for the CLS slot"),
    (_always_cls, "with pool='mean' there is no CLS token"),
    (_sincos_counted, "fixed buffer"),
    (_qkv_bias_always, "qkv_bias=False"),
    (_no_channels, "count the channels"),
    (_no_final_norm, "final LayerNorm"),
])
def test_vit_parameters_rejects_mistakes(capsys, wrong, hint):
    assert lesson04.check_vit_parameters(wrong).passed is False
    out = _feedback(capsys)
    assert out.startswith("✗ parameters of a ViT config") and hint in out


# ---------------------------------------------------------------- mean pooling

def mean_pool_logits(model, images):
    tokens = model.forward_features(images)
    return model.head(tokens[:, 1:].mean(dim=1))


def test_mean_pool_accepts_solution(capsys):
    assert lesson04.check_mean_pool_logits(mean_pool_logits).passed is True
    assert _feedback(capsys).startswith("✓ mean-pooling head")


@pytest.mark.parametrize("wrong, hint", [
    (lambda m, x: m.head(m.forward_features(x).mean(dim=1)), "CLS included"),
    (lambda m, x: m(x), "CLS token's prediction"),
    (lambda m, x: m.head(m.forward_features(x)[:, 1:].sum(dim=1)), "summed"),
    (lambda m, x: m.head(m.forward_features(x).mean(dim=0)), "over the batch"),
    (lambda m, x: m.forward_features(x)[:, 1:].mean(dim=1), "apply model.head"),
    (lambda m, x: m.head(m.norm(m.forward_features(x))[:, 1:].mean(dim=1)), "already applies"),
])
def test_mean_pool_rejects_mistakes(capsys, wrong, hint):
    assert lesson04.check_mean_pool_logits(wrong).passed is False
    out = _feedback(capsys)
    assert out.startswith("✗ mean-pooling head") and hint in out


# ---------------------------------------------------------------- output shapes

def output_shapes(c: ViTConfig, batch: int) -> dict:
    t = c.num_patches + (1 if c.pool == "cls" else 0)
    return {"tokens": (batch, t, c.dim), "attention": (batch, c.heads, t, t),
            "logits": (batch, c.num_classes)}


def test_output_shapes_accepts_solution(capsys):
    assert lesson04.check_output_shapes(output_shapes).passed is True
    assert _feedback(capsys).startswith("✓ output shapes")


def _forgot_cls(c, batch):
    t = c.num_patches
    return {"tokens": (batch, t, c.dim), "attention": (batch, c.heads, t, t),
            "logits": (batch, c.num_classes)}


def _always_cls_shapes(c, batch):
    t = c.num_patches + 1
    return {"tokens": (batch, t, c.dim), "attention": (batch, c.heads, t, t),
            "logits": (batch, c.num_classes)}


def _unsquared_grid(c, batch):
    t = c.image_size // c.patch_size + (1 if c.pool == "cls" else 0)   # 4 + 1, not 16 + 1
    return {"tokens": (batch, t, c.dim), "attention": (batch, c.heads, t, t),
            "logits": (batch, c.num_classes)}


def _no_patch_bias(c):
    return vit_parameters(c) - c.dim


def test_vit_parameters_names_a_forgotten_patch_bias_not_the_cls_token(capsys):
    assert lesson04.check_vit_parameters(_no_patch_bias).passed is False
    out = _feedback(capsys)
    assert "the patch projection (a Conv2d) has a bias" in out and "CLS token (dim numbers)" not in out


def _no_heads(c, batch):
    shapes = output_shapes(c, batch)
    shapes["attention"] = shapes["attention"][:1] + shapes["attention"][2:]
    return shapes


@pytest.mark.parametrize("wrong, hint", [
    (_forgot_cls, "did you forget the CLS token?"),
    (_always_cls_shapes, "with pool='mean' there is no CLS token"),
    (_no_heads, "one [T, T] matrix per head"),
    (_unsquared_grid, "square the grid's side"),     # dim = 16 = patches: not a forgotten CLS
    (lambda c, b: [b, c.num_classes], "return a dict"),
])
def test_output_shapes_rejects_mistakes(capsys, wrong, hint):
    assert lesson04.check_output_shapes(wrong).passed is False
    out = _feedback(capsys)
    assert out.startswith("✗ output shapes") and hint in out


# ---------------------------------------------------------------- position similarity

def position_similarity(table: torch.Tensor) -> torch.Tensor:
    unit = table / table.norm(dim=1, keepdim=True)
    return unit @ unit.T


def test_position_similarity_accepts_solution(capsys):
    assert lesson04.check_position_similarity(position_similarity).passed is True
    assert _feedback(capsys).startswith("✓ position similarity")


@pytest.mark.parametrize("wrong, hint", [
    (lambda t: t @ t.T, "raw dot products"),
    (lambda t: F.normalize(t, dim=0) @ F.normalize(t, dim=0).T, "normalised the columns"),
    (lambda t: F.normalize(t, dim=1).T @ F.normalize(t, dim=1), "normalise every row"),
])
def test_position_similarity_rejects_mistakes(capsys, wrong, hint):
    assert lesson04.check_position_similarity(wrong).passed is False
    out = _feedback(capsys)
    assert out.startswith("✗ position similarity") and hint in out
