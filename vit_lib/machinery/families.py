"""Model families by name: which config class and which nn.Module each architecture uses.

Presets and checkpoints record an architecture name ("vit", "cnn"); everything that builds a
model from a name or a checkpoint (the command line, `pretrained`, checkpoint loading) goes
through `build_model` / `config_from_dict` instead of naming VisionTransformer. Each config
class names its own family (`ViTConfig.architecture == "vit"`), each model initialises its own
parameters and says which of its matrices take no weight decay (`model.no_weight_decay()`).
To add a family: a config dataclass with an `architecture` name, a model class, one entry here.
"""
from __future__ import annotations

from typing import Any, Union

import torch
from torch import nn

from vit_lib.cnn import CNNConfig, ConvNet, DistilledViT, DistilledViTConfig
from vit_lib.config import ViTConfig
from vit_lib.machinery.errors import ConfigError
from vit_lib.model import VisionTransformer

ModelConfig = Union[ViTConfig, CNNConfig, DistilledViTConfig]

ARCHITECTURES: dict[str, tuple[type, type[nn.Module]]] = {
    "vit": (ViTConfig, VisionTransformer),
    "cnn": (CNNConfig, ConvNet),
    "vit-distilled": (DistilledViTConfig, DistilledViT),
}


def architecture_of(config: ModelConfig) -> str:
    """The registered name of a config's model family: ViTConfig -> 'vit', CNNConfig -> 'cnn'."""
    for name, (config_cls, _) in ARCHITECTURES.items():
        if type(config) is config_cls:
            return name
    raise ConfigError(f"{type(config).__name__} is not a registered model config; "
                      f"known: {', '.join(c.__name__ for c, _ in ARCHITECTURES.values())}")


def config_from_dict(architecture: str, values: dict[str, Any]) -> ModelConfig:
    """Rebuild a model config stored as a plain dict (in a checkpoint) for an architecture."""
    if architecture not in ARCHITECTURES:
        raise ConfigError(f"unknown architecture {architecture!r}; this vit_lib knows "
                          f"{', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[architecture][0].from_dict(values)


def build_model(config: ModelConfig) -> nn.Module:
    """A freshly initialised model of the family `config` belongs to."""
    return ARCHITECTURES[architecture_of(config)][1](config)


def describe(config: ModelConfig) -> str:
    """One line naming the architecture, e.g. 'ViT (7x7 patches, width 16, 4 blocks)'."""
    if isinstance(config, ViTConfig):
        stem = ", conv stem" if config.stem == "conv" else ""
        kind = "distilled ViT" if isinstance(config, DistilledViTConfig) else "ViT"
        return (f"{kind} ({config.patch_size}x{config.patch_size} patches, width {config.dim}, "
                f"{config.depth} blocks{stem})")
    return (f"CNN ({len(config.widths)} stages of width {'/'.join(map(str, config.widths))}, "
            f"{config.convs_per_stage} conv(s) each)")


def checkpoint_config(state: dict[str, Any]) -> ModelConfig:
    """The model config a checkpoint holds (a ViTConfig, CNNConfig...), by its `arch` name;
    checkpoints written before model families existed hold a ViT."""
    return config_from_dict(state.get("arch", "vit"), state["config"])


def model_from_checkpoint(state: dict[str, Any], device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model stored in a checkpoint (whatever its architecture), in eval mode."""
    model = build_model(checkpoint_config(state))
    model.load_state_dict(state["model"])
    return model.to(device).eval()
