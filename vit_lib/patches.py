"""Lesson 01: cut an image into patches and project each patch to a token vector."""
from __future__ import annotations

import torch
from torch import nn

__all__ = ["image_to_patches", "PatchEmbedding", "UnfoldPatchEmbedding"]


def image_to_patches(images: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Cut images into non-overlapping square patches, row by row.

    images: [B, C, H, W] -> patches: [B, (H/P)*(W/P), C*P*P]. Patch k is grid cell
    (k // (W/P), k % (W/P)); inside a patch, values are ordered channel, row, column.
    """
    b, c, h, w = images.shape
    p = patch_size
    if h % p or w % p:
        sizes = [d for d in range(2, min(h, w)) if h % d == 0 and w % d == 0]   # the sizes that fit
        raise ValueError(f"image of {h}x{w} pixels cannot be cut into {p}x{p} patches; use a patch "
                         f"size that divides {h if h == w else f'{h} and {w}'} (e.g. {sizes})")
    x = images.reshape(b, c, h // p, p, w // p, p)      # [B, C, rows, P, cols, P]
    x = x.permute(0, 2, 4, 1, 3, 5)                    # [B, rows, cols, C, P, P]
    return x.reshape(b, (h // p) * (w // p), c * p * p)


class PatchEmbedding(nn.Module):
    """Patchify and project in one step with a Conv2d whose kernel and stride are the patch size.

    [B, C, H, W] -> [B, N, dim] with N = (H/P) * (W/P).
    """

    def __init__(self, in_channels: int, patch_size: int, dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_channels, dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.proj(images)                 # [B, dim, H/P, W/P]
        return x.flatten(2).transpose(1, 2)   # [B, N, dim]


class UnfoldPatchEmbedding(nn.Module):
    """The same computation written as "cut into patches, then one Linear layer".

    [B, C, H, W] -> [B, N, dim]. Loading a PatchEmbedding's conv weights with
    `from_conv` gives the same output.
    """

    def __init__(self, in_channels: int, patch_size: int, dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Linear(in_channels * patch_size * patch_size, dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(image_to_patches(images, self.patch_size))

    @torch.no_grad()
    def from_conv(self, conv_embedding: PatchEmbedding) -> "UnfoldPatchEmbedding":
        """Copy a PatchEmbedding's kernel [dim, C, P, P] into the Linear weight [dim, C*P*P]."""
        self.proj.weight.copy_(conv_embedding.proj.weight.flatten(1))
        self.proj.bias.copy_(conv_embedding.proj.bias)
        return self
