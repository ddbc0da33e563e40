"""CUDA graphs for the training step (an option of the engine, `fit(..., cuda_graph=True)`).

A model this small (14k-206k parameters) leaves a GPU almost idle. One training step launches
a few hundred tiny kernels, and Python dispatches them one at a time, so the step's time goes
to launching, not to computing. A CUDA graph records every kernel of one step once (forward,
loss, backward, gradient clipping, the fused AdamW update, the running sums of loss and correct
predictions) and replays them all with one launch per batch. The arithmetic is the eager
step's (`vit_lib.engine.train_one_epoch`); only the launches are saved.

What a graph needs, and how this module provides it:
- fixed shapes and addresses: each batch is copied into the same input tensors; a smaller last
  batch of an epoch runs eagerly with the same model and optimiser;
- no host synchronisation inside the step: the loss of every step goes to a device buffer,
  checked for NaN every `CHECK_EVERY` steps (the error still names the first bad step);
- an optimiser that reads its learning rate from device memory: `graph_ready` turns each
  group's lr into a tensor (the scheduler then writes it in place) and sets `capturable`;
- bf16 autocast without its weight cache (fp16's gradient scaler syncs, so it is refused).
Checkpoints stay interchangeable with eager runs: `plain_optimizer_state` stores plain floats.
"""
from __future__ import annotations

import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from vit_lib.machinery.errors import CudaGraphError, TrainingDivergedError, arg

WARMUP_STEPS = 3      # eager steps on a side stream before capture (cuBLAS/cuDNN set-up, grads)
CHECK_EVERY = 50      # steps between checks of the losses for NaN (one host sync each)


def check_cuda_graph(device: torch.device, *, compile: bool = False, parallel: bool = False,
                     scaler: Any = None) -> None:
    """Refuse, with the reason and the fix, a run that cannot train with CUDA graphs."""
    if device.type != "cuda":
        raise CudaGraphError(f"CUDA graphs need a CUDA GPU, and this run trains on {device}; "
                             f"drop {arg('cuda_graph=True', '--cuda-graph')} (or train on a machine "
                             "with one)")
    if compile:
        raise CudaGraphError("CUDA graphs and torch.compile cannot both wrap the step; keep one "
                             "(torch.compile(mode='reduce-overhead') uses CUDA graphs itself)")
    if parallel:
        raise CudaGraphError("CUDA graphs are not supported under torchrun (DDP's gradient "
                             "all-reduce runs outside the graph); drop "
                             f"{arg('cuda_graph=True', '--cuda-graph')}")
    if scaler is not None:
        raise CudaGraphError("CUDA graphs need bf16 autocast, and this GPU has no bf16 (fp16's "
                             f"gradient scaler synchronises every step); drop "
                             f"{arg('cuda_graph=True', '--cuda-graph')}")


def graph_ready(optimizer: torch.optim.Optimizer) -> None:
    """Make `optimizer` capturable in place: lr as a 1-element tensor on the parameters'
    device (float32, as the fused kernels read it), `capturable` on CUDA. The scheduler keeps
    working: it fills the tensor instead of replacing a float."""
    for group in optimizer.param_groups:
        device = group["params"][0].device
        if not isinstance(group["lr"], torch.Tensor):
            group["lr"] = torch.tensor(float(group["lr"]), dtype=torch.float32, device=device)
        group["capturable"] = device.type == "cuda"


def plain_optimizer_state(state: dict[str, Any]) -> dict[str, Any]:
    """An optimiser state_dict with float learning rates and capturable off, as an eager run
    writes it (a copy: the optimiser's own groups are left as they are)."""
    groups = []
    for group in state["param_groups"]:
        group = dict(group)
        if isinstance(group.get("lr"), torch.Tensor):
            group["lr"] = float(group["lr"])
        if "initial_lr" in group and isinstance(group["initial_lr"], torch.Tensor):
            group["initial_lr"] = float(group["initial_lr"])
        group["capturable"] = False
        groups.append(group)
    return {**state, "param_groups": groups}


def plain_scheduler_state(state: dict[str, Any]) -> dict[str, Any]:
    """A scheduler state_dict whose last learning rates are floats, not device tensors."""
    last = state.get("_last_lr")
    if last is None:
        return state
    return {**state, "_last_lr": [float(v) for v in last]}


class GraphedTrainStep:
    """The training step of one model and optimiser, recorded once as a CUDA graph.

    Call `run_epoch(loader, scheduler)` once per epoch; it returns what `train_one_epoch`
    returns (mean loss, accuracy %, images seen). The first `WARMUP_STEPS` full batches of the
    first epoch run eagerly on a side stream (as PyTorch's graph guide asks), the next is
    captured, and every later full batch (batch_size images) is a replay.

    capture=False runs the same static-buffer code eagerly instead of recording it (for tests
    on machines without a GPU: same bookkeeping, no graph).
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, batch_size: int, *,
                 label_smoothing: float = 0.0, grad_clip: float = 0.0,
                 amp_dtype: torch.dtype | None = torch.bfloat16, capture: bool = True) -> None:
        self.model, self.optimizer, self.batch_size = model, optimizer, batch_size
        self.label_smoothing, self.grad_clip = label_smoothing, grad_clip
        self.device = next(model.parameters()).device
        self.amp_dtype = amp_dtype if self.device.type == "cuda" else None
        self.capture = capture
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.graph: torch.cuda.CUDAGraph | None = None
        self.warm = 0
        self.static_x: torch.Tensor | None = None
        self.static_y: torch.Tensor | None = None
        self.static_loss: torch.Tensor | None = None
        # running sums over the epoch: loss x images, correct predictions (device scalars)
        self.loss_sum = torch.zeros((), device=self.device)
        self.correct = torch.zeros((), dtype=torch.long, device=self.device)

    def _autocast(self):
        """bf16 autocast without the weight cache (cached casts would be freed between replays)."""
        return torch.autocast(self.device.type, dtype=self.amp_dtype or torch.float32,
                              enabled=self.amp_dtype is not None, cache_enabled=False)

    def _body(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Forward, loss, backward, clipping, update, running sums; returns the detached loss.
        Expects the gradients zeroed (or None: then backward creates them)."""
        with self._autocast():
            logits = self.model(x)                                   # [B, num_classes]
            loss = F.cross_entropy(logits.float(), y, label_smoothing=self.label_smoothing)
        loss.backward()
        if self.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.params, self.grad_clip)
        self.optimizer.step()
        loss = loss.detach()
        self.loss_sum.add_(loss * y.shape[0])
        self.correct.add_((logits.argmax(1) == y).sum())
        return loss

    def _eager(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        # once a step is recorded, keep its gradient tensors (replays write into them): zero them
        self.optimizer.zero_grad(set_to_none=self.static_loss is None)
        with warnings.catch_warnings():   # uncaptured steps of a capturable optimiser are meant
            warnings.filterwarnings("ignore", message=".*capturable=True.*")
            return self._body(x, y)

    def _record(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Capture one full step on static inputs; run it once for this batch."""
        self.static_x, self.static_y = x.clone(), y.clone()
        self.optimizer.zero_grad(set_to_none=True)   # backward allocates them in the graph's pool
        if not self.capture:
            self.static_loss = self._body(self.static_x, self.static_y)
            return self.static_loss
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static_loss = self._body(self.static_x, self.static_y)
        self.graph.replay()                           # capture records; this runs the step
        return self.static_loss

    def _replay(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.static_x.copy_(x)
        self.static_y.copy_(y)
        if self.graph is not None:
            self.graph.replay()
        else:
            self.optimizer.zero_grad(set_to_none=False)
            self.static_loss.copy_(self._body(self.static_x, self.static_y))
        return self.static_loss

    def step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """One training step on a batch (already on the device); returns its loss (a device
        scalar, valid until the next step)."""
        full = x.shape[0] == self.batch_size
        if not full:
            return self._eager(x, y)
        if self.static_loss is not None:
            return self._replay(x, y)
        if self.warm < WARMUP_STEPS:
            self.warm += 1
            if self.device.type != "cuda":
                return self._eager(x, y)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                loss = self._eager(x, y)
            torch.cuda.current_stream(self.device).wait_stream(side)
            return loss
        return self._record(x, y)

    def run_epoch(self, loader, scheduler=None, bar=None) -> dict[str, float]:
        """One pass over `loader` (batches x [B, C, H, W], y [B]) -> mean loss, accuracy (%),
        images seen. Raises TrainingDivergedError at the first check
        after a non-finite loss, naming the step where it happened."""
        self.model.train()
        self.loss_sum.zero_()
        self.correct.zero_()
        losses = torch.zeros(len(loader), device=self.device)
        seen, checked = 0, 0
        for step, (x, y) in enumerate(loader):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            losses[step] = self.step(x, y)
            seen += y.shape[0]
            if scheduler is not None:
                scheduler.step()
            if (step + 1) % CHECK_EVERY == 0:
                self._check(losses, checked, step + 1)
                checked = step + 1
            if bar is not None:
                bar.update(1)
                if step % 20 == 0:
                    bar.set_postfix(loss=f"{self.loss_sum.item() / seen:.4f}",
                                    acc=f"{100 * self.correct.item() / seen:.2f}%", refresh=False)
        self._check(losses, checked, len(loader))
        return {"loss": self.loss_sum.item() / max(seen, 1),
                "accuracy": 100.0 * self.correct.item() / max(seen, 1), "seen": seen}

    def _check(self, losses: torch.Tensor, start: int, end: int) -> None:
        window = losses[start:end]
        bad = (~torch.isfinite(window)).nonzero()
        if len(bad):
            first = start + int(bad[0])
            value = float(losses[first])
            lr = float(self.optimizer.param_groups[0]["lr"])
            raise TrainingDivergedError(
                f"the loss became {value} at step {first + 1} of the epoch (seen at step {end}; "
                f"lr now {lr:.3g}); lower the learning rate (recipe.lr), clip the gradients "
                "(recipe.grad_clip = 1.0), or check the inputs for NaN values")

