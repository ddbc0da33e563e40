"""Lesson 08: your own digits - prepare any image the way MNIST was prepared, then predict it.

A model trained on MNIST has only ever seen one kind of picture: light ink on a black 28x28
canvas, the digit scaled so its longer side is 20 pixels and placed so its centre of mass sits
at pixel (14, 14). A photo of a digit on paper is none of that, so `prepare_digit` redoes
MNIST's preparation step by step, one function per step:

1. `to_grayscale`: colour to one channel (transparent pixels composited onto a plain
   background);
2. `to_ink`: the paper's level (a plane fitted to the border by `fit_background`, so uneven
   lighting goes too) subtracted, and the sign flipped when the ink is darker than the paper:
   MNIST's polarity, light ink on a dark background;
3. `crop_to_ink`: cut to the ink's bounding box;
4. `scale_to_box`: the longer side scaled to 20 pixels, aspect ratio kept, antialiased;
5. `centre_by_mass`: pasted into a black 28x28 canvas with the ink's centre of mass at (14, 14).

Coordinates: pixel centres are at whole numbers 0..27 (row, column), so the canvas's geometric
centre is (13.5, 13.5); MNIST's digits have their centre of mass at (14, 14) in these
coordinates (mean 13.99 / 14.01 over the test set, spread 0.29: a whole-pixel shift), and so do
ours. `predict` runs any MNIST model on the result and `rollout_figure` shows where a ViT looked.
Reading files, arrays and tensors (and every way they can be unusable) is machinery:
`vit_lib.machinery.images`.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from vit_lib.data import dataset_info
from vit_lib.interpret import attention_maps, attention_rollout, cls_attention_grid
from vit_lib.machinery.errors import ImageError
from vit_lib.machinery.images import describe_shape, open_image
from vit_lib.machinery.plots import pyplot
from vit_lib.model import VisionTransformer

__all__ = ["Prediction", "centre_by_mass", "crop_to_ink", "fit_background", "predict",
           "predict_many", "prepare_digit", "rollout_figure", "scale_to_box", "to_grayscale",
           "to_ink"]

CANVAS = 28            # MNIST's image side, pixels
BOX = 20               # the longer side of the digit inside the canvas
CENTRE = 14            # where the ink's centre of mass goes (row and column, pixel-centre units)
STEP_NAMES = ("grayscale", "inverted", "cropped", "scaled 20x20", "centred 28x28")

BLANK_LEVEL = 0.10     # ink must differ from the background by 10% of black-to-white...
INK_FRACTION = 0.15    # ...and the bounding box holds pixels above 15% of the strongest ink
NOISE_SIGMAS = 3.0     # background noise (from the border) removed: 3 standard deviations
MAX_SIDE = 2048        # larger images (phone photos) are shrunk first, for speed


# --------------------------------------------------------------------------- 1. grayscale


def to_grayscale(img: Image.Image) -> np.ndarray:
    """PIL image -> float32 [H, W] in [0, 1]; transparency composited onto a plain background
    that contrasts with the visible pixels (white under dark ink, black under light ink)."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):     # 16-bit PNGs, float TIFFs
        g = np.asarray(img, dtype=np.float32)
        if img.mode.startswith("I;16"):
            top = 65535.0
        else:   # "I" and "F" carry no range: guess 0..1, 0..255 or 0..65535 from the values
            peak = float(g.max())
            top = 1.0 if img.mode == "F" and peak <= 1.0 else 255.0 if peak <= 255 else 65535.0
        return np.clip(g / top, 0.0, 1.0)
    has_alpha = img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info
    if img.mode == "L" and not has_alpha:
        return np.asarray(img, dtype=np.float32) / 255.0
    rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
    g = rgba[..., :3] @ np.array([0.299, 0.587, 0.114], dtype=np.float32)   # ITU-R 601 luma
    alpha = rgba[..., 3]
    if has_alpha and alpha.min() < 1.0:
        seen = float(alpha.sum())
        light_ink = seen > 0 and float((g * alpha).sum()) / seen > 0.5
        g = alpha * g + (1.0 - alpha) * (0.0 if light_ink else 1.0)
    return g.astype(np.float32)


# --------------------------------------------------------------------------- 2. ink, light on dark


def _border(a: np.ndarray) -> np.ndarray:
    """Boolean mask of the outer frame: 2% of the shorter side, at least 1 pixel."""
    w = max(1, round(0.02 * min(a.shape)))
    mask = np.zeros(a.shape, dtype=bool)
    mask[:w], mask[-w:], mask[:, :w], mask[:, -w:] = True, True, True, True
    return mask


def fit_background(gray: np.ndarray) -> tuple[np.ndarray, float]:
    """A plane a + b*x + c*y fitted to the border pixels, refitted twice without outliers (ink
    touching the border), and the noise around it: (plane [H, W], standard deviation)."""
    h, w = gray.shape
    ys, xs = np.nonzero(_border(gray))
    values = gray[ys, xs].astype(np.float64)
    design = np.stack([np.ones_like(values), xs / w - 0.5, ys / h - 0.5], axis=1)
    keep = np.ones(len(values), dtype=bool)
    coef = np.array([np.median(values), 0.0, 0.0])
    sigma = 0.0
    for _ in range(3):
        if keep.sum() >= 3:
            coef = np.linalg.lstsq(design[keep], values[keep], rcond=None)[0]
        residual = values - design @ coef
        sigma = 1.4826 * float(np.median(np.abs(residual[keep] - np.median(residual[keep]))))
        keep = np.abs(residual) <= max(3 * sigma, 0.02)
    yy, xx = np.mgrid[0:h, 0:w]
    plane = coef[0] + coef[1] * (xx / w - 0.5) + coef[2] * (yy / h - 0.5)
    return plane.astype(np.float32), sigma


def _blank(name: str, detail: str) -> ImageError:
    return ImageError(f"{name} is blank: no digit found ({detail}); use a picture with a clearly "
                      "darker (or lighter) digit on a plain background, e.g. a thick dark pen on "
                      "white paper")


def to_ink(gray: np.ndarray, name: str = "the image") -> tuple[np.ndarray, bool]:
    """Grayscale [H, W] -> (ink [H, W] float32 >= 0, inverted).

    ink: how far each pixel stands out of the background (the fitted plane and 3 standard
    deviations of its noise subtracted), in MNIST's polarity: light ink on black. inverted: the
    ink was darker than the paper, so the difference was flipped. ImageError when nothing
    stands out.
    """
    plane, sigma = fit_background(gray)
    residual = gray - plane                                  # ink sticks out of 0
    margin = NOISE_SIGMAS * sigma + 0.05
    lighter = np.clip(residual - margin, 0, None).sum()
    darker = np.clip(-residual - margin, 0, None).sum()
    if lighter == 0 and darker == 0:
        raise _blank(name, f"every pixel is within {margin:.0%} of the background level")
    inverted = bool(darker > lighter)
    if inverted:
        residual = -residual
    return np.clip(residual - NOISE_SIGMAS * sigma, 0, None).astype(np.float32), inverted


# --------------------------------------------------------------------------- 3. crop


def crop_to_ink(ink: np.ndarray, name: str = "the image") -> torch.Tensor:
    """ink [H, W] -> the ink's bounding box [h, w]: pixels above 15% of the strongest ink (in a
    slightly blurred copy for big photos, so noise speckles do not count). ImageError if faint."""
    ink = torch.as_tensor(ink, dtype=torch.float32)
    r = round(min(ink.shape) / 200)                # blur big photos a little: no noise speckles
    smooth = F.avg_pool2d(ink[None, None], 2 * r + 1, 1, r, count_include_pad=False)[0, 0] \
        if r else ink
    peak = float(smooth.max())
    if peak < BLANK_LEVEL:
        raise _blank(name, f"the strongest ink differs from the background by only {peak:.0%}")
    rows, cols = torch.nonzero(smooth > INK_FRACTION * peak, as_tuple=True)
    top, bottom, left, right = int(rows.min()), int(rows.max()), int(cols.min()), int(cols.max())
    return ink[top:bottom + 1, left:right + 1]


# --------------------------------------------------------------------------- 4. scale


def scale_to_box(cropped: torch.Tensor, box: int = BOX) -> torch.Tensor:
    """[h, w] -> [h', w'] with the longer side `box` pixels and the aspect ratio kept
    (antialiased), the strongest ink stretched to 1 as in MNIST."""
    h, w = cropped.shape
    scale = box / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    if size == (h, w):
        scaled = cropped.clone()
    else:
        scaled = F.interpolate(cropped[None, None], size=size, mode="bilinear",
                               align_corners=False, antialias=True)[0, 0]
    scaled = scaled.clamp(0, None)
    return (scaled / scaled.max()).clamp(0, 1)             # strongest ink = 1, as in MNIST


# --------------------------------------------------------------------------- 5. centre


def centre_by_mass(scaled: torch.Tensor, canvas: int = CANVAS, centre: int = CENTRE,
                   ) -> torch.Tensor:
    """[h, w] (at most canvas x canvas) -> [canvas, canvas]: pasted at whole-pixel offsets so
    the ink's centre of mass lands as close to (centre, centre) as it can without cutting ink."""
    h, w = scaled.shape
    mass = scaled.sum()
    cy = float((scaled.sum(1) * torch.arange(h)).sum() / mass)
    cx = float((scaled.sum(0) * torch.arange(w)).sum() / mass)
    y0 = min(max(round(centre - cy), 0), canvas - h)
    x0 = min(max(round(centre - cx), 0), canvas - w)
    out = torch.zeros(canvas, canvas)
    out[y0:y0 + h, x0:x0 + w] = scaled
    return out


# --------------------------------------------------------------------------- all five steps


def prepare_digit(source: Any, return_steps: bool = False):
    """Any image of one digit -> MNIST's format: float tensor [1, 28, 28] in [0, 1], ink 1.

    source: a file path, PIL image, numpy array or tensor (vit_lib.machinery.images reads it).
    The steps: grayscale, inverted (light ink on dark; unchanged when the ink is already light),
    cropped (background subtracted, cut to the ink's bounding box), scaled 20x20 (longer side
    20 px), centred 28x28 (centre of mass at pixel (14, 14)). return_steps=True returns
    (tensor, OrderedDict step name -> 2-D float tensor [h, w]) for a figure of each step.
    Raises ImageError for unusable sources and blank images.
    """
    img, name = open_image(source)
    if max(img.size) > MAX_SIDE:        # shrink phone photos: the digit ends up 20 px anyway
        img = img.copy()
        img.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.BILINEAR, reducing_gap=2.0)
    gray = to_grayscale(img)
    ink, inverted = to_ink(gray, name)
    cropped = crop_to_ink(ink, name)
    scaled = scale_to_box(cropped)
    image = centre_by_mass(scaled)[None]
    if not return_steps:
        return image
    steps = OrderedDict(zip(STEP_NAMES, (torch.from_numpy(gray.copy()),
                                         torch.from_numpy(1.0 - gray if inverted else gray.copy()),
                                         cropped, scaled, image[0].clone()), strict=True))
    return image, steps


# --------------------------------------------------------------------------- prediction


@dataclass
class Prediction:
    """A model's answer for one image.

    label: the most probable class's name; index: its position; probabilities: softmax over the
    classes [num_classes]; top: the k most probable (name, probability), highest first; image:
    the prepared digit the model saw before normalisation [1, 28, 28]; normalization: the
    (mean, std) it was normalised with, or None.
    """

    label: str
    index: int
    probabilities: torch.Tensor
    top: list[tuple[str, float]]
    image: torch.Tensor
    normalization: tuple[tuple[float, ...], tuple[float, ...]] | None = None

    def __str__(self) -> str:
        return ", ".join(f"{name} ({p:.1%})" for name, p in self.top)


def _normalization(model: nn.Module, normalize: Any) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """normalize as predict takes it -> (mean, std) or None; "auto": a shipped model's own."""
    if isinstance(normalize, str) and normalize == "auto":
        info = getattr(model, "info", None)
        normalize = info.normalize if info is not None else None
    if normalize is None or normalize is False:
        return None
    if normalize is True:
        info = dataset_info("mnist")
        return tuple(info.mean), tuple(info.std)
    try:
        mean, std = normalize
        mean = tuple(float(m) for m in np.atleast_1d(mean))
        std = tuple(float(s) for s in np.atleast_1d(std))
    except (TypeError, ValueError):
        raise ValueError(f"normalize must be None, True or a (mean, std) pair, got "
                         f"{normalize!r}") from None
    if any(s <= 0 for s in std):
        raise ValueError(f"normalize's std must be positive, got {std}")
    return mean, std


def _prepared_input(source: Any, prepared: bool) -> torch.Tensor:
    if not prepared:
        return prepare_digit(source)
    if not isinstance(source, torch.Tensor) or tuple(source.shape) != (1, CANVAS, CANVAS):
        shape = describe_shape(source) if hasattr(source, "shape") else type(source).__name__
        raise ImageError(f"prepared=True needs the [1, 28, 28] tensor prepare_digit returns, got "
                         f"{shape}; pass prepared=False to prepare the image first")
    return source.detach().float().cpu()


def _model_input(model: nn.Module, images: torch.Tensor, normalization: tuple | None) -> torch.Tensor:
    """images [B, 1, 28, 28] in [0, 1] -> on the model's device, normalised as it was trained."""
    config = getattr(getattr(model, "_orig_mod", model), "config", None)
    size, channels = getattr(config, "image_size", CANVAS), getattr(config, "in_channels", 1)
    if (size, channels) != (CANVAS, 1):
        raise ValueError(f"this model takes {size}x{size} images with {channels} channel(s); "
                         f"prepared digits are {CANVAS}x{CANVAS} grayscale: use a model built "
                         "for MNIST (image_size=28, in_channels=1)")
    param = next(model.parameters(), None)
    x = images.to(device=param.device if param is not None else "cpu", dtype=torch.float32)
    if normalization is not None:
        mean = torch.tensor(normalization[0], device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(normalization[1], device=x.device).view(1, -1, 1, 1)
        x = (x - mean) / std
    return x


def _run(model: nn.Module, images: torch.Tensor, classes: Sequence[str] | None,
         normalization: tuple | None, k: int) -> list[Prediction]:
    """images [B, 1, 28, 28] in [0, 1] -> one Prediction each."""
    x = _model_input(model, images, normalization)
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            logits = model(x)
    finally:
        model.train(was_training)
    probs = logits.float().softmax(dim=-1).cpu()                   # [B, num_classes]
    n = probs.shape[-1]
    if classes is None:
        classes = getattr(getattr(model, "info", None), "classes", None)
    names = [str(c) for c in classes] if classes is not None else [str(i) for i in range(n)]
    if len(names) != n:
        raise ValueError(f"classes has {len(names)} names but the model has {n} outputs")
    values, indices = probs.topk(min(k, n), dim=-1)
    out = []
    for p, v, i, image in zip(probs, values, indices, images, strict=True):
        top = [(names[j], float(q)) for q, j in zip(v.tolist(), i.tolist(), strict=True)]
        out.append(Prediction(names[int(i[0])], int(i[0]), p.clone(), top,
                              image.detach().cpu().clone(), normalization))
    return out


def predict(model: nn.Module, source: Any, *, classes: Sequence[str] | None = None,
            normalize: Any = "auto", k: int = 3, prepared: bool = False) -> Prediction:
    """Prepare one image like MNIST (`prepare_digit`) and classify it.

    model: any nn.Module mapping [B, 1, 28, 28] to logits [B, num_classes] (run in eval mode
    under inference_mode; its train/eval mode is restored). classes: names of the outputs
    (default: a shipped model's `model.info.classes`, else "0", "1", ...). normalize: None/False
    for raw pixels in [0, 1], True for MNIST's mean/std, or a (mean, std) pair: what the model
    was trained with (`normalize=recipe.normalize`); "auto" (the default) takes a shipped
    model's (`vit_lib.pretrained`), else raw pixels. prepared=True: source is already
    prepare_digit's [1, 28, 28].
    """
    image = _prepared_input(source, prepared)
    return _run(model, image[None], classes, _normalization(model, normalize), k)[0]


def predict_many(model: nn.Module, sources: Sequence[Any], *, classes: Sequence[str] | None = None,
                 normalize: Any = "auto", k: int = 3, prepared: bool = False,
                 ) -> list[Prediction | ImageError]:
    """predict for each source, in one batch; an unusable source gives its ImageError in its
    slot instead of stopping the others."""
    normalization = _normalization(model, normalize)
    results: list[Prediction | ImageError | None] = []
    good: list[torch.Tensor] = []
    for source in sources:
        try:
            good.append(_prepared_input(source, prepared))
            results.append(None)
        except ImageError as exc:
            results.append(exc)
    if good:
        predictions = iter(_run(model, torch.stack(good), classes, normalization, k))
        results = [next(predictions) if r is None else r for r in results]
    return results


# --------------------------------------------------------------------------- where it looked


def rollout_figure(model: nn.Module, prediction: Prediction, *, normalize: Any = "same",
                   residual: float = 0.5):
    """The prepared digit with the ViT's attention rollout over it (upsampled from the patch
    grid to 28x28), a colour bar and the prediction in the title; returns the figure.

    The rollout row is the CLS token's (`cls_attention_grid`, lesson 06); a ViT without CLS
    token (pool='mean') shows the mean over all tokens' rows, what its pooled output draws on.
    normalize: "same" uses the prediction's normalisation, else as in predict.
    Raises TypeError for a model without attention (e.g. the CNN).
    """
    vit = getattr(model, "_orig_mod", model)
    if not isinstance(vit, VisionTransformer):
        raise TypeError(f"attention rollout needs a VisionTransformer; got a "
                        f"{type(vit).__name__}, which has no attention maps")
    normalization = (prediction.normalization if isinstance(normalize, str) and normalize == "same"
                     else _normalization(vit, normalize))
    x = _model_input(vit, prediction.image[None], normalization)
    rollout = attention_rollout(attention_maps(vit, x), residual=residual)   # [1, T, T]
    g = vit.config.grid_size
    if vit.cls_token is not None:
        grid, who = cls_attention_grid(rollout, g), "CLS token"              # [1, g, g]
    else:
        grid, who = rollout[:, :, -g * g:].mean(dim=1).reshape(-1, g, g), "mean of all tokens"
    heat = F.interpolate(grid[None].float().cpu(), size=(CANVAS, CANVAS), mode="nearest")[0, 0]

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4.4, 3.8))
    ax.imshow(prediction.image[0].cpu().numpy(), cmap="gray", vmin=0.0, vmax=1.0)
    overlay = ax.imshow(heat.numpy(), cmap="inferno", alpha=0.55, interpolation="nearest")
    colorbar = fig.colorbar(overlay, ax=ax, fraction=0.046, pad=0.04)
    colorbar.set_label("attention rollout")
    ax.set_title(f"predicted {prediction.label} ({prediction.top[0][1]:.1%})\n"
                 f"rollout of the {who}, {g}x{g} patches", fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])
    fig.tight_layout()
    return fig
