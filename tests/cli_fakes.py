"""Helpers for the in-process CLI tests (tests/test_cli_*.py): run a CLI main and capture what
it prints, and serve small synthetic datasets instead of MNIST so a whole training run takes a
fraction of a second. Not a test module itself."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from vit_lib.cli import evaluate as evaluate_cli
from vit_lib.cli import train as train_cli
from vit_lib.cli.common import run_cli
from vit_lib.data import TensorLoader, dataset_info

N_TRAIN, N_TEST = 192, 64


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("error:")]


def cli(capsys: pytest.CaptureFixture, module, *argv: str | Path) -> Result:
    """Run `python -m vit_lib.<module>` in this process; returns exit code, stdout, stderr."""
    capsys.readouterr()
    try:
        code = run_cli(module.main, [str(a) for a in argv],
                       **({"interrupted": "the evaluation was stopped; nothing was written"}
                          if module is evaluate_cli else {}))
    except SystemExit as exc:      # argparse's own errors
        code = exc.code
    captured = capsys.readouterr()
    return Result(code, captured.out, captured.err)


def train(capsys, *argv) -> Result:
    return cli(capsys, train_cli, "--no-progress", *argv)


def evaluate(capsys, *argv) -> Result:
    return cli(capsys, evaluate_cli, *argv)


class FakeLoader(TensorLoader):
    """A TensorLoader whose batches can be poisoned with NaN (to make the loss diverge) or
    interrupted (KeyboardInterrupt / SIGTERM) when a given epoch begins."""

    def __init__(self, *args, control: "Control", **kwargs):
        super().__init__(*args, **kwargs)
        self.control = control

    def set_epoch(self, epoch: int) -> None:
        if self.control.interrupt_at == epoch:
            raise self.control.interrupt
        super().set_epoch(epoch)

    def __iter__(self):
        for x, y in super().__iter__():
            if self.control.nan_at == self.epoch:
                x = torch.full_like(x, float("nan"))
            yield x, y


@dataclass
class Control:
    nan_at: int | None = None            # epoch (0-based) whose batches are NaN
    interrupt_at: int | None = None      # epoch (0-based) at whose start `interrupt` is raised
    interrupt: BaseException = field(default_factory=KeyboardInterrupt)
    calls: list = field(default_factory=list)


def synthetic(dataset: str, n: int, offset: int) -> tuple[torch.Tensor, torch.Tensor]:
    """n images of the dataset's shape whose class is their brightness decile (learnable)."""
    info = dataset_info(dataset)
    g = torch.Generator().manual_seed(offset)
    images = torch.randint(0, 256, (n, info.channels, info.image_size, info.image_size),
                           dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % info.num_classes
    images = (images.float() * 0.2 + labels.view(-1, 1, 1, 1) * 20).clamp(0, 255).to(torch.uint8)
    return images, labels


def install_fake_data(monkeypatch) -> Control:
    """Replace the CLIs' data loading with synthetic datasets (N_TRAIN train, N_TEST test
    images); returns the Control that can poison or interrupt an epoch."""
    control = Control()

    def get_loaders(dataset="mnist", batch_size=64, data_dir=None, device="cpu", normalize=True,
                    augment=None, seed=0, eval_batch_size=1000, download=True,
                    train_subset=None, test_subset=None):
        control.calls.append(("train+test", dataset))
        info = dataset_info(dataset)
        stats = dict(mean=info.mean, std=info.std) if normalize else {}
        x, y = synthetic(dataset, N_TRAIN, 0)
        if train_subset is not None:
            x, y = x[:train_subset], y[:train_subset]
        train = FakeLoader(x, y, batch_size, shuffle=True, seed=seed, device=device,
                           augment=augment, control=control, **stats)
        test = TensorLoader(*synthetic(dataset, N_TEST, 1), eval_batch_size, device=device, **stats)
        return train, test

    def get_test_loader(dataset="mnist", data_dir=None, device="cpu", normalize=True,
                        batch_size=1000, download=True, test_subset=None):
        control.calls.append(("test", dataset))
        info = dataset_info(dataset)
        stats = dict(mean=info.mean, std=info.std) if normalize else {}
        return TensorLoader(*synthetic(dataset, N_TEST, 1), batch_size, device=device, **stats)

    monkeypatch.setattr(train_cli, "get_loaders", get_loaders)
    monkeypatch.setattr(evaluate_cli, "get_test_loader", get_test_loader)
    return control
