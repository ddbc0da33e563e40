"""Folders of images as datasets (`--dataset folder:PATH`, vit_lib.machinery.image_folder):
layouts, splits, grayscale/colour, resizing, the decode cache and one clear error per bad folder;
then training, resuming, fine-tuning and evaluating on a folder from the command line.
Small folders of 8x8 PNGs drawn here; in-process, a few seconds in all."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_fakes import cli, evaluate, train
from PIL import Image

from vit_lib import data
from vit_lib.cli import train as train_cli
from vit_lib.machinery import image_folder
from vit_lib.machinery.errors import ConfigError, DataNotFoundError, ImageFolderError, UserError
from vit_lib.machinery.image_folder import image_to_array, load_image_folder


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    """A fresh decode cache per test, and no folder datasets left registered between tests."""
    monkeypatch.setenv("VIT_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(data, "_FOLDERS", {})


def _image(value: int, size=(8, 8), mode="L", colour=None) -> Image.Image:
    """A gradient image whose brightness says its class (so a tiny model can learn it)."""
    a = np.clip(np.add.outer(np.arange(size[1]), np.arange(size[0])) * 3 + value, 0, 255)
    if mode == "L":
        return Image.fromarray(a.astype(np.uint8), "L")
    rgb = np.stack([a, a, a], -1).astype(np.uint8)
    if colour is not None:
        rgb[..., colour] = 255 - rgb[..., colour]
    return Image.fromarray(rgb, "RGB")


def make_folder(root: Path, classes=("cat", "dog"), per_class: int = 10, size=(8, 8),
                mode="L", colour=None, ext="png") -> Path:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            _image(40 + 80 * c + i, size, mode, colour).save(root / name / f"{i:03d}.{ext}")
    return root


def test_classes_are_sorted_subfolders_and_a_seeded_tenth_of_each_is_held_out(tmp_path):
    root = make_folder(tmp_path / "pets", classes=("dog", "cat", "bird"), per_class=20)
    d = load_image_folder(root)
    assert d.classes == ("bird", "cat", "dog") and (d.image_size, d.channels) == (8, 1)
    assert d.train_images.dtype == torch.uint8 and d.train_images.shape == (54, 1, 8, 8)
    assert torch.bincount(d.test_labels).tolist() == [2, 2, 2]        # stratified, 10%
    assert d.val_split == 0.1 and "10% of each class" in d.split
    again = load_image_folder(root)                                   # the same images every time
    assert torch.equal(again.test_images, d.test_images)
    assert len(load_image_folder(root, val_split=0.25).test_images) == 15
    expected = d.train_images.float().div(255)
    assert d.mean == pytest.approx((round(float(expected.mean()), 4),), abs=1e-4)   # training split only
    assert d.std == pytest.approx((round(float(expected.std(unbiased=False)), 4),), abs=1e-4)


def test_train_and_test_subfolders_are_the_splits(tmp_path):
    make_folder(tmp_path / "f" / "train", per_class=6)
    make_folder(tmp_path / "f" / "test", per_class=3)
    d = load_image_folder(tmp_path / "f")
    assert (len(d.train_images), len(d.test_images)) == (12, 6) and d.val_split is None
    assert d.split == "train/ and test/"
    with pytest.raises(ConfigError, match="drop val_split"):
        load_image_folder(tmp_path / "f", val_split=0.2)
    whole = load_image_folder(tmp_path / "f", whole=True)             # evaluating: test/ only
    assert (len(whole.train_images), len(whole.test_images)) == (0, 6)


def test_nested_folders_count_for_their_class_and_other_files_are_ignored(tmp_path):
    root = make_folder(tmp_path / "f", per_class=4)
    (root / "cat" / "more").mkdir()
    _image(50).save(root / "cat" / "more" / "x.png")
    (root / "cat" / "notes.txt").write_text("not an image")
    _image(50).save(root / "cat" / ".hidden.png")
    (root / ".git").mkdir()
    d = load_image_folder(root, whole=True)
    assert d.classes == ("cat", "dog") and torch.bincount(d.test_labels).tolist() == [5, 4]


def test_grayscale_when_every_image_is_colour_otherwise_or_as_asked(tmp_path):
    gray_rgb = make_folder(tmp_path / "g", mode="RGB")                 # RGB files, gray content
    assert load_image_folder(gray_rgb).channels == 1
    coloured = make_folder(tmp_path / "c", mode="RGB", colour=0)
    d = load_image_folder(coloured)
    assert d.channels == 3 and len(d.mean) == 3 and d.mean[0] != d.mean[1]
    assert load_image_folder(coloured, channels=1).channels == 1
    forced = load_image_folder(gray_rgb, channels=3)
    assert forced.channels == 3 and torch.equal(forced.train_images[:, 0], forced.train_images[:, 2])
    mixed = make_folder(tmp_path / "m", per_class=3)
    _image(10, mode="RGB", colour=2).save(mixed / "cat" / "colour.png")
    assert load_image_folder(mixed).channels == 3                     # one colour image: RGB


def test_transparency_is_flattened_onto_white_and_16_bit_is_scaled():
    rgba = Image.new("RGBA", (4, 4), (0, 0, 0, 0))
    assert image_to_array(rgba, 4).tolist() == np.full((1, 4, 4), 255).tolist()
    sixteen = Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))
    assert image_to_array(sixteen, 4).max() == 255 and image_to_array(sixteen, 2).shape == (1, 2, 2)


def test_image_size_resizes_and_mixed_sizes_need_it(tmp_path):
    root = make_folder(tmp_path / "f", per_class=4, size=(12, 12))
    _image(30, size=(20, 10)).save(root / "dog" / "wide.png")
    with pytest.raises(ImageFolderError, match=r"dog/wide.png is 20x10 pixels, not square|"
                                               r"2 different sizes.*pass image_size=N"):
        load_image_folder(root)
    d = load_image_folder(root, image_size=16)
    assert d.image_size == 16 and d.train_images.shape[-2:] == (16, 16)
    (root / "dog" / "wide.png").unlink()
    _image(30, size=(10, 10)).save(root / "dog" / "small.png")
    with pytest.raises(ImageFolderError, match=r"2 different sizes: 8 are 12x12.*1 are 10x10 "
                                               r"\(e.g. dog/small.png\); pass image_size=N"):
        load_image_folder(root)


def test_the_second_read_comes_from_the_cache_and_a_changed_folder_is_noticed(tmp_path):
    root = make_folder(tmp_path / "f", per_class=5)
    first = load_image_folder(root)
    lines: list[str] = []
    second = load_image_folder(root, log=lines.append)
    assert not first.from_cache and second.from_cache and lines == []
    assert torch.equal(first.train_images, second.train_images) and first.mean == second.mean
    entries = list((tmp_path / "cache" / "image-folders").glob("*.pt"))
    assert len(entries) == 1
    _image(200).save(root / "dog" / "new.png")                        # an image added
    third = load_image_folder(root, log=lines.append)
    assert not third.from_cache and len(third.train_images) + len(third.test_images) == 11
    assert "changed since it was cached" in lines[0]
    assert len(list(entries[0].parent.glob("*.pt"))) == 1              # the old entry replaced
    time.sleep(0.01)
    _image(90).save(root / "cat" / "000.png")                         # an image rewritten
    os.utime(root / "cat" / "000.png", ns=(time.time_ns(), time.time_ns() + 10**9))
    fourth = load_image_folder(root)
    assert not fourth.from_cache
    assert load_image_folder(root).from_cache


def test_no_cache_with_vit_cache_dir_off(tmp_path, monkeypatch):
    monkeypatch.setenv("VIT_CACHE_DIR", "off")
    root = make_folder(tmp_path / "f", per_class=3)
    assert image_folder.cache_folder() is None
    assert not load_image_folder(root).from_cache and not load_image_folder(root).from_cache


def test_the_cache_folder_follows_the_run_cache(tmp_path, monkeypatch):
    from vit_lib.machinery.run_cache import cache_dir
    for value in ("", str(tmp_path / "x"), "off"):
        monkeypatch.setenv("VIT_CACHE_DIR", value)
        ours = image_folder.cache_folder()
        assert ours == (None if cache_dir() is None else cache_dir() / "image-folders")


@pytest.mark.parametrize("case, message", [
    ("missing", "the image folder {root} does not exist"),
    ("file", "{root} is a file, not a folder"),
    ("no classes", "{root} holds 2 images directly but has no class subfolders"),
    ("empty class", "{root}: class folder without images: dog/ (1 files, none an image)"),
    ("one class", "{root} has a single class subfolder (cat)"),
    ("unreadable", "3 of the 11 image files in {root} cannot be read: cat/bad.png (not an image); "
                   "cat/cut.png (damaged or cut short: image file is truncated); "
                   "dog/empty.png (empty file, 0 bytes). Delete or replace them"),
    ("classes differ", "{root}: the classes of train/ and test/ differ (only in train/: dog; "
                       "only in test/: bird)"),
    ("train alone", "{root} has train/ but no test/ (or val/)"),
])
def test_a_bad_folder_is_one_clear_error(case, message, tmp_path):
    root = tmp_path / "f"
    if case == "file":
        root.write_text("x")
    elif case == "no classes":
        root.mkdir()
        _image(1).save(root / "a.png")
        _image(2).save(root / "b.png")
    elif case == "empty class":
        make_folder(root, per_class=2)
        for p in (root / "dog").iterdir():
            p.unlink()
        (root / "dog" / "readme.txt").write_text("x")
    elif case == "one class":
        make_folder(root, classes=("cat",))
    elif case == "unreadable":
        make_folder(root, per_class=4)
        (root / "cat" / "bad.png").write_text("not a png")
        noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
        Image.fromarray(noise).save(root / "cat" / "noise.png")
        whole = (root / "cat" / "noise.png").read_bytes()
        (root / "cat" / "noise.png").unlink()
        (root / "cat" / "cut.png").write_bytes(whole[: len(whole) // 2])
        (root / "dog" / "empty.png").write_bytes(b"")
    elif case == "classes differ":
        make_folder(root / "train", classes=("cat", "dog"))
        make_folder(root / "test", classes=("bird", "cat"))
    elif case == "train alone":
        make_folder(root / "train")
    with pytest.raises(ImageFolderError) as caught:
        load_image_folder(root)
    assert message.format(root=root.resolve() if case not in ("missing", "file") else root) in str(caught.value)
    assert isinstance(caught.value, DataNotFoundError) and isinstance(caught.value, UserError)


def test_a_folder_is_a_dataset_like_mnist(tmp_path):
    root = make_folder(tmp_path / "pets", per_class=10)
    info = data.dataset_info(f"folder:{root}")
    assert info.name == f"folder:{root.resolve()}" and info.classes == ("cat", "dog")
    assert (info.image_size, info.channels, info.num_classes) == (8, 1, 2)
    train, test = data.get_loaders(f"folder:{root}", batch_size=4)
    x, y = next(iter(train))
    assert x.shape == (4, 1, 8, 8) and train.dataset_size == 18 and test.dataset_size == 2
    assert data.load_tensors(f"folder:{root}", train=False)[0].shape == (2, 1, 8, 8)
    with pytest.raises(ConfigError, match="or folder:PATH for a folder of images"):
        data.dataset_info("imagenet")
    with pytest.raises(ConfigError, match="folder: needs the path"):
        data.dataset_info("folder:")


# ------------------------------------------------------------------ the command line


def test_train_resume_and_evaluate_on_a_folder(tmp_path, capsys):
    root = make_folder(tmp_path / "pets", per_class=20)
    out = tmp_path / "run"
    first = train(capsys, "--preset", "seed", "--dataset", f"folder:{root}", "--patch-size", "4",
                  "--epochs", "1", "--batch-size", "8", "--out", out)
    assert first.code == 0, first.err
    assert "pets: 36 training and 4 test images of 2 classes (8x8x1; 10% of each class" in first.out
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    extra = state["extra"]
    assert extra["dataset"] == f"folder:{root.resolve()}" and extra["classes"] == ["cat", "dog"]
    assert extra["folder"]["image_size"] == 8 and extra["folder"]["test_images"] == 4
    assert state["config"]["num_classes"] == 2 and state["config"]["image_size"] == 8
    data._FOLDERS.clear()                                             # a new process, as it were
    resumed = train(capsys, "--out", out, "--resume", "--epochs", "2")
    assert resumed.code == 0, resumed.err
    assert "read from the cache" in resumed.out and "epoch  2/2" in resumed.out
    refused = train(capsys, "--out", out, "--resume", "--epochs", "3", "--image-size", "16")
    assert refused.error_lines == [f"error: --image-size 16 differs from the run in {out} (8); a "
                                   "resumed run keeps it: drop --image-size"]
    data._FOLDERS.clear()
    result = evaluate(capsys, "--checkpoint", out)
    stored = torch.load(out / "checkpoint.pt", weights_only=True)["history"][-1]
    assert result.code == 0, result.err
    assert f"test accuracy: {stored['test_accuracy']:.2f}% (" in result.out   # the same held-out images


def test_default_run_folder_is_named_after_the_image_folder(tmp_path, capsys, monkeypatch):
    root = make_folder(tmp_path / "pets", per_class=10)
    monkeypatch.chdir(tmp_path)
    result = train(capsys, "--preset", "cnn-tiny", "--dataset", f"folder:{root}", "--epochs", "1")
    assert result.code == 0, result.err
    assert (tmp_path / "runs" / "cnn-tiny-pets" / "checkpoint.pt").is_file()


def test_a_colour_folder_resized_trains_a_vit(tmp_path, capsys):
    root = make_folder(tmp_path / "c", per_class=10, size=(10, 10), mode="RGB", colour=1, ext="jpg")
    out = tmp_path / "run"
    result = train(capsys, "--preset", "seed", "--dataset", f"folder:{root}", "--image-size", "16",
                   "--epochs", "1", "--out", out)
    assert result.code == 0, result.err
    config = torch.load(out / "checkpoint.pt", weights_only=True)["config"]
    assert (config["image_size"], config["in_channels"], config["patch_size"]) == (16, 3, 4)


@pytest.mark.parametrize("argv, message", [
    (["--image-size", "32"], "error: --image-size applies to a folder of images (--dataset "
                             "folder:PATH); mnist has images of one fixed size: drop --image-size"),
    (["--val-split", "1.5"], "argument --val-split: must be between 0 and 1 (e.g. 0.1), got 1.5"),
    (["--channels", "2"], "argument --channels: invalid choice: 2"),
])
def test_folder_flags_are_checked(argv, message, tmp_path, capsys):
    result = train(capsys, "--out", tmp_path / "r", *argv)
    assert result.code == 2 and message in result.err, result.err


def test_a_bad_folder_stops_the_run_before_its_folder_is_made(tmp_path, capsys):
    root = tmp_path / "empty"
    root.mkdir()
    result = train(capsys, "--dataset", f"folder:{root}", "--out", tmp_path / "run")
    assert result.code == 2 and len(result.error_lines) == 1
    assert result.error_lines[0].startswith(f"error: {root.resolve()} has no class subfolders")
    assert not (tmp_path / "run").exists()


def test_fine_tuning_a_shipped_mnist_model_on_a_folder_of_digits(tmp_path, capsys):
    from vit_lib.machinery.pretrained import available
    if ("seed-tuned", "mnist") not in available():
        pytest.skip("no shipped weights (make weights)")
    root = tmp_path / "digits"
    for d in range(10):
        (root / str(d)).mkdir(parents=True)
        for i in range(2):
            img = np.zeros((28, 28), np.uint8)
            img[6 + d:12 + d, 8 + i:20] = 255
            Image.fromarray(img).save(root / str(d) / f"{i}.png")
    out = tmp_path / "tuned"
    result = train(capsys, "--preset", "seed-tuned", "--dataset", f"folder:{root}", "--epochs", "1",
                   "--init-from", "pretrained:seed-tuned", "--out", out)
    assert result.code == 0, result.err
    assert "loaded 56 tensors from" in result.out and "seed-tuned-mnist.pt" in result.out
    assert "inputs normalised like --init-from's training data (mean (0.1307,)" in result.out
    assert torch.load(out / "checkpoint.pt", weights_only=True)["extra"]["folder"]["mean"] == [0.1307]


def test_evaluate_a_shipped_model_on_a_whole_folder(tmp_path, capsys):
    from vit_lib.machinery.pretrained import available
    if ("seed-tuned", "mnist") not in available():
        pytest.skip("no shipped weights (make weights)")
    root = tmp_path / "digits"
    for d in range(10):
        (root / str(d)).mkdir(parents=True)
        Image.fromarray(np.full((28, 28), 20 * d, np.uint8)).save(root / str(d) / "0.png")
    result = evaluate(capsys, "--checkpoint", "pretrained:seed-tuned", "--dataset", f"folder:{root}",
                      "--out", tmp_path / "cm.png")
    assert result.code == 0, result.err
    assert f"folder:{root.resolve()} test accuracy:" in result.out and "/10)" in result.out


def test_train_help_names_the_folder_options(capsys):
    result = cli(capsys, train_cli, "--help")
    out = result.out
    assert result.code == 0
    for flag in ("--image-size N", "--channels {1,3}", "--val-split F", "folder:PATH"):
        assert flag in out
