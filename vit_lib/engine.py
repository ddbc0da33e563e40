"""Lesson 05: the training engine - device choice, seeding, optimiser, schedule, loops, checkpoints."""
from __future__ import annotations

import math
import os
import random
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from vit_lib.config import ViTConfig
from vit_lib.presets import Recipe

CHECKPOINT_FORMAT = 1


class DeviceError(RuntimeError):
    """The requested device does not exist on this machine."""


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or from an incompatible run."""


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """'auto' picks cuda > mps > cpu; a forced device that is absent raises DeviceError."""
    name = str(device).lower()
    has_mps = hasattr(torch.backends, "mps") and torch.backends.mps.is_available()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if has_mps else torch.device("cpu")
    kind = name.split(":")[0]
    if kind not in ("cpu", "cuda", "mps"):
        raise DeviceError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")
    if kind == "cuda" and not torch.cuda.is_available():
        raise DeviceError(f"device {device!r} was requested but PyTorch sees no CUDA GPU here; "
                          "use --device auto or cpu, or install a CUDA build of PyTorch")
    if kind == "mps" and not has_mps:
        raise DeviceError(f"device {device!r} was requested but Apple's MPS backend is not "
                          "available here; use --device auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy (when installed) and PyTorch on every device."""
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np
        np.random.seed(seed % 2**32)
    except ImportError:  # pragma: no cover - numpy comes with torchvision
        pass


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """Adam (as the seed: one group, its weight decay, if any, on every parameter) or AdamW
    (decay only on weight matrices, not on biases, norms, the CLS token or positions)."""
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if recipe.optimizer == "adam":
        cls = torch.optim.Adam
        groups = [{"params": [p for _, p in params], "weight_decay": recipe.weight_decay}]
    else:
        cls = torch.optim.AdamW
        decayed = {name for name, p in params
                   if p.ndim >= 2 and "pos_embed" not in name and "cls_token" not in name}
        groups = [{"params": [p for name, p in params if name in decayed],
                   "weight_decay": recipe.weight_decay},
                  {"params": [p for name, p in params if name not in decayed],
                   "weight_decay": 0.0}]
    try:   # fused kernels: one update for all parameters (CPU since torch 2.4, CUDA, MPS)
        return cls(groups, lr=recipe.lr, fused=True)
    except (RuntimeError, TypeError):
        return cls(groups, lr=recipe.lr)


def lr_factor(step: int, total_steps: int, recipe: Recipe) -> float:
    """Multiplier of the base lr at a step: linear warmup, then constant or cosine to 0."""
    warmup = int(recipe.warmup * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if recipe.schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, total_steps - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def build_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, total_steps: int,
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, recipe))


@torch.no_grad()
def evaluate(model: nn.Module, loader, return_predictions: bool = False) -> dict[str, Any]:
    """Mean loss and accuracy (%) over a loader; optionally all predictions and labels [N]."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    total, correct, loss_sum = 0, 0, 0.0
    preds, labels = [], []
    for x, y in loader:
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").item()
        p = logits.argmax(dim=1)
        correct += (p == y).sum().item()
        total += y.numel()
        if return_predictions:
            preds.append(p.cpu())
            labels.append(y.cpu())
    model.train(was_training)
    out: dict[str, Any] = {"loss": loss_sum / max(total, 1), "accuracy": 100.0 * correct / max(total, 1)}
    if return_predictions:
        out["predictions"] = torch.cat(preds)
        out["labels"] = torch.cat(labels)
    return out


def _progress_bar(total: int, desc: str, enabled: bool):
    if not enabled:
        return None
    try:
        import ipywidgets  # noqa: F401  - the notebook widget bar needs it
        from tqdm.auto import tqdm
    except ImportError:
        from tqdm.std import tqdm   # plain text bar: works in terminals and in Jupyter alike
    return tqdm(total=total, desc=desc, leave=False, mininterval=0.5, dynamic_ncols=True)


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write `state` with torch.save to a temporary file beside `path`, then rename it over
    `path`: a crash mid-write never leaves a truncated checkpoint behind."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
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


def model_from_checkpoint(state: dict[str, Any], device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the VisionTransformer stored in a checkpoint, in eval mode."""
    from vit_lib.model import VisionTransformer
    model = VisionTransformer(ViTConfig.from_dict(state["config"]))
    model.load_state_dict(state["model"])
    return model.to(device).eval()


def _amp_context(device: torch.device):
    if device.type != "cuda":
        return torch.autocast("cpu", enabled=False), None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
    return torch.autocast("cuda", dtype=dtype), scaler


def fit(model: nn.Module, train_loader, test_loader, recipe: Recipe, *, epochs: int | None = None,
        checkpoint: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
        log: Callable[[str], None] | None = print, stop_at_accuracy: float | None = None,
        extra: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Train `model` (already on its device) and evaluate after every epoch.

    Returns the per-epoch history: train/test loss and accuracy, lr, seconds, images/s.
    checkpoint: file written atomically after each epoch; resume=True continues from it.
    stop_at_accuracy: end early once test accuracy (%) reaches this value.
    extra: JSON-able facts stored in the checkpoint (dataset name, seed...).
    """
    epochs = recipe.epochs if epochs is None else epochs
    device = next(model.parameters()).device
    optimizer = build_optimizer(model, recipe)
    total_steps = epochs * len(train_loader)
    scheduler = build_scheduler(optimizer, recipe, total_steps)
    history: list[dict[str, Any]] = []
    start_epoch = 0
    if resume:
        if checkpoint is None:
            raise CheckpointError("resume=True needs the checkpoint path to resume from")
        state = load_checkpoint(checkpoint, map_location=device)
        if state["config"] != model.config.to_dict():
            raise CheckpointError(f"{checkpoint} holds a different model ({state['config']}); "
                                  "resume with the same preset, or use a new output folder")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"]["torch"])
        if device.type == "cuda" and state["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(state["rng"]["cuda"], device)
        start_epoch, history = state["epoch"], list(state["history"])
    step_model = torch.compile(model) if recipe.compile else model
    autocast, scaler = _amp_context(device)
    for epoch in range(start_epoch, epochs):
        train_loader.set_epoch(epoch)
        model.train()
        bar = _progress_bar(len(train_loader), f"epoch {epoch + 1}/{epochs}", progress)
        seen, correct, loss_sum = 0, 0, 0.0
        start = time.perf_counter()
        for step, (x, y) in enumerate(train_loader):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast:
                logits = step_model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                lr = optimizer.param_groups[0]["lr"]
                raise TrainingDivergedError(
                    f"the loss became {loss_value} at epoch {epoch + 1}, step {step + 1} "
                    f"(lr {lr:.3g}); lower the learning rate, set grad_clip (e.g. 1.0), "
                    "or check the inputs for NaN values")
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if recipe.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            scheduler.step()
            n = y.numel()
            seen += n
            loss_sum += loss_value * n
            correct += (logits.argmax(1) == y).sum().item()
            if bar is not None:
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{100 * correct / seen:.2f}%",
                                    refresh=False)
        seconds = time.perf_counter() - start
        if bar is not None:
            bar.close()
        test = evaluate(model, test_loader)
        record = {"epoch": epoch + 1, "train_loss": loss_sum / seen,
                  "train_accuracy": 100.0 * correct / seen, "test_loss": test["loss"],
                  "test_accuracy": test["accuracy"], "lr": optimizer.param_groups[0]["lr"],
                  "seconds": seconds, "images_per_second": seen / seconds}
        history.append(record)
        if log is not None:
            log(f"epoch {epoch + 1:>2}/{epochs}  train loss {record['train_loss']:.4f} "
                f"acc {record['train_accuracy']:.2f}%  test loss {record['test_loss']:.4f} "
                f"acc {record['test_accuracy']:.2f}%  {seconds:.1f}s "
                f"({record['images_per_second']:,.0f} img/s)")
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "format": CHECKPOINT_FORMAT, "model": model.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "epoch": epoch + 1, "epochs": epochs, "config": model.config.to_dict(),
                "recipe": recipe.to_dict(), "history": history,
                "rng": {"torch": torch.get_rng_state(),
                        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None},
                "extra": dict(extra or {})})
        if stop_at_accuracy is not None and record["test_accuracy"] >= stop_at_accuracy:
            break
    return history
