"""Damaged dataset files (empty, cut short, not MNIST's format) are named, with the advice to
delete or replace them: torchvision never replaces a file that is present, so "connect to the
internet" would not help. Small hand-made MNIST files in a temporary folder, no real data."""
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torchvision

from vit_lib.data import DamagedDataError, DataNotFoundError, get_test_loader, load_tensors

ROOT = Path(__file__).resolve().parent.parent


def idx_file(path: Path, *dims: int, cut: int = 0) -> None:
    """An MNIST-format (IDX, unsigned bytes) file of shape `dims`, missing its last `cut` bytes."""
    data = struct.pack(f">4B{len(dims)}I", 0, 0, 8, len(dims), *dims) + bytes(int(np.prod(dims)))
    path.write_bytes(data[:len(data) - cut])


def fake_mnist(root: Path, n_train: int = 20, n_test: int = 10) -> Path:
    folder = root / "MNIST" / "raw"
    folder.mkdir(parents=True)
    idx_file(folder / "train-images-idx3-ubyte", n_train, 28, 28)
    idx_file(folder / "train-labels-idx1-ubyte", n_train)
    idx_file(folder / "t10k-images-idx3-ubyte", n_test, 28, 28)
    idx_file(folder / "t10k-labels-idx1-ubyte", n_test)
    return folder


def test_small_intact_files_load(tmp_path):
    fake_mnist(tmp_path)
    images, labels = load_tensors("mnist", train=True, data_dir=tmp_path, download=False)
    assert images.shape == (20, 1, 28, 28) and labels.shape == (20,)
    assert get_test_loader("mnist", tmp_path, download=False).dataset_size == 10


@pytest.mark.parametrize("damage, why", [
    (lambda p: p.write_bytes(b""), "it is empty (0 bytes)"),
    (lambda p: idx_file(p, 20, 28, 28, cut=1000), "it is cut short (14,696 of the 15,696 bytes"),
    (lambda p: p.write_bytes(b"<html>404 Not Found</html>"), "it is not an IDX file"),
    (lambda p: p.write_bytes(b"\x00\x00\x08\x03\x00"), "it is cut short (5 bytes, not even a whole"),
    (lambda p: p.write_bytes(p.read_bytes() + b"xx"), "it is 2 bytes longer than its header"),
])
@pytest.mark.parametrize("download", [False, True])
def test_a_damaged_file_is_named_with_the_fix(damage, why, download, tmp_path, monkeypatch):
    def no_network(self):
        raise AssertionError("must not try to download: the damaged file would stay")
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", no_network)
    folder = fake_mnist(tmp_path)
    damage(folder / "train-images-idx3-ubyte")
    with pytest.raises(DamagedDataError) as err:
        load_tensors("mnist", train=True, data_dir=tmp_path, download=download)
    message = str(err.value)
    assert f"{(folder / 'train-images-idx3-ubyte').resolve()}: {why}" in message
    assert "torchvision never replaces a file that is present: delete the damaged file and run " \
        "again to download it afresh, or replace it with a good copy" in message
    assert "internet" not in message and isinstance(err.value, DataNotFoundError)
    # the test split does not read the damaged training file
    assert get_test_loader("mnist", tmp_path, download=False).dataset_size == 10


def test_every_damaged_file_of_the_split_is_listed(tmp_path):
    folder = fake_mnist(tmp_path)
    (folder / "t10k-images-idx3-ubyte").write_bytes(b"")
    (folder / "t10k-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(DamagedDataError, match="damaged dataset files:") as err:
        get_test_loader("mnist", tmp_path, download=False)
    assert str(err.value).count("it is empty (0 bytes)") == 2


def test_the_cli_says_which_file_is_damaged(tmp_path):
    folder = fake_mnist(tmp_path)
    (folder / "train-labels-idx1-ubyte").write_bytes(b"")
    result = subprocess.run(
        [sys.executable, "-m", "vit_lib.cli.train", "--data-dir", str(tmp_path), "--out",
         str(tmp_path / "run"), "--no-progress"], cwd=ROOT, capture_output=True, text=True,
        timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: mnist: damaged dataset file:\n")
    assert "train-labels-idx1-ubyte: it is empty (0 bytes)" in result.stderr
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_a_damaged_cifar10_file_is_named_offline(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"cut short")
    with pytest.raises(DamagedDataError) as err:
        load_tensors("cifar10", train=True, data_dir=tmp_path, download=False)
    assert f"{(folder / 'data_batch_1').resolve()}: its MD5 checksum is not the published one" \
        in str(err.value)
    assert "data_batch_2" not in str(err.value)          # missing files are not "damaged"


def test_a_data_dir_that_is_a_file_is_explained(tmp_path):
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(DataNotFoundError, match=r"the data folder .*data is a file, not a folder; "
                                                r"point data_dir / \$VIT_DATA_DIR at the folder"):
        load_tensors("mnist", data_dir=tmp_path / "data")
