"""Data: where it is found, clear errors when it is not, CIFAR-10's format, the tensor loader."""
import pickle
from pathlib import Path
from urllib.error import URLError

import numpy as np
import pytest
import torch
import torchvision

from vit_lib.data import (
    DataNotFoundError,
    TensorLoader,
    dataset_info,
    get_loaders,
    load_tensors,
    random_affine,
    resolve_data_dir,
)


def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("VIT_DATA_DIR", str(tmp_path / "env"))
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    assert resolve_data_dir() == tmp_path / "env"
    monkeypatch.delenv("VIT_DATA_DIR")
    assert resolve_data_dir().name == "data"


def test_unknown_dataset_lists_choices():
    with pytest.raises(ValueError,
                       match="unknown dataset 'svhn'; choose one of mnist, fashion-mnist, cifar10"):
        dataset_info("svhn")
    assert dataset_info("FashionMNIST").name == "fashion-mnist"


def test_missing_data_without_download_names_folder_and_files(tmp_path):
    with pytest.raises(DataNotFoundError) as err:
        load_tensors("mnist", data_dir=tmp_path, download=False)
    msg = str(err.value)
    assert str(tmp_path / "MNIST" / "raw") in msg
    assert "train-images-idx3-ubyte" in msg and "VIT_DATA_DIR" in msg


def test_failed_download_is_explained(tmp_path, monkeypatch):
    def offline(self):
        raise URLError("no network")
    monkeypatch.setattr(torchvision.datasets.FashionMNIST, "download", offline)
    with pytest.raises(DataNotFoundError) as err:
        load_tensors("fashion-mnist", data_dir=tmp_path)
    msg = str(err.value)
    assert "the download failed (URLError" in msg and "no network" in msg
    assert str(tmp_path / "FashionMNIST" / "raw") in msg and "data_dir" in msg
    assert "--data-dir" in err.value.for_cli()


def _write_fake_cifar(root: Path, per_batch: int = 6) -> None:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for i, name in enumerate(names):
        data = rng.integers(0, 256, size=(per_batch, 3 * 32 * 32), dtype=np.uint8)
        data[0, :1024] = i   # red channel of the first image marks the file
        with open(folder / name, "wb") as f:
            pickle.dump({"data": data, "labels": [(i + j) % 10 for j in range(per_batch)]}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": list(dataset_info("cifar10").classes)}, f)


def test_cifar10_loads_through_torchvision_from_its_own_format(tmp_path, monkeypatch):
    _write_fake_cifar(tmp_path)
    # our files are not the real ones, so torchvision's md5 check must be told to accept them
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: True)
    images, labels = load_tensors("cifar10", train=True, data_dir=tmp_path, download=False)
    assert images.shape == (30, 3, 32, 32) and images.dtype == torch.uint8
    assert labels.shape == (30,) and labels.dtype == torch.long
    assert images[0, 0].eq(0).all() and images[6, 0].eq(1).all()   # channels-first, file order
    train, test = get_loaders("cifar10", batch_size=8, data_dir=tmp_path, download=False)
    x, y = next(iter(train))
    assert x.shape == (8, 3, 32, 32) and y.shape == (8,)
    assert test.dataset_size == 6


def test_tensor_loader_batches_order_and_normalisation():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    labels = torch.arange(10)
    loader = TensorLoader(images, labels, batch_size=4, shuffle=True, seed=3, mean=(0.5,), std=(0.25,))
    assert len(loader) == 3
    epoch0 = torch.cat([y for _, y in loader])
    assert sorted(epoch0.tolist()) == list(range(10))
    assert torch.equal(epoch0, torch.cat([y for _, y in loader]))        # same epoch, same order
    loader.set_epoch(1)
    assert not torch.equal(epoch0, torch.cat([y for _, y in loader]))    # new epoch, new order
    for x, y in loader:   # images stay paired with labels and are normalised
        torch.testing.assert_close(x[:, 0, 0, 0], (y.float() / 255 - 0.5) / 0.25)
    with pytest.raises(ValueError, match="10 images but 9 labels"):
        TensorLoader(images, labels[:9], batch_size=4)


def test_random_affine_identity_and_shift():
    x = torch.rand(4, 1, 28, 28)
    torch.testing.assert_close(random_affine(x), x, atol=1e-5, rtol=0)
    dot = torch.zeros(1, 1, 28, 28)
    dot[0, 0, 14, 14] = 1
    moved = random_affine(dot.repeat(64, 1, 1, 1), max_shift=3,
                          generator=torch.Generator().manual_seed(0))
    assert moved.shape == (64, 1, 28, 28)
    centres = torch.stack([(moved[:, 0].sum(2) * torch.arange(28)).sum(1),
                           (moved[:, 0].sum(1) * torch.arange(28)).sum(1)], 1)
    assert (centres - 14).abs().max() <= 3.01 and (centres - 14).abs().max() > 0.5


def test_real_mnist_and_fashion_mnist(data_dir):
    images, labels = load_tensors("mnist", train=False, data_dir=data_dir, download=False)
    assert images.shape == (10_000, 1, 28, 28) and labels.bincount().tolist()[0] == 980
    assert abs(images.float().div(255).mean().item() - 0.1325) < 1e-3
    train, test = get_loaders("fashion-mnist", batch_size=256, data_dir=data_dir, download=False)
    assert train.dataset_size == 60_000 and test.dataset_size == 10_000
    x, _ = next(iter(train))
    assert abs(x.mean().item()) < 0.2 and abs(x.std().item() - 1) < 0.2    # normalised
