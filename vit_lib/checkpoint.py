"""Checkpoints: write a training state atomically, read it back safely, rebuild its model.

A checkpoint is one dict saved with torch.save: `format`, `model` (state_dict), `optimizer`,
`scheduler`, `epoch`, `epochs`, `arch` (the model family: "vit", "cnn"; see vit_lib.models),
`config`, `recipe`, `history`, `rng` and `extra`, plus `scaler` when training used fp16 with a
gradient scaler (CUDA GPUs without bf16).
"""
from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from vit_lib.errors import OutputError, UserError

CHECKPOINT_FORMAT = 1


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, unreadable or from an incompatible run."""


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` with torch.save to a temporary file beside `path`, then rename it over
    `path`: a crash mid-write never leaves a truncated checkpoint behind.

    An OS error (full disk, read-only folder...) raises OutputError naming `path`; whatever
    `path` held before is left as it was.
    """
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)   # in memory first: torch reports a full disk as a RuntimeError
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(f"could not write {path} ({exc.strerror or exc})") from exc
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint with torch.load(weights_only=True); clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; train first (python -m vit_lib.train "
                              "--out DIR) or pass the path of an existing checkpoint.pt")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path} is not a readable vit_lib checkpoint "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a vit_lib checkpoint (format "
                              f"{CHECKPOINT_FORMAT} expected)")
    return state


def checkpoint_config(state: dict[str, Any]):
    """The model config a checkpoint holds (a ViTConfig, CNNConfig...), by its `arch` name;
    checkpoints written before model families existed hold a ViT."""
    from vit_lib.models import config_from_dict
    return config_from_dict(state.get("arch", "vit"), state["config"])


def model_from_checkpoint(state: dict[str, Any], device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the model stored in a checkpoint (whatever its architecture), in eval mode."""
    from vit_lib.models import build_model
    model = build_model(checkpoint_config(state))
    model.load_state_dict(state["model"])
    return model.to(device).eval()
