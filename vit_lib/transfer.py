"""Lesson 07: reuse a trained model - start a new training from a checkpoint's weights
(fine-tuning), or train only the classification head on top of frozen features (linear probing).

    state = load_checkpoint("runs/seed-tuned-mnist/checkpoint.pt")
    report = init_from_checkpoint(model, state, source="runs/seed-tuned-mnist/checkpoint.pt")
    print(report.summary())

The same from the command line: `python -m vit_lib train ... --init-from CHECKPOINT`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vit_lib.machinery.checkpoint import load_checkpoint
from vit_lib.machinery.errors import CheckpointError, arg
from vit_lib.machinery.families import architecture_of, checkpoint_config, describe

HEAD_PREFIX = "head."   # both model families call their classification layer `head`


@dataclass
class InitReport:
    """What `init_from_checkpoint` did: tensors loaded, head tensors left freshly initialised."""

    source: str
    architecture: str
    dataset: str | None
    loaded: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = f"loaded {len(self.loaded)} tensors from {self.source}"
        if self.reinitialised:
            text += (f"; re-initialised {', '.join(self.reinitialised)} (the classification head: "
                     "the checkpoint's has another number of classes)")
        return text


def init_from_checkpoint(model: nn.Module, state: dict[str, Any] | str | os.PathLike,
                         source: str | None = None) -> InitReport:
    """Copy every weight of a checkpoint whose name and shape match `model`'s into `model`.

    A classification head of another size (e.g. 10 -> 5 classes) keeps `model`'s fresh
    initialisation and is listed in `report.reinitialised`. Anything else that does not fit (another
    architecture, a missing or extra tensor, another shape) raises CheckpointError naming it.
    state: a loaded checkpoint dict, or the path of a checkpoint.pt (or of its run folder).
    """
    if not isinstance(state, dict):
        path = Path(state)
        path = path / "checkpoint.pt" if path.is_dir() else path
        source = source or str(path)
        state = load_checkpoint(path)
    source = source or "the checkpoint"
    if "model" not in state or "config" not in state:
        raise CheckpointError(f"{source} lacks its model weights or config: it was not written "
                              "by vit_lib's fit() or train")
    theirs, ours = state.get("arch", "vit"), architecture_of(model.config)
    if theirs != ours:
        raise CheckpointError(
            f"{source} holds a {theirs.upper()} ({describe(checkpoint_config(state))}), but the model "
            f"to initialise is a {ours.upper()}; {arg('init_from_checkpoint', '--init-from')} needs a "
            f"checkpoint of the same "
            f"architecture: choose a {theirs} preset, or a checkpoint trained with a {ours} preset")
    weights: dict[str, torch.Tensor] = state["model"]
    target = model.state_dict()
    missing = [k for k in target if k not in weights]
    extra = [k for k in weights if k not in target]
    shapes = [k for k in target if k in weights and weights[k].shape != target[k].shape]
    head_only = [k for k in shapes if k.startswith(HEAD_PREFIX)]
    problems = []
    if missing:
        problems.append(f"it lacks {_names(missing)}")
    if extra:
        problems.append(f"it has {_names(extra)}, which the model does not")
    for k in (k for k in shapes if k not in head_only):
        problems.append(f"{k} is {list(weights[k].shape)} there but {list(target[k].shape)} here")
    if problems:
        raise CheckpointError(
            f"{source} does not fit this model: {'; '.join(problems)}. Only the classification "
            "head may differ: build the model with the same architecture settings (patch size, "
            "width, depth...) as the checkpoint's, or start from scratch")
    loaded = [k for k in target if k not in head_only]
    model.load_state_dict({k: weights[k] for k in loaded}, strict=False)
    return InitReport(source, theirs, (state.get("extra") or {}).get("dataset"), loaded, head_only)


def freeze_all_but_head(model: nn.Module) -> list[str]:
    """Linear probing: requires_grad=False on every parameter outside `head`; returns the names
    still trained. build_optimizer then optimises only those.

    Normalisation layers keep updating their running statistics in train mode (BatchNorm): call
    `model.eval()` on the frozen part too if the features must stay exactly as they were.
    """
    trained = []
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith(HEAD_PREFIX)
        if p.requires_grad:
            trained.append(name)
    return trained


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:4])
    return shown + (f" and {len(names) - 4} more" if len(names) > 4 else "")

