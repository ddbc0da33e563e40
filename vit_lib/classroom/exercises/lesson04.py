"""Checks for the exercises of notebook 04 (the whole Vision Transformer).

Each check prints one line, '✓ ...' or '✗ ...' with a hint, and returns True or False.
"""
from __future__ import annotations

import random
from dataclasses import replace
from typing import Any, Callable

import torch
import torch.nn.functional as F

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
from vit_lib.config import ViTConfig

__all__ = ["check_vit_parameters", "check_mean_pool_logits", "check_output_shapes",
           "check_position_similarity", "EXERCISE_CONFIGS"]

# The lesson's exercises, in notebook order: what the grader expects to find.
EXERCISES = (
    Exercise("04", 1, "parameters of a ViT config", "check_vit_parameters", ("vit_parameters",)),
    Exercise("04", 2, "mean-pooling head", "check_mean_pool_logits", ("mean_pool_logits",)),
    Exercise("04", 3, "output shapes", "check_output_shapes", ("output_shapes",)),
    Exercise("04", 4, "position similarity", "check_position_similarity", ("position_similarity",)),
)

# The configurations the checks try, seed first; each differs from the seed in one way that
# changes the answer.
EXERCISE_CONFIGS: tuple[ViTConfig, ...] = (
    ViTConfig(),
    ViTConfig(pool="mean"),
    ViTConfig(pos_embed="sincos2d"),
    ViTConfig(qkv_bias=False),
    ViTConfig(image_size=32, in_channels=3, patch_size=4, dim=32, depth=2, heads=8, mlp_dim=64),
)


def _draw_config(rng: random.Random) -> ViTConfig:
    """A small random configuration (the grader adds one to the fixed ones)."""
    patch, heads = rng.randint(2, 8), rng.choice((1, 2, 4))
    return ViTConfig(image_size=patch * rng.randint(1, 5), in_channels=rng.randint(1, 3), patch_size=patch,
                     dim=4 * heads * rng.randint(1, 4), depth=rng.randint(1, 3), heads=heads,
                     mlp_dim=rng.randint(4, 48), num_classes=rng.randint(2, 12), pool=rng.choice(("cls", "mean")),
                     pos_embed=rng.choice(("learned", "sincos2d")), qkv_bias=rng.random() < 0.5)


def _describe(config: ViTConfig) -> str:
    seed = ViTConfig()
    changed = [f"{k}={v!r}" for k, v in config.to_dict().items() if getattr(seed, k) != v]
    return "ViTConfig(" + ", ".join(changed) + ")"


# --------------------------------------------------------------------------------------------
# Exercise 1: parameters of a configuration by formula
# --------------------------------------------------------------------------------------------

def _parameter_hint(c: ViTConfig, diff: int) -> str:
    """diff = true count - learner's count; name the component that explains it."""
    d, t = c.dim, c.num_tokens
    block = 4 * d + (3 * d * d + (3 * d if c.qkv_bias else 0)) + (d * d + d) + \
        (2 * d * c.mlp_dim + c.mlp_dim + d)
    if c.pool == "cls" and diff == d:
        return ("the CLS token (dim numbers) is missing, or the position table has "
                "num_patches rows instead of num_tokens (it has a row for the CLS slot too)")
    if c.pool == "mean" and diff == -d:
        return "with pool='mean' there is no CLS token, and no position row for it"
    if c.pool == "mean" and diff == -2 * d:
        return ("with pool='mean' there is no CLS token (dim) and the position table has "
                "num_patches rows (dim fewer)")
    if c.pos_embed == "sincos2d" and diff == -t * d:
        return ("the sincos2d position table is a fixed buffer, computed not learned: it "
                "adds no parameters")
    if c.pos_embed == "learned" and diff == t * d:
        return "the learned position embedding (num_tokens x dim) is missing"
    if not c.qkv_bias and diff == -3 * d * c.depth:
        return "with qkv_bias=False the qkv Linear of each block has no bias (3 * dim fewer)"
    if diff == 2 * d:
        return "the final LayerNorm (gamma and beta, 2 * dim) is missing"
    if diff == c.num_classes or diff == d * c.num_classes + c.num_classes:
        return "the classification head is Linear(dim, num_classes) with a bias"
    if diff == d:
        return "the patch projection has a bias of dim numbers"
    if diff == (c.in_channels - 1) * c.patch_size ** 2 * d:
        return "each patch has in_channels * patch_size**2 values: count the channels"
    if block and diff % block == 0:
        return (f"off by {diff // block} block(s) of {block:,} parameters: there are "
                f"depth={c.depth} blocks")
    return ("add patch projection (C*P*P*dim + dim), CLS (dim, if pool='cls'), learned "
            "positions (num_tokens*dim), depth blocks, final LayerNorm (2*dim), head "
            "(dim*classes + classes)")


@exercise_check()
def check_vit_parameters(vit_parameters: Callable[[ViTConfig], int]) -> CheckResult:
    """Check `vit_parameters(config) -> int` against count_parameters of a real model for the
    seed config (14,410) and for configs that change pooling, positions, biases and size."""
    from vit_lib.model import VisionTransformer, count_parameters

    def truth_of(c: ViTConfig) -> int:
        return count_parameters(VisionTransformer(c))

    def _as_int(got: Any) -> int:
        if isinstance(got, torch.Tensor):
            got = int(got.item())
        if not isinstance(got, int) or isinstance(got, bool):
            raise Mismatch(f"return a whole number (int), got {type(got).__name__}")
        return got

    def body() -> str:
        for c in grading_cases(EXERCISE_CONFIGS, _draw_config, extra=1):
            truth = truth_of(c)
            got = _as_int(vit_parameters(c))
            if got != truth:
                diff = truth - got
                hint = _parameter_hint(c, diff)
                if c.pool == "cls" and diff == c.dim:
                    # dim numbers missing: the CLS token (or its position row), or the patch
                    # projection's bias. The same config with mean pooling tells them apart.
                    mean = replace(c, pool="mean")
                    if truth_of(mean) - _as_int(vit_parameters(mean)) == c.dim:
                        hint = ("dim numbers are missing with mean pooling too, where there is "
                                "no CLS token: the patch projection (a Conv2d) has a bias of dim "
                                "numbers")
                raise Mismatch(f"for {_describe(c)} you count {got:,}, the model has {truth:,} "
                               f"(off by {diff:+,}): {hint}")
        return (f"seed config -> {vit_parameters(ViTConfig()):,}; right for all "
                f"{len(EXERCISE_CONFIGS)} configs")
    return run_check("parameters of a ViT config", body)


# --------------------------------------------------------------------------------------------
# Exercise 2: a mean-pooling head instead of the CLS token
# --------------------------------------------------------------------------------------------

@exercise_check()
def check_mean_pool_logits(mean_pool_logits: Callable[[Any, torch.Tensor], torch.Tensor]) -> CheckResult:
    """Check `mean_pool_logits(model, images) -> [B, num_classes]`: model.head applied to the
    average of the patch tokens (CLS left out) of model.forward_features(images)."""
    from vit_lib.model import VisionTransformer

    def body() -> str:
        torch.manual_seed(seeded(0))
        model = VisionTransformer(ViTConfig()).eval()
        images = torch.randn(3, 1, 28, 28)
        with torch.no_grad():   # a non-trivial final LayerNorm, so applying it twice shows
            model.norm.weight.normal_(1.0, 0.5)
            model.norm.bias.normal_(0.0, 0.5)
            tokens = model.forward_features(images)               # [3, 17, 16], CLS first
            expected = model.head(tokens[:, 1:].mean(dim=1))      # [3, 10]
            out = mean_pool_logits(model, images.clone())
            out = _expect_logits_shape(out, expected.shape)
            wrong = {
                "you averaged all 17 tokens, CLS included: leave out token 0, tokens[:, 1:]":
                    model.head(tokens.mean(dim=1)),
                "that is the CLS token's prediction (token 0): average the patch tokens "
                "tokens[:, 1:] instead": model.head(tokens[:, 0]),
                "you summed the patch tokens: take the mean so the scale does not depend on "
                "the number of patches": model.head(tokens[:, 1:].sum(dim=1)),
                "forward_features already applies the final LayerNorm: do not apply model.norm "
                "again": model.head(model.norm(tokens)[:, 1:].mean(dim=1)),
                "you applied model.norm to the averaged token; forward_features already "
                "normalised every token": model.head(model.norm(tokens[:, 1:].mean(dim=1))),
            }
            if not torch.allclose(out, expected, atol=1e-5):
                name_mistake(out, wrong, atol=1e-5)
            expect_close(out, expected, "your logits",
                         hint="tokens = model.forward_features(images); "
                              "model.head(tokens[:, 1:].mean(dim=1))")
        return f"logits {list(out.shape)} from the mean of 16 patch tokens"
    return run_check("mean-pooling head", body)


def _expect_logits_shape(out: Any, shape: torch.Size) -> torch.Tensor:
    """Shape check for the mean-pooling logits with hints for the usual wrong axes."""
    if isinstance(out, torch.Tensor) and tuple(out.shape) == (17, 10):
        raise Mismatch("your logits have shape [17, 10], expected [3, 10]: you averaged over "
                       "the batch (dim 0); average over the tokens, dim=1")
    if isinstance(out, torch.Tensor) and tuple(out.shape) == (3, 16):
        raise Mismatch("your output has shape [3, 16], expected [3, 10]: apply model.head to "
                       "the pooled token to get class scores")
    return expect_shape(out, shape, "your logits", "expected one row of 10 class scores per "
                                                   "image")


# --------------------------------------------------------------------------------------------
# Exercise 3: output shapes with and without the CLS token
# --------------------------------------------------------------------------------------------

@exercise_check()
def check_output_shapes(output_shapes: Callable[[ViTConfig, int], dict]) -> CheckResult:
    """Check `output_shapes(config, batch) -> {"tokens": ..., "attention": ..., "logits": ...}`:
    the shapes of forward_features, of one attention map and of the logits, against a real
    forward pass, for configs with pool='cls' and pool='mean'."""
    from vit_lib.model import VisionTransformer

    def body() -> str:
        batch = 2
        for c in grading_cases((EXERCISE_CONFIGS[0], EXERCISE_CONFIGS[1], EXERCISE_CONFIGS[4]), _draw_config, extra=1):
            model = VisionTransformer(c).eval()
            images = torch.zeros(batch, c.in_channels, c.image_size, c.image_size)
            with torch.no_grad():
                tokens, maps = model.forward_features(images, return_attention=True)
                logits = model(images)
            truth = {"tokens": tuple(tokens.shape), "attention": tuple(maps[0].shape),
                     "logits": tuple(logits.shape)}
            got = output_shapes(c, batch)
            if not isinstance(got, dict):
                raise Mismatch(f"return a dict with keys 'tokens', 'attention', 'logits', got "
                               f"{type(got).__name__}")
            missing = [k for k in truth if k not in got]
            if missing:
                raise Mismatch(f"your dict lacks the key(s) {missing}")
            for key, expected in truth.items():
                try:
                    shape = tuple(int(s) for s in got[key])
                except TypeError:
                    raise Mismatch(f"'{key}' should be a tuple of ints, got {got[key]!r}") from None
                if shape == expected:
                    continue
                t, n = c.num_tokens, c.num_patches
                side = c.image_size // c.patch_size
                # the sequence axis: tokens [B, T, dim], attention [B, heads, T, T]
                length = shape[1] if key == "tokens" and len(shape) == 3 else \
                    shape[2] if key == "attention" and len(shape) == 4 else None
                hint = "run the model once and compare"
                if length is not None and length in (side, side + 1) and side != n:
                    hint = (f"the image is cut into a {side} x {side} grid, so there are "
                            f"{side}**2 = {n} patches, not {side}: square the grid's side")
                elif length is not None and c.pool == "cls" and length == n:
                    hint = f"did you forget the CLS token? {n} patches + 1 CLS = {t} tokens"
                elif length is not None and c.pool == "mean" and length == n + 1:
                    hint = (f"with pool='mean' there is no CLS token: the sequence is the "
                            f"{n} patches")
                elif key == "attention" and len(shape) == 3:
                    hint = "an attention map has one [T, T] matrix per head: [B, heads, T, T]"
                elif key == "tokens" and c.dim not in shape:
                    hint = "the encoder keeps the width dim for every token"
                elif key == "logits" and len(shape) != 2:
                    hint = "the head turns ONE pooled token per image into class scores"
                raise Mismatch(f"for {_describe(c)}, '{key}' is {list(shape)}, expected "
                               f"{list(expected)}: {hint}")
        return "tokens, attention maps and logits right with and without CLS"
    return run_check("output shapes", body)


# --------------------------------------------------------------------------------------------
# Exercise 4: cosine similarity between position embeddings
# --------------------------------------------------------------------------------------------

@exercise_check()
def check_position_similarity(position_similarity: Callable[[torch.Tensor], torch.Tensor]) -> CheckResult:
    """Check `position_similarity(table [N, D]) -> [N, N]`: cosine similarity of every pair of
    rows, on the seed's 2-D sin-cos table and on a random table."""
    from vit_lib.model import sincos_2d_position_embedding

    def body() -> str:
        g = torch.Generator().manual_seed(seeded(4))
        for name, table in (("the 4x4 sin-cos table", sincos_2d_position_embedding(4, 16)),
                            ("a random [6, 12] table", torch.randn(6, 12, generator=g) * 3)):
            n = table.shape[0]
            unit = F.normalize(table, dim=1)
            expected = unit @ unit.T
            out = position_similarity(table.clone())
            out = expect_shape(out, (n, n), f"for {name} your output",
                               "one similarity per pair of positions: [N, N]")
            if not torch.allclose(out, expected, atol=1e-5):
                if torch.allclose(out, table @ table.T, atol=1e-4):
                    raise Mismatch(f"for {name} you returned raw dot products: divide each row "
                                   "by its length first (F.normalize(table, dim=1))")
                col = F.normalize(table, dim=0)
                if torch.allclose(out, col @ col.T, atol=1e-5):
                    raise Mismatch(f"for {name} you normalised the columns (dim=0): normalise "
                                   "each position's row, dim=1")
                expect_close(out, expected, f"for {name} your similarity",
                             hint="normalise every row to length 1, then table @ table.T")
        sim = position_similarity(sincos_2d_position_embedding(4, 16))
        return (f"diagonal is 1; neighbours (0,0)-(0,1) {sim[0, 1].item():.2f}, far corners "
                f"(0,0)-(3,3) {sim[0, 15].item():.2f}")
    return run_check("position similarity", body)
