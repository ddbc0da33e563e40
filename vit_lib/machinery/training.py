"""The bookkeeping behind `vit_lib.engine.fit` that lesson 05 does not teach.

- **Resuming**: `resume_training` checks that a checkpoint fits the model and recipe, then
  restores weights, optimiser, schedule, the fp16 gradient scaler and the random state;
  `save_training_state` writes all of that atomically after an epoch.
- **Random state**: each process's generators go into the checkpoint and come back on resume;
  under torchrun every rank other than 0 derives its own (different dropout masks, still
  reproducible).
- **Several processes** (torchrun): the model is wrapped in DistributedDataParallel, the loader
  serves each rank its part of every global batch, gradients are weighted so that they are the
  mean over the global batch even for an uneven last batch, a diverged loss on any rank stops
  every rank at the same step, and the epoch's statistics are gathered over all ranks.
- **CUDA graphs**: `epoch_runner` picks the recorded step (`vit_lib.machinery.cuda_graphs`) or
  the lesson's `train_one_epoch`.

A resumed run may change only the learning rate, the gradient clipping, the number of epochs and
torch.compile (RESUMABLE_CHANGES). A new lr or epoch count puts the schedule on the new recipe's
curve at the step reached: with a constant schedule (no warmup) more epochs continue exactly as
an uninterrupted run of that length; with a cosine one the lr jumps to where the longer curve is.
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Callable

import torch
from torch import nn

from vit_lib.machinery import distributed
from vit_lib.machinery.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
from vit_lib.machinery.cuda_graphs import (
    GraphedTrainStep,
    graph_ready,
    plain_optimizer_state,
    plain_scheduler_state,
)
from vit_lib.machinery.errors import CheckpointError, CudaGraphError, OutputError, UserError, arg

# Recipe fields a resumed run may change: the rest (optimiser, batch size, schedule shape,
# inputs, augmentation...) would make the continued run a different experiment.
RESUMABLE_CHANGES = ("lr", "epochs", "grad_clip", "compile")


def _check_resumable(state: dict[str, Any], model: nn.Module, recipe, epochs: int,
                     checkpoint) -> None:
    """Refuse a checkpoint of another model, a recipe that changes more than
    RESUMABLE_CHANGES, or fewer epochs than it holds."""
    config = model.config
    if (state.get("arch", "vit") != config.architecture
            or type(config).from_dict(state["config"]) != config):
        raise CheckpointError(f"{checkpoint} holds a different model ({state['config']}); "
                              "resume with the same preset, or use a new output folder")
    stored = state["recipe"]
    changed = [f"{name} {stored[name]!r} -> {value!r}" for name, value in recipe.to_dict().items()
               if name not in RESUMABLE_CHANGES and name in stored and stored[name] != value]
    if changed:
        raise CheckpointError(f"{checkpoint} was trained with another recipe ({'; '.join(changed)}); "
                              f"a resumed run may change only {', '.join(RESUMABLE_CHANGES)}")
    if epochs < state["epoch"]:
        raise CheckpointError(f"{checkpoint} already holds {state['epoch']} epochs; "
                              f"epochs={epochs} would undo training: ask for at least {state['epoch']}")


def resume_training(checkpoint: str | os.PathLike | None, model: nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler, scaler, recipe, epochs: int,
                    device: torch.device) -> tuple[int, list[dict[str, Any]]]:
    """Restore a run from `checkpoint` into model, optimizer, scheduler (and the fp16 scaler);
    returns (epochs already trained, their history). The scheduler must already be built for
    the new recipe and number of epochs."""
    if checkpoint is None:
        raise CheckpointError("resume=True needs the checkpoint path to resume from")
    state = load_checkpoint(checkpoint, map_location=device)
    _check_resumable(state, model, recipe, epochs, checkpoint)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    if state["epochs"] != epochs or state["recipe"]["lr"] != recipe.lr:
        # continue on the new recipe's curve: lr = base lr x factor at the next step
        scheduler.base_lrs = [recipe.lr for _ in optimizer.param_groups]
        for group, factor in zip(optimizer.param_groups, scheduler.lr_lambdas, strict=True):
            group["initial_lr"] = recipe.lr
            group["lr"] = recipe.lr * factor(scheduler.last_epoch)
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    restore_rng(state["rng"], device)
    return state["epoch"], list(state["history"])


def save_training_state(path: str | os.PathLike, model: nn.Module, optimizer, scheduler, scaler,
                        recipe, epoch: int, epochs: int, history: list[dict[str, Any]],
                        extra: dict[str, Any] | None, rank_rngs: list[dict[str, Any]] | None,
                        saved_epoch: int | None) -> None:
    """Write everything `resume_training` needs after `epoch`; a failed write raises
    OutputError saying whether an earlier checkpoint (`saved_epoch`) is still intact."""
    device = next(model.parameters()).device
    try:
        save_checkpoint(path, {
            "format": CHECKPOINT_FORMAT, "model": model.state_dict(),
            "optimizer": plain_optimizer_state(optimizer.state_dict()),
            "scheduler": plain_scheduler_state(scheduler.state_dict()),
            "epoch": epoch, "epochs": epochs, "arch": model.config.architecture,
            "config": model.config.to_dict(), "recipe": recipe.to_dict(), "history": history,
            "rng": {**rng_state(device), **({"ranks": rank_rngs} if rank_rngs is not None else {})},
            "extra": dict(extra or {}),
            **({"scaler": scaler.state_dict()} if scaler is not None else {})})
    except OutputError as exc:
        kept = ("no checkpoint of this run had been written yet" if saved_epoch is None
                else f"the last good checkpoint (epoch {saved_epoch}) is intact")
        raise OutputError(f"epoch {epoch} finished but {exc.args[0]}; {kept}") from exc


def epoch_runner(model: nn.Module, train_loader, optimizer, recipe, amp, train_one_epoch: Callable,
                 *, cuda_graph: bool, parallel: bool) -> Callable:
    """A function (loader, scheduler, bar) -> epoch statistics: the CUDA-graph step, or the
    lesson's `train_one_epoch` on the model (under torchrun: wrapped in DDP; compiled when the
    recipe asks)."""
    if cuda_graph:
        if getattr(train_one_epoch, "__name__", None) != "train_one_epoch":
            raise CudaGraphError("CUDA graphs replay the lesson's training step; they cannot "
                                 "record another epoch function (such as distillation): drop "
                                 f"{arg('cuda_graph=True', '--cuda-graph')}")
        graph_ready(optimizer)
        graphed = GraphedTrainStep(model, optimizer, train_loader.batch_size,
                                   label_smoothing=recipe.label_smoothing,
                                   grad_clip=recipe.grad_clip)
        return graphed.run_epoch
    device = next(model.parameters()).device
    if parallel:
        step_model = _data_parallel(model, device, train_loader, recipe.compile)
    else:
        step_model = torch.compile(model) if recipe.compile else model

    def run(loader, scheduler, bar) -> dict[str, float]:
        return train_one_epoch(step_model, loader, optimizer, scheduler,
                               label_smoothing=recipe.label_smoothing,
                               grad_clip=recipe.grad_clip, amp=amp, bar=bar)
    return run


def rng_state(device: torch.device) -> dict[str, Any]:
    """This process's RNG states (CPU byte tensors), as a checkpoint stores them."""
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def restore_rng(rng: dict[str, Any], device: torch.device) -> None:
    """Restore the RNG states a checkpoint holds. Several processes: each rank takes its own
    state when the checkpoint holds one per rank of the same world size; otherwise (a checkpoint
    of another number of processes) rank 0 takes the stored state and the others derive theirs
    from it (`decorrelate_rng`)."""
    ranks = rng.get("ranks")
    if distributed.is_initialized() and ranks is not None and len(ranks) == distributed.world_size():
        rng = ranks[distributed.rank()]
    # RNG states are CPU byte tensors; the checkpoint was mapped onto the training device
    torch.set_rng_state(rng["torch"].cpu())
    if device.type == "cuda" and rng.get("cuda") is not None:
        torch.cuda.set_rng_state(rng["cuda"].cpu(), device)
    if distributed.is_initialized() and not distributed.is_main() and (
            ranks is None or len(ranks) != distributed.world_size()):
        decorrelate_rng()


def decorrelate_rng() -> None:
    """Ranks other than 0: reseed the global generators from the current state and the rank, so
    dropout masks differ between processes (deterministically, for resuming)."""
    if distributed.is_initialized() and not distributed.is_main():
        torch.manual_seed(int(torch.randint(0, 2**62, (1,))) + distributed.rank())


def prepare_data_parallel(model: nn.Module, train_loader, device: torch.device) -> nn.Module:
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

    def forward(self, images: torch.Tensor, **kwargs: Any):
        logits = self.module(images, **kwargs)                        # [B / world, classes]
        if isinstance(logits, tuple):      # a distilled ViT's two heads (return_both=True)
            if not all(distributed.all_finite(part) for part in logits):
                logits = tuple(torch.full_like(part, float("nan")) for part in logits)
        elif not distributed.all_finite(logits):
            logits = torch.full_like(logits, float("nan"))
        return logits


def _mean_over_global_batch(loader, bucket):   # no annotations: DDP checks them as objects
    """DDP communication hook (returns a Future of the reduced bucket): weight this rank's
    gradients (the mean over its part) by the part's share of the global batch and sum over
    ranks, giving the mean over the global batch. Equal parts (every full batch): divide by the
    number of ranks, as DDP itself does."""
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


def gather_epoch(train: dict[str, float], device: torch.device,
                 ) -> tuple[dict[str, float], list[dict[str, Any]] | None]:
    """Under torchrun, one all_gather after an epoch: the train loss / accuracy over every
    rank's images (what one process would report) and every rank's RNG states (for the
    checkpoint). In one process: the epoch's own statistics and None."""
    if not distributed.is_initialized():
        return train, None
    parts = distributed.all_gather((train["loss"] * train["seen"],
                                    train["accuracy"] * train["seen"] / 100.0, train["seen"],
                                    rng_state(device)))
    seen = sum(p[2] for p in parts)
    merged = {"loss": sum(p[0] for p in parts) / max(seen, 1),
              "accuracy": 100.0 * sum(p[1] for p in parts) / max(seen, 1), "seen": seen}
    return merged, [p[3] for p in parts]
