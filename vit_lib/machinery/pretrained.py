"""Trained weights that ship with vit_lib (package data in vit_lib/weights/), by name.

    model = vit_lib.pretrained("seed-tuned")                      # trained on MNIST, eval mode
    model = vit_lib.pretrained("best", dataset="fashion-mnist")
    model.info.test_accuracy, model.info.classes, model.info.normalize
    vit_lib.machinery.pretrained.available()                      # [("best", "fashion-mnist"), ...]

Each vit_lib/weights/NAME-DATASET.pt is a small checkpoint: the model's weights (fp32) with its
architecture, config and recipe and the run's dataset, classes and seed - no optimiser state,
so it cannot be resumed, only used, evaluated or fine-tuned - and NAME-DATASET.json beside it
says how it was made: the recipe, seed, torch version, training time and its accuracy on the
test split. `make weights` (tools/make_weights.py) trains each with
`python -m vit_lib train --preset NAME --dataset DATASET --seed 0` and writes both files.

On the command line `pretrained:NAME` (MNIST) or `pretrained:NAME/DATASET` stands for a
checkpoint wherever one is taken: `evaluate --checkpoint`, `train --init-from` and
`--teacher`, `predict --checkpoint` (and `predict --pretrained NAME`).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vit_lib.data import dataset_info, is_folder_dataset
from vit_lib.machinery.checkpoint import load_checkpoint
from vit_lib.machinery.errors import CheckpointError, ConfigError
from vit_lib.machinery.families import model_from_checkpoint

__all__ = ["PREFIX", "PretrainedInfo", "WEIGHTS", "available", "checkpoint_classes",
           "checkpoint_normalization", "is_pretrained", "load_any_checkpoint", "parse_spec",
           "pretrained", "pretrained_checkpoint", "pretrained_state", "resolve", "weights_file"]

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"     # vit_lib/weights, package data
PREFIX = "pretrained:"
DEFAULT_DATASET = "mnist"


@dataclass(frozen=True)
class PretrainedInfo:
    """What a shipped model is and how it was made (`model.info` of `pretrained(...)`).

    normalize: the (mean, std) its inputs were normalised with, or None for raw pixels in
    [0, 1]; classes: its outputs' names; test_accuracy: % on the dataset's test split;
    recipe: its training recipe (Recipe.to_dict()); train_seconds: time spent training.
    """

    name: str
    dataset: str
    classes: tuple[str, ...]
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None
    test_accuracy: float
    recipe: dict[str, Any]
    seed: int
    torch_version: str
    train_seconds: float
    file: Path
    architecture: str = "vit"
    params: int = 0


def _index() -> dict[tuple[str, str], dict[str, Any]]:
    """(name, dataset) -> the facts of NAME-DATASET.json, for every shipped file."""
    found = {}
    for path in sorted(WEIGHTS.glob("*.json")) if WEIGHTS.is_dir() else []:
        try:
            facts = json.loads(path.read_text(encoding="utf-8"))
            found[(facts["name"], facts["dataset"])] = facts
        except (OSError, ValueError, KeyError, TypeError):
            continue       # not one of ours
    return found


def available() -> list[tuple[str, str]]:
    """Every shipped (name, dataset), e.g. [("best", "fashion-mnist"), ("best", "mnist"), ...]."""
    return sorted(_index())


def _choices() -> str:
    by_name: dict[str, list[str]] = {}
    for name, dataset in available():
        by_name.setdefault(name, []).append(dataset)
    return "; ".join(f"{n} ({', '.join(d)})" for n, d in by_name.items()) or "none"


def weights_file(name: str, dataset: str = DEFAULT_DATASET) -> Path:
    """The shipped file of a (name, dataset); ConfigError naming the choices when there is none."""
    index = _index()
    if not index:
        raise CheckpointError(f"no trained weights in {WEIGHTS}: this copy of vit_lib "
                              "ships none; in a checkout, run `make weights` to make them")
    names = sorted({n for n, _ in index})
    if name not in names:
        raise ConfigError(f"unknown pretrained model {name!r}; choose one of {_choices()}")
    try:
        canonical = dataset_info(dataset).name if not is_folder_dataset(dataset) else dataset
    except ConfigError:
        canonical = dataset
    if (name, canonical) not in index:
        shipped = ", ".join(d for n, d in sorted(index) if n == name)
        raise ConfigError(f"pretrained {name!r} ships trained on {shipped}, not {dataset!r}; "
                          f"choose one of those (all shipped: {_choices()})")
    path = WEIGHTS / f"{name}-{canonical}.pt"
    if not path.is_file():
        raise CheckpointError(f"{path} is missing though its description is there: the "
                              "installation is damaged; reinstall vit_lib (or run `make weights` "
                              "in a checkout)")
    return path


_file = weights_file


def pretrained_state(name: str, dataset: str = DEFAULT_DATASET) -> dict[str, Any]:
    """The shipped checkpoint state of `name` on `dataset` (as load_checkpoint returns it)."""
    return load_checkpoint(weights_file(name, dataset))


def _facts(path: Path, state: dict[str, Any]) -> dict[str, Any]:
    """How a shipped file was made: its .json beside it, else what the file itself records."""
    try:
        return json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {**(state.get("extra") or {}), **(state.get("pretrained") or {})}


def checkpoint_classes(state: dict[str, Any]) -> tuple[str, ...]:
    """A checkpoint's class names: those it records, else its dataset's, else '0', '1', ..."""
    extra = state.get("extra") or {}
    if extra.get("classes"):
        return tuple(str(c) for c in extra["classes"])
    dataset = extra.get("dataset")
    if dataset and not is_folder_dataset(dataset):
        try:
            return dataset_info(dataset).classes
        except ConfigError:
            pass
    return tuple(str(i) for i in range(state["config"]["num_classes"]))


def checkpoint_normalization(state: dict[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The (mean, std) a checkpoint's model was trained on, or None for raw pixels in [0, 1].
    CheckpointError when its recipe normalised but it records no dataset to take them from."""
    if not (state.get("recipe") or {}).get("normalize"):
        return None
    extra = state.get("extra") or {}
    folder = extra.get("folder") or {}
    if folder.get("mean") is not None:
        return tuple(folder["mean"]), tuple(folder["std"])
    dataset = extra.get("dataset")
    if dataset and not is_folder_dataset(dataset):
        info = dataset_info(dataset)
        return tuple(info.mean), tuple(info.std)
    raise CheckpointError("the checkpoint's recipe normalises its inputs but it records no dataset "
                          "(it was written by fit() without extra={'dataset': ...}), so the "
                          "mean and std it was trained with are unknown")


def pretrained(name: str, dataset: str = DEFAULT_DATASET,
               device: str | torch.device = "cpu") -> nn.Module:
    """A shipped trained model in eval mode on `device`, with `model.info` (PretrainedInfo):
    how it was trained, its classes, its input normalisation and its test accuracy.

    name: a preset (`available()` lists what ships: seed, seed-tuned, best, cnn-tiny);
    dataset: "mnist" (default) or "fashion-mnist" for the ViTs.
    """
    path = weights_file(name, dataset)
    state = load_checkpoint(path)
    model = model_from_checkpoint(state, device)
    facts = _facts(path, state)
    extra = state.get("extra") or {}
    model.info = PretrainedInfo(
        name=name, dataset=extra.get("dataset") or facts.get("dataset", dataset),
        classes=checkpoint_classes(state), normalize=checkpoint_normalization(state),
        test_accuracy=float(facts.get("test_accuracy", float("nan"))),
        recipe=dict(state["recipe"]), seed=int(facts.get("seed", extra.get("seed", 0))),
        torch_version=str(facts.get("torch", "")),
        train_seconds=float(facts.get("train_seconds", 0.0)), file=path,
        architecture=state.get("arch", "vit"), params=int(facts.get("params", 0)))
    return model


def is_pretrained(spec: Any) -> bool:
    """Does a command-line checkpoint argument name shipped weights (pretrained:NAME...)?"""
    return isinstance(spec, (str, os.PathLike)) and str(spec).startswith(PREFIX)


def parse_spec(spec: str | os.PathLike) -> tuple[str, str]:
    """'pretrained:NAME' -> (NAME, 'mnist'); 'pretrained:NAME/DATASET' -> (NAME, DATASET)."""
    text = str(spec)[len(PREFIX):] if is_pretrained(spec) else str(spec)
    name, _, dataset = text.partition("/")
    if not name or "/" in dataset:
        raise ConfigError(f"{spec!s} is not pretrained:NAME or pretrained:NAME/DATASET; "
                          f"shipped: {_choices()}")
    return name, dataset or DEFAULT_DATASET


def pretrained_checkpoint(spec: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint state of `pretrained:NAME` or `pretrained:NAME/DATASET` (a dict like
    load_checkpoint's, without optimiser state): for evaluate, --init-from, --teacher, predict."""
    return pretrained_state(*parse_spec(spec))


def load_any_checkpoint(spec: str | os.PathLike) -> tuple[dict[str, Any], str]:
    """(state, a name for messages) of `pretrained:NAME[/DATASET]`, a checkpoint file or a run
    folder (its checkpoint.pt)."""
    if is_pretrained(spec):
        name, dataset = parse_spec(spec)
        dataset = dataset_info(dataset).name if not is_folder_dataset(dataset) else dataset
        return pretrained_state(name, dataset), f"{PREFIX}{name}/{dataset}"
    path = resolve(spec)
    return load_checkpoint(path), str(path)


def resolve(spec: str | os.PathLike) -> Path:
    """A command line's checkpoint argument as a file: `pretrained:NAME` or
    `pretrained:NAME/DATASET` -> the shipped file; a run folder -> its checkpoint.pt; a path
    stays a path. (The shipped file is a checkpoint: train --init-from / --teacher and
    evaluate read it like any other.)"""
    if is_pretrained(spec):
        return weights_file(*parse_spec(spec))
    path = Path(spec).expanduser()
    return path / "checkpoint.pt" if path.is_dir() else path
