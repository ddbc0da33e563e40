"""Lesson 04: the whole Vision Transformer, readable in one sitting."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from vit_lib.block import Block
from vit_lib.config import ViTConfig
from vit_lib.patches import PatchEmbedding

__all__ = ["sincos_2d_position_embedding", "VisionTransformer", "count_parameters", "parameter_table"]

# How each ViTConfig.stem turns images into patch tokens: one linear projection per patch
# (lesson 01). Lesson 07 adds "conv", a few convolutions first (vit_lib.cnn registers it).
STEMS: dict[str, Callable[[ViTConfig], nn.Module]] = {
    "linear": lambda c: PatchEmbedding(c.in_channels, c.patch_size, c.dim),
}


def sincos_2d_position_embedding(grid_size: int, dim: int, temperature: float = 10000.0,
                                 ) -> torch.Tensor:
    """Fixed 2-D sine-cosine position codes, [grid_size**2, dim], patches in row-major order.

    A quarter of the channels encode the column with sin, a quarter with cos, then the same
    for the row, each at dim/4 frequencies from 1 down to 1/temperature.
    """
    if dim % 4:
        raise ValueError(f"sin-cos 2-D position embedding needs dim divisible by 4, got {dim}")
    rows, cols = torch.meshgrid(torch.arange(grid_size), torch.arange(grid_size), indexing="ij")
    omega = 1.0 / temperature ** (torch.arange(dim // 4) / max(dim // 4 - 1, 1))
    x = cols.flatten().float()[:, None] * omega[None, :]          # [N, dim/4]
    y = rows.flatten().float()[:, None] * omega[None, :]
    return torch.cat([x.sin(), x.cos(), y.sin(), y.cos()], dim=1)  # [N, dim]


class VisionTransformer(nn.Module):
    """Patches -> (+CLS) -> +position -> blocks -> LayerNorm -> pool -> Linear.

    forward: images [B, C, H, W] -> logits [B, num_classes]; with return_attention=True also
    a list of `depth` attention maps, each [B, heads, T, T] (T tokens, CLS first when present).
    """

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = c = config
        self.patch_embed = STEMS[c.stem](c)                        # [B, C, H, W] -> [B, N, dim]
        self.cls_token = nn.Parameter(torch.randn(1, 1, c.dim)) if c.pool == "cls" else None
        if c.pos_embed == "learned":
            self.pos_embed = nn.Parameter(torch.randn(1, c.num_tokens, c.dim))
        elif c.pos_embed == "sincos2d":  # fixed, not trained; the CLS slot gets no position
            table = sincos_2d_position_embedding(c.grid_size, c.dim)
            if c.pool == "cls":
                table = torch.cat([torch.zeros(1, c.dim), table])
            self.register_buffer("pos_embed", table[None], persistent=False)
        else:  # "none": a bag of patches, blind to where each patch was (lesson 07)
            self.pos_embed = None
        self.pos_drop = nn.Dropout(c.dropout)
        drop_paths = torch.linspace(0, c.drop_path, c.depth).tolist()  # deeper blocks drop more
        self.blocks = nn.ModuleList(
            Block(c.dim, c.heads, c.mlp_dim, c.dropout, c.attn_dropout, p, c.layer_norm_eps,
                  c.qkv_bias) for p in drop_paths)
        self.norm = nn.LayerNorm(c.dim, eps=c.layer_norm_eps)
        self.head = nn.Linear(c.dim, c.num_classes)
        for block in self.blocks:  # the seed's nn.MultiheadAttention initialisation
            nn.init.xavier_uniform_(block.attn.qkv.weight)
            if block.attn.qkv.bias is not None:
                nn.init.zeros_(block.attn.qkv.bias)
            nn.init.zeros_(block.attn.proj.bias)

    def no_weight_decay(self) -> set[str]:
        """Names of the matrices weight decay must leave alone: the CLS token and the learned
        position embeddings (pulling them to zero would erase what they encode)."""
        return {name for name in ("cls_token", "pos_embed")
                if isinstance(getattr(self, name), nn.Parameter)}

    def _check_input(self, images: torch.Tensor) -> None:
        c = self.config
        expected = (c.in_channels, c.image_size, c.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            fix = ("add a batch dimension with x.unsqueeze(0) for one image"
                   if images.ndim == 3 else "resize the images or build the model for this size")
            raise ValueError(f"expected images of shape [batch, {c.in_channels}, {c.image_size}, "
                             f"{c.image_size}], got {list(images.shape)}; {fix}")

    def forward_features(self, images: torch.Tensor, return_attention: bool = False):
        """images [B, C, H, W] -> normalised tokens [B, T, dim] (and attention maps)."""
        self._check_input(images)
        x = self.patch_embed(images)                                # [B, N, dim]
        if self.cls_token is not None:
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)  # [B, N+1, dim]
        if self.pos_embed is not None:
            x = x + self.pos_embed
        x = self.pos_drop(x)
        maps = []
        for block in self.blocks:
            x = block(x, return_attention=return_attention)
            if return_attention:
                x, weights = x
                maps.append(weights)
        x = self.norm(x)
        return (x, maps) if return_attention else x

    def forward(self, images: torch.Tensor, return_attention: bool = False):
        out = self.forward_features(images, return_attention)
        tokens, maps = out if return_attention else (out, None)
        pooled = tokens[:, 0] if self.cls_token is not None else tokens.mean(dim=1)  # [B, dim]
        logits = self.head(pooled)                                  # [B, num_classes]
        return (logits, maps) if return_attention else logits


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def parameter_table(model: "VisionTransformer") -> dict[str, int]:
    """Trainable parameters per component, e.g. {'patch_embed': 800, 'blocks.0.attn': 1088, ...}."""
    table: dict[str, int] = {}
    for name, p in model.named_parameters():
        parts = name.split(".")
        key = ".".join(parts[:3]) if parts[0] == "blocks" else parts[0]
        key = key.replace(".norm1", ".norms").replace(".norm2", ".norms")
        table[key] = table.get(key, 0) + p.numel()
    return table
