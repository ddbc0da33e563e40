"""Lesson 04: ViTConfig, every architectural choice of the model in one validated dataclass."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar

from vit_lib.machinery.errors import ConfigError, arg

POOLING = ("cls", "mean")
POSITION_EMBEDDINGS = ("learned", "sincos2d", "none")
STEMS = ("linear", "conv")


class DictConvertible:
    """to_dict / from_dict for the frozen config dataclasses (checkpoints store plain dicts)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]):
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown {cls.__name__} field(s) {unknown}; "
                              f"known fields: {sorted(known)}")
        return cls(**values)


def is_count(value: Any) -> bool:
    """A whole number >= 1 (a bool is not one)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def check_counts(config: Any, names: tuple[str, ...]) -> None:
    """The checks every model family's config starts with: each field in `names` is a whole
    number >= 1, and num_classes is at least 2."""
    for name in names:
        value = getattr(config, name)
        if not is_count(value):
            raise ConfigError(f"{name} must be a positive whole number, got {value!r}")
    if config.num_classes < 2:
        raise ConfigError(f"num_classes must be at least 2, got {config.num_classes}")


def _divisors(n: int) -> list[int]:
    return [d for d in range(2, n) if n % d == 0]


@dataclass(frozen=True)
class ViTConfig(DictConvertible):
    """Architecture of a Vision Transformer.

    The defaults are the seed tutorial's model: 28x28x1 images, 7x7 patches (16 tokens + CLS),
    width 16, 4 heads, 4 blocks, MLP 64, 10 classes: 14,410 parameters.
    """

    image_size: int = 28
    in_channels: int = 1
    patch_size: int = 7
    dim: int = 16
    depth: int = 4
    heads: int = 4
    mlp_dim: int = 64
    num_classes: int = 10
    dropout: float = 0.0
    attn_dropout: float = 0.0
    drop_path: float = 0.0
    pool: str = "cls"
    pos_embed: str = "learned"
    layer_norm_eps: float = 1e-5
    qkv_bias: bool = True
    stem: str = "linear"           # "conv": lesson 07's convolutional stem before the patches

    architecture: ClassVar[str] = "vit"   # the model family's name in presets and checkpoints

    def __post_init__(self) -> None:
        check_counts(self, ("image_size", "in_channels", "patch_size", "dim", "depth", "heads",
                            "mlp_dim", "num_classes"))
        if self.patch_size > self.image_size:
            raise ConfigError(f"patch_size {self.patch_size} is larger than image_size "
                              f"{self.image_size}; use a patch no larger than the image")
        if self.image_size % self.patch_size:
            options = ", ".join(map(str, _divisors(self.image_size))) or str(self.image_size)
            raise ConfigError(f"patch_size {self.patch_size} does not divide image_size "
                              f"{self.image_size}; try one of {options}")
        if self.dim % self.heads:
            options = ", ".join(str(h) for h in range(1, self.dim + 1) if self.dim % h == 0)
            raise ConfigError(f"dim {self.dim} is not divisible by heads {self.heads}; "
                              f"choose heads from {options} or change dim")
        for name in ("dropout", "attn_dropout", "drop_path"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} must be a probability in [0, 1), got {value!r}")
        if self.pool not in POOLING:
            raise ConfigError(f"pool must be one of {POOLING}, got {self.pool!r}")
        if self.pos_embed not in POSITION_EMBEDDINGS:
            raise ConfigError(f"pos_embed must be one of {POSITION_EMBEDDINGS}, "
                              f"got {self.pos_embed!r}")
        if self.stem not in STEMS:
            raise ConfigError(f"stem must be one of {STEMS}, got {self.stem!r}")
        if self.stem == "conv" and self.patch_size & (self.patch_size - 1):
            raise ConfigError(f"stem 'conv' halves the image once per layer, so patch_size must be "
                              f"a power of two (2, 4, 8, 16), got {self.patch_size}; use "
                              f"{arg('patch_size=4', '--patch-size 4')} with a 28-pixel image, or "
                              f"the linear stem ({arg('stem=' + repr('linear'), '--stem linear')})")
        if self.pos_embed == "sincos2d" and self.dim % 4:
            raise ConfigError(f"pos_embed 'sincos2d' needs dim divisible by 4, got dim {self.dim}; "
                              "use a multiple of 4 or pos_embed='learned'")
        if self.layer_norm_eps <= 0:
            raise ConfigError(f"layer_norm_eps must be positive, got {self.layer_norm_eps}")

    @property
    def grid_size(self) -> int:
        """Patches per side: image_size // patch_size."""
        return self.image_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """Patch tokens per image: grid_size ** 2."""
        return self.grid_size ** 2

    @property
    def num_tokens(self) -> int:
        """Sequence length seen by the encoder: patches, plus one CLS token when pool='cls'."""
        return self.num_patches + (1 if self.pool == "cls" else 0)

    @property
    def head_dim(self) -> int:
        """Width of one attention head: dim // heads."""
        return self.dim // self.heads

