"""Data-parallel training through torchrun: the shard arithmetic (in-process, no process group)
and real 2-process runs on gloo (torchrun subprocesses, real MNIST, a small --train-subset).

The end-to-end runs use the `seed` preset (no augmentation, no dropout) at lr 3e-3 (so that 2
epochs of 2,051 images move the test accuracy off chance, to about 26%). A 2-process run and a
1-process run with the same global batch then compute the same mathematics and differ only in
the order of floating-point sums (two half-batch means weighted and summed by gloo instead of
one mean). Adam divides each update by the root of the gradient's second moment, so a weight
whose gradient is close to zero can move by up to about one learning rate per step on such a
rounding difference. Tolerances, after 2 epochs of 33 steps: weights within 5e-3 (measured
1.1e-3), train and test losses within 1e-4 (measured below 1e-6), test accuracy within 0.1
percentage points (measured equal). Averaging the uneven last batch's two parts unweighted
instead (plain DDP) is caught: weights 2.9e-2 apart, test loss 1.4e-3 apart after epoch 1.
"""
from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
import torch

from vit_lib.cli import train as train_cli
from vit_lib.cli.common import run_cli
from vit_lib.data import Augment, TensorLoader, shard_bounds
from vit_lib.machinery import distributed
from vit_lib.machinery.errors import OutputError
from vit_lib.machinery.families import model_from_checkpoint

ROOT = Path(__file__).resolve().parent.parent
SUBSET = 2051          # 32 full batches of 64 and a last batch of 3: split 1 + 2 over 2 ranks
RUN = ("--preset", "seed", "--lr", "3e-3", "--train-subset", str(SUBSET), "--no-progress")
LIMIT_S = 150          # a run that takes longer than this is hanging


# ---------------------------------------------------------------- shard arithmetic (no group)

@pytest.mark.parametrize("world", [1, 2, 3, 4, 7])
def test_shard_bounds_cut_a_batch_into_contiguous_near_equal_parts(world):
    for batch in range(world, 40):
        parts = [shard_bounds(batch, r, world) for r in range(world)]
        assert parts[0][0] == 0 and parts[-1][1] == batch
        # contiguous, in order (parts[1:] is one shorter: each part against the next)
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))
        sizes = [hi - lo for lo, hi in parts]
        assert max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
        if batch % world == 0:
            assert sizes == [batch // world] * world


def _loader(n: int, batch: int, augment: Augment | None = None, images=None) -> TensorLoader:
    if images is None:
        images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).clone()
    return TensorLoader(images, torch.arange(n), batch, shuffle=True, seed=3, augment=augment)


@pytest.mark.parametrize("n, batch, world", [(203, 16, 2), (203, 16, 4), (64, 16, 4), (99, 12, 3)])
def test_sharded_loaders_together_serve_the_single_process_batches(n, batch, world):
    whole = _loader(n, batch)
    shards = [_loader(n, batch) for _ in range(world)]
    for r, loader in enumerate(shards):
        loader.set_shard(r, world)
    for epoch in (0, 5):
        for loader in [whole, *shards]:
            loader.set_epoch(epoch)
        assert all(len(s) == len(whole) for s in shards)
        steps = 0
        for single, *parts in zip(whole, *shards, strict=True):
            labels = [y for _, y in parts]
            assert torch.equal(torch.cat(labels), single[1])          # same images, same order
            assert torch.equal(torch.cat([x for x, _ in parts]), single[0])
            size = len(single[1])
            shares = [s.shard_share for s in shards]
            if size % world:   # uneven last batch: each rank's share of the global batch
                assert shares == [len(y) / size for y in labels] and sum(shares) == pytest.approx(1)
            else:
                assert shares == [None] * world
            steps += 1
        assert steps == len(whole)


def test_a_last_batch_smaller_than_the_number_of_processes_is_skipped():
    whole, shard = _loader(17, 16), _loader(17, 16)      # batches of 16 and 1 image
    shard.set_shard(1, 2)
    assert len(whole) == 2 and len(shard) == 1
    assert [len(y) for _, y in shard] == [8]


def test_each_rank_augments_with_its_own_reproducible_draws():
    same = torch.full((8, 1, 12, 12), 0, dtype=torch.uint8)
    same[:, :, 4:8, 4:8] = 255                             # 8 copies of one image
    aug = Augment(max_shift=2.0, max_degrees=20.0)

    def batch(rank: int) -> torch.Tensor:
        loader = _loader(8, 8, aug, images=same)
        loader.set_shard(rank, 2)
        return next(iter(loader))[0]

    assert torch.equal(batch(0), batch(0))               # deterministic: resumable
    assert not torch.equal(batch(0), batch(1))           # but not the same draws on every rank


def test_set_shard_refuses_a_batch_that_does_not_split():
    with pytest.raises(ValueError, match="equal parts"):
        _loader(20, 10).set_shard(0, 3)


def test_global_batch_must_split_over_the_processes():
    distributed.check_global_batch(63, 3)
    with pytest.raises(distributed.DistributedError, match=r"divisible by 3 \(e\.g\. 63 or 66\)"):
        distributed.check_global_batch(64, 3)


def test_nccl_on_a_cpu_and_a_named_gpu_are_refused_with_the_fix():
    with pytest.raises(distributed.DistributedError, match="nccl' needs CUDA GPUs.*gloo"):
        distributed.choose_backend("nccl", torch.device("cpu"))
    assert distributed.choose_backend("auto", torch.device("cpu")) == "gloo"
    with pytest.raises(distributed.DistributedError, match="GPU of its local rank"):
        distributed.choose_device("cuda:1", 0)
    with pytest.raises(distributed.DistributedError, match="MPS"):
        distributed.choose_device("mps", 0)
    assert distributed.choose_device("cpu", 3) == torch.device("cpu")


@pytest.mark.parametrize("name", ["tpu", "cpu:0", "mps:0", "auto:1"])
def test_choose_device_refuses_other_names_in_torchruns_terms(name):
    with pytest.raises(distributed.DistributedError,
                       match=f"unknown device '{name}'; use auto, cpu or cuda under torchrun"):
        distributed.choose_device(name, 0)


def test_launch_detection_reads_torchruns_variables(monkeypatch):
    for name in distributed.ENV_VARS:
        monkeypatch.delenv(name, raising=False)
    assert not distributed.launched()
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert not distributed.launched()                    # one process: the plain run
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.launched() and distributed.env_rank() == 0
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(distributed.DistributedError, match="WORLD_SIZE='two'"):
        distributed.launched()


def test_agreement_without_a_group_just_runs_the_body():
    with distributed.agreement("testing") as shared:
        shared.value = 5
    assert shared.value == 5
    with pytest.raises(KeyError):
        with distributed.agreement("testing"):
            raise KeyError("passes through unchanged")


def test_dist_backend_outside_torchrun_is_one_clear_error(capsys, monkeypatch, tmp_path):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    code = run_cli(train_cli.main, ["--dist-backend", "gloo", "--out", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: --dist-backend applies to runs started by torchrun")
    assert not (tmp_path / "x").exists()


def _agreement_worker(rank: int, port: int, results) -> None:
    """One of 2 gloo processes: rank 1 fails inside one agreement, then outside any."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2,
                                         timeout=timedelta(seconds=30))
    seen = []
    with distributed.agreement("sharing") as shared:
        shared.value = f"from rank {rank}"
    seen.append(shared.value)
    for phase in ("saving", "training"):
        try:
            if phase == "saving":
                with distributed.agreement("saving"):
                    if rank == 1:
                        raise OutputError("the disk is full")
            else:
                if rank == 1:
                    raise ValueError("a bug")          # outside any agreement: reported
                with distributed.agreement("training"):
                    pass
            seen.append("no error")
        except Exception as exc:
            distributed.report_failure(exc)
            seen.append((type(exc).__name__, str(exc), distributed.was_agreed(exc)))
    torch.distributed.destroy_process_group()
    results.put((rank, seen))


def test_an_error_on_one_rank_reaches_every_rank_at_the_next_agreement():
    import multiprocessing
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    procs = [ctx.Process(target=_agreement_worker, args=(r, port, results)) for r in (0, 1)]
    for p in procs:
        p.start()
    seen = dict(results.get(timeout=LIMIT_S) for _ in procs)
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    assert seen[0][0] == seen[1][0] == "from rank 0"                  # rank 0's value, shared
    assert seen[1][1] == ("OutputError", "the disk is full", True)    # its own error
    assert seen[0][1] == ("RankFailedError",
                          "rank 1 of 2 failed while saving: the disk is full", True)
    assert seen[1][2] == ("ValueError", "a bug", True)
    name, message, agreed = seen[0][2]
    assert (name, agreed) == ("RankCrashedError", True)
    assert message.startswith("rank 1 of 2 failed while training with ValueError: a bug")


# ------------------------------------------------------------- real runs: 2 processes, gloo
# Marked slow (they train on real MNIST, like the other real-data tests): 4 torchrun launches
# and one in-process run, about 100 s of CPU time, so 1-2 minutes on 2 shared cores.

def torchrun(data_dir: Path, *args: str, limit_file_bytes: int | None = None,
             ) -> tuple[subprocess.CompletedProcess, float]:
    """`torchrun --standalone --nproc_per_node=2 -m vit_lib train ARGS`; (result, seconds)."""
    def limit() -> None:   # every file the processes write is cut at this size (EFBIG)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_file_bytes, limit_file_bytes))
    start = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
         "-m", "vit_lib.cli.train", *args], cwd=ROOT, capture_output=True, text=True,
        timeout=LIMIT_S, preexec_fn=limit if limit_file_bytes else None,
        env=dict(os.environ, PYTHONPATH=str(ROOT), VIT_DATA_DIR=str(data_dir), OMP_NUM_THREADS="1",
                 VIT_DIST_TIMEOUT="60"))
    return result, time.perf_counter() - start


def _ok(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory, data_dir):
    """One uninterrupted 2-epoch run on 2 processes (shared by the tests below)."""
    tmp = tmp_path_factory.mktemp("ddp")
    result, _ = torchrun(data_dir, *RUN, "--epochs", "2", "--out", str(tmp / "ddp"))
    return tmp, data_dir, _ok(result)


def _state(folder: Path) -> dict:
    return torch.load(folder / "checkpoint.pt", weights_only=True)


@pytest.mark.slow
def test_two_processes_train_and_rank_0_alone_writes_and_prints(two_epochs):
    tmp, _, result = two_epochs
    out = tmp / "ddp"
    assert "device cpu x 2 processes (global batch 64, 32 per process)" in result.stdout
    for line in ("epoch  1/2  train loss", "epoch  2/2  train loss", "test accuracy"):
        assert result.stdout.count(line) == 1, result.stdout     # printed by rank 0 only
    assert "error:" not in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert "Grad strides" not in result.stderr           # DDP's layout note is silenced
    assert sorted(p.name for p in out.iterdir()) == [".lock", "checkpoint.pt", "curves.png",
                                                     "metrics.json"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["processes"] == 2 and metrics["dist_backend"] == "gloo"
    assert [r["epoch"] for r in metrics["history"]] == [1, 2]
    state = _state(out)
    assert len(state["rng"]["ranks"]) == 2                     # every rank's RNG, for --resume
    model_from_checkpoint(state)          # the plain model's keys: loads without DDP's "module."


@pytest.mark.slow
def test_two_processes_match_one_process_with_the_same_global_batch(two_epochs, capsys):
    tmp, data_dir, _ = two_epochs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        code = run_cli(train_cli.main, [*RUN, "--epochs", "2", "--out", str(tmp / "single"),
                                          "--data-dir", str(data_dir)])
    finally:
        torch.set_num_threads(threads)
    assert code == 0, capsys.readouterr().err
    ddp, single = _state(tmp / "ddp"), _state(tmp / "single")
    assert ddp["model"].keys() == single["model"].keys()
    gap = max((ddp["model"][k] - single["model"][k]).abs().max().item() for k in ddp["model"])
    assert gap < 5e-3, f"weights differ by {gap:.2e}"
    for a, b in zip(ddp["history"], single["history"], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], abs=1e-4)
        assert a["test_loss"] == pytest.approx(b["test_loss"], abs=1e-4)
        assert abs(a["test_accuracy"] - b["test_accuracy"]) <= 0.1
        assert a["lr"] == b["lr"]


@pytest.mark.slow
def test_a_resumed_two_process_run_equals_the_uninterrupted_one(two_epochs):
    tmp, data_dir, _ = two_epochs
    out = tmp / "resumed"
    _ok(torchrun(data_dir, *RUN, "--epochs", "1", "--out", str(out))[0])
    result = _ok(torchrun(data_dir, "--out", str(out), "--resume", "--epochs", "2", "--no-progress")[0])
    assert result.stdout.count("resuming") == 1 and "epoch  2/2" in result.stdout
    resumed, straight = _state(out), _state(tmp / "ddp")
    for key, value in straight["model"].items():
        assert torch.equal(resumed["model"][key], value), key
    for a, b in zip(resumed["history"], straight["history"], strict=True):
        assert (a["train_loss"], a["test_loss"], a["test_accuracy"]) == (
            b["train_loss"], b["test_loss"], b["test_accuracy"])


@pytest.mark.slow
def test_rank_0_failing_to_write_its_checkpoint_stops_every_rank_with_the_error(
        data_dir, tmp_path):
    out = tmp_path / "full"
    result, seconds = torchrun(data_dir, *RUN, "--epochs", "2", "--out", str(out),
                               limit_file_bytes=64_000)     # the checkpoint needs ~250 kB
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr                  # rank 0's; rank 1 stops quietly
    assert errors[0].startswith("error: epoch 1 finished but could not write")
    assert "no checkpoint of this run had been written yet" in errors[0]
    assert "[rank0]" not in result.stderr and "[rank1]" not in result.stderr   # no traceback
    assert "stopped by SIGTERM" not in result.stderr     # rank 1 was not left waiting
    assert seconds < 60, f"took {seconds:.0f}s to stop"
    assert not (out / "checkpoint.pt").exists() and not (out / "metrics.json").exists()
