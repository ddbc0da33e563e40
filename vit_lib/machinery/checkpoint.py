"""Checkpoint files: write a training state atomically, read it back safely.

A checkpoint is one dict saved with torch.save: `format`, `model` (state_dict), `optimizer`,
`scheduler`, `epoch`, `epochs`, `arch` (the model family: "vit", "cnn"), `config`, `recipe`,
`history`, `rng` and `extra`, plus `scaler` when training used fp16 with a
gradient scaler (CUDA GPUs without bf16). `vit_lib.machinery.training` writes and restores
that state; `vit_lib.machinery.families.model_from_checkpoint` rebuilds the model it holds.
"""
from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import torch

from vit_lib.machinery.errors import CheckpointError
from vit_lib.machinery.files import write_atomically

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` with torch.save to a temporary file beside `path`, then rename it over
    `path`: a crash mid-write never leaves a truncated checkpoint behind.

    An OS error (full disk, read-only folder...) raises OutputError naming `path`; whatever
    `path` held before is left as it was.
    """
    buffer = io.BytesIO()
    torch.save(state, buffer)   # in memory first: torch reports a full disk as a RuntimeError
    return write_atomically(path, lambda tmp: tmp.write_bytes(buffer.getbuffer()))


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with torch.load(weights_only=True); clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train first (fit(..., checkpoint=PATH), or "
                              "python -m vit_lib train --out DIR) or pass the path of an existing "
                              "checkpoint.pt")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable vit_lib checkpoint "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a vit_lib checkpoint (format "
                              f"{CHECKPOINT_FORMAT} expected)")
    return state

