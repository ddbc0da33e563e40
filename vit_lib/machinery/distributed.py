"""Data-parallel training across processes: the process group that torchrun's processes share.

    torchrun --standalone --nproc_per_node=2 -m vit_lib train --preset seed --out runs/ddp

torchrun starts one process per worker and gives each RANK (0..WORLD_SIZE-1), WORLD_SIZE and
LOCAL_RANK (its index on this machine) in the environment. `process_group` joins them (gloo on
CPU, nccl on CUDA, each process on the GPU of its local rank); `vit_lib.engine.fit` then wraps the
model in DistributedDataParallel, and `vit_lib.data.TensorLoader.set_shard` gives each process
its part of every global batch. A plain `python` run (no torchrun variables, or WORLD_SIZE=1)
starts no group: every helper here then answers as for a single process.

Errors: work that only rank 0 does (writing a checkpoint, taking the output folder's lock) or
that may fail on one rank only runs inside `agreement(...)`: afterwards every rank learns
whether any rank failed, so all of them stop with the same error instead of waiting for a peer
that has gone. A collective that still waits longer than the process-group timeout
(VIT_DIST_TIMEOUT seconds, default 600) fails with an error instead of hanging.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator

import torch
import torch.distributed as dist

from vit_lib.machinery.errors import (
    DeviceError,
    DistributedError,
    RankCrashedError,
    RankFailedError,
    UserError,
    arg,
)
from vit_lib.machinery.runtime import parse_device

ENV_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
TIMEOUT_VAR = "VIT_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 600.0
BACKENDS = ("auto", "gloo", "nccl")

_DEVICE_CPU = arg("device='cpu'", "--device cpu")
_DEVICE_CUDA = arg("device='cuda'", "--device cuda")
_DIST_BACKEND_GLOO = arg("backend='gloo'", "--dist-backend gloo")
_DIST_BACKEND_NCCL = arg("backend='nccl'", "--dist-backend nccl")


def launched() -> bool:
    """True when torchrun (or a launcher setting RANK, WORLD_SIZE and LOCAL_RANK) started us
    as one of several processes. WORLD_SIZE=1 counts as a plain single-process run."""
    if not all(name in os.environ for name in ENV_VARS):
        return False
    return _env_int("WORLD_SIZE") > 1


def _env_int(name: str) -> int:
    text = os.environ.get(name, "")
    try:
        value = int(text)
    except ValueError:
        raise DistributedError(f"the environment variable {name}={text!r} is not a whole number; "
                               "start the processes with torchrun, which sets it") from None
    if value < 0:
        raise DistributedError(f"the environment variable {name}={value} is negative; start the "
                               "processes with torchrun, which sets it")
    return value


def is_initialized() -> bool:
    """True inside a process group (several processes training together)."""
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    """This process's rank, 0..world_size()-1 (0 without a process group)."""
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    """How many processes train together (1 without a process group)."""
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, the process that writes files and prints (always true when alone)."""
    return rank() == 0


def env_rank() -> int:
    """RANK from the environment before the group exists (0 when not launched by torchrun),
    e.g. to keep the other ranks quiet while the command line is still being parsed."""
    return _env_int("RANK") if launched() else 0


def timeout_seconds() -> float:
    """The process-group timeout: $VIT_DIST_TIMEOUT seconds, else 600."""
    text = os.environ.get(TIMEOUT_VAR)
    if text is None or not text.strip():
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise DistributedError(f"{TIMEOUT_VAR}={text!r} must be a positive number of seconds")
    return value


def choose_device(device: str, local_rank: int) -> torch.device:
    """The device of the process with this local rank: 'auto' and 'cuda' give cuda:LOCAL_RANK
    when CUDA is present ('auto' falls back to the CPU), 'cpu' the CPU. One GPU per process:
    a named GPU (cuda:1) or Apple's MPS is refused with the way to fix it."""
    try:
        name, index = parse_device(device)
    except DeviceError:
        name, index = "unknown", None          # refused at the end, in torchrun's terms
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cpu" and index is None:
        return torch.device("cpu")
    if name == "cuda" and index is not None:
        raise DistributedError(
            f"{arg('device=', '--device ')}{device}: under torchrun each process uses the GPU of "
            f"its local rank (process 0 cuda:0, process 1 cuda:1...); pass {_DEVICE_CUDA} (or "
            "auto), and choose which GPUs with CUDA_VISIBLE_DEVICES")
    if name == "cuda":
        if not torch.cuda.is_available():
            raise DistributedError(f"{_DEVICE_CUDA} was requested but PyTorch sees no "
                                   f"CUDA GPU here; use {_DEVICE_CPU} (gloo), or install a CUDA build")
        count = torch.cuda.device_count()
        if local_rank >= count:
            raise DistributedError(
                f"local rank {local_rank} has no GPU of its own: this machine shows {count} "
                f"GPU{'s' if count != 1 else ''}; start at most {count} processes per machine "
                f"(torchrun --nproc_per_node={count})")
        return torch.device("cuda", local_rank)
    if name == "mps" and index is None:
        raise DistributedError("Apple's MPS backend cannot train across processes; use "
                               f"{_DEVICE_CPU} under torchrun, or train in one process on mps")
    raise DistributedError(f"unknown device {device!r}; use auto, cpu or cuda under torchrun")


def choose_backend(backend: str, device: torch.device) -> str:
    """'auto': nccl for CUDA devices, gloo for the CPU. nccl on the CPU is refused."""
    if backend not in BACKENDS:
        raise DistributedError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend == "auto":
        return "nccl" if device.type == "cuda" else "gloo"
    if backend == "nccl":
        if device.type != "cuda":
            raise DistributedError(f"{_DIST_BACKEND_NCCL} needs CUDA GPUs but this run "
                                   f"trains on the {device.type.upper()}; use {_DIST_BACKEND_GLOO} "
                                   f"(or auto) for CPU training, or {_DEVICE_CUDA} on a GPU machine")
        if not dist.is_nccl_available():
            raise DistributedError(f"{_DIST_BACKEND_NCCL}: this PyTorch was built without "
                                   f"NCCL; use {_DIST_BACKEND_GLOO} (or auto)")
    return backend


@contextmanager
def process_group(device: str = "auto", backend: str = "auto") -> Iterator[torch.device]:
    """Join the process group torchrun set up (env:// rendezvous) and yield this process's
    device; leave the group on the way out, whatever happened."""
    for name in ENV_VARS:
        _env_int(name)
    rank_, world, local = _env_int("RANK"), _env_int("WORLD_SIZE"), _env_int("LOCAL_RANK")
    if rank_ >= world:
        raise DistributedError(f"RANK={rank_} is not below WORLD_SIZE={world}; start the "
                               "processes with torchrun, which sets both")
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
    if missing:
        raise DistributedError(f"{' and '.join(missing)} not set: the processes cannot find each "
                               "other; start them with torchrun (which sets them), or set them "
                               "to the address and a free port of the rank-0 machine")
    dev = choose_device(device, local)
    name = choose_backend(backend, dev)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    timeout = timedelta(seconds=timeout_seconds())
    dist.init_process_group(name, timeout=timeout, rank=rank_, world_size=world,
                            **({"device_id": dev} if name == "nccl" else {}))
    try:
        yield dev
    finally:
        dist.destroy_process_group()


def check_global_batch(batch_size: int, world: int | None = None) -> None:
    """DistributedError unless the global batch splits into one equal part per process."""
    world = world_size() if world is None else world
    if batch_size % world:
        below, above = batch_size - batch_size % world, batch_size + world - batch_size % world
        raise DistributedError(
            f"the batch size {batch_size} is the global batch and cannot be split evenly over "
            f"{world} processes; use a {arg('batch size', '--batch-size')} divisible by {world} (e.g. "
            f"{below or above} or {above}), or a number of processes that divides {batch_size}")


@dataclass
class Agreement:
    """What `agreement` yields: set `value` on rank 0 to share it with every rank."""

    value: Any = None


def _mark_agreed(exc: BaseException) -> BaseException:
    exc.vit_agreed = True   # type: ignore[attr-defined]
    return exc


def was_agreed(exc: BaseException) -> bool:
    """True when every rank already knows about this exception (it went through agreement)."""
    return bool(getattr(exc, "vit_agreed", False))


def carry_agreement(new: BaseException, old: BaseException) -> BaseException:
    """`new`, marked as agreed when `old` was (for code that re-raises with a better message)."""
    return _mark_agreed(new) if was_agreed(old) else new


@contextmanager
def agreement(what: str) -> Iterator[Agreement]:
    """Run the body, then let all ranks compare notes (one all_gather): if any rank raised,
    every rank raises - its own exception, or RankFailedError / RankCrashedError naming the
    rank that failed - so no rank is left waiting in the next collective. Rank 0's
    `Agreement.value` reaches every rank. Without a process group: just runs the body.

    `what` completes the message "rank R of N failed while {what}: ...". Every rank must enter
    the same agreements in the same order, with no other collective inside; a rank that fails
    elsewhere calls `report_failure`, which meets the others at their next agreement. When
    several ranks fail at once, each raises its own error (rank 0's is the one printed).
    """
    shared = Agreement()
    if not is_initialized():
        yield shared
        return
    error: Exception | None = None
    try:
        yield shared
    except Exception as exc:   # KeyboardInterrupt / SIGTERM: every process gets its own
        error = exc
    _exchange(error, shared, what)


def report_failure(exc: BaseException, what: str = "setting up the run") -> None:
    """Tell the other ranks that this one failed outside an agreement (they meet it at their
    next `agreement`). Does nothing without a process group or when they already know."""
    if not is_initialized() or was_agreed(exc) or not isinstance(exc, Exception):
        return
    try:
        _exchange(exc, Agreement(), what)   # re-raises exc, now marked as agreed
    except Exception:   # that, or the peers are gone / the exchange timed out: exc stays ours
        pass


def _exchange(error: Exception | None, shared: Agreement, what: str) -> None:
    """One all_gather of (failure or None, rank 0's shared value); raise on every rank if any
    rank failed, else hand rank 0's value to `shared`."""
    note = None
    if error is not None:
        user_error = isinstance(error, UserError)   # its raw text keeps the arg() markers
        note = (type(error).__name__, Exception.__str__(error) if user_error else str(error),
                user_error)
    notes: list[Any] = [None] * world_size()
    dist.all_gather_object(notes, (note, shared.value if is_main() else None))
    if error is not None:
        raise _mark_agreed(error)
    for r, (failure, _) in enumerate(notes):
        if failure is not None:
            name, message, user_error = failure
            where = f"rank {r} of {len(notes)} failed while {what}"
            if user_error:
                raise _mark_agreed(RankFailedError(f"{where}: {message}"))
            raise _mark_agreed(RankCrashedError(f"{where} with {name}: {message} (see the "
                                                "traceback that rank printed)"))
    shared.value = notes[0][1]


def all_gather(value: Any) -> list[Any]:
    """Every rank's `value` (picklable), in rank order; [value] without a process group."""
    if not is_initialized():
        return [value]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, value)
    return out


def all_finite(logits: torch.Tensor) -> bool:
    """True when every rank's `logits` are finite (one all_reduce of a flag), so all ranks see
    a diverged loss at the same step and stop together."""
    flag = torch.isfinite(logits).all().to(torch.int32).reshape(1)
    if is_initialized():
        dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())
