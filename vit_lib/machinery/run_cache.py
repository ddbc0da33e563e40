"""Reuse a finished training run instead of training it again (lessons 05-07).

`fit_or_reuse` is `vit_lib.engine.fit` with a memory: a run that finished is kept as a normal
checkpoint in a cache folder, named by a fingerprint of everything that decides its weights:

- the model: its classes' source code, its config and its initial weights;
- the data: the loaders' tensors, batch size, shuffling seed, normalisation and augmentation;
- the recipe, the number of epochs, `stop_at_accuracy`;
- the random state at the call (torch's generator);
- the code and the machine: the source of the vit_lib modules the run executes (the engine,
  the model's module and all they import; not the classroom or command-line tools), torch's
  version, the device, the CPU's vector instructions and the number of threads (results are
  bit-identical only on the same setup).

Calling it again with the same fingerprint loads that checkpoint (weights, history, the random
state after training) and prints the stored epoch lines, so the cells after it see exactly what
a fresh run would give them, in seconds instead of minutes. This is how lesson 06 reuses the
model trained in lesson 05, and why the student edition of a lesson does not train again what
the full edition trained. A run that was interrupted resumes from its last epoch.

The folder: $VIT_CACHE_DIR, else ~/.cache/vit-from-scratch (under $XDG_CACHE_HOME when set).
VIT_CACHE_DIR=off turns the cache off (every call trains). Delete the folder to free the space;
each entry is one checkpoint (about 0.25 MB for the seed's model).
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from vit_lib.data import TensorLoader
from vit_lib.engine import fit, format_epoch
from vit_lib.machinery import distributed
from vit_lib.machinery.checkpoint import load_checkpoint, save_checkpoint
from vit_lib.machinery.imports import closure, module_files
from vit_lib.presets import Recipe

__all__ = ["cache_dir", "fit_or_reuse", "run_fingerprint"]

CACHE_ENV = "VIT_CACHE_DIR"
_OFF = {"off", "0", "no", "false", "none"}


def cache_dir() -> Path | None:
    """The cache folder, or None when VIT_CACHE_DIR=off."""
    value = os.environ.get(CACHE_ENV, "").strip()
    if value.lower() in _OFF:
        return None
    if value:
        return Path(value).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "vit-from-scratch"


def _tensor_digest(h: "hashlib._Hash", t: torch.Tensor) -> None:
    h.update(f"{t.dtype}{tuple(t.shape)}".encode())
    flat = t.detach().cpu().contiguous().reshape(-1)          # 0-d tensors too (BatchNorm counts)
    h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")


def _source_of(cls: type) -> str | None:
    try:
        return inspect.getsource(cls)
    except (OSError, TypeError):     # defined where its source cannot be read back
        return None


def _vit_lib_source(model: nn.Module) -> str:
    """A digest of the vit_lib code a run executes: the engine, this module and the model's
    module, with everything they import (not the command-line or classroom tools)."""
    h = hashlib.sha256()
    files = module_files()
    for name in sorted(closure({"vit_lib.engine", __name__, type(model).__module__})):
        h.update(name.encode())
        h.update(files[name].read_bytes())
    return h.hexdigest()


def _loader_digest(h: "hashlib._Hash", loader: TensorLoader) -> None:
    _tensor_digest(h, loader.images)
    _tensor_digest(h, loader.labels)
    for t in (loader.mean, loader.std):
        if t is not None:
            _tensor_digest(h, t)
    h.update(repr((loader.batch_size, loader.shuffle, loader.seed, loader.augment,
                   loader.rank, loader.world_size, str(loader.device))).encode())


def run_fingerprint(model: nn.Module, train_loader, test_loader, recipe: Recipe, epochs: int,
                    stop_at_accuracy: float | None = None) -> str | None:
    """The hex fingerprint of a run (see the module's docstring), or None when the run cannot
    be fingerprinted: loaders other than TensorLoader, or a model class whose source is not
    readable."""
    if not (isinstance(train_loader, TensorLoader) and isinstance(test_loader, TensorLoader)):
        return None
    h = hashlib.sha256()
    for cls in sorted({type(m) for m in model.modules()}, key=lambda c: (c.__module__, c.__qualname__)):
        source = _source_of(cls)
        if source is None:
            return None
        h.update(f"{cls.__module__}.{cls.__qualname__}".encode())
        h.update(source.encode())
    config = getattr(model, "config", None)
    h.update(repr(config.to_dict() if hasattr(config, "to_dict") else config).encode())
    for name, t in model.state_dict().items():
        h.update(name.encode())
        _tensor_digest(h, t)
    for p in model.parameters():
        h.update(b"1" if p.requires_grad else b"0")
    _loader_digest(h, train_loader)
    _loader_digest(h, test_loader)
    h.update(json.dumps(recipe.to_dict(), sort_keys=True).encode())
    h.update(repr((epochs, stop_at_accuracy)).encode())
    _tensor_digest(h, torch.get_rng_state())
    device = next(model.parameters()).device
    h.update(repr((_vit_lib_source(model), torch.__version__, str(device), torch.get_num_threads(),
                   torch.backends.cpu.get_cpu_capability())).encode())
    return h.hexdigest()


def fit_or_reuse(model: nn.Module, train_loader, test_loader, recipe: Recipe, *,
                 epochs: int | None = None, checkpoint: str | os.PathLike | None = None,
                 log: Callable[[str], None] | None = print, stop_at_accuracy: float | None = None,
                 extra: dict[str, Any] | None = None, **fit_kwargs: Any) -> list[dict[str, Any]]:
    """`fit(model, train_loader, test_loader, recipe, ...)`, or the same run loaded from the
    cache when it finished before: returns the per-epoch history either way and leaves `model`
    (weights), `train_loader` (epoch) and torch's random state as the training would.

    checkpoint: also write the run's final checkpoint there, as `fit` would (with this call's
    `extra`: extra facts do not change the weights, so they are not part of the fingerprint).
    Falls back to a plain `fit` when the cache is off, under torchrun, or when the run has no
    fingerprint (see run_fingerprint).
    """
    epochs = recipe.epochs if epochs is None else epochs
    folder = cache_dir()
    key = (None if folder is None or distributed.is_initialized()
           else run_fingerprint(model, train_loader, test_loader, recipe, epochs, stop_at_accuracy))
    if key is None:
        return fit(model, train_loader, test_loader, recipe, epochs=epochs, checkpoint=checkpoint,
                   log=log, stop_at_accuracy=stop_at_accuracy, extra=extra, **fit_kwargs)
    done, partial = folder / f"{key[:32]}.pt", folder / f"{key[:32]}.partial.pt"
    if done.is_file():   # resume at its last epoch: nothing left to train, the state restored
        trained = load_checkpoint(done)["epoch"]    # fewer than epochs when stop_at_accuracy hit
        history = fit(model, train_loader, test_loader, recipe, epochs=trained, checkpoint=done,
                      resume=True, log=None, progress=False)
        train_loader.set_epoch(history[-1]["epoch"] - 1)
        if log is not None:
            log(f"reused the finished run in {done} (same model, data, recipe, seed and code; "
                f"set {CACHE_ENV}=off to train again):")
            for record in history:
                log(format_epoch(record, epochs))
    else:
        resume = partial.is_file() and _holds_epochs(partial)
        history = fit(model, train_loader, test_loader, recipe, epochs=epochs, checkpoint=partial,
                      resume=resume, log=log, stop_at_accuracy=stop_at_accuracy, extra=extra,
                      **fit_kwargs)
        os.replace(partial, done)
    if checkpoint is not None:
        state = load_checkpoint(done)
        state["extra"] = dict(extra or {})
        save_checkpoint(checkpoint, state)
    return history


def _holds_epochs(path: Path) -> bool:
    """An interrupted run's checkpoint that can be resumed (a damaged one is trained again)."""
    try:
        return load_checkpoint(path)["epoch"] >= 1
    except Exception:
        path.unlink(missing_ok=True)
        return False
