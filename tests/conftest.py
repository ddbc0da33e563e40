"""Shared fixtures. Real-data tests need MNIST under $VIT_DATA_DIR (CI: ../shared/data)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """Folder holding MNIST in torchvision's layout; the test is skipped without it (session
    scope: module-scoped fixtures such as test_distributed's shared run use it too)."""
    candidates = [os.environ.get("VIT_DATA_DIR"), ROOT / "data", ROOT.parent / "shared" / "data"]
    for c in candidates:
        if c and (Path(c) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
            return Path(c)
    if os.environ.get("CI"):
        pytest.fail("CI must provide MNIST: set VIT_DATA_DIR to a folder holding MNIST/raw")
    pytest.skip("MNIST not found: set VIT_DATA_DIR")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def fake_data(monkeypatch):
    """The command-line tools read synthetic datasets (tests/cli_fakes.py); returns the Control
    that can poison or interrupt an epoch."""
    from cli_fakes import install_fake_data
    return install_fake_data(monkeypatch)
