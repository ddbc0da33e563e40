"""Lesson 05: the training engine - optimiser, learning-rate schedule, one epoch of training,
evaluation, and `fit`, the loop over epochs with checkpoints.

Device choice and seeding live in `vit_lib.runtime`, checkpoint files in `vit_lib.checkpoint`.
Under torchrun (a process group from `vit_lib.distributed`), `fit` trains data-parallel with
DistributedDataParallel; `train_one_epoch` and `evaluate` stay the single-process code.
"""
from __future__ import annotations

import math
import os
import time
import warnings
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from vit_lib import distributed
from vit_lib.checkpoint import (CHECKPOINT_FORMAT, CheckpointError, checkpoint_config,
                                load_checkpoint, save_checkpoint)
from vit_lib.errors import OutputError, UserError
from vit_lib.graphs import (GraphedTrainStep, check_cuda_graph, graph_ready, plain_optimizer_state,
                            plain_scheduler_state)
from vit_lib.models import architecture_of
from vit_lib.presets import Recipe
from vit_lib.runtime import amp_context, progress_bar

__all__ = ["train_one_epoch", "evaluate"]


class TrainingDivergedError(UserError, RuntimeError):
    """The loss became NaN or infinite."""


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


def train_one_epoch(model: nn.Module, loader, optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, *,
                    label_smoothing: float = 0.0, grad_clip: float = 0.0,
                    amp: tuple[Any, Any] | None = None, bar=None) -> dict[str, float]:
    """One pass over `loader` (batches x [B, C, H, W], y [B]): forward, loss, backward, step.

    label_smoothing / grad_clip: as in the recipe (0 = off). amp: (autocast, scaler) from
    vit_lib.runtime.amp_context, None = plain fp32. bar: a progress bar to advance, or None.
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
                "lower the learning rate (--lr), clip the gradients (--grad-clip 1.0), "
                "or check the inputs for NaN values")
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


# Recipe fields a resumed run may change: the rest (optimiser, batch size, schedule shape,
# inputs, augmentation...) would make the continued run a different experiment.
RESUMABLE_CHANGES = ("lr", "epochs", "grad_clip", "compile")


def _check_resumable(state: dict[str, Any], recipe: Recipe, epochs: int, checkpoint) -> None:
    """Refuse to resume with a recipe that changes more than RESUMABLE_CHANGES, or too few epochs."""
    stored = state["recipe"]
    changed = [f"{name} {stored[name]!r} -> {value!r}" for name, value in recipe.to_dict().items()
               if name not in RESUMABLE_CHANGES and name in stored and stored[name] != value]
    if changed:
        raise CheckpointError(f"{checkpoint} was trained with another recipe ({'; '.join(changed)}); "
                              f"a resumed run may change only {', '.join(RESUMABLE_CHANGES)}")
    if epochs < state["epoch"]:
        raise CheckpointError(f"{checkpoint} already holds {state['epoch']} epochs; "
                              f"epochs={epochs} would undo training: ask for at least {state['epoch']}")


def fit(model: nn.Module, train_loader, test_loader, recipe: Recipe, *, epochs: int | None = None,
        checkpoint: str | os.PathLike | None = None, resume: bool = False, progress: bool = True,
        log: Callable[[str], None] | None = print, stop_at_accuracy: float | None = None,
        extra: dict[str, Any] | None = None, cuda_graph: bool = False) -> list[dict[str, Any]]:
    """Train `model` (already on its device) with `train_one_epoch`, evaluate after every epoch.

    Returns the per-epoch history: train/test loss and accuracy, lr, seconds, images/s.
    checkpoint: file written atomically after each epoch; resume=True continues from it.
    stop_at_accuracy: end early once test accuracy (%) reaches this value.
    extra: JSON-able facts stored in the checkpoint (dataset name, seed...).
    cuda_graph: on a CUDA GPU with bf16, record the training step once as a CUDA graph and
    replay it for every full batch (`vit_lib.graphs`) instead of `train_one_epoch`: the same
    arithmetic, far fewer kernel launches; refused (CudaGraphError) on other devices, on GPUs
    without bf16, with torch.compile and under torchrun.

    Resuming restores weights, optimiser, schedule, RNG, history (and the fp16 gradient scaler
    on GPUs without bf16), and may change only `recipe.lr`, `recipe.grad_clip` and the number
    of epochs (CheckpointError otherwise).
    A new lr or epoch count puts the schedule on the curve of the new recipe at the step reached:
    with a constant schedule (no warmup) more epochs continue exactly as an uninterrupted run of
    that length; with a cosine one the lr jumps to where the longer curve is at that step.
    A checkpoint that cannot be written raises OutputError; the previous one stays intact.

    Under torchrun (`vit_lib.distributed.is_initialized()`), every process calls fit with the
    same arguments: the model is wrapped in DistributedDataParallel, the loader's global batch
    is cut into one part per process (TensorLoader.set_shard; gradients are weighted so they
    equal the mean over the global batch, even for an uneven last batch), and a diverged loss
    on any rank stops every rank at the same step. Rank 0 alone evaluates, logs, shows the
    progress bar and writes the checkpoint (the plain model's state_dict, so checkpoints of 1
    and N processes are interchangeable, plus every rank's RNG state); an error there stops all
    ranks (vit_lib.distributed.agreement). Every rank returns rank 0's history.
    """
    epochs = recipe.epochs if epochs is None else epochs
    device = next(model.parameters()).device
    parallel = distributed.is_initialized()
    if not distributed.is_main():
        log, progress, checkpoint_out = None, False, None
    else:
        checkpoint_out = checkpoint
    with distributed.agreement("preparing the training"):
        if parallel:
            model = _prepare_data_parallel(model, train_loader, device)
        optimizer = build_optimizer(model, recipe)
        total_steps = epochs * len(train_loader)
        scheduler = build_scheduler(optimizer, recipe, total_steps)
        history: list[dict[str, Any]] = []
        start_epoch = 0
        amp = amp_context(device)
        scaler = amp[1]            # fp16 on CUDA: its loss scale is part of the training state
        if cuda_graph:
            check_cuda_graph(device, compile=recipe.compile, parallel=parallel, scaler=scaler)
        if resume:
            if checkpoint is None:
                raise CheckpointError("resume=True needs the checkpoint path to resume from")
            state = load_checkpoint(checkpoint, map_location=device)
            if checkpoint_config(state) != model.config:
                raise CheckpointError(f"{checkpoint} holds a different model ({state['config']}); "
                                      "resume with the same preset, or use a new output folder")
            _check_resumable(state, recipe, epochs, checkpoint)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if state["epochs"] != epochs or state["recipe"]["lr"] != recipe.lr:
                # continue on the new recipe's curve: lr = base lr x factor at the next step
                scheduler.base_lrs = [recipe.lr for _ in optimizer.param_groups]
                for group in optimizer.param_groups:
                    group["initial_lr"] = recipe.lr
                    group["lr"] = recipe.lr * lr_factor(scheduler.last_epoch, total_steps, recipe)
            if scaler is not None and state.get("scaler") is not None:
                scaler.load_state_dict(state["scaler"])
            _restore_rng(state["rng"], device)
            start_epoch, history = state["epoch"], list(state["history"])
        elif parallel and not distributed.is_main():
            _decorrelate_rng()
        graphed = None
        if cuda_graph:
            graph_ready(optimizer)
            graphed = GraphedTrainStep(model, optimizer, train_loader.batch_size,
                                       label_smoothing=recipe.label_smoothing,
                                       grad_clip=recipe.grad_clip)
    saved_epoch = start_epoch if resume else None     # the epoch the checkpoint file holds
    if parallel:
        step_model = _data_parallel(model, device, train_loader, recipe.compile)
    else:
        step_model = torch.compile(model) if recipe.compile else model
    for epoch in range(start_epoch, epochs):
        train_loader.set_epoch(epoch)
        bar = progress_bar(len(train_loader), f"epoch {epoch + 1}/{epochs}", progress)
        start = time.perf_counter()
        try:
            if graphed is not None:
                train = graphed.run_epoch(train_loader, scheduler, bar)
            else:
                train = train_one_epoch(step_model, train_loader, optimizer, scheduler,
                                        label_smoothing=recipe.label_smoothing,
                                        grad_clip=recipe.grad_clip, amp=amp, bar=bar)
        except TrainingDivergedError as exc:
            raise TrainingDivergedError(f"epoch {epoch + 1}: {exc}") from None
        finally:
            if bar is not None:
                bar.close()
        seconds = time.perf_counter() - start
        rank_rngs = None
        if parallel:   # the epoch's statistics over all shards, and every rank's RNG state
            train, rank_rngs = _gather_epoch(train, device)
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
                    try:
                        save_checkpoint(checkpoint_out, {
                            "format": CHECKPOINT_FORMAT, "model": model.state_dict(),
                            "optimizer": plain_optimizer_state(optimizer.state_dict()),
                            "scheduler": plain_scheduler_state(scheduler.state_dict()),
                            "epoch": epoch + 1, "epochs": epochs,
                            "arch": architecture_of(model.config),
                            "config": model.config.to_dict(),
                            "recipe": recipe.to_dict(), "history": history,
                            "rng": {**_rng_state(device),
                                    **({"ranks": rank_rngs} if rank_rngs is not None else {})},
                            "extra": dict(extra or {}),
                            **({"scaler": scaler.state_dict()} if scaler is not None else {})})
                    except OutputError as exc:
                        kept = ("no checkpoint of this run had been written yet"
                                if saved_epoch is None
                                else f"the last good checkpoint (epoch {saved_epoch}) is intact")
                        raise OutputError(f"epoch {epoch + 1} finished but {exc}; {kept}") from exc
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


def _rng_state(device: torch.device) -> dict[str, Any]:
    """This process's RNG states (CPU byte tensors), as a checkpoint stores them."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _restore_rng(rng: dict[str, Any], device: torch.device) -> None:
    """Restore the RNG states a checkpoint holds. Several processes: each rank takes its own
    state when the checkpoint holds one per rank of the same world size; otherwise (a checkpoint
    of another number of processes) rank 0 takes the stored state and the others derive theirs
    from it (`_decorrelate_rng`)."""
    ranks = rng.get("ranks")
    if distributed.is_initialized() and ranks is not None and len(ranks) == distributed.world_size():
        rng = ranks[distributed.rank()]
    # RNG states are CPU byte tensors; the checkpoint was mapped onto the training device
    torch.set_rng_state(rng["torch"].cpu())
    if device.type == "cuda" and rng.get("cuda") is not None:
        torch.cuda.set_rng_state(rng["cuda"].cpu(), device)
    if distributed.is_initialized() and not distributed.is_main() and (
            ranks is None or len(ranks) != distributed.world_size()):
        _decorrelate_rng()


def _decorrelate_rng() -> None:
    """Ranks other than 0: reseed the global generators from the current state and the rank, so
    dropout masks differ between processes (deterministically, for resuming)."""
    torch.manual_seed(int(torch.randint(0, 2**62, (1,))) + distributed.rank())


def _prepare_data_parallel(model: nn.Module, train_loader, device: torch.device) -> nn.Module:
    """Check the global batch splits over the processes and shard the loader; on CUDA, make
    BatchNorm layers compute their statistics over the global batch (SyncBatchNorm)."""
    if not hasattr(train_loader, "set_shard"):
        raise UserError(f"training under torchrun needs a loader that serves one part of each "
                        f"batch per process (vit_lib.data.TensorLoader); got "
                        f"{type(train_loader).__name__}")
    distributed.check_global_batch(train_loader.batch_size)
    train_loader.set_shard(distributed.rank(), distributed.world_size())
    if device.type == "cuda":   # SyncBatchNorm only runs on GPUs; on CPUs each rank's own batch
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    return model


class _DivergeTogether(nn.Module):
    """Wraps the DDP model for train_one_epoch: when the logits of any rank are not finite,
    every rank's become NaN, so all ranks raise TrainingDivergedError at the same step instead
    of the others waiting for the gradients of the one that stopped."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        logits = self.module(images)                                  # [B / world, classes]
        if not distributed.all_finite(logits):
            logits = torch.full_like(logits, float("nan"))
        return logits


def _mean_over_global_batch(loader, bucket):   # no annotations: DDP checks them as objects
    """DDP communication hook (returns a Future of the reduced bucket): weight this rank's gradients (the mean over its part) by the
    part's share of the global batch and sum over ranks, giving the mean over the global batch.
    Equal parts (every full batch): divide by the number of ranks, as DDP itself does."""
    grads = bucket.buffer()
    share = getattr(loader, "shard_share", None)
    if share is None:
        grads.div_(distributed.world_size())
    else:
        grads.mul_(share)
    work = torch.distributed.all_reduce(grads, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def _data_parallel(model: nn.Module, device: torch.device, train_loader, compile: bool) -> nn.Module:
    """The module train_one_epoch steps under torchrun: DDP around `model` (compiled when the
    recipe asks), with the global-batch gradient hook, inside _DivergeTogether."""
    from torch.nn.parallel import DistributedDataParallel
    # the gradients of the CLS token and positions come out of a broadcast with other strides
    # than DDP's buffer: one extra copy of a few numbers per step, not worth a warning per run
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    ddp = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    ddp.register_comm_hook(train_loader, _mean_over_global_batch)
    return _DivergeTogether(torch.compile(ddp) if compile else ddp)


def _gather_epoch(train: dict[str, float], device: torch.device,
                  ) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """One all_gather after an epoch: the train loss / accuracy over every rank's images (what
    one process would report) and every rank's RNG states (for the checkpoint)."""
    parts = distributed.all_gather((train["loss"] * train["seen"],
                                    train["accuracy"] * train["seen"] / 100.0, train["seen"],
                                    _rng_state(device)))
    seen = sum(p[2] for p in parts)
    merged = {"loss": sum(p[0] for p in parts) / max(seen, 1),
              "accuracy": 100.0 * sum(p[1] for p in parts) / max(seen, 1), "seen": seen}
    return merged, [p[3] for p in parts]
