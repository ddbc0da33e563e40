"""Build torchvision's VisionTransformer for a ViTConfig and copy its weights into ours.

Used to prove (tests, notebook 04) that our model computes exactly what torchvision's does.
"""
from __future__ import annotations

import torch
from torch import nn

from vit_lib.config import ConfigError, ViTConfig
from vit_lib.model import VisionTransformer


def torchvision_vit(config: ViTConfig) -> nn.Module:
    """A torchvision VisionTransformer with the same shape as `config` (CLS pooling, learned
    position embedding, no biases turned off), its patch projection rebuilt for
    `config.in_channels` and every parameter randomised (torchvision zero-initialises some).
    """
    from torchvision.models.vision_transformer import VisionTransformer as TVViT

    if config.pool != "cls" or config.pos_embed != "learned" or not config.qkv_bias:
        raise ConfigError("torchvision's ViT has a CLS token, a learned position embedding and "
                          "qkv biases: use pool='cls', pos_embed='learned', qkv_bias=True")
    tv = TVViT(image_size=config.image_size, patch_size=config.patch_size,
               num_layers=config.depth, num_heads=config.heads, hidden_dim=config.dim,
               mlp_dim=config.mlp_dim, num_classes=config.num_classes)
    tv.conv_proj = nn.Conv2d(config.in_channels, config.dim, config.patch_size, config.patch_size)
    with torch.no_grad():
        for p in tv.parameters():   # zero head / class token would make a parity test trivial
            p.normal_(0.0, 0.2)
    return tv


@torch.no_grad()
def load_from_torchvision(model: VisionTransformer, tv: nn.Module) -> VisionTransformer:
    """Copy a torchvision VisionTransformer's weights into `model` (same shapes). Returns model."""
    def copy(dst: torch.Tensor, src: torch.Tensor, name: str) -> None:
        if dst.shape != src.shape:
            raise ValueError(f"{name}: our shape {list(dst.shape)} != torchvision's "
                             f"{list(src.shape)}; build both from the same ViTConfig")
        dst.copy_(src)

    if model.cls_token is None or not isinstance(model.pos_embed, nn.Parameter):
        raise ConfigError("copying from torchvision needs pool='cls' and pos_embed='learned'")
    copy(model.patch_embed.proj.weight, tv.conv_proj.weight, "patch projection weight")
    copy(model.patch_embed.proj.bias, tv.conv_proj.bias, "patch projection bias")
    copy(model.cls_token, tv.class_token, "class token")
    copy(model.pos_embed, tv.encoder.pos_embedding, "position embedding")
    layers = list(tv.encoder.layers)
    if len(layers) != len(model.blocks):
        raise ValueError(f"depth differs: ours {len(model.blocks)}, torchvision's {len(layers)}")
    for i, (ours, theirs) in enumerate(zip(model.blocks, layers, strict=True)):
        sa = theirs.self_attention                # in_proj rows: q, then k, then v; heads contiguous
        copy(ours.norm1.weight, theirs.ln_1.weight, f"block {i} ln_1")
        copy(ours.norm1.bias, theirs.ln_1.bias, f"block {i} ln_1")
        copy(ours.attn.qkv.weight, sa.in_proj_weight, f"block {i} qkv weight")
        copy(ours.attn.qkv.bias, sa.in_proj_bias, f"block {i} qkv bias")
        copy(ours.attn.proj.weight, sa.out_proj.weight, f"block {i} out_proj weight")
        copy(ours.attn.proj.bias, sa.out_proj.bias, f"block {i} out_proj bias")
        copy(ours.norm2.weight, theirs.ln_2.weight, f"block {i} ln_2")
        copy(ours.norm2.bias, theirs.ln_2.bias, f"block {i} ln_2")
        copy(ours.mlp.fc1.weight, theirs.mlp[0].weight, f"block {i} mlp fc1")
        copy(ours.mlp.fc1.bias, theirs.mlp[0].bias, f"block {i} mlp fc1")
        copy(ours.mlp.fc2.weight, theirs.mlp[3].weight, f"block {i} mlp fc2")
        copy(ours.mlp.fc2.bias, theirs.mlp[3].bias, f"block {i} mlp fc2")
    copy(model.norm.weight, tv.encoder.ln.weight, "final LayerNorm")
    copy(model.norm.bias, tv.encoder.ln.bias, "final LayerNorm")
    copy(model.head.weight, tv.heads.head.weight, "head weight")
    copy(model.head.bias, tv.heads.head.bias, "head bias")
    return model


def matching_config(config: ViTConfig) -> ViTConfig:
    """`config` with torchvision's LayerNorm eps (1e-6), so the two models agree to float error."""
    from dataclasses import replace
    return replace(config, layer_norm_eps=1e-6)
