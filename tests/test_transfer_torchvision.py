"""Lesson 07: torchvision's ViT-B/16 copied into vit_lib's model computes the same function.

The ImageNet weights need a download, so the test uses torchvision's own randomly initialised
vit_b_16 (weights=None); the weight names and shapes are the same as the pretrained model's.
"""
from __future__ import annotations

import pytest
import torch
import torchvision

from vit_lib.config import ViTConfig
from vit_lib.machinery.torchvision_compat import load_from_torchvision, matching_config
from vit_lib.model import VisionTransformer, count_parameters

VIT_B_16 = ViTConfig(image_size=224, in_channels=3, patch_size=16, dim=768, depth=12, heads=12,
                     mlp_dim=3072, num_classes=1000)


@pytest.fixture(scope="module")
def pair() -> tuple[torch.nn.Module, VisionTransformer]:
    torch.manual_seed(0)
    tv = torchvision.models.vit_b_16(weights=None).eval()
    # torchvision starts the head and the class token at zero: every logit would be 0 and the
    # comparison would prove nothing, so give them random values first
    with torch.no_grad():
        tv.heads.head.weight.normal_(0.0, 0.02)
        tv.class_token.normal_(0.0, 0.02)
    ours = load_from_torchvision(VisionTransformer(matching_config(VIT_B_16)), tv).eval()
    return tv, ours


def test_vit_b_16_same_logits_on_random_images(pair) -> None:
    tv, ours = pair
    images = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = tv(images), ours(images)
    assert got.shape == expected.shape == (2, 1000)
    assert expected.abs().max() > 0.1, "the logits are all about zero: the test would prove nothing"
    assert not torch.allclose(expected[0], expected[1]), "both images gave the same logits"
    assert torch.allclose(got, expected, atol=1e-4, rtol=0), (got - expected).abs().max().item()


def test_vit_b_16_same_size(pair) -> None:
    tv, ours = pair
    assert count_parameters(ours) == sum(p.numel() for p in tv.parameters()) == 86_567_656
    assert ours.config.num_tokens == 197 and ours.config.layer_norm_eps == 1e-6


def test_a_mismatched_config_is_refused(pair) -> None:
    tv, _ = pair
    with pytest.raises(ValueError, match="our shape"):
        load_from_torchvision(VisionTransformer(matching_config(
            ViTConfig(image_size=224, in_channels=3, patch_size=16, dim=384, depth=12, heads=6,
                      mlp_dim=1536, num_classes=1000))), tv)
