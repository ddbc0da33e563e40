"""Reading an image for lesson 08 from whatever a learner has: a file (PNG, JPEG, BMP, GIF,
WebP...), a PIL image, a numpy array or a torch tensor, with one clear ImageError for each way it
can be unusable (missing, a folder, not an image, cut short, an unsupported array). The lesson
(vit_lib.digits) starts from the upright PIL image this returns, and draws its preparation steps
with `plot_preparation`; it does not teach either."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from vit_lib.machinery.errors import ImageError
from vit_lib.machinery.plots import pyplot

_SIGNATURES = {b"\x89PNG\r\n\x1a\n": "PNG", b"\xff\xd8\xff": "JPEG", b"GIF87a": "GIF",
               b"GIF89a": "GIF", b"BM": "BMP"}


def describe_shape(x: Any) -> str:
    return "[" + ", ".join(str(s) for s in x.shape) + "]"


def _from_array(a: np.ndarray, name: str) -> Image.Image:
    """HxW or HxWxC (C = 1, 3, 4) array, uint8 / bool / integers 0..255 / floats 0..1 -> PIL."""
    if a.ndim == 3 and a.shape[-1] not in (1, 3, 4) and a.shape[0] in (1, 3, 4):
        raise ImageError(f"{name} has shape {describe_shape(a)}, channels first; numpy images are "
                         "height x width x channels: pass a.transpose(1, 2, 0)")
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[-1] in (1, 3, 4))):
        raise ImageError(f"{name} has shape {describe_shape(a)}; an image is height x width (gray) or "
                         "height x width x channels with 1, 3 (RGB) or 4 (RGBA) channels")
    if min(a.shape[:2]) == 0:
        raise ImageError(f"{name} has shape {describe_shape(a)}: it holds no pixels")
    if a.dtype == np.bool_:
        a = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise ImageError(f"{name} holds NaN or infinite values; an image needs finite "
                             "pixel values in [0, 1]")
        lo, hi = float(a.min()), float(a.max())
        if lo < -1e-6 or hi > 1 + 1e-6:
            raise ImageError(f"{name} holds values from {lo:.3g} to {hi:.3g}; float pixels must "
                             "lie in [0, 1] (divide 0-255 values by 255; undo normalisation "
                             "with x * std + mean)")
        a = np.round(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        if a.dtype != np.uint8:
            lo, hi = int(a.min()), int(a.max())
            if lo < 0 or hi > 255:
                raise ImageError(f"{name} holds whole numbers from {lo} to {hi}; pixels must be "
                                 "0..255 (uint8) or floats in [0, 1]")
            a = a.astype(np.uint8)
    else:
        raise ImageError(f"{name} has dtype {a.dtype}; pass uint8 (0..255) or float (0..1) pixels")
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    return Image.fromarray(np.ascontiguousarray(a))   # uint8: L, RGB or RGBA from the shape


def _from_tensor(t: torch.Tensor, name: str) -> Image.Image:
    """[H, W], [C, H, W] or [1, C, H, W] tensor (C = 1, 3, 4) -> PIL."""
    t = t.detach().cpu()
    if t.ndim == 4:
        if t.shape[0] != 1:
            raise ImageError(f"{name} is a batch of {t.shape[0]} images; pass one image "
                             "(x[0]) or use predict_many(model, list(x))")
        t = t[0]
    if t.ndim == 3:
        if t.shape[0] not in (1, 3, 4):
            hint = (" (channels last: pass x.permute(2, 0, 1))" if t.shape[-1] in (1, 3, 4)
                    else "")
            raise ImageError(f"{name} has shape {describe_shape(t)}; a tensor image is [H, W], "
                             f"[C, H, W] or [1, C, H, W] with C = 1, 3 or 4{hint}")
        t = t.permute(1, 2, 0)
    elif t.ndim != 2:
        raise ImageError(f"{name} has shape {describe_shape(t)}; a tensor image is [H, W], [C, H, W] "
                         "or [1, C, H, W] with C = 1, 3 or 4")
    if t.is_floating_point():
        t = t.float()
    return _from_array(t.numpy(), name)


def _file_problem(path: Path, exc: Exception) -> str:
    """Why Pillow cannot identify `path`: what the file looks like instead."""
    try:
        with open(path, "rb") as f:
            head = f.read(512)
    except OSError:
        head = b""
    if not head:
        return "is empty (0 bytes); save or download it again"
    for signature, fmt in _SIGNATURES.items():
        if head.startswith(signature):
            return (f"starts like a {fmt} file but is damaged or cut short ({exc}); "
                    "save or download it again")
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return ("is a WebP file, which this Pillow cannot read (built without WebP); "
                "convert it to PNG, or install a Pillow with WebP support")
    try:
        head.decode("utf-8")
        looks = " (it looks like a text file)"
    except UnicodeDecodeError:
        looks = ""
    return (f"is not an image that Pillow can read{looks}; save the digit as PNG, JPEG, BMP, "
            "GIF or WebP (a phone's HEIC photo or an SVG drawing: export it as PNG first)")


def _open_file(path: Path, name: str) -> Image.Image:
    if not path.exists():
        where = "" if path.is_absolute() else f" (relative to the working folder {Path.cwd()})"
        raise ImageError(f"{name} does not exist{where}; check the file name and folder")
    if path.is_dir():
        raise ImageError(f"{name} is a folder, not an image file; pass one of the image files "
                         "inside it")
    try:
        with Image.open(path) as im:
            im.load()              # decodes the first frame; a cut-short file fails here
            return im.copy()
    except UnidentifiedImageError as exc:
        raise ImageError(f"{name} {_file_problem(path, exc)}") from None
    except PermissionError:
        raise ImageError(f"{name} cannot be read: permission denied; check the file's "
                         "permissions") from None
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name} is too large to open safely ({exc}); shrink the image "
                         "first") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError(f"{name} is damaged or cut short (Pillow: {exc}); save or download "
                         "it again") from None


def open_image(source: Any) -> tuple[Image.Image, str]:
    """(upright PIL image, a name for messages)."""
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        img, name = _open_file(path, str(source)), str(source)
    elif isinstance(source, Image.Image):
        name = getattr(source, "filename", "") or f"the PIL image ({source.mode}, " \
                                                  f"{source.width}x{source.height})"
        try:
            source.load()
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(f"{name} is damaged or cut short (Pillow: {exc}); save or "
                             "download it again") from None
        img = source
    elif isinstance(source, np.ndarray):
        name = f"the numpy array {describe_shape(source)}"
        img = _from_array(source, name)
    elif isinstance(source, torch.Tensor):
        name = f"the tensor {describe_shape(source)}"
        img = _from_tensor(source, name)
    else:
        raise ImageError(f"cannot use a {type(source).__name__} as an image; pass a file path, "
                         "a PIL image, a numpy array or a torch tensor")
    if min(img.size) < 3:
        raise ImageError(f"{name} is only {img.width}x{img.height} pixels; a digit needs an "
                         "image at least 3 pixels on each side")
    try:
        return ImageOps.exif_transpose(img), name   # phone photos: apply the EXIF orientation
    except (OSError, SyntaxError, ValueError, KeyError, TypeError):
        return img, name                            # a broken EXIF block: pixels as stored


def load_image(source: Any) -> Image.Image:
    """Any image source -> an upright PIL image (GIF/animated: the first frame).

    source: a path (str or Path: PNG, JPEG, BMP, GIF, WebP, or anything Pillow reads), a PIL
    image, a numpy array (H x W or H x W x C with C = 1, 3, 4; uint8 0..255 or float 0..1) or a
    torch tensor ([H, W], [C, H, W] or [1, C, H, W]; uint8 or float 0..1).
    Raises ImageError for a missing file, a folder, a file that is not an image, a damaged or
    cut-short image, or an array of an unsupported shape or range.
    """
    return open_image(source)[0]


def plot_preparation(steps: dict[str, torch.Tensor], ax_row: Sequence[Any] | None = None):
    """Draw prepare_digit's steps side by side (gray, 0 = black, 1 = white), each panel titled
    with its step name and size (width x height, pixels); returns the figure.

    ax_row: axes to draw into (one per step); by default a new figure, 1.9 inches per panel.
    The last panel marks the centre of mass (red +) over the canvas centre (14, 14).
    """
    plt = pyplot()
    if ax_row is None:
        fig, ax_row = plt.subplots(1, len(steps), figsize=(1.9 * len(steps), 2.5),
                                   squeeze=False)
        ax_row = ax_row[0]
    else:
        ax_row = list(np.ravel(ax_row)) if not isinstance(ax_row, Sequence) else list(ax_row)
        if len(ax_row) < len(steps):
            raise ValueError(f"ax_row has {len(ax_row)} axes for {len(steps)} steps")
        fig = ax_row[0].figure
    previous = None
    for i, (ax, (name, image)) in enumerate(zip(ax_row, steps.items(), strict=False), start=1):
        image = image.detach().cpu().float()
        ax.imshow(image.numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        label = name
        if name == "inverted" and previous is not None and torch.equal(image, previous):
            label = "inverted (not needed)"
        ax.set_title(f"{i}. {label}\n{image.shape[1]}x{image.shape[0]} px", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if name == "centred 28x28" and image.sum() > 0:
            idx = torch.arange(image.shape[0], dtype=torch.float32)
            cy = float((image.sum(1) * idx).sum() / image.sum())
            cx = float((image.sum(0) * idx[:image.shape[1]]).sum() / image.sum())
            ax.plot([cx], [cy], "r+", markersize=10, mew=1.5)
        previous = image
    fig.tight_layout()
    return fig
