"""Train a preset from the command line.

    python -m vit_lib.train --preset seed --dataset mnist --epochs 10 --out runs/seed

Writes OUT/checkpoint.pt (after every epoch, atomically), OUT/metrics.json and OUT/curves.png.
`--resume` continues the run stored in OUT/checkpoint.pt.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from vit_lib.config import ConfigError, ViTConfig
from vit_lib.data import DataNotFoundError, dataset_info, get_loaders
from vit_lib.checkpoint import CheckpointError, load_checkpoint
from vit_lib.engine import TrainingDivergedError, fit
from vit_lib.runtime import DeviceError, resolve_device, seed_everything
from vit_lib.model import VisionTransformer, count_parameters
from vit_lib.presets import PRESETS, Recipe, get_preset

USER_ERRORS = (ConfigError, DataNotFoundError, DeviceError, CheckpointError,
               TrainingDivergedError, ValueError, FileExistsError)


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    """Run a CLI main; a user error prints one 'error:' message and exits 2, no traceback."""
    try:
        return main(argv)
    except USER_ERRORS as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last completed epoch is in the checkpoint; continue with --resume",
              file=sys.stderr)
        return 130


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vit_lib.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="seed", help=f"one of: {', '.join(PRESETS)} (default seed)")
    p.add_argument("--dataset", default="mnist", help="mnist, fashion-mnist or cifar10")
    p.add_argument("--epochs", type=positive_int, help="override the preset's epochs")
    p.add_argument("--batch-size", type=positive_int, help="override the preset's batch size")
    p.add_argument("--lr", type=positive_float, help="override the preset's learning rate")
    p.add_argument("--patch-size", type=positive_int, help="override the model's patch size")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda or mps")
    p.add_argument("--data-dir", help="dataset folder (default: $VIT_DATA_DIR, else ./data)")
    p.add_argument("--no-download", action="store_true", help="never try to download data")
    p.add_argument("--out", help="output folder (default runs/PRESET-DATASET)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--train-subset", type=positive_int, help="train on the first N images only")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    info = dataset_info(args.dataset)
    out = Path(args.out or f"runs/{args.preset}-{info.name}")
    ckpt = out / "checkpoint.pt"
    device = resolve_device(args.device)
    if args.resume:
        state = load_checkpoint(ckpt)
        extra = state["extra"]
        config = ViTConfig.from_dict(state["config"])
        recipe = Recipe.from_dict(state["recipe"])
        preset_name, info = extra["preset"], dataset_info(extra["dataset"])
        seed, epochs, subset = extra["seed"], state["epochs"], extra.get("train_subset")
        print(f"resuming {ckpt} after epoch {state['epoch']} of {epochs}")
    else:
        if ckpt.exists():
            raise FileExistsError(f"{ckpt} already exists; pass --resume to continue that run "
                                  "or choose another --out folder")
        preset = get_preset(args.preset, info.name, {"patch_size": args.patch_size},
                            epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
        config, recipe, preset_name = preset.model, preset.recipe, preset.name
        seed, epochs, subset = args.seed, preset.recipe.epochs, args.train_subset
    out.mkdir(parents=True, exist_ok=True)
    seed_everything(seed)
    model = VisionTransformer(config).to(device)
    train_loader, test_loader = get_loaders(
        info.name, recipe.batch_size, args.data_dir, device, recipe.normalize, recipe.augment,
        seed=seed, download=not args.no_download, train_subset=subset)
    params = count_parameters(model)
    print(f"preset {preset_name} on {info.name}: {params:,} parameters, {epochs} epochs, "
          f"batch {recipe.batch_size}, {recipe.optimizer} lr {recipe.lr:g}, device {device}")
    wall = time.perf_counter()
    history = fit(model, train_loader, test_loader, recipe, epochs=epochs, checkpoint=ckpt,
                  resume=args.resume, progress=not args.no_progress,
                  extra={"preset": preset_name, "dataset": info.name, "seed": seed,
                         "train_subset": subset})
    final = history[-1]
    metrics = {
        "preset": preset_name, "dataset": info.name, "seed": seed, "device": str(device),
        "params": params, "epochs": epochs, "test_accuracy": final["test_accuracy"],
        "test_loss": final["test_loss"], "train_accuracy": final["train_accuracy"],
        "train_seconds": sum(r["seconds"] for r in history),
        "wall_seconds_this_session": time.perf_counter() - wall,
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "config": config.to_dict(), "recipe": recipe.to_dict(), "history": history,
    }
    write_json(out / "metrics.json", metrics)
    from vit_lib.plots import plot_history
    plot_history(history, out / "curves.png", title=f"{preset_name} on {info.name}")
    print(f"test accuracy {final['test_accuracy']:.2f}% after {epochs} epochs, "
          f"{metrics['train_seconds']:.0f}s of training; wrote {out}/metrics.json, "
          f"{ckpt.name}, curves.png")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
