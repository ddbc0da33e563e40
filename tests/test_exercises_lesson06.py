"""The checks of notebook 06 accept the worked solutions and explain typical mistakes."""
from __future__ import annotations

import torch

from vit_lib.classroom.exercises import lesson06 as ex
from vit_lib.config import ViTConfig
from vit_lib.interpret import attention_maps, attention_rollout
from vit_lib.model import VisionTransformer

# --- worked solutions (the same as in the notebook) ------------------------------------------

def plain_rollout(maps: list[torch.Tensor]) -> torch.Tensor:
    rollout = None
    for weights in maps:
        a = weights.mean(dim=1)
        rollout = a if rollout is None else a @ rollout
    return rollout


def most_attended_patch(model, image) -> tuple[int, int]:
    rollout = attention_rollout(attention_maps(model, image))
    index = int(rollout[0, 0, 1:].argmax())
    return divmod(index, model.config.grid_size)


def head_distance(weights: torch.Tensor, grid_size: int, patch_size: int) -> float:
    n = grid_size * grid_size
    a = weights[:, 1:, 1:]
    a = a / a.sum(dim=-1, keepdim=True)
    coords = torch.tensor([[r * patch_size, c * patch_size] for r in range(grid_size)
                           for c in range(grid_size)], dtype=torch.float32)
    dist = torch.cdist(coords, coords)
    assert dist.shape == (n, n)
    return float((a * dist).sum(dim=-1).mean())


def last_line(capsys) -> str:
    return capsys.readouterr().out.strip().splitlines()[-1]


def small_model_and_images():
    torch.manual_seed(0)
    model = VisionTransformer(ViTConfig()).eval()
    images = torch.randn(5, 1, 28, 28)
    return model, images


# --- rollout without residual -----------------------------------------------------------------

def test_plain_rollout_accepts_solution(capsys):
    assert ex.check_plain_rollout(plain_rollout)
    assert last_line(capsys).startswith("✓")


def test_plain_rollout_keeps_heads(capsys):
    def wrong(maps):
        out = maps[0]
        for w in maps[1:]:
            out = w @ out
        return out
    assert not ex.check_plain_rollout(wrong)
    assert "average the heads" in last_line(capsys)


def test_plain_rollout_with_residual(capsys):
    assert not ex.check_plain_rollout(lambda maps: attention_rollout(maps))
    assert "residual" in last_line(capsys)


def test_plain_rollout_reversed(capsys):
    def wrong(maps):
        out = None
        for w in maps:
            a = w.mean(dim=1)
            out = a if out is None else out @ a
        return out
    assert not ex.check_plain_rollout(wrong)
    assert "on the left" in last_line(capsys)


def test_plain_rollout_sum_of_heads(capsys):
    def wrong(maps):
        out = None
        for w in maps:
            a = w.sum(dim=1)
            out = a if out is None else a @ out
        return out
    assert not ex.check_plain_rollout(wrong)
    assert "do not sum to 1" in last_line(capsys)


# --- most attended patch ----------------------------------------------------------------------

def test_most_attended_accepts_solution(capsys):
    model, images = small_model_and_images()
    assert ex.check_most_attended_patch(most_attended_patch, model, images)
    assert last_line(capsys).startswith("✓")


def test_most_attended_flat_index(capsys):
    model, images = small_model_and_images()
    def wrong(model, image):
        return int(attention_rollout(attention_maps(model, image))[0, 0, 1:].argmax())
    assert not ex.check_most_attended_patch(wrong, model, images)
    assert "divmod" in last_line(capsys)


def test_most_attended_swapped(capsys):
    model, images = small_model_and_images()
    def wrong(model, image):
        r, c = most_attended_patch(model, image)
        return c, r
    # swapping only shows on an off-diagonal answer: find one
    answers = [most_attended_patch(model, images[i:i + 1]) for i in range(len(images))]
    assert any(r != c for r, c in answers)
    assert not ex.check_most_attended_patch(wrong, model, images)
    assert "swapped" in last_line(capsys)


def test_most_attended_counts_cls(capsys):
    model, images = small_model_and_images()
    def wrong(model, image):
        rollout = attention_rollout(attention_maps(model, image))
        return divmod(int(rollout[0, 0].argmax()), 4)
    assert not ex.check_most_attended_patch(wrong, model, images)
    assert "CLS token as patch 0" in last_line(capsys)


# --- mean attention distance ------------------------------------------------------------------

def test_head_distance_accepts_solution(capsys):
    assert ex.check_head_distance(head_distance)
    assert last_line(capsys).startswith("✓")


def test_head_distance_in_patches(capsys):
    assert not ex.check_head_distance(lambda w, g, p: head_distance(w, g, 1))
    assert "multiply the grid coordinates by patch_size" in last_line(capsys)


def test_head_distance_not_renormalised(capsys):
    def wrong(weights, grid_size, patch_size):
        coords = torch.tensor([[r * patch_size, c * patch_size] for r in range(grid_size)
                               for c in range(grid_size)], dtype=torch.float32)
        return float((weights[:, 1:, 1:] * torch.cdist(coords, coords)).sum(-1).mean())
    assert not ex.check_head_distance(wrong)
    assert "renormalise" in last_line(capsys)


def test_head_distance_manhattan(capsys):
    def wrong(weights, grid_size, patch_size):
        a = weights[:, 1:, 1:]
        a = a / a.sum(dim=-1, keepdim=True)
        coords = torch.tensor([[r * patch_size, c * patch_size] for r in range(grid_size)
                               for c in range(grid_size)], dtype=torch.float32)
        return float((a * torch.cdist(coords, coords, p=1)).sum(-1).mean())
    assert not ex.check_head_distance(wrong)
    assert "Euclidean" in last_line(capsys)


def test_head_distance_with_the_cls_token_kept(capsys):
    def wrong(weights, grid_size, patch_size):
        a = weights / weights.sum(dim=-1, keepdim=True)          # CLS row and column still there
        coords = torch.tensor([[r * patch_size, c * patch_size] for r in range(grid_size)
                               for c in range(grid_size)], dtype=torch.float32)
        return float((a * torch.cdist(coords, coords)).sum(-1).mean())
    assert not ex.check_head_distance(wrong)
    assert "drop the CLS row and column, weights[:, 1:, 1:]" in last_line(capsys)
