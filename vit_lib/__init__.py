"""vit_lib: the finished code of the vit-from-scratch lessons, one module per lesson.

The top level is the lessons (`LESSONS` below lists them in order); the drawers hold what the
lessons use but do not teach: `vit_lib.machinery` (devices, checkpoints, resuming, torchrun,
CUDA graphs, the run cache, figures, errors), `vit_lib.cli` (`python -m vit_lib COMMAND`) and
`vit_lib.classroom` (exercise checks, grader, student edition, mirror check).

    from vit_lib import ViTConfig, VisionTransformer, get_preset, fit, seed_everything
"""
from __future__ import annotations

from dataclasses import dataclass

# The lessons, in order: each module imports only the lessons before it and the machinery
# (tests/test_import_graph.py). The order of these lines is the point, so isort leaves them.
# ruff: noqa: I001
from vit_lib.data import TensorLoader, dataset_info, get_loaders, get_test_loader, load_tensors  # 00
from vit_lib.patches import PatchEmbedding, image_to_patches  # 01
from vit_lib.attention import MultiHeadSelfAttention, scaled_dot_product_attention  # 02
from vit_lib.block import Block  # 03
from vit_lib.config import ViTConfig  # 04
from vit_lib.model import VisionTransformer, count_parameters, parameter_table  # 04
from vit_lib.presets import PRESETS, Preset, Recipe, get_preset  # 05
from vit_lib.engine import evaluate, fit, train_one_epoch  # 05
from vit_lib.interpret import attention_maps, attention_rollout  # 06
from vit_lib.cnn import CNNConfig, ConvNet, ConvStem  # 07
from vit_lib.transfer import freeze_all_but_head, init_from_checkpoint  # 07
from vit_lib.digits import predict, prepare_digit, rollout_figure  # 08

# What the lessons use from the machinery
from vit_lib.machinery.checkpoint import load_checkpoint, save_checkpoint
from vit_lib.machinery.errors import ConfigError, UserError
from vit_lib.machinery.families import build_model, describe, model_from_checkpoint
from vit_lib.machinery.plots import (confusion_matrix, lesson_style, plot_confusion_matrix,
                                     plot_history, show_images)
from vit_lib.machinery.pretrained import pretrained
from vit_lib.machinery.results import committed_results
from vit_lib.machinery.run_cache import fit_or_reuse
from vit_lib.machinery.runtime import resolve_device, seed_everything
from vit_lib.machinery.torchvision_compat import (load_from_torchvision, matching_config,
                                                  torchvision_vit)

__version__ = "0.1.0"


@dataclass(frozen=True)
class Lesson:
    """One lesson: its number, notebook, title (and a short one for pictures), the vit_lib
    modules it builds or is about, and those of them whose code its `# export:` cells show
    character for character (mirrored, checked by `python -m vit_lib mirror`)."""

    number: str
    notebook: str
    title: str
    short: str
    modules: tuple[str, ...]
    mirrored: tuple[str, ...]


LESSONS: tuple[Lesson, ...] = (
    Lesson("00", "00_setup_and_data.ipynb", "Setup and data", "Setup and data", ("data",), ()),
    Lesson("01", "01_patches.ipynb", "From an image to a sequence of patch tokens", "Patches",
           ("patches",), ("patches",)),
    Lesson("02", "02_attention.ipynb", "Attention", "Attention", ("attention",), ("attention",)),
    Lesson("03", "03_transformer_block.ipynb", "The transformer block", "The transformer block",
           ("block",), ("block",)),
    Lesson("04", "04_vision_transformer.ipynb", "The whole Vision Transformer",
           "The whole Vision Transformer", ("config", "model"), ("model",)),
    Lesson("05", "05_training.ipynb", "Training the Vision Transformer", "Training",
           ("presets", "engine"), ("engine",)),
    Lesson("06", "06_inside_the_model.ipynb", "Inside the trained model",
           "Inside the trained model", ("interpret",), ("interpret",)),
    Lesson("07", "07_vit_vs_cnn.ipynb", "ViT versus CNN on the same budget", "ViT versus CNN",
           ("cnn", "transfer"), ("cnn",)),
    Lesson("08", "08_your_own_digits.ipynb", "Your own digits", "Your own digits", ("digits",), ("digits",)),
)

__all__ = [
    "LESSONS", "Lesson", "__version__",
    "TensorLoader", "dataset_info", "get_loaders", "get_test_loader", "load_tensors",
    "PatchEmbedding", "image_to_patches", "MultiHeadSelfAttention", "scaled_dot_product_attention",
    "Block", "ViTConfig", "VisionTransformer", "count_parameters", "parameter_table",
    "PRESETS", "Preset", "Recipe", "get_preset", "evaluate", "fit", "train_one_epoch",
    "attention_maps", "attention_rollout", "CNNConfig", "ConvNet", "ConvStem",
    "freeze_all_but_head", "init_from_checkpoint", "predict", "prepare_digit", "rollout_figure",
    "load_checkpoint", "save_checkpoint", "ConfigError", "UserError", "build_model", "describe",
    "model_from_checkpoint", "confusion_matrix", "lesson_style", "plot_confusion_matrix",
    "plot_history", "show_images", "pretrained", "committed_results", "fit_or_reuse", "resolve_device",
    "seed_everything", "load_from_torchvision", "matching_config", "torchvision_vit",
]
