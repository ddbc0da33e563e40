"""Folders of images as datasets (`--dataset folder:PATH`, `vit_lib.data.use_folder`).

The layout is torchvision's ImageFolder: one subfolder per class, named by the class, holding
its images (subfolders inside a class folder count for that class); classes are sorted by name
and numbered in that order, as torchvision numbers them.

    PATH/cat/001.png, PATH/dog/a.jpg, ...              a seeded `val_split` of each class is the test split
    PATH/train/cat/..., PATH/test/cat/...              train/ and test/ (or val/) are the splits

Every file with an image extension (IMAGE_EXTENSIONS; hidden files skipped, other files
ignored) is decoded with Pillow, its transparency flattened onto white, converted to grayscale
(1 channel) when every image is grayscale, else to RGB (3; `channels` forces either), and
resized to image_size x image_size (bilinear; the aspect ratio is not kept). Without
image_size the images must all have one square size, which is kept.

Decoding is the slow part (Pillow, one file at a time: about 0.1-0.2 ms per small PNG), so the
decoded images are cached as one uint8 tensor file under the run cache folder
(`vit_lib.machinery.run_cache.cache_dir()`, subfolder image-folders/; VIT_CACHE_DIR=off turns
it off), keyed by the folder's listing - the sorted (relative path, size, mtime_ns) of its image
files - and the options: reading a folder again costs one listing and one file read, and a
changed folder (an image added, removed or rewritten) is decoded again, its old entry replaced.
The training split's per-channel mean and standard deviation (the normalisation statistics)
are computed after loading, from the training images only.
"""
from __future__ import annotations

import hashlib
import io
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from vit_lib.machinery.errors import ConfigError, ImageFolderError, OutputError, arg
from vit_lib.machinery.files import write_atomically

__all__ = ["DEFAULT_VAL_SPLIT", "FolderData", "IMAGE_EXTENSIONS", "cache_folder",
           "image_to_array", "load_image_folder"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                              ".pgm", ".ppm", ".pbm", ".pnm"})
TEST_NAMES = ("test", "val")      # the held-out split's folder, when the folder has splits
DEFAULT_VAL_SPLIT = 0.1
SPLIT_SEED = 0                    # every run of a folder holds out the same images
CACHE_FORMAT = 1
CACHE_SUBFOLDER = "image-folders"
_EXAMPLES = 5                     # files named in an error message


@dataclass(frozen=True)
class FolderData:
    """A folder of images, decoded: uint8 images [N, C, S, S] and int64 labels [N] per split,
    the class names (label i is classes[i]), and the training split's mean/std per channel."""

    root: Path
    classes: tuple[str, ...]
    image_size: int
    channels: int
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: tuple[float, ...]
    std: tuple[float, ...]
    split: str                    # how the test split was made, in words
    val_split: float | None       # the fraction held out, None with train/ and test/ folders
    from_cache: bool
    seconds: float

    def describe(self) -> str:
        return (f"{self.root}: {len(self.train_images):,} training and {len(self.test_images):,} "
                f"test images of {len(self.classes)} classes ({self.image_size}x{self.image_size}"
                f"x{self.channels}; {self.split})")


@dataclass(frozen=True)
class _File:
    rel: str          # path relative to the folder, with /
    size: int
    mtime_ns: int
    label: int
    test: bool        # in the test/ (val/) split of a folder with splits


def cache_folder() -> Path | None:
    """Where decoded folders are cached: the run cache folder's image-folders/, or None when
    VIT_CACHE_DIR=off. (The same rule as vit_lib.machinery.run_cache.cache_dir, which this
    module cannot import: the run cache imports the lessons' engine, and lesson 00 imports this.)"""
    value = os.environ.get("VIT_CACHE_DIR", "").strip()
    if value.lower() in {"off", "0", "no", "false", "none"}:
        return None
    if value:
        return Path(value).expanduser() / CACHE_SUBFOLDER
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vit-from-scratch" / CACHE_SUBFOLDER


# --------------------------------------------------------------------------- listing


def _visible(name: str) -> bool:
    return not name.startswith(".")


def _subfolders(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as entries:
            return sorted(e.name for e in entries if _visible(e.name) and e.is_dir())
    except PermissionError:
        raise ImageFolderError(f"{folder} cannot be read: permission denied; fix its "
                               "permissions") from None


def _files_of_class(folder: Path, root: Path) -> tuple[list[tuple[str, int, int]], int]:
    """([(relative path, size, mtime_ns)] of the image files under `folder`, sorted; the number
    of other files)."""
    images, others = [], 0
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            with os.scandir(current) as entries:
                for e in entries:
                    if not _visible(e.name):
                        continue
                    if e.is_dir():
                        stack.append(Path(e.path))
                    elif os.path.splitext(e.name)[1].lower() in IMAGE_EXTENSIONS:
                        st = e.stat()
                        images.append((Path(e.path).relative_to(root).as_posix(), st.st_size,
                                       st.st_mtime_ns))
                    else:
                        others += 1
        except PermissionError:
            raise ImageFolderError(f"{current} cannot be read: permission denied; fix its "
                                   "permissions") from None
    return sorted(images), others


def _no_classes(folder: Path) -> ImageFolderError:
    loose = sum(1 for p in folder.iterdir()
                if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    held = f"holds {loose:,} images directly but " if loose else ""
    return ImageFolderError(
        f"{folder} {held}has no class subfolders; an image folder holds one subfolder per class "
        f"(e.g. {folder}/cat/1.png, {folder}/dog/2.png), optionally inside train/ and test/")


def _scan(folder: Path, root: Path, test: bool, classes: list[str] | None = None,
          ) -> tuple[list[str], list[_File]]:
    """The classes of one split and its image files, class by class."""
    names = _subfolders(folder)
    if not names:
        raise _no_classes(folder)
    if classes is not None and names != classes:
        only_train = sorted(set(classes) - set(names))
        only_test = sorted(set(names) - set(classes))
        parts = ([f"only in train/: {', '.join(only_train)}"] if only_train else []) + \
                ([f"only in {folder.name}/: {', '.join(only_test)}"] if only_test else [])
        raise ImageFolderError(
            f"{root}: the classes of train/ and {folder.name}/ differ ({'; '.join(parts)}); "
            "both splits need the same class subfolders")
    if len(names) < 2:
        raise ImageFolderError(f"{folder} has a single class subfolder ({names[0]}); a classifier "
                               "needs at least two classes, one subfolder each")
    files, empty = [], []
    for label, name in enumerate(names):
        images, others = _files_of_class(folder / name, root)
        if not images:
            empty.append(f"{name}/" + (f" ({others} files, none an image)" if others else ""))
        files += [_File(rel, size, mtime, label, test) for rel, size, mtime in images]
    if empty:
        raise ImageFolderError(
            f"{folder}: class folder{'s' if len(empty) > 1 else ''} without images: "
            f"{', '.join(empty)}; put images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in every "
            "class folder, or remove the empty ones")
    return names, files


def _layout(root: Path) -> str | None:
    """The name of the test split's folder when `root` has train/ and test/ (or val/), else
    None (one folder of classes)."""
    names = set(_subfolders(root))
    test = next((n for n in TEST_NAMES if n in names), None)
    if "train" in names and test is not None:
        return test
    lone = "train" if "train" in names else test
    if lone is not None and _subfolders(root / lone) and len(names) == 1:
        other = "test/ (or val/)" if lone == "train" else "train/"
        raise ImageFolderError(f"{root} has {lone}/ but no {other}: add {root}/{other.split()[0]}"
                               f"CLASS/... beside it, or move the class folders of {lone}/ up "
                               f"into {root} to hold out a seeded "
                               f"{arg('val_split', '--val-split')} instead")
    return None


# --------------------------------------------------------------------------- decoding

_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


def _flatten(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> 'L' or 'RGB': 16-bit and float images scaled to 0..255,
    transparency flattened onto white."""
    if img.mode in _SIXTEEN_BIT or img.mode in ("I", "F"):
        a = np.asarray(img, dtype=np.float32)
        peak = float(a.max()) if a.size else 0.0
        top = (65535.0 if img.mode in _SIXTEEN_BIT or peak > 255
               else 1.0 if img.mode == "F" and peak <= 1.0 else 255.0)
        return Image.fromarray(np.clip(a * (255.0 / top), 0, 255).round().astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        flat = Image.alpha_composite(white, rgba)
        return flat.convert("L" if img.mode in ("LA", "La") else "RGB")
    if img.mode in ("L", "RGB"):
        return img
    return img.convert("L" if img.mode == "1" else "RGB")


def image_to_array(img: Image.Image, image_size: int, channels: int | None = None) -> np.ndarray:
    """One Pillow image as the folder loader stores it: uint8 [C, S, S] with S = image_size;
    C = `channels` (1 or 3), or with channels=None 1 for a grayscale image (an RGB image whose
    three channels are equal counts as one) and 3 for a colour one. The command-line predict
    prepares an image for a model trained on a folder with this same function."""
    img = _flatten(img)
    if channels == 1 and img.mode != "L":
        img = img.convert("L")
    elif channels == 3 and img.mode != "RGB":
        img = img.convert("RGB")
    if img.size != (image_size, image_size):
        img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
    a = np.asarray(img)
    if a.ndim == 2:
        return a[None]
    a = a.transpose(2, 0, 1)
    if channels is None and (a[0] == a[1]).all() and (a[0] == a[2]).all():
        return a[:1]
    return a


_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"RIFF")


def _why(path: Path, size: int, exc: BaseException) -> str:
    if size == 0:
        return "empty file, 0 bytes"
    if isinstance(exc, UnidentifiedImageError):
        try:
            with open(path, "rb") as f:
                head = f.read(16)
        except OSError:
            head = b""
        if head.startswith(_SIGNATURES):
            return "damaged or cut short: Pillow cannot identify it"
        return "not an image"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, Image.DecompressionBombError):
        return "too large to open safely"
    text = str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
    return f"damaged or cut short: {text}"


def _decode(root: Path, files: list[_File], image_size: int | None, channels: int | None,
            log: Callable[[str], None] | None) -> tuple[torch.Tensor, int]:
    """(images uint8 [N, C, S, S], S) of every file, in order; ImageFolderError naming the files
    that cannot be read, or images of different sizes when image_size is None."""
    n = len(files)
    auto = image_size is None       # then every image must have the first one's square size
    gray: np.ndarray | None = None
    colour: dict[int, np.ndarray] = {}
    problems: list[tuple[str, str]] = []
    sizes: Counter = Counter()
    example: dict[tuple[int, int], str] = {}
    started = time.perf_counter()
    for i, f in enumerate(files):
        path = root / f.rel
        try:
            with Image.open(path) as img:
                img.load()
                original = img.size
                if image_size is None:
                    if original[0] != original[1]:
                        raise ImageFolderError(
                            f"{path} is {original[0]}x{original[1]} pixels, not square; pass "
                            f"{arg('image_size=N', '--image-size N')} to resize every image of "
                            f"{root} to NxN")
                    image_size = original[0]
                a = image_to_array(img, image_size, channels)
        except ImageFolderError:
            raise
        except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
            problems.append((f.rel, _why(path, f.size, exc)))
            continue
        sizes[original] += 1
        example.setdefault(original, f.rel)
        if gray is None:
            gray = np.zeros((n, image_size, image_size), dtype=np.uint8)
        if a.shape[0] == 1:
            gray[i] = a[0]
        else:
            colour[i] = a.copy()
        if log is not None and (i + 1) % 20_000 == 0 and i + 1 < n:
            log(f"  {i + 1:,} of {n:,} images decoded ({time.perf_counter() - started:.0f} s)")
    if problems:
        shown = "; ".join(f"{rel} ({why})" for rel, why in problems[:_EXAMPLES])
        more = f"; and {len(problems) - _EXAMPLES:,} more" if len(problems) > _EXAMPLES else ""
        raise ImageFolderError(
            f"{len(problems):,} of the {n:,} image files in {root} cannot be read: {shown}{more}. "
            "Delete or replace them, or move them out of the folder")
    if auto and len(sizes) > 1:
        common = ", ".join(f"{c:,} are {w}x{h} (e.g. {example[(w, h)]})"
                           for (w, h), c in sizes.most_common(3))
        raise ImageFolderError(
            f"the images of {root} have {len(sizes)} different sizes: {common}; pass "
            f"{arg('image_size=N', '--image-size N')} to resize them all to NxN")
    assert gray is not None and image_size is not None
    if channels == 3 or (channels is None and colour):
        images = torch.from_numpy(np.repeat(gray[:, None], 3, axis=1))
        for i, a in colour.items():
            images[i] = torch.from_numpy(a)
    else:
        images = torch.from_numpy(gray[:, None])
    return images, image_size


# --------------------------------------------------------------------------- cache


def _digest(*parts: object) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(repr(part).encode())
        h.update(b"\x00")
    return h.hexdigest()


def _read_cache(path: Path, n: int) -> dict | None:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:      # missing, damaged, from another torch: decode again
        return None
    if (not isinstance(state, dict) or state.get("format") != CACHE_FORMAT
            or len(state.get("images", ())) != n):
        return None
    return state


def _write_cache(folder: Path, owner: str, path: Path, state: dict,
                 log: Callable[[str], None] | None) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    try:
        write_atomically(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))
    except OutputError as exc:
        if log is not None:
            log(f"note: could not cache the decoded images ({exc}); the next run decodes them "
                "again")
        return
    for old in folder.glob(f"{owner}-*.pt"):      # the same folder and options, older contents
        if old != path:
            old.unlink(missing_ok=True)


# --------------------------------------------------------------------------- loading


def _check_options(image_size: int | None, channels: int | None, val_split: float | None) -> None:
    if image_size is not None and (isinstance(image_size, bool) or not isinstance(image_size, int)
                                   or image_size < 1):
        raise ConfigError(f"{arg('image_size', '--image-size')} must be a whole number of pixels "
                          f">= 1, got {image_size!r}")
    if channels not in (None, 1, 3):
        raise ConfigError(f"{arg('channels', '--channels')} must be 1 (grayscale) or 3 (RGB), got "
                          f"{channels!r}")
    if val_split is not None and not 0.0 < val_split < 1.0:
        raise ConfigError(f"{arg('val_split', '--val-split')} is the fraction of each class held "
                          f"out for testing, between 0 and 1 (e.g. 0.1), got {val_split!r}")


def _statistics(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and standard deviation of uint8 images [N, C, H, W], on a 0-1 scale."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64)
    squares = torch.zeros(c, dtype=torch.float64)
    for chunk in images.split(4096):
        x = chunk.to(torch.float64).div_(255).transpose(0, 1).reshape(c, -1)
        total += x.sum(1)
        squares += (x * x).sum(1)
    count = images.numel() // c
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt().clamp_min(1e-3)
    return (tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std))


def _held_out(labels: torch.Tensor, classes: int, fraction: float) -> torch.Tensor:
    """A boolean mask holding out `fraction` of each class (at least one image of a class with
    two or more, none of a class with one), drawn with SPLIT_SEED."""
    g = torch.Generator().manual_seed(SPLIT_SEED)
    mask = torch.zeros(len(labels), dtype=torch.bool)
    for c in range(classes):
        idx = (labels == c).nonzero().flatten()
        k = 0 if len(idx) < 2 else min(max(round(len(idx) * fraction), 1), len(idx) - 1)
        mask[idx[torch.randperm(len(idx), generator=g)[:k]]] = True
    return mask


def load_image_folder(path: str | os.PathLike, image_size: int | None = None,
                      channels: int | None = None, val_split: float | None = None, *,
                      whole: bool = False,
                      stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
                      log: Callable[[str], None] | None = None) -> FolderData:
    """Read a folder of images (see the module docstring) into tensors.

    image_size: side of the square the images are resized to (default: their own size, when
    they all have one square size). channels: 1 or 3 (default: 1 when every image is
    grayscale). val_split: fraction of each class held out as the test split when the folder
    has no train/ and test/ subfolders (default DEFAULT_VAL_SPLIT; refused when it has them).
    whole=True: every image is test data (evaluating a model on a folder): the test/ split of
    a folder with splits, else all of it. stats: (mean, std) to use instead of the training
    split's (a model's own normalisation). log: called with progress lines.
    Raises ImageFolderError for a folder that cannot be used, ConfigError for bad options.
    """
    started = time.perf_counter()
    _check_options(image_size, channels, val_split)
    root = Path(path).expanduser()
    if not root.exists():
        where = "" if root.is_absolute() else f" (relative to the working folder {Path.cwd()})"
        raise ImageFolderError(f"the image folder {root} does not exist{where}; check the path "
                               "given after folder:")
    if not root.is_dir():
        raise ImageFolderError(f"{root} is a file, not a folder; folder:PATH needs a folder "
                               "holding one subfolder of images per class")
    root = root.resolve()
    test_name = _layout(root)
    if test_name is not None and val_split is not None:
        raise ConfigError(f"{root} has train/ and {test_name}/ subfolders, which are its splits: "
                          f"drop {arg('val_split', '--val-split')} (it holds out part of a "
                          "folder without them)")
    if test_name is None:
        classes, files = _scan(root, root, test=False)
        fraction = None if whole else (DEFAULT_VAL_SPLIT if val_split is None else val_split)
        split = ("all images are test images" if whole else
                 f"{fraction:.0%} of each class held out for testing, seed {SPLIT_SEED}")
    else:
        classes, files = ([], []) if whole else _scan(root / "train", root, test=False)
        test_classes, test_files = _scan(root / test_name, root, test=True,
                                         classes=None if whole else classes)
        classes, files = test_classes, files + test_files
        fraction = None
        split = f"{test_name}/ is the test split" if whole else f"train/ and {test_name}/"

    options = (CACHE_FORMAT, image_size, channels, whole and test_name is not None)
    owner = _digest(str(root), options)[:16]
    key = _digest(options, classes, [(f.rel, f.size, f.mtime_ns) for f in files])[:24]
    folder = cache_folder()
    cache = None if folder is None else folder / f"{owner}-{key}.pt"
    state = None if cache is None else _read_cache(cache, len(files))
    from_cache = state is not None
    if state is None:
        if log is not None:
            changed = (cache is not None and any(folder.glob(f"{owner}-*.pt")))
            log(f"decoding the {len(files):,} images of {root}"
                + (" (it changed since it was cached)" if changed else "")
                + ("; cached for the next run" if cache is not None else "") + " ...")
        images, size = _decode(root, files, image_size, channels, log)
        state = {"format": CACHE_FORMAT, "images": images,
                 "labels": torch.tensor([f.label for f in files], dtype=torch.long),
                 "classes": list(classes), "image_size": size}
        if cache is not None:
            _write_cache(folder, owner, cache, state, log)
    images, labels = state["images"], state["labels"]
    test = torch.tensor([f.test for f in files], dtype=torch.bool)
    if whole:
        test = torch.ones(len(files), dtype=torch.bool)
    elif fraction is not None:
        test = _held_out(labels, len(classes), fraction)
    train_images, train_labels = images[~test], labels[~test]
    test_images, test_labels = images[test], labels[test]
    if not whole and len(test_images) == 0:
        raise ImageFolderError(f"{root}: holding out {fraction:.0%} of each class leaves no test "
                               "images (every class has a single image); add images, or use "
                               "train/ and test/ subfolders")
    if stats is not None and len(stats[0]) != images.shape[1]:
        stats = None          # another model's statistics for another number of channels
    if stats is None:
        stats = _statistics(train_images if len(train_images) else test_images)
    return FolderData(root, tuple(classes), int(state["image_size"]), images.shape[1],
                      train_images, train_labels, test_images, test_labels,
                      tuple(stats[0]), tuple(stats[1]), split, fraction, from_cache,
                      time.perf_counter() - started)
