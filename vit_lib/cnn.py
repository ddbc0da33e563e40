"""Lesson 07: a small convolutional network to hold the ViT against and a convolutional stem
that gives a ViT some of the CNN's inductive bias; after them, DeiT's distillation, in which a
trained CNN teaches a ViT through a second token.

`ConvNet` is the CNN model family; this module adds its presets `cnn-tiny` and `cnn` to
`vit_lib.presets.PRESETS`. `ConvStem` replaces the ViT's linear patch projection when
`ViTConfig(stem="conv")`: this module adds it to `vit_lib.model.STEMS`. The lesson builds these
two. Distillation is not in the lesson (it gains nothing on MNIST and under a point on
Fashion-MNIST, docs/results.md): `DistilledViT` (preset `best-distilled`) trains with
`distill_one_epoch` against a teacher's predictions; it lives here because it joins this lesson's
CNN to the ViT.
"""
from __future__ import annotations

import contextlib
import functools
import math
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from vit_lib.config import ConfigError, DictConvertible, ViTConfig, check_counts, is_count
from vit_lib.machinery.errors import TrainingDivergedError, arg
from vit_lib.model import STEMS, VisionTransformer
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
        check_counts(self, ("image_size", "in_channels", "convs_per_stage", "num_classes"))
        if not self.widths or not all(is_count(w) for w in self.widths):
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


# ----------------------------------------------------------------------------------------------
# Distillation (DeiT, Touvron et al. 2021): a CNN teaches a ViT what it knows about images.

DISTILLATION = ("hard", "soft")


@dataclass(frozen=True)
class DistilledViTConfig(ViTConfig):
    """A ViT with DeiT's distillation token: a second learned token beside CLS, read by its own
    head and trained to agree with a teacher. One more token (num_patches + 2 in all); the
    seed-sized model gains dim x 2 parameters (the token and its position) plus the second head."""

    architecture: ClassVar[str] = "vit-distilled"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pool != "cls":
            raise ConfigError(f"a distilled ViT reads its CLS and distillation tokens, so pool must "
                              f"be 'cls', got {self.pool!r}")
        if self.pos_embed == "sincos2d":
            raise ConfigError("a distilled ViT has no fixed position for its distillation token; "
                              "use pos_embed='learned' or 'none'")

    @property
    def num_tokens(self) -> int:
        """CLS, the distillation token, then the patches."""
        return self.num_patches + 2


class _WithDistillationToken(nn.Module):
    """The stem, then the distillation token in front of the patch tokens: [B, N + 1, dim]
    (VisionTransformer puts CLS in front of that)."""

    def __init__(self, stem: nn.Module, dim: int) -> None:
        super().__init__()
        self.stem = stem
        self.token = nn.Parameter(torch.randn(1, 1, dim))     # initialised as the CLS token

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)                                              # [B, N, dim]
        return torch.cat([self.token.expand(x.shape[0], -1, -1), x], dim=1)


class DistilledViT(VisionTransformer):
    """VisionTransformer + DeiT's distillation token and head (`head_dist`).

    Tokens: [CLS, distillation, patches...]. forward(images) -> logits [B, classes]: in eval
    mode the mean of the two heads; `return_both=True` gives (CLS logits, distillation logits),
    which `distill_one_epoch` trains against the labels and the teacher. Plain training without
    a teacher is refused (the second head would have nothing to learn from)."""

    def __init__(self, config: DistilledViTConfig) -> None:
        super().__init__(config)
        self.patch_embed = _WithDistillationToken(self.patch_embed, config.dim)
        self.head_dist = nn.Linear(config.dim, config.num_classes)

    def no_weight_decay(self) -> set[str]:
        return super().no_weight_decay() | {"patch_embed.token"}

    def forward(self, images: torch.Tensor, return_attention: bool = False,
                return_both: bool = False):
        out = self.forward_features(images, return_attention)
        tokens, maps = out if return_attention else (out, None)
        cls_logits, dist_logits = self.head(tokens[:, 0]), self.head_dist(tokens[:, 1])
        if return_both:
            logits = (cls_logits, dist_logits)
        elif self.training:
            fix = arg("fit(..., train_epoch=distillation(teacher))", "--teacher CHECKPOINT")
            raise ConfigError(f"a distilled ViT trains against a teacher's predictions: pass {fix}")
        else:
            logits = (cls_logits + dist_logits) / 2                        # DeiT at test time
        return (logits, maps) if return_attention else logits


def check_teacher(teacher: nn.Module, student_config: ViTConfig, teacher_name: str = "the teacher",
                  ) -> None:
    """Refuse a teacher that sees other images or predicts other classes than the student."""
    tc, sc = teacher.config, student_config
    for field, what in (("image_size", "image size"), ("in_channels", "channels"),
                        ("num_classes", "number of classes")):
        if getattr(tc, field) != getattr(sc, field):
            raise ConfigError(f"{teacher_name} has {what} {getattr(tc, field)}, the student "
                              f"{getattr(sc, field)}; a teacher must see the same images and "
                              "predict the same classes: train it on the student's dataset")


def distill_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer,
                      scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, *,
                      teacher: nn.Module, kind: str = "hard", temperature: float = 1.0,
                      label_smoothing: float = 0.0, grad_clip: float = 0.0,
                      amp: tuple[Any, Any] | None = None, bar=None) -> dict[str, float]:
    """One epoch of DeiT distillation: loss = (CE(CLS head, labels) + distillation loss) / 2,
    the distillation loss being CE(distillation head, teacher's argmax) ("hard", DeiT's best)
    or KL(teacher || distillation head) at `temperature`, times temperature**2 ("soft").
    The teacher's logits come from one forward pass per batch under inference_mode. Returns
    what train_one_epoch returns: mean loss, accuracy (%) of the averaged heads, images seen."""
    if kind not in DISTILLATION:
        raise ConfigError(f"distillation must be one of {DISTILLATION}, got {kind!r}")
    device = next(model.parameters()).device
    autocast = amp[0] if amp is not None else None
    teacher.eval()
    model.train()
    seen, correct, loss_sum = 0, 0, 0.0
    for step, (x, y) in enumerate(loader):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        with torch.inference_mode():
            target = teacher(x).float()                                    # [B, classes]
        with autocast if autocast is not None else contextlib.nullcontext():
            cls_logits, dist_logits = model(x, return_both=True)
        cls_logits, dist_logits = cls_logits.float(), dist_logits.float()
        if kind == "hard":
            taught = F.cross_entropy(dist_logits, target.argmax(dim=1))
        else:
            taught = F.kl_div(F.log_softmax(dist_logits / temperature, dim=1),
                              F.log_softmax(target / temperature, dim=1),
                              reduction="batchmean", log_target=True) * temperature ** 2
        loss = (F.cross_entropy(cls_logits, y, label_smoothing=label_smoothing) + taught) / 2
        value = loss.item()
        if not math.isfinite(value):
            raise TrainingDivergedError(f"the distillation loss became {value} at step {step + 1} "
                                        "of the epoch; lower the learning rate (recipe.lr)")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        seen += y.numel()
        loss_sum += value * y.numel()
        correct += ((cls_logits + dist_logits).argmax(1) == y).sum().item()
        if bar is not None:
            bar.update(1)
    return {"loss": loss_sum / max(seen, 1), "accuracy": 100.0 * correct / max(seen, 1),
            "seen": seen}


def distillation(teacher: nn.Module, kind: str = "hard", temperature: float = 1.0):
    """The `train_epoch` argument of `vit_lib.engine.fit` that distils from `teacher`."""
    if kind not in DISTILLATION:
        raise ConfigError(f"distillation must be one of {DISTILLATION}, got {kind!r}")
    if not temperature > 0:
        raise ConfigError(f"the distillation temperature must be positive, got {temperature}")
    return functools.partial(distill_one_epoch, teacher=teacher, kind=kind,
                             temperature=temperature)


# best's recipe for 24 epochs instead of 15, planned to fill issue #22's 600 s of training on a
# 2-core CPU (best's epochs plus the teacher's forward pass on every batch). Measured by
# benchmarks/distillation.py (benchmarks/distillation.md): 668 s with 2 threads against the cnn
# preset, so it does not quite fit; 99.43% / 90.25% (MNIST / Fashion-MNIST, medians of 3 seeds)
# with hard distillation, 99.46% / 90.72% with --distill soft --temperature 3, against 99.44% /
# 89.95% for best itself trained for the same 24 epochs.
PRESETS["best-distilled"] = Preset(
    "best-distilled", "best's ViT (7x7 patches, linear stem) with DeiT's distillation token, "
    "trained with best's recipe for 24 epochs against a teacher's predictions (--teacher "
    "CHECKPOINT, e.g. the cnn preset)", DistilledViTConfig(dim=64, depth=6, heads=4, mlp_dim=128),
    replace(PRESETS["best"].recipe, epochs=24))
