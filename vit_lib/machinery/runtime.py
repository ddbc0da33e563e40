"""Run-time helpers every lesson uses: pick the device, seed every generator, mixed precision.

    device = resolve_device("auto")    # cuda > mps > cpu
    seed_everything(0)                 # Python, NumPy and PyTorch on every device
"""
from __future__ import annotations

import contextlib
import random
from typing import Any

import torch

from vit_lib.machinery.errors import DeviceError, arg

_DEVICE_AUTO = arg("device='auto'", "--device auto")


def parse_device(device: str | torch.device) -> tuple[str, int | None]:
    """'cuda:1' -> ('cuda', 1), 'cpu' -> ('cpu', None), 'auto' -> ('auto', None), 'mps:0' ->
    ('mps', 0) (an index on cpu and mps too, as PyTorch spells them); anything else raises
    DeviceError. The one parser of device names (resolve_device, torchrun's
    vit_lib.machinery.distributed.choose_device)."""
    name = str(device).lower()
    kind, colon, index = name.partition(":")
    bad_index = colon and (kind == "auto" or not index.isdecimal())
    if kind not in ("auto", "cpu", "cuda", "mps") or bad_index:
        raise DeviceError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    return kind, int(index) if colon else None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks cuda > mps > cpu; a forced device that is absent raises DeviceError."""
    kind, index = parse_device(device)
    has_mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps else torch.device("cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} was requested but PyTorch sees no CUDA GPU here; "
                          f"use {_DEVICE_AUTO} or cpu, or install a CUDA build of PyTorch")
    if kind == "mps" and not has_mps:
        raise DeviceError(f"device {device!r} was requested but Apple's MPS backend is not "
                          f"available here; use {_DEVICE_AUTO} or cpu")
    return torch.device(kind, index) if index is not None else torch.device(kind)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy (when installed) and PyTorch on every device."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np
        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover - numpy comes with torchvision
        pass


def amp_context(device: torch.device) -> tuple[Any, Any]:
    """(autocast context, GradScaler or None) for training on `device`.

    CUDA: bf16 autocast where the GPU supports it, else fp16 with a gradient scaler.
    Elsewhere: full fp32 (a disabled autocast, no scaler).
    """
    if device.type != "cuda":
        return contextlib.nullcontext(), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast("cuda", dtype=dtype), scaler


def progress_bar(total: int, desc: str, enabled: bool = True):
    """A tqdm bar (widget in Jupyter when ipywidgets is installed, text otherwise), or None."""
    if not enabled:
        return None
    try:
        import ipywidgets  # noqa: F401  - the notebook widget bar needs it
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm.std import tqdm  # plain text bar: works in terminals and in Jupyter alike
    return tqdm(total=total, desc=desc, leave=False, mininterval=0.5, dynamic_ncols=True)
