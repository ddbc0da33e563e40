"""Lesson 06: look inside a trained ViT - attention maps, rollout, position embeddings, distances."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vit_lib.model import VisionTransformer

__all__ = ["attention_maps", "attention_rollout", "cls_attention_grid",
           "position_similarity", "mean_attention_distance"]


@torch.no_grad()
def attention_maps(model: VisionTransformer, images: torch.Tensor) -> list[torch.Tensor]:
    """Attention weights of every block in eval mode: a list of `depth` tensors [B, heads, T, T]."""
    was_training = model.training
    model.eval()
    _, maps = model(images, return_attention=True)
    model.train(was_training)
    return maps


def attention_rollout(maps: list[torch.Tensor], residual: float = 0.5) -> torch.Tensor:
    """Abnar & Zuidema's rollout: how much each output token draws on each input token.

    maps: `depth` tensors [B, heads, T, T] -> [B, T, T]. Per block: average the heads, add the
    residual path (residual * I + (1 - residual) * A), renormalise rows, multiply through depth.
    """
    rollout = None
    for weights in maps:
        a = weights.mean(dim=1)                                       # [B, T, T]
        eye = torch.eye(a.shape[-1], device=a.device, dtype=a.dtype)
        a = residual * eye + (1.0 - residual) * a
        a = a / a.sum(dim=-1, keepdim=True)
        rollout = a if rollout is None else a @ rollout              # later blocks act last
    return rollout


def cls_attention_grid(attention: torch.Tensor, grid_size: int) -> torch.Tensor:
    """The CLS token's row over the patch tokens, as an image: [B, T, T] -> [B, grid, grid]."""
    row = attention[:, 0, 1:]                                         # [B, N]
    return row.reshape(-1, grid_size, grid_size)


@torch.no_grad()
def position_similarity(model: VisionTransformer) -> torch.Tensor:
    """Cosine similarity of every patch's position embedding with every other's.

    -> [grid, grid, grid, grid]: entry [r, c] is the map of patch (r, c) against all patches.
    """
    c = model.config
    pos = model.pos_embed[0, -c.num_patches:]                        # [N, dim], skip CLS
    pos = F.normalize(pos, dim=-1)
    sim = pos @ pos.T                                                 # [N, N]
    return sim.reshape(c.grid_size, c.grid_size, c.grid_size, c.grid_size)


def mean_attention_distance(maps: list[torch.Tensor], grid_size: int, patch_size: int,
                            ) -> torch.Tensor:
    """Average pixel distance between a query patch and the patches it attends to.

    maps: `depth` tensors [B, heads, T, T] (a CLS token, if present, comes first and is left
    out; rows are renormalised over patches) -> [depth, heads], averaged over queries and images.
    """
    n = grid_size * grid_size
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    xy = torch.stack([rows.flatten(), cols.flatten()], dim=1).float() * patch_size  # [N, 2]
    dist = torch.cdist(xy, xy)                                         # [N, N] pixels
    out = []
    for weights in maps:
        a = weights[..., -n:, -n:]                                     # patches to patches
        a = a / a.sum(dim=-1, keepdim=True)
        out.append((a * dist.to(a.device)).sum(dim=-1).mean(dim=(0, 2)))   # [heads]
    return torch.stack(out)
