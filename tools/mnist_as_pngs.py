"""Write MNIST (or Fashion-MNIST) as PNG files in torchvision's ImageFolder layout: one folder
per class, one 28x28 grayscale PNG per image, named by its index in the split.

    python tools/mnist_as_pngs.py --split test --out /tmp/mnist-test   # /tmp/mnist-test/7/00000.png ...
    python tools/mnist_as_pngs.py --split both --out /tmp/mnist-png    # .../train/7/..., .../test/7/...

--split train or test writes OUT/CLASS/NNNNN.png (one folder of classes: training on it with
`--dataset folder:OUT` holds out a seeded --val-split); --split both writes OUT/train/CLASS/ and
OUT/test/CLASS/, which `--dataset folder:OUT` uses as its training and test splits. Used to
measure `--dataset folder:PATH` (vit_lib.machinery.image_folder) on a realistic folder and for
the documentation's worked example. Reads the dataset from --data-dir / $VIT_DATA_DIR.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vit_lib.data import dataset_info, load_tensors  # noqa: E402  (after the sys.path line)


def folder_name(class_name: str) -> str:
    """A class name as a folder name: Fashion-MNIST's 'T-shirt/top' -> 'T-shirt_top'."""
    return re.sub(r"[\\/:*?\"<>|]", "_", class_name)


def write_split(dataset: str, train: bool, out: Path, data_dir: Path | None,
                limit: int | None = None) -> int:
    """Write one split into out/CLASS/NNNNN.png; returns the number of files written."""
    info = dataset_info(dataset)
    images, labels = load_tensors(info.name, train, data_dir, download=False)
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    folders = [out / folder_name(c) for c in info.classes]
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    width = len(str(len(images) - 1))
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        array = image.permute(1, 2, 0).squeeze(-1).numpy()         # [H, W] or [H, W, 3]
        Image.fromarray(array).save(folders[int(label)] / f"{i:0{width}d}.png")
    return len(images)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", choices=("train", "test", "both"), default="test",
                   help="which split to write (default test: 10,000 images)")
    p.add_argument("--out", type=Path, required=True, help="folder to write into")
    p.add_argument("--dataset", default="mnist", help="mnist (default) or fashion-mnist")
    p.add_argument("--data-dir", type=Path, help="dataset folder (default: $VIT_DATA_DIR)")
    p.add_argument("--limit", type=int, help="write only the first N images of each split")
    args = p.parse_args(argv)
    start = time.perf_counter()
    total = 0
    if args.split == "both":
        for split in ("train", "test"):
            total += write_split(args.dataset, split == "train", args.out / split, args.data_dir,
                                 args.limit)
    else:
        total = write_split(args.dataset, args.split == "train", args.out, args.data_dir, args.limit)
    print(f"wrote {total:,} PNG files under {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
