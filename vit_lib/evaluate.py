"""Evaluate a saved checkpoint on its dataset's test split.

    python -m vit_lib.evaluate --checkpoint runs/seed/checkpoint.pt

Prints the test accuracy and writes a confusion-matrix PNG (default: beside the checkpoint).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from vit_lib.data import dataset_info, get_loaders
from vit_lib.checkpoint import load_checkpoint, model_from_checkpoint
from vit_lib.engine import evaluate
from vit_lib.runtime import resolve_device
from vit_lib.plots import confusion_matrix, plot_confusion_matrix
from vit_lib.presets import Recipe
from vit_lib.train import run_cli


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m vit_lib.evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a checkpoint.pt written by vit_lib.train")
    p.add_argument("--data-dir", help="dataset folder (default: $VIT_DATA_DIR, else ./data)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--out", help="confusion-matrix PNG (default: confusion_matrix.png beside "
                                 "the checkpoint)")
    p.add_argument("--no-download", action="store_true", help="never try to download data")
    args = p.parse_args(argv)

    device = resolve_device(args.device)
    state = load_checkpoint(args.checkpoint)
    info = dataset_info(state["extra"]["dataset"])
    recipe = Recipe.from_dict(state["recipe"])
    model = model_from_checkpoint(state, device)
    _, test_loader = get_loaders(info.name, recipe.batch_size, args.data_dir, device,
                                 recipe.normalize, download=not args.no_download)
    result = evaluate(model, test_loader, return_predictions=True)
    matrix = confusion_matrix(result["predictions"], result["labels"], info.num_classes)
    out = Path(args.out) if args.out else Path(args.checkpoint).with_name("confusion_matrix.png")
    out.parent.mkdir(parents=True, exist_ok=True)
    plot_confusion_matrix(matrix, info.classes, out,
                          title=f"{info.name}: {result['accuracy']:.2f}% test accuracy")
    print(f"{info.name} test accuracy: {result['accuracy']:.2f}% "
          f"({int(matrix.trace())}/{int(matrix.sum())}), loss {result['loss']:.4f}")
    print(f"confusion matrix: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
