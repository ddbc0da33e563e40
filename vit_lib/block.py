"""Lesson 03: the pre-LayerNorm transformer encoder block."""
from __future__ import annotations

import torch
from torch import nn

from vit_lib.attention import MultiHeadSelfAttention

__all__ = ["MLP", "DropPath", "Block"]


class MLP(nn.Module):
    """Two Linear layers with GELU between them, applied to every token on its own.

    [B, N, dim] -> [B, N, hidden] -> [B, N, dim].
    """

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden_dim, dim)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a whole residual branch for a random subset of samples.

    [B, ...] -> [B, ...]; kept samples are scaled by 1 / (1 - p) so the expectation is unchanged.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Block(nn.Module):
    """x + attention(LayerNorm(x)), then x + MLP(LayerNorm(x)). [B, N, dim] -> [B, N, dim]."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.0,
                 attn_dropout: float = 0.0, drop_path: float = 0.0, eps: float = 1e-5,
                 qkv_bias: bool = True) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = MultiHeadSelfAttention(dim, heads, qkv_bias, attn_dropout, dropout)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, mlp_dim, dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        attended = self.attn(self.norm1(x), return_attention=return_attention)
        if return_attention:
            attended, weights = attended
        x = x + self.drop_path(attended)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return (x, weights) if return_attention else x
