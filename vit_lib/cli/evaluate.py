"""Evaluate a saved checkpoint on its dataset's test split.

    python -m vit_lib evaluate --checkpoint runs/seed/checkpoint.pt

Prints the test accuracy, then writes a confusion-matrix image (default: confusion_matrix.png
beside the checkpoint). Only the test split is read. A checkpoint that does not record its
dataset (one written by fit() from Python without extra={"dataset": ...}) needs --dataset.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

from vit_lib.cli.common import (
    check_model_fits_dataset,
    path_arg,
    require_keys,
    run_cli,
)
from vit_lib.config import ConfigError
from vit_lib.data import (
    DATASETS,
    dataset_info,
    folder_dataset_name,
    get_test_loader,
    is_folder_dataset,
    use_folder,
)
from vit_lib.engine import evaluate
from vit_lib.machinery import pretrained
from vit_lib.machinery.checkpoint import load_checkpoint
from vit_lib.machinery.errors import CheckpointError, OutputError
from vit_lib.machinery.families import checkpoint_config, model_from_checkpoint
from vit_lib.machinery.files import write_atomically
from vit_lib.machinery.plots import confusion_matrix, plot_confusion_matrix
from vit_lib.machinery.runtime import resolve_device

IMAGE_FORMATS = ("png", "pdf", "svg", "jpg", "jpeg")

INTERRUPTED = "the evaluation was stopped; nothing was written"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vit_lib evaluate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=path_arg, required=True,
                   help="a checkpoint.pt written by vit_lib.cli.train or fit(), its run folder, or "
                        "pretrained:NAME[/DATASET] (a model shipped with vit_lib, e.g. "
                        "pretrained:seed-tuned)")
    p.add_argument("--dataset", help="evaluate on this dataset (default: the one the checkpoint "
                                     "records; needed when it records none); folder:PATH: every "
                                     "image of a folder (one subfolder per class; its test/ "
                                     "split if it has one), resized to the model's input")
    p.add_argument("--data-dir", type=path_arg,
                   help="dataset folder (default: $VIT_DATA_DIR, else ./data)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--out", type=path_arg, help="confusion-matrix image, .png/.pdf/.svg/.jpg "
                                                "(default: confusion_matrix.png beside the checkpoint)")
    p.add_argument("--no-download", action="store_true", help="never try to download data")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    path = pretrained.resolve(args.checkpoint)
    shipped = pretrained.is_pretrained(args.checkpoint)      # never write into the package
    out = args.out or (Path(f"confusion_matrix-{path.stem}.png") if shipped
                       else path.with_name("confusion_matrix.png"))
    if out.is_dir():
        out = out / "confusion_matrix.png"
    if out.suffix.lower().lstrip(".") not in IMAGE_FORMATS:
        raise ConfigError(f"--out {out}: cannot tell the image format from its name; end it in "
                          f"{', '.join('.' + f for f in IMAGE_FORMATS)}")
    device = resolve_device(args.device)
    state = load_checkpoint(path)
    require_keys(state, ("model", "config", "recipe"), path)
    config = checkpoint_config(state)
    recorded = (state.get("extra") or {}).get("dataset")
    if args.dataset is None and recorded is None:
        fits = [d.name for d in DATASETS.values()
                if (d.image_size, d.channels, d.num_classes)
                == (config.image_size, config.in_channels, config.num_classes)]
        raise CheckpointError(
            f"{path} does not record which dataset it was trained on (fit() was called without "
            f"extra={{'dataset': ...}}); pass --dataset "
            f"{' or '.join(fits) if fits else 'NAME'} (its model takes {config.image_size}x"
            f"{config.image_size}x{config.in_channels} images, {config.num_classes} classes)")
    if is_folder_dataset(args.dataset or recorded):
        _read_folder(args.dataset or recorded, state, config, recorded)
    info = dataset_info(args.dataset or recorded)
    check_model_fits_dataset(config, info, path)
    if recorded is not None and info.name != _canonical(recorded):
        print(f"note: {path} was trained on {recorded}; evaluating it on {info.name}")
        classes = pretrained.checkpoint_classes(state)
        if is_folder_dataset(info.name) and list(classes) != list(info.classes):
            print(f"note: the folder's classes ({', '.join(info.classes)}) are not the model's "
                  f"({', '.join(classes)}); they are matched by position")
    model = model_from_checkpoint(state, device)
    test_loader = get_test_loader(info.name, args.data_dir, device, state["recipe"]["normalize"],
                                  download=not args.no_download)
    result = evaluate(model, test_loader, return_predictions=True)
    matrix = confusion_matrix(result["predictions"], result["labels"], info.num_classes)
    print(f"{info.name} test accuracy: {result['accuracy']:.2f}% "
          f"({int(matrix.trace())}/{int(matrix.sum())}), loss {result['loss']:.4f}")
    sys.stdout.flush()
    title = f"{info.name}: {result['accuracy']:.2f}% test accuracy"
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"could not create the folder of {out} ({exc.strerror or exc}); the "
                          "accuracy above is complete: choose another --out") from None
    try:
        write_atomically(out, lambda tmp: plot_confusion_matrix(matrix, info.classes, tmp, title))
    except OutputError as exc:
        raise OutputError(f"{exc.args[0]}; the accuracy above is complete: choose another --out") from None
    print(f"confusion matrix: {out}")
    return 0


def _canonical(name: str) -> str:
    """A dataset's recorded name, without reading it: mnist, or folder:/absolute/path."""
    return folder_dataset_name(name) if is_folder_dataset(name) else dataset_info(name).name


def _read_folder(name: str, state: dict, config, recorded: str | None) -> None:
    """Read a folder dataset to evaluate on. The checkpoint's own folder is read as its run
    read it (the same held-out images); any other folder is evaluated whole (or its test/
    split), resized to the model's input size and channels. Either way the images are
    normalised as the model's training inputs were."""
    try:
        stats = pretrained.checkpoint_normalization(state)
    except CheckpointError:
        stats = None
    if recorded is not None and is_folder_dataset(recorded) and _canonical(name) == _canonical(recorded):
        asked = ((state.get("extra") or {}).get("folder") or {}).get("requested") or {}
        use_folder(name, asked.get("image_size"), asked.get("channels"), asked.get("val_split"),
                   stats=stats, log=print)
    else:
        use_folder(name, config.image_size, config.in_channels, whole=True, stats=stats, log=print)


if __name__ == "__main__":
    sys.exit(run_cli(main, None, interrupted=INTERRUPTED))
