"""Training throughput, seed pipeline vs vit_lib, round-robin in one process.

    python benchmarks/throughput.py [--rounds 3] [--images 19200] [--json out.json]

Each round trains every variant on the same number of MNIST training images, in turn, so that
a machine slowing down or speeding up affects all variants alike; the medians are reported.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Callable

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_reference import BATCH_SIZE, seed_loaders, seed_setup, seed_train_epoch

from vit_lib.data import get_loaders
from vit_lib.engine import fit
from vit_lib.machinery.families import build_model
from vit_lib.machinery.runtime import seed_everything
from vit_lib.presets import get_preset


def seed_pipeline(images: int) -> float:
    """Images/s of the seed's own loop on `images` training images."""
    seed_everything(0)
    train, _ = seed_loaders()
    model, optimizer, criterion = seed_setup()
    *_, seen, seconds = seed_train_epoch(model, train, optimizer, criterion, "cpu",
                                         max_batches=images // BATCH_SIZE)
    return seen / seconds


def vit_lib_pipeline(preset_name: str, images: int) -> float:
    """Images/s of vit_lib's training path (engine.fit) with a preset's recipe."""
    seed_everything(0)
    preset = get_preset(preset_name)
    r = preset.recipe
    train, test = get_loaders("mnist", r.batch_size, normalize=r.normalize, augment=r.augment,
                              train_subset=images, test_subset=1000)
    model = build_model(preset.model)
    history = fit(model, train, test, r, epochs=1, progress=False, log=None)
    return history[0]["images_per_second"]


VARIANTS = {
    "seed pipeline (DataLoader, nn.MultiheadAttention, batch 64)": lambda n: seed_pipeline(n),
    "vit_lib, seed recipe (batch 64)": lambda n: vit_lib_pipeline("seed", n),
    f"vit_lib, seed-tuned recipe (batch {get_preset('seed-tuned').recipe.batch_size})":
        lambda n: vit_lib_pipeline("seed-tuned", n),
    f"vit_lib, seed-speedrun recipe (batch {get_preset('seed-speedrun').recipe.batch_size})":
        lambda n: vit_lib_pipeline("seed-speedrun", n),
}


def round_robin(variants: dict[str, Callable[[int], float]], images: int, rounds: int,
                ) -> list[dict[str, float]]:
    """Each round runs every variant once, in turn, on `images` images; one row per variant with
    the median images/s (and min, max) and its ratio to the first variant's median."""
    rates: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(rounds):
        for name, run in variants.items():
            rates[name].append(run(images))
            print(f"round {round_ + 1}: {name}: {rates[name][-1]:,.0f} img/s", flush=True)
    base = statistics.median(rates[next(iter(variants))])
    return [{"variant": name, "images_per_second": statistics.median(r),
             "min": min(r), "max": max(r), "ratio": statistics.median(r) / base}
            for name, r in rates.items()]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--images", type=int, default=19_200, help="training images per measurement")
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    rows = round_robin(VARIANTS, args.images, args.rounds)
    print(f"\n{'variant':<62} {'img/s (median)':>15} {'vs seed':>8}")
    for row in rows:
        print(f"{row['variant']:<62} {row['images_per_second']:>15,.0f} {row['ratio']:>7.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"threads": torch.get_num_threads(),
                                               "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
