"""Lesson 02: scaled dot-product attention by hand, then multi-head self-attention."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["scaled_dot_product_attention", "MultiHeadSelfAttention"]


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """softmax(q k^T / sqrt(d)) v, written out.

    q, k, v: [..., N, d] -> (output [..., N, d], weights [..., N, N]); each row of weights
    sums to 1 and says how much token i takes from every token j.
    """
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.size(-1))   # [..., N, N]
    weights = scores.softmax(dim=-1)
    return weights @ v, weights


class MultiHeadSelfAttention(nn.Module):
    """Self-attention with `heads` heads and one fused Linear that makes q, k and v.

    [B, N, dim] -> [B, N, dim], or with return_attention=True also the weights [B, heads, N, N].
    """

    def __init__(self, dim: int, heads: int, qkv_bias: bool = True, attn_dropout: float = 0.0,
                 proj_dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.head_dim = dim // heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)   # rows: all q, then all k, then all v
        self.attn_drop = nn.Dropout(attn_dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_dropout)
        self.use_sdpa: bool | None = None   # None: PyTorch's fused kernel on CUDA, hand-written elsewhere

    def forward(self, x: torch.Tensor, return_attention: bool = False):
        b, n, dim = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)                 # each [B, heads, N, head_dim]
        use_sdpa = x.is_cuda if self.use_sdpa is None else self.use_sdpa
        if use_sdpa and not return_attention:
            p = self.attn_drop.p if self.training else 0.0
            out, weights = F.scaled_dot_product_attention(q, k, v, dropout_p=p), None
        else:
            out, weights = scaled_dot_product_attention(q, k, v)
            if self.training and self.attn_drop.p > 0:       # dropout on the weights, then mix v
                out = self.attn_drop(weights) @ v
        out = out.transpose(1, 2).reshape(b, n, dim)         # heads side by side again
        out = self.proj_drop(self.proj(out))
        return (out, weights) if return_attention else out
