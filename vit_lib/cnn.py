"""Lesson 07: a small convolutional network to hold the ViT against, and a convolutional stem
that gives a ViT some of the CNN's inductive bias.

`ConvNet` is the CNN model family; this module adds its presets `cnn-tiny` and `cnn` to
`vit_lib.presets.PRESETS`. `ConvStem` replaces the ViT's linear patch projection when
`ViTConfig(stem="conv")`: this module adds it to `vit_lib.model.STEMS`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from vit_lib.config import ConfigError, DictConvertible
from vit_lib.model import STEMS
from vit_lib.presets import PRESETS, Preset

__all__ = ["conv_bn_relu", "ConvNet", "ConvStem"]


@dataclass(frozen=True)
class CNNConfig(DictConvertible):
    """Architecture of a small CNN: `len(widths)` stages of `convs_per_stage` 3x3 convolutions
    (each followed by BatchNorm and ReLU), a 2x2 max-pool between stages, then global average
    pooling and one Linear layer.

    The defaults are `cnn-tiny`: widths (16, 32, 32), one conv per stage: 14,458 parameters,
    within 0.4% of the seed ViT's 14,410.
    """

    image_size: int = 28
    in_channels: int = 1
    widths: tuple[int, ...] = (16, 32, 32)
    convs_per_stage: int = 1
    num_classes: int = 10
    dropout: float = 0.0

    architecture: ClassVar[str] = "cnn"   # the model family's name in presets and checkpoints

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))   # lists from a checkpoint
        for name in ("image_size", "in_channels", "convs_per_stage", "num_classes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive whole number, got {value!r}")
        if self.num_classes < 2:
            raise ConfigError(f"num_classes must be at least 2, got {self.num_classes}")
        if not self.widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1
                                  for w in self.widths):
            raise ConfigError(f"widths must be one or more positive whole numbers (channels per "
                              f"stage), got {self.widths!r}")
        smallest = self.image_size // 2 ** (len(self.widths) - 1)
        if smallest < 1:
            raise ConfigError(f"{len(self.widths)} stages halve a {self.image_size}-pixel image "
                              f"{len(self.widths) - 1} times, to nothing; use at most "
                              f"{self.image_size.bit_length()} widths")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be a probability in [0, 1), got {self.dropout!r}")


def conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (padding 1, no bias: BatchNorm has one) -> BatchNorm -> ReLU.

    [B, in_channels, H, W] -> [B, out_channels, H / stride, W / stride].
    """
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=False),
                         nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


class ConvNet(nn.Module):
    """Stages of 3x3 convs with 2x2 max-pools between them -> global average pool -> Linear.

    forward: images [B, C, H, W] -> logits [B, num_classes]. After stage s the feature map is
    [B, widths[s], H / 2**s, W / 2**s].
    """

    def __init__(self, config: "CNNConfig") -> None:
        super().__init__()
        self.config = c = config
        layers: list[nn.Module] = []
        channels = c.in_channels
        for stage, width in enumerate(c.widths):
            if stage > 0:
                layers.append(nn.MaxPool2d(2))                 # halve H and W
            for _ in range(c.convs_per_stage):
                layers.append(conv_bn_relu(channels, width))
                channels = width
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)                    # [B, width, 1, 1]
        self.drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(channels, c.num_classes)
        for module in self.modules():   # He initialisation for ReLU networks
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def no_weight_decay(self) -> set[str]:
        """Names of matrices that take no weight decay (none here: biases and BatchNorm
        parameters are vectors, which the optimiser never decays)."""
        return set()

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        c = self.config
        expected = (c.in_channels, c.image_size, c.image_size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"expected images of shape [batch, {c.in_channels}, {c.image_size}, "
                             f"{c.image_size}], got {list(images.shape)}")
        x = self.features(images)                   # [B, widths[-1], h, w]
        x = self.pool(x).flatten(1)                 # [B, widths[-1]]
        return self.head(self.drop(x))              # [B, num_classes]


class ConvStem(nn.Module):
    """A convolutional tokenizer for a ViT (Xiao et al. 2021): instead of one patch_size x
    patch_size projection, log2(patch_size) stride-2 3x3 conv-BN-ReLU layers (width, 2*width,
    ...) halve the image until one position is one patch, then a 1x1 convolution makes `dim`.

    [B, C, H, W] -> [B, N, dim] with N = (H/P) * (W/P), like PatchEmbedding. P: 2, 4, 8, 16...
    """

    def __init__(self, in_channels: int, patch_size: int, dim: int, width: int = 16) -> None:
        super().__init__()
        if patch_size < 2 or patch_size & (patch_size - 1):
            raise ValueError(f"a conv stem halves the image per layer, so patch_size must be a "
                             f"power of two (2, 4, 8, 16), got {patch_size}")
        self.patch_size = patch_size
        layers, channels = [], in_channels
        for i in range(patch_size.bit_length() - 1):         # P = 2 ** layers
            layers.append(conv_bn_relu(channels, width * 2 ** i, stride=2))
            channels = width * 2 ** i
        self.convs = nn.Sequential(*layers)
        self.proj = nn.Conv2d(channels, dim, kernel_size=1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.proj(self.convs(images))      # [B, dim, H/P, W/P]
        return x.flatten(2).transpose(1, 2)    # [B, N, dim]


STEMS["conv"] = lambda c: ConvStem(c.in_channels, c.patch_size, c.dim)
PRESETS["cnn-tiny"] = Preset(
    "cnn-tiny", "a 3-layer CNN the size of the seed ViT (14,458 parameters), trained with "
    "seed-tuned's recipe", CNNConfig(), PRESETS["seed-tuned"].recipe)
PRESETS["cnn"] = Preset(
    "cnn", "a 4-layer CNN the size of best (220,594 parameters), trained with best's recipe",
    CNNConfig(widths=(24, 48, 96, 192)), PRESETS["best"].recipe)
