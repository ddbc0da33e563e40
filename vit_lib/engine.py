"""Lesson 05: the training engine - optimiser, learning-rate schedule, one epoch of training,
evaluation, and `fit`, the loop over epochs with checkpoints.

`fit` reads as the lesson's loop. What it leaves to the machinery: resuming and the random state
(`vit_lib.machinery.training`), checkpoint files (`vit_lib.machinery.checkpoint`), several
processes under torchrun (`vit_lib.machinery.distributed`: the same loop, data-parallel) and
CUDA graphs (`vit_lib.machinery.cuda_graphs`). `train_one_epoch` and `evaluate` are the
single-process code the lesson writes.
"""
from __future__ import annotations

import math
import os
import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from vit_lib.machinery import distributed, training
from vit_lib.machinery.cuda_graphs import check_cuda_graph
from vit_lib.machinery.errors import TrainingDivergedError
from vit_lib.machinery.runtime import amp_context, progress_bar
from vit_lib.presets import Recipe

__all__ = ["train_one_epoch", "evaluate"]


def build_optimizer(model: nn.Module, recipe: Recipe) -> torch.optim.Optimizer:
    """Adam (as the seed: one group, its weight decay, if any, on every parameter) or AdamW
    (decay only on weight matrices: not on vectors such as biases and norms, nor on the names
    the model lists in `model.no_weight_decay()`, e.g. a ViT's CLS token and positions).
    Only parameters with requires_grad are optimised (a frozen backbone stays as it is)."""
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if recipe.optimizer == "adam":
        cls = torch.optim.Adam
        groups = [{"params": [p for _, p in params], "weight_decay": recipe.weight_decay}]
    else:
        cls = torch.optim.AdamW
        skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
        decayed = {name for name, p in params if p.ndim >= 2 and name not in skip}
        groups = [{"params": [p for name, p in params if name in decayed],
                   "weight_decay": recipe.weight_decay},
                  {"params": [p for name, p in params if name not in decayed],
                   "weight_decay": 0.0}]
    betas = (0.9, recipe.beta2)
    try:   # fused kernels: one update for all parameters (CPU since torch 2.4, CUDA, MPS)
        return cls(groups, lr=recipe.lr, betas=betas, fused=True)
    except (RuntimeError, TypeError):
        return cls(groups, lr=recipe.lr, betas=betas)


def lr_factor(step: int, total_steps: int, recipe: Recipe) -> float:
    """Multiplier of the base lr at a step: linear warmup, then constant, or down to 0 at the
    last step along half a cosine ("cosine") or a straight line ("linear")."""
    warmup = int(recipe.warmup * total_steps)
    if step < warmup:
        return (step + 1) / warmup
    if recipe.schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
    if recipe.schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_scheduler(optimizer: torch.optim.Optimizer, recipe: Recipe, total_steps: int,
                    ) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: lr_factor(step, total_steps, recipe))


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, *,
                    label_smoothing: float = 0.0, grad_clip: float = 0.0,
                    amp: tuple[Any, Any] | None = None, bar=None) -> dict[str, float]:
    """One pass over `loader` (batches x [B, C, H, W], y [B]): forward, loss, backward, step.

    label_smoothing / grad_clip: as in the recipe (0 = off). amp: (autocast, scaler) from
    vit_lib.machinery.runtime.amp_context, None = plain fp32. bar: a progress bar to advance, or None.
    Returns the running means over the epoch: train loss, train accuracy (%), images seen.
    """
    device = next(model.parameters()).device
    autocast, scaler = amp if amp is not None else (None, None)
    model.train()
    seen, correct, loss_sum = 0, 0, 0.0
    for step, (x, y) in enumerate(loader):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        if autocast is not None:
            with autocast:
                logits = model(x)
                loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        else:
            logits = model(x)                                   # [B, num_classes]
            loss = F.cross_entropy(logits.float(), y, label_smoothing=label_smoothing)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            lr = optimizer.param_groups[0]["lr"]
            raise TrainingDivergedError(
                f"the loss became {loss_value} at step {step + 1} of the epoch (lr {lr:.3g}); "
                "lower the learning rate (recipe.lr), clip the gradients "
                "(recipe.grad_clip = 1.0), or check the inputs for NaN values")
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
        else:
            loss.backward()
        if grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        if scaler is not None:
            scaler.step(optimizer)
            scaler.update()
        else:
            optimizer.step()
        if scheduler is not None:
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
    return {"loss": loss_sum / max(seen, 1), "accuracy": 100.0 * correct / max(seen, 1),
            "seen": seen}


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


def fit(model: nn.Module, train_loader, test_loader, recipe: Recipe, *, epochs: int | None = None,
        checkpoint: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
        log: Callable[[str], None] | None = print, stop_at_accuracy: float | None = None,
        extra: dict[str, Any] | None = None, cuda_graph: bool = False,
        train_epoch: Callable[..., dict[str, float]] | None = None) -> list[dict[str, Any]]:
    """Train `model` (already on its device) with `train_one_epoch`, evaluate after every epoch.

    Returns the per-epoch history: train/test loss and accuracy, lr, seconds, images/s.
    checkpoint: written atomically after each epoch; resume=True continues from it (only lr,
    grad_clip, compile and epochs may change: vit_lib.machinery.training).
    stop_at_accuracy: end once test accuracy (%) reaches it. extra: facts for the checkpoint.
    cuda_graph: replay the step as a CUDA graph on a GPU (same arithmetic). train_epoch: an
    epoch function like train_one_epoch (lesson 07's vit_lib.cnn.distillation(teacher)).
    Under torchrun every process calls fit alike; rank 0 evaluates, logs and writes.
    """
    epochs = recipe.epochs if epochs is None else epochs
    device = next(model.parameters()).device
    parallel = distributed.is_initialized()
    if not distributed.is_main():                  # rank 0 alone logs and writes
        log, progress, checkpoint_out = None, False, None
    else:
        checkpoint_out = checkpoint
    with distributed.agreement("preparing the training"):
        if parallel:
            model = training.prepare_data_parallel(model, train_loader, device)
        optimizer = build_optimizer(model, recipe)
        total_steps = epochs * len(train_loader)
        scheduler = build_scheduler(optimizer, recipe, total_steps)
        amp = amp_context(device)                  # (autocast, fp16 gradient scaler) or Nones
        if cuda_graph:
            check_cuda_graph(device, compile=recipe.compile, parallel=parallel, scaler=amp[1])
        start_epoch, history = 0, []
        if resume:
            start_epoch, history = training.resume_training(
                checkpoint, model, optimizer, scheduler, amp[1], recipe, epochs, device)
        else:
            training.decorrelate_rng()             # ranks > 0: their own dropout masks
        run_epoch = training.epoch_runner(model, train_loader, optimizer, recipe, amp,
                                          train_epoch or train_one_epoch, cuda_graph=cuda_graph,
                                          parallel=parallel)
    saved_epoch = start_epoch if resume else None  # the epoch the checkpoint file holds
    for epoch in range(start_epoch, epochs):
        train_loader.set_epoch(epoch)
        bar = progress_bar(len(train_loader), f"epoch {epoch + 1}/{epochs}", progress)
        start = time.perf_counter()
        try:
            train = run_epoch(train_loader, scheduler, bar)
        except TrainingDivergedError as exc:
            raise TrainingDivergedError(f"epoch {epoch + 1}: {exc.args[0]}") from None
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - start
        train, rank_rngs = training.gather_epoch(train, device)   # all ranks' images
        with distributed.agreement(f"evaluating and saving epoch {epoch + 1}") as shared:
            if distributed.is_main():
                test = evaluate(model, test_loader)
                record = {"epoch": epoch + 1, "train_loss": train["loss"],
                          "train_accuracy": train["accuracy"], "test_loss": test["loss"],
                          "test_accuracy": test["accuracy"],
                          "lr": float(optimizer.param_groups[0]["lr"]),
                          "seconds": seconds, "images_per_second": train["seen"] / seconds}
                history.append(record)
                if log is not None:
                    log(format_epoch(record, epochs))
                if checkpoint_out is not None:
                    training.save_training_state(checkpoint_out, model, optimizer, scheduler,
                                                 amp[1], recipe, epoch + 1, epochs, history,
                                                 extra, rank_rngs, saved_epoch)
                shared.value = record
        record = shared.value
        if not distributed.is_main():
            history.append(record)
        if checkpoint is not None:
            saved_epoch = epoch + 1
        if stop_at_accuracy is not None and record["test_accuracy"] >= stop_at_accuracy:
            break
    return history


def format_epoch(record: dict[str, Any], epochs: int) -> str:
    """The log line of one epoch's history record, as fit prints it."""
    return (f"epoch {record['epoch']:>2}/{epochs}  train loss {record['train_loss']:.4f} "
            f"acc {record['train_accuracy']:.2f}%  test loss {record['test_loss']:.4f} "
            f"acc {record['test_accuracy']:.2f}%  {record['seconds']:.1f}s "
            f"({record['images_per_second']:,.0f} img/s)")
