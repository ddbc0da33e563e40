"""Lesson 00: find, load and serve the datasets (MNIST, Fashion-MNIST, CIFAR-10).

Where data lives: an explicit `data_dir` argument, else the environment variable VIT_DATA_DIR,
else the data/ folder of this checkout. Loading goes through torchvision's dataset classes, which download when online.
For speed, `TensorLoader` holds a whole split as one uint8 tensor on the training device and
serves shuffled, normalised (optionally augmented) batches by index.
"""
from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from vit_lib.machinery.errors import ConfigError, DamagedDataError, DataNotFoundError, arg

ENV_VAR = "VIT_DATA_DIR"


@dataclass(frozen=True)
class DatasetInfo:
    """What the engine needs to know about a dataset: shape, classes, normalisation statistics."""

    name: str
    torchvision_class: str
    folder: str
    files: tuple[str, ...]
    image_size: int
    channels: int
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)


_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", "MNIST", "MNIST/raw", _MNIST_FILES, 28, 1,
                         tuple(str(i) for i in range(10)), (0.1307,), (0.3081,)),
    "fashion-mnist": DatasetInfo(
        "fashion-mnist", "FashionMNIST", "FashionMNIST/raw", _MNIST_FILES, 28, 1,
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
         "Bag", "Ankle boot"), (0.2860,), (0.3530,)),
    "cifar10": DatasetInfo(
        "cifar10", "CIFAR10", "cifar-10-batches-py",
        ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5",
         "test_batch", "batches.meta"), 32, 3,
        ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
}


def dataset_info(name: str) -> DatasetInfo:
    """The DatasetInfo for 'mnist', 'fashion-mnist' or 'cifar10' (case and _ / - tolerant), or
    for a folder of images, 'folder:PATH' (see use_folder)."""
    if is_folder_dataset(name):
        key = folder_dataset_name(name)
        return _FOLDERS[key][0] if key in _FOLDERS else use_folder(key)
    key = name.lower().replace("_", "-")
    key = {"fashionmnist": "fashion-mnist", "cifar-10": "cifar10"}.get(key, key)
    if key not in DATASETS:
        raise ConfigError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}, or "
                          "folder:PATH for a folder of images (one subfolder per class)")
    return DATASETS[key]


# Folders of images as datasets: `folder:PATH` (the decoding, splits and cache live in
# vit_lib.machinery.image_folder; here they become a DatasetInfo and tensors like MNIST's).
FOLDER_PREFIX = "folder:"
_FOLDERS: dict[str, tuple[DatasetInfo, object]] = {}    # 'folder:/abs/path' -> (info, FolderData)


def is_folder_dataset(name: object) -> bool:
    """Is `name` a folder of images ('folder:PATH') rather than a named dataset?"""
    return isinstance(name, str) and name.startswith(FOLDER_PREFIX)


def folder_dataset_name(name: str) -> str:
    """'folder:digits' -> 'folder:/absolute/path/to/digits', the name a run records."""
    text = name[len(FOLDER_PREFIX):].strip()
    if not text:
        raise ConfigError("folder: needs the path of a folder of images after it, e.g. "
                          "folder:my_digits (one subfolder per class)")
    return FOLDER_PREFIX + str(Path(text).expanduser().resolve())


def use_folder(name: str, image_size: int | None = None, channels: int | None = None,
               val_split: float | None = None, *, whole: bool = False,
               stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None,
               log=None) -> DatasetInfo:
    """Read the folder of images `name` ('folder:PATH': one subfolder per class, optionally
    inside train/ and test/) and make it a dataset: afterwards dataset_info, load_tensors,
    get_loaders and get_test_loader serve it like MNIST. Decoded once, then cached
    (vit_lib.machinery.image_folder.load_image_folder explains the options); returns its
    DatasetInfo, whose mean/std are the training split's (or `stats`)."""
    from vit_lib.machinery.image_folder import load_image_folder
    key = folder_dataset_name(name)
    data = load_image_folder(key[len(FOLDER_PREFIX):], image_size, channels, val_split,
                             whole=whole, stats=stats, log=log)
    info = DatasetInfo(key, "ImageFolder", str(data.root), (), data.image_size, data.channels,
                       data.classes, data.mean, data.std)
    _FOLDERS[key] = (info, data)
    return info


def folder_data(name: str):
    """The FolderData (vit_lib.machinery.image_folder) of a folder dataset read by use_folder."""
    key = folder_dataset_name(name)
    if key not in _FOLDERS:
        use_folder(key)
    return _FOLDERS[key][1]


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """data_dir if given, else $VIT_DATA_DIR, else the checkout's data/ folder (./data when
    vit_lib is installed outside a checkout), so notebooks and scripts share one download."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    env = os.environ.get(ENV_VAR)
    if env:
        return Path(env).expanduser()
    checkout = Path(__file__).resolve().parent.parent
    return checkout / "data" if (checkout / "pyproject.toml").is_file() else Path("data")


def load_dataset(name: str, train: bool = True, data_dir: str | os.PathLike | None = None,
                 download: bool = True, transform=None):
    """The torchvision dataset object for one split; downloads it when missing and allowed."""
    import torchvision.datasets as tvd

    info = dataset_info(name)
    root = resolve_data_dir(data_dir)
    cls = getattr(tvd, info.torchvision_class)
    if root.exists() and not root.is_dir():
        raise DataNotFoundError(f"the data folder {root} is a file, not a folder; point "
                                f"{arg('data_dir', '--data-dir')} / ${ENV_VAR} at the folder that holds "
                                f"{info.folder}/")
    _check_not_damaged(info, root, train)   # torchvision never replaces a file that is present
    try:
        return cls(root=str(root), train=train, download=False, transform=transform)
    except RuntimeError:
        if not download:
            _check_not_damaged(info, root, train, checksums=True)
            raise DataNotFoundError(_missing_message(info, root, tried_download=False)) from None
    try:
        root.mkdir(parents=True, exist_ok=True)
        return cls(root=str(root), train=train, download=True, transform=transform)
    except Exception as exc:  # offline, read-only folder, interrupted download...
        _check_not_damaged(info, root, train, checksums=True)
        raise DataNotFoundError(_missing_message(info, root, tried_download=True, cause=exc)) from None


def _idx_problem(path: Path) -> str | None:
    """Why an IDX file (MNIST's format: zero bytes, type 0x08, ndim, ndim big-endian sizes, then
    the data) is damaged, or None when its length is what its header promises."""
    size = path.stat().st_size
    if size == 0:
        return "it is empty (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(4)
        if len(head) < 4 or head[:3] != b"\x00\x00\x08" or not 1 <= head[3] <= 4:
            return "it is not an IDX file (its first bytes are not an MNIST header)"
        ndim = head[3]
        dims = f.read(4 * ndim)
    if len(dims) < 4 * ndim:
        return f"it is cut short ({size:,} bytes, not even a whole header)"
    expected = 4 + 4 * ndim + math.prod(struct.unpack(f">{ndim}I", dims))
    if size < expected:
        return f"it is cut short ({size:,} of the {expected:,} bytes its header announces)"
    if size > expected:
        return f"it is {size - expected:,} bytes longer than its header announces"
    return None


def _check_not_damaged(info: DatasetInfo, root: Path, train: bool, checksums: bool = False) -> None:
    """Raise DamagedDataError naming every file of the split that is present but unusable.

    MNIST-style files are checked against their own header (cheap: a stat and 16 bytes);
    CIFAR-10 files against torchvision's MD5 sums, only when `checksums` (after a failed load).
    """
    folder = root / info.folder
    problems: dict[Path, str] = {}
    if info.files == _MNIST_FILES:
        prefix = "train" if train else "t10k"
        for name in info.files:
            path = folder / name
            if name.startswith(prefix) and path.is_file():
                why = _idx_problem(path)
                if why:
                    problems[path] = why
    elif checksums and info.name == "cifar10":
        import torchvision.datasets as tvd
        from torchvision.datasets.utils import check_integrity
        cls = tvd.CIFAR10
        for name, md5 in (cls.train_list if train else cls.test_list) + [[cls.meta["filename"],
                                                                         cls.meta["md5"]]]:
            path = folder / name
            if path.is_file() and not check_integrity(str(path), md5):
                problems[path] = "its MD5 checksum is not the published one (damaged or cut short)"
    if problems:
        lines = [f"{info.name}: damaged dataset file{'s' if len(problems) > 1 else ''}:"]
        lines += [f"  {path.resolve()}: {why}" for path, why in problems.items()]
        lines.append("  torchvision never replaces a file that is present: delete the damaged "
                     "file and run again to download it afresh, or replace it with a good copy")
        raise DamagedDataError("\n".join(lines))


def _missing_message(info: DatasetInfo, root: Path, tried_download: bool,
                     cause: Exception | None = None) -> str:
    folder = root / info.folder
    missing = [f for f in info.files if not (folder / f).exists()]
    lines = [f"{info.name}: dataset not found in {folder.resolve()}",
             f"  looked for: {', '.join(info.files)}",
             f"  missing: {', '.join(missing) if missing else 'none (files present but unreadable)'}"]
    if tried_download:
        first = str(cause).strip().splitlines()[0] if cause is not None and str(cause).strip() else ""
        why = f" ({type(cause).__name__}: {first})" if cause is not None else ""
        lines.append(f"  the download failed{why}")
    lines.append(f"  fix: connect to the internet and run again, copy the files into {folder}, "
                 f"or point {arg('data_dir', '--data-dir')} / ${ENV_VAR} at a folder that holds "
                 f"{info.folder}/")
    return "\n".join(lines)


def load_tensors(name: str, train: bool = True, data_dir: str | os.PathLike | None = None,
                 download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """A whole split as (images uint8 [N, C, H, W], labels int64 [N])."""
    if is_folder_dataset(name):
        data = folder_data(name)
        return (data.train_images, data.train_labels) if train else (data.test_images,
                                                                      data.test_labels)
    ds = load_dataset(name, train, data_dir, download)
    data = ds.data
    images = torch.as_tensor(data)
    if images.ndim == 3:                      # MNIST-style [N, H, W]
        images = images[:, None]
    else:                                     # CIFAR-style [N, H, W, C] numpy array
        images = images.permute(0, 3, 1, 2).contiguous()
    labels = torch.as_tensor(ds.targets, dtype=torch.long)
    return images, labels


def random_affine(x: torch.Tensor, max_shift: float = 0.0, max_degrees: float = 0.0,
                  scale: tuple[float, float] = (1.0, 1.0),
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Shift (pixels), rotate (degrees) and scale every image of a batch by its own random amount.

    x: [B, C, H, W] with background 0 -> same shape. Runs on x's device, whole batch at once.
    """
    b, _, h, w = x.shape
    r = torch.rand(b, 4, generator=generator).to(x.device)
    angle = (r[:, 0] * 2 - 1) * math.radians(max_degrees)
    s = scale[0] + r[:, 1] * (scale[1] - scale[0])
    tx = (r[:, 2] * 2 - 1) * max_shift * 2 / w    # affine_grid works in [-1, 1] units
    ty = (r[:, 3] * 2 - 1) * max_shift * 2 / h
    cos, sin = torch.cos(angle) / s, torch.sin(angle) / s
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


@dataclass(frozen=True)
class Augment:
    """Batch augmentation settings (all off by default)."""

    max_shift: float = 0.0
    max_degrees: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)

    @property
    def active(self) -> bool:
        return self.max_shift > 0 or self.max_degrees > 0 or self.scale != (1.0, 1.0)


def shard_bounds(batch: int, rank: int, world_size: int) -> tuple[int, int]:
    """[lo, hi) of part `rank` when a batch of `batch` items is cut into `world_size`
    contiguous parts, in rank order: the parts cover the batch exactly, once, and their sizes
    differ by at most one (all equal when world_size divides batch).

    >>> [shard_bounds(10, r, 4) for r in range(4)]
    [(0, 2), (2, 5), (5, 7), (7, 10)]
    """
    return batch * rank // world_size, batch * (rank + 1) // world_size


class TensorLoader:
    """Serve batches from tensors held on one device; a drop-in for a DataLoader in our loops.

    Yields (images float [B, C, H, W], labels int64 [B]). Images are scaled to [0, 1],
    augmented (training only), then normalised with mean/std when given. The order of epoch e
    depends only on (seed, e): call set_epoch(e) so a resumed run sees the same batches.

    Data-parallel training (`set_shard(rank, world_size)`, called by `vit_lib.engine.fit` under
    torchrun): `batch_size` stays the global batch. Every process draws the same order of the
    epoch and cuts each global batch of indices into `world_size` contiguous parts
    (`shard_bounds`), serving only part `rank`, so together the processes see exactly the batches
    one process would. When the last batch does not split evenly, the parts differ by one image
    and `shard_share` (this part's fraction of the global batch, else None) lets the engine
    weight each process's gradient so their sum is still the mean over the global batch; a last
    batch with fewer images than processes is skipped (at most world_size - 1 images an epoch).
    Augmentation: each process draws its own random shifts/rotations (a generator seeded by
    (seed, epoch, rank)), so a sharded run is augmented differently from a single-process one.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
                 shuffle: bool = False, seed: int = 0, device: str | torch.device = "cpu",
                 mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None,
                 augment: Augment | None = None) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0
        self.augment = augment if augment is not None and augment.active else None
        self.rank, self.world_size = 0, 1
        self.shard_share: float | None = None   # this part / the global batch, when uneven
        channels = images.shape[1]
        if mean is not None and std is not None:
            self.mean = torch.tensor(mean, device=self.device).view(1, channels, 1, 1)
            self.std = torch.tensor(std, device=self.device).view(1, channels, 1, 1)
        else:
            self.mean = self.std = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def set_shard(self, rank: int, world_size: int) -> None:
        """Serve only part `rank` of `world_size` of every batch (see the class docstring);
        set_shard(0, 1) serves whole batches again."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        if self.batch_size % world_size:
            raise ValueError(f"the global batch {self.batch_size} does not split into "
                             f"{world_size} equal parts")
        self.rank, self.world_size = rank, world_size

    def __len__(self) -> int:
        n = len(self.images)
        if self.world_size > 1 and 0 < n % self.batch_size < self.world_size:
            return n // self.batch_size       # the tiny last batch is skipped
        return math.ceil(n / self.batch_size)

    @property
    def dataset_size(self) -> int:
        return len(self.images)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 [B, C, H, W] -> normalised float [B, C, H, W] (no augmentation)."""
        x = images.float().div_(255)
        return (x - self.mean) / self.std if self.mean is not None else x

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        n = len(self.images)
        order = torch.randperm(n, generator=g).to(self.device) if self.shuffle else None
        aug = g
        if self.world_size > 1 and self.augment is not None:   # one generator per rank
            seeds = torch.randint(0, 2**62, (self.world_size,), generator=g)
            aug = torch.Generator().manual_seed(int(seeds[self.rank]))
        for start in range(0, n, self.batch_size):
            lo, hi = start, start + self.batch_size
            if self.world_size > 1:
                size = min(self.batch_size, n - start)     # the global batch
                if size < self.world_size:                 # cannot give every rank an image
                    break
                lo, hi = shard_bounds(size, self.rank, self.world_size)
                self.shard_share = (hi - lo) / size if size % self.world_size else None
                lo, hi = start + lo, start + hi
            if order is None:
                x = self.images[lo:hi]
                y = self.labels[lo:hi]
            else:
                idx = order[lo:hi]
                x, y = self.images[idx], self.labels[idx]
            x = x.float().div_(255)
            if self.augment is not None:
                a = self.augment
                x = random_affine(x, a.max_shift, a.max_degrees, a.scale, generator=aug)
            if self.mean is not None:
                x = (x - self.mean) / self.std
            yield x, y


def get_loaders(dataset: str = "mnist", batch_size: int = 64, data_dir: str | os.PathLike | None = None,
                device: str | torch.device = "cpu", normalize: bool = True, augment: Augment | None = None,
                seed: int = 0, eval_batch_size: int = 1000, download: bool = True,
                train_subset: int | None = None, test_subset: int | None = None,
                ) -> tuple[TensorLoader, TensorLoader]:
    """(train_loader, test_loader) for a dataset, held as tensors on `device`.

    train_subset / test_subset keep only the first k examples (for quick runs and tests).
    """
    info = dataset_info(dataset)
    stats = dict(mean=info.mean, std=info.std) if normalize else {}
    x_train, y_train = load_tensors(info.name, True, data_dir, download)
    x_test, y_test = load_tensors(info.name, False, data_dir, download)
    if train_subset is not None:
        x_train, y_train = x_train[:train_subset], y_train[:train_subset]
    if test_subset is not None:
        x_test, y_test = x_test[:test_subset], y_test[:test_subset]
    train = TensorLoader(x_train, y_train, batch_size, shuffle=True, seed=seed, device=device,
                         augment=augment, **stats)
    test = TensorLoader(x_test, y_test, eval_batch_size, shuffle=False, device=device, **stats)
    return train, test


def get_test_loader(dataset: str = "mnist", data_dir: str | os.PathLike | None = None,
                    device: str | torch.device = "cpu", normalize: bool = True,
                    batch_size: int = 1000, download: bool = True,
                    test_subset: int | None = None) -> TensorLoader:
    """The test split alone, as get_loaders serves it (batches of images [B, C, H, W], labels
    [B], in file order), without reading the training images: for evaluating a model."""
    info = dataset_info(dataset)
    stats = dict(mean=info.mean, std=info.std) if normalize else {}
    x_test, y_test = load_tensors(info.name, False, data_dir, download)
    if test_subset is not None:
        x_test, y_test = x_test[:test_subset], y_test[:test_subset]
    return TensorLoader(x_test, y_test, batch_size, shuffle=False, device=device, **stats)
