"""Classify image files with a trained model: each file's most likely classes, with probabilities.

    python -m vit_lib predict my_digit.png                      # the shipped `best` ViT (MNIST)
    python -m vit_lib predict a.png b.jpg --pretrained seed-tuned
    python -m vit_lib predict shoe.png --pretrained best/fashion-mnist
    python -m vit_lib predict a.png --checkpoint runs/seed-tuned-mnist --rollout rollout.png

How a file becomes the model's input (--prepare):
  digit   MNIST's own preparation (vit_lib.digits.prepare_digit): grayscale, inverted to light
          ink on black when needed, cropped to the ink, scaled into 20x20 and centred by its
          centre of mass in 28x28. A photo or drawing of one digit, any size, works.
  resize  what `train --dataset folder:PATH` did to its images: grayscale or RGB like the
          model's input, resized to its image size (vit_lib.machinery.image_folder).
  auto    (default) digit for a model trained on MNIST, resize for any other. A model trained
          on a folder of MNIST-like digits reads drawn digits best with --prepare digit.

The inputs are normalised as the model's training inputs were (its recipe, its dataset's or
folder's mean and std) and the output names are its classes (a folder's subfolder names).

A file that cannot be used - missing, a folder, not an image, truncated, blank - gets one
`error:` line naming it and what is wrong, and the others are still classified. Exit status:
0 when every file was classified, 1 when some were not, 2 for a usage error (a bad option or
checkpoint; nothing is classified).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from vit_lib.cli.common import path_arg, positive_int, require_keys
from vit_lib.digits import Prediction, predict_many, rollout_figure
from vit_lib.interpret import attention_maps, attention_rollout, cls_attention_grid
from vit_lib.machinery import pretrained
from vit_lib.machinery.errors import ConfigError, ImageError, OutputError
from vit_lib.machinery.families import checkpoint_config, describe, model_from_checkpoint
from vit_lib.machinery.files import check_writable_folder, write_atomically
from vit_lib.machinery.image_folder import image_to_array
from vit_lib.machinery.images import open_image
from vit_lib.machinery.plots import pyplot
from vit_lib.model import VisionTransformer

INTERRUPTED = "the prediction was stopped; rollout files already written are complete"
DEFAULT = "best"
PREPARE = ("auto", "digit", "resize")
FIGURE_FORMATS = (".png", ".jpg", ".jpeg", ".pdf", ".svg")
BLANK_RANGE = 8          # a resized image whose pixels span fewer levels (of 255) is blank


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vit_lib predict", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", type=Path, metavar="IMAGE",
                   help="image files: PNG, JPEG, BMP, GIF, WebP..., photos or drawings, any size")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--checkpoint", type=path_arg,
                       help="a checkpoint.pt, its run folder, or pretrained:NAME[/DATASET]")
    which.add_argument("--pretrained", metavar="NAME[/DATASET]",
                       help=f"a model shipped with vit_lib (default {DEFAULT}: the most accurate "
                            "shipped ViT, and trained on shifted, rotated and zoomed digits, so "
                            "the most forgiving of hand-drawn ones; still instant on a CPU). "
                            "Shipped: "
                            + ("; ".join(f"{n}/{d}" for n, d in pretrained.available()) or "none"))
    p.add_argument("--prepare", choices=PREPARE, default="auto",
                   help="digit (MNIST's preparation), resize (a folder's), auto (default: digit "
                        "for MNIST models)")
    p.add_argument("--top", type=positive_int, default=3, metavar="K",
                   help="how many classes to print per file (default 3)")
    p.add_argument("--rollout", type=path_arg, metavar="OUT.png",
                   help="also draw the ViT's attention rollout over each prepared image into "
                        "OUT.png; with several images OUT-1.png, OUT-2.png, ... numbered in the "
                        "order the images are given (a failed image writes none)")
    return p


def load_model(args: argparse.Namespace) -> tuple[nn.Module, str, dict[str, Any]]:
    """(model in eval mode, a name for it, its checkpoint state) for --checkpoint/--pretrained."""
    spec = args.checkpoint if args.checkpoint is not None else (
        pretrained.PREFIX + (args.pretrained or DEFAULT))
    state, label = pretrained.load_any_checkpoint(spec)
    require_keys(state, ("model", "config", "recipe"), Path(label))
    return model_from_checkpoint(state), label, state


def rollout_paths(out: Path, count: int) -> list[Path]:
    """Where --rollout OUT writes: OUT for one image, OUT-1, OUT-2... (same suffix) for several."""
    if count == 1:
        return [out]
    return [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(1, count + 1)]


def _prepare_mode(args: argparse.Namespace, state: dict[str, Any], config: Any, label: str) -> str:
    digit_shaped = (config.image_size, config.in_channels) == (28, 1)
    if args.prepare == "digit" and not digit_shaped:
        raise ConfigError(f"--prepare digit makes 28x28 grayscale digits, but {label} takes "
                          f"{config.image_size}x{config.image_size}x{config.in_channels} images: "
                          "use --prepare resize (or auto)")
    if args.prepare != "auto":
        return args.prepare
    dataset = (state.get("extra") or {}).get("dataset")
    return "digit" if dataset == "mnist" and digit_shaped else "resize"


def _resized(path: Path, config: Any) -> torch.Tensor:
    """One file as the folder loader prepares images: float [C, S, S] in [0, 1]; ImageError for
    a file that cannot be used or a blank image."""
    image, name = open_image(path)
    array = image_to_array(image, config.image_size, config.in_channels)
    spread = int(np.ptp(array.reshape(array.shape[0], -1), axis=1).max())
    if spread < BLANK_RANGE:
        raise ImageError(f"{name} is blank: all its pixels are one colour (within {spread} of "
                         "255 levels), nothing to classify; use an image of the object")
    return torch.from_numpy(np.array(array, dtype=np.float32)).div_(255)   # a writable copy


def _predict_resized(model: nn.Module, paths: Sequence[Path], config: Any,
                     classes: Sequence[str], normalization, k: int) -> list[Prediction | ImageError]:
    results: list[Prediction | ImageError | None] = []
    good: list[torch.Tensor] = []
    for path in paths:
        try:
            good.append(_resized(path, config))
            results.append(None)
        except ImageError as exc:
            results.append(exc)
    if not good:
        return results   # type: ignore[return-value]
    images = torch.stack(good)
    x = _normalised(images, normalization)
    with torch.inference_mode():
        probs = model(x).float().softmax(-1)
    values, indices = probs.topk(min(k, probs.shape[-1]), dim=-1)
    predictions = iter([
        Prediction(classes[int(i[0])], int(i[0]), p.clone(),
                   [(classes[j], float(q)) for q, j in zip(v.tolist(), i.tolist(), strict=True)],
                   image, normalization)
        for p, v, i, image in zip(probs, values, indices, images, strict=True)])
    return [next(predictions) if r is None else r for r in results]


def _opposite_polarity(image: torch.Tensor, normalization) -> bool:
    """True when an image [C, H, W] in [0, 1] is mostly light while the training images' mean
    (from `normalization`) was dark: dark-on-light drawings fed to a light-on-dark model."""
    if normalization is None:
        return False
    return float(image.mean()) > 0.5 and max(normalization[0]) < 0.3


def _normalised(images: torch.Tensor, normalization) -> torch.Tensor:
    if normalization is None:
        return images
    c = images.shape[1]
    mean = torch.tensor(normalization[0]).view(1, c, 1, 1)
    std = torch.tensor(normalization[1]).view(1, c, 1, 1)
    return (images - mean) / std


def _any_rollout_figure(model: VisionTransformer, prediction: Prediction):
    """The attention rollout over an image of any size and channels (digits.rollout_figure
    draws the 28x28 grayscale ones)."""
    image = prediction.image                                     # [C, S, S] in [0, 1]
    rollout = attention_rollout(attention_maps(model, _normalised(image[None],
                                                                  prediction.normalization)))
    g = model.config.grid_size
    grid = (cls_attention_grid(rollout, g) if model.cls_token is not None
            else rollout[:, :, -g * g:].mean(dim=1).reshape(-1, g, g))
    heat = F.interpolate(grid[None].float(), size=tuple(image.shape[1:]), mode="nearest")[0, 0]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.4, 3.8))
    shown = image[0] if image.shape[0] == 1 else image.permute(1, 2, 0)
    ax.imshow(shown.numpy(), cmap="gray" if image.shape[0] == 1 else None, vmin=0.0, vmax=1.0)
    overlay = ax.imshow(heat.numpy(), cmap="inferno", alpha=0.55, interpolation="nearest")
    fig.colorbar(overlay, ax=ax, fraction=0.046, pad=0.04).set_label("attention rollout")
    ax.set_title(f"predicted {prediction.label} ({prediction.top[0][1]:.1%})\n"
                 f"rollout over {g}x{g} patches", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return fig


def _check_rollout(out: Path, model: nn.Module, label: str, config: Any) -> None:
    if not isinstance(model, VisionTransformer):
        raise ConfigError(f"--rollout draws a ViT's attention, and {label} is a "
                          f"{describe(config)}, which has none: drop --rollout, or use a ViT")
    if out.suffix.lower() not in FIGURE_FORMATS:
        raise ConfigError(f"--rollout {out}: end the file name in "
                          f"{', '.join(FIGURE_FORMATS)}")
    try:
        check_writable_folder(out.parent if str(out.parent) else Path("."), "the folder of --rollout")
    except OutputError as exc:
        raise OutputError(f"{exc}; choose another --rollout") from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    model, label, state = load_model(args)
    config = checkpoint_config(state)
    mode = _prepare_mode(args, state, config, label)
    if args.rollout is not None:
        _check_rollout(args.rollout, model, label, config)
    classes = pretrained.checkpoint_classes(state)
    normalization = pretrained.checkpoint_normalization(state)
    if mode == "digit":
        results = predict_many(model, args.images, classes=classes, normalize=normalization,
                               k=args.top)
    else:
        results = _predict_resized(model, args.images, config, classes, normalization, args.top)
    outs = rollout_paths(args.rollout, len(args.images)) if args.rollout else [None] * len(results)
    failed = 0
    for path, result, out in zip(args.images, results, outs, strict=True):
        if isinstance(result, ImageError):
            failed += 1
            print(f"error: {result.for_cli()}", file=sys.stderr)
            continue
        print(f"{path}: " + ", ".join(f"{name} ({p:.1%})" for name, p in result.top), flush=True)
        if mode == "resize" and _opposite_polarity(result.image, normalization):
            print(f"  note: {path} is mostly light, but this model was trained on mostly dark images "
                  "(light ink on black, like MNIST): for a drawn or photographed digit try --prepare digit")
        if out is not None:
            digit = tuple(result.image.shape) == (1, 28, 28)
            fig = (rollout_figure(model, result) if digit else _any_rollout_figure(model, result))
            write_atomically(out, lambda tmp, fig=fig: fig.savefig(tmp, dpi=110))
            pyplot().close(fig)
            print(f"  attention rollout: {out}")
    if failed:
        print(f"{failed} of {len(args.images)} file{'s' if len(args.images) > 1 else ''} could "
              "not be classified", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    from vit_lib.cli.common import run_cli
    sys.exit(run_cli(main, None, interrupted=INTERRUPTED))
