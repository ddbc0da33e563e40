"""Trained models that ship with vit_lib, so a lesson or a class can skip a training cell.

    model = pretrained("seed-tuned")                 # MNIST, eval mode, on the CPU
    model = pretrained("best", dataset="fashion-mnist")
    model.info.test_accuracy, model.info.normalize   # what it reached, how to feed it

`make weights` (tools/make_weights.py) trains each with `python -m vit_lib train --seed 0` and
writes vit_lib/weights/PRESET-DATASET.pt (weights, architecture, config, recipe, dataset) and a
.json beside it (seed, torch version, test accuracy, training time). On the command line
`pretrained:NAME` or `pretrained:NAME/DATASET` works wherever a checkpoint is taken
(`evaluate --checkpoint`, `train --init-from`, `train --teacher`, `predict --checkpoint`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vit_lib.data import dataset_info
from vit_lib.machinery.checkpoint import load_checkpoint
from vit_lib.machinery.errors import CheckpointError
from vit_lib.machinery.families import model_from_checkpoint

WEIGHTS = Path(__file__).resolve().parent.parent / "weights"
PREFIX = "pretrained:"


@dataclass(frozen=True)
class PretrainedInfo:
    """What a shipped model is and how it was made."""

    name: str
    dataset: str
    classes: tuple[str, ...]
    normalize: tuple[tuple[float, ...], tuple[float, ...]] | None   # (mean, std) or raw pixels
    test_accuracy: float
    recipe: dict[str, Any]
    seed: int
    torch_version: str
    train_seconds: float
    file: Path


def available() -> list[tuple[str, str]]:
    """The (name, dataset) pairs that ship, e.g. ("seed-tuned", "mnist")."""
    out = []
    for path in sorted(WEIGHTS.glob("*.json")):
        facts = json.loads(path.read_text())
        out.append((facts["name"], facts["dataset"]))
    return out


def _file(name: str, dataset: str) -> Path:
    key = dataset_info(dataset).name
    path = WEIGHTS / f"{name}-{key}.pt"
    if not path.is_file():
        ships = ", ".join(f"{n} ({d})" for n, d in available()) or "none (run make weights)"
        raise CheckpointError(f"no shipped model {name!r} for {key}; vit_lib ships: {ships}")
    return path


def pretrained_state(name: str, dataset: str = "mnist") -> dict[str, Any]:
    """The shipped checkpoint state of `name` on `dataset` (as load_checkpoint returns it)."""
    return load_checkpoint(_file(name, dataset))


def pretrained(name: str, dataset: str = "mnist", device: str | torch.device = "cpu") -> nn.Module:
    """A shipped trained model in eval mode, with `model.info` (a PretrainedInfo)."""
    path = _file(name, dataset)
    state = load_checkpoint(path)
    model = model_from_checkpoint(state, device)
    facts = json.loads(path.with_suffix(".json").read_text())
    info = dataset_info(facts["dataset"])
    normalize = (info.mean, info.std) if state["recipe"].get("normalize") else None
    model.info = PretrainedInfo(name, info.name, tuple(facts["classes"]), normalize,
                                facts["test_accuracy"], state["recipe"], facts["seed"],
                                facts["torch"], facts["train_seconds"], path)
    return model


def is_pretrained(spec: str | Path) -> bool:
    return str(spec).startswith(PREFIX)


def resolve(spec: str | Path) -> Path:
    """`pretrained:NAME` or `pretrained:NAME/DATASET` -> the shipped file; a path stays a path
    (a run folder means its checkpoint.pt)."""
    text = str(spec)
    if not is_pretrained(text):
        path = Path(text)
        return path / "checkpoint.pt" if path.is_dir() else path
    name, _, dataset = text[len(PREFIX):].partition("/")
    return _file(name, dataset or "mnist")
