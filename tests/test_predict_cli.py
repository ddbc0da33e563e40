"""`python -m vit_lib predict IMAGE...`: top classes per file, one `error:` line per unusable file
(the others still classified; exit 1), usage errors (exit 2), attention-rollout files, CNNs
refused for rollouts, a folder-trained model's class names. Models from tiny runs on synthetic
data (tests/cli_fakes.py) or the shipped weights; in-process, seconds."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_fakes import cli, train
from PIL import Image, ImageDraw

from vit_lib.cli import predict as predict_cli
from vit_lib.machinery import pretrained

ROOT = Path(__file__).resolve().parent.parent
LINE = re.compile(r"^(?P<file>.+): (?P<top>.+ \(\d+\.\d%\)(, .+ \(\d+\.\d%\))*)$")


def predict(capsys, *argv):
    return cli(capsys, predict_cli, *argv)


def digit(path: Path, kind: str = "7", size=(120, 150)) -> Path:
    """A thick dark digit on white paper, like a drawing or a photo of one."""
    img = Image.new("L", size, 255)
    d = ImageDraw.Draw(img)
    w, h = size
    if kind == "7":
        d.line([(0.2 * w, 0.15 * h), (0.8 * w, 0.15 * h), (0.45 * w, 0.9 * h)], fill=0, width=12)
    else:
        d.line([(0.5 * w, 0.1 * h), (0.5 * w, 0.9 * h)], fill=0, width=12)
    img.save(path)
    return path


@pytest.fixture
def run(tmp_path, capsys, fake_data) -> Path:
    """A finished 1-epoch seed run on synthetic MNIST-shaped data (a fraction of a second)."""
    out = tmp_path / "runs" / "x"
    result = train(capsys, "--preset", "seed-tuned", "--epochs", "1", "--out", out)
    assert result.code == 0, result.err
    return out


@pytest.fixture
def bad_files(tmp_path) -> dict[str, tuple[Path, str]]:
    """Each kind of unusable input -> (path, what its error line says)."""
    d = tmp_path / "bad"
    d.mkdir()
    (d / "notes.png").write_text("this is text, not a picture")
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    Image.fromarray(noise).save(d / "whole.png")
    (d / "cut.png").write_bytes((d / "whole.png").read_bytes()[:300])
    (d / "empty.png").write_bytes(b"")
    Image.new("L", (40, 40), 255).save(d / "blank.png")
    (d / "folder.png").mkdir()
    return {"not an image": (d / "notes.png", "is not an image that Pillow can read"),
            "truncated": (d / "cut.png", "is damaged or cut short"),
            "zero bytes": (d / "empty.png", "is empty (0 bytes)"),
            "blank": (d / "blank.png", "is blank: no digit found"),
            "a directory": (d / "folder.png", "is a folder, not an image file"),
            "missing": (d / "nope.png", "does not exist")}


def test_each_file_gets_its_top_three_classes(run, tmp_path, capsys):
    files = [digit(tmp_path / "seven.png"), digit(tmp_path / "one.jpg", "1")]
    result = predict(capsys, *files, "--checkpoint", run)
    assert result.code == 0 and result.err == "", result.err
    lines = result.out.splitlines()
    assert [LINE.match(line)["file"] for line in lines] == [str(f) for f in files]
    for line in lines:
        top = re.findall(r"(\S+) \((\d+\.\d)%\)", line)
        assert len(top) == 3 and all(name in "0123456789" for name, _ in top)
        probs = [float(p) for _, p in top]
        assert probs == sorted(probs, reverse=True) and sum(probs) <= 100.2
    again = predict(capsys, files[0], "--checkpoint", run / "checkpoint.pt", "--top", "5")
    assert len(re.findall(r"\(\d+\.\d%\)", again.out)) == 5


@pytest.mark.parametrize("kind", ["not an image", "truncated", "zero bytes", "blank", "a directory",
                                  "missing"])
def test_a_bad_file_is_one_error_line_naming_it(kind, bad_files, run, capsys):
    path, says = bad_files[kind]
    result = predict(capsys, path, "--checkpoint", run)
    assert result.code == 1 and result.out == ""
    assert result.error_lines == [result.err.splitlines()[0]] and "Traceback" not in result.err
    assert result.error_lines[0].startswith(f"error: {path} {says}"), result.err
    assert result.err.splitlines()[-1] == "1 of 1 file could not be classified"


def test_bad_files_among_good_ones_stop_nothing(bad_files, run, tmp_path, capsys):
    good = [digit(tmp_path / "a.png"), digit(tmp_path / "b.png", "1")]
    bad = [p for p, _ in bad_files.values()]
    result = predict(capsys, good[0], *bad, good[1], "--checkpoint", run)
    assert result.code == 1
    assert [LINE.match(line)["file"] for line in result.out.splitlines()] == [str(g) for g in good]
    assert len(result.error_lines) == len(bad)
    for path, line in zip(bad, result.error_lines, strict=True):
        assert line.startswith(f"error: {path} ")
    assert f"{len(bad)} of {len(bad) + 2} files could not be classified" in result.err


def test_rollout_one_file_per_image(run, tmp_path, capsys, bad_files):
    one = predict(capsys, digit(tmp_path / "a.png"), "--checkpoint", run, "--rollout",
                  tmp_path / "out" / "roll.png")
    assert one.code == 0, one.err
    assert (tmp_path / "out" / "roll.png").stat().st_size > 5_000
    assert f"attention rollout: {tmp_path / 'out' / 'roll.png'}" in one.out
    several = predict(capsys, digit(tmp_path / "a.png"), bad_files["blank"][0],
                      digit(tmp_path / "c.png", "1"), "--checkpoint", run, "--rollout",
                      tmp_path / "many.png")
    assert several.code == 1
    assert sorted(p.name for p in tmp_path.glob("many*.png")) == ["many-1.png", "many-3.png"]
    bad_suffix = predict(capsys, digit(tmp_path / "a.png"), "--checkpoint", run, "--rollout",
                         tmp_path / "roll.txt")
    assert bad_suffix.code == 2 and bad_suffix.error_lines[0].startswith("error: --rollout")


def test_a_cnn_has_no_attention_to_draw(tmp_path, capsys, fake_data):
    out = tmp_path / "cnn"
    assert train(capsys, "--preset", "cnn-tiny", "--epochs", "1", "--out", out).code == 0
    image = digit(tmp_path / "a.png")
    result = predict(capsys, image, "--checkpoint", out, "--rollout", tmp_path / "r.png")
    assert result.code == 2 and result.out == "" and len(result.err.splitlines()) == 1
    assert result.error_lines[0].startswith("error: --rollout draws a ViT's attention, and "
                                            f"{out / 'checkpoint.pt'} is a CNN (3 stages")
    assert not (tmp_path / "r.png").exists()
    assert predict(capsys, image, "--checkpoint", out).code == 0       # without a rollout: fine


def test_a_folder_trained_model_prints_its_class_names(tmp_path, capsys):
    from test_image_folder import make_folder
    root = make_folder(tmp_path / "pets", classes=("cat", "dog", "owl"), per_class=6, mode="RGB",
                       colour=0)
    out = tmp_path / "run"
    trained = train(capsys, "--preset", "seed", "--dataset", f"folder:{root}", "--patch-size", "4",
                    "--epochs", "1", "--out", out)
    assert trained.code == 0, trained.err
    result = predict(capsys, root / "owl" / "000.png", tmp_path / "none.png", "--checkpoint", out,
                     "--rollout", tmp_path / "owl.png")
    assert result.code == 1
    names = re.findall(r"(\S+) \(\d+\.\d%\)", result.out.splitlines()[0])
    assert sorted(names) == ["cat", "dog", "owl"]
    assert (tmp_path / "owl-1.png").is_file()              # a colour 8x8 ViT: rollout drawn too
    blank = tmp_path / "blank.png"
    Image.new("RGB", (8, 8), (20, 30, 40)).save(blank)
    resized = predict(capsys, blank, "--checkpoint", out)
    assert resized.error_lines == [f"error: {blank} is blank: all its pixels are one colour "
                                   "(within 0 of 255 levels), nothing to classify; use an image "
                                   "of the object"]
    digit_mode = predict(capsys, blank, "--checkpoint", out, "--prepare", "digit")
    assert digit_mode.code == 2 and "--prepare digit makes 28x28 grayscale digits" in digit_mode.err


def test_usage_errors_exit_2(run, tmp_path, capsys):
    image = digit(tmp_path / "a.png")
    assert predict(capsys).code == 2                                     # no image
    both = predict(capsys, image, "--checkpoint", run, "--pretrained", "seed")
    assert both.code == 2 and "not allowed with argument" in both.err
    missing = predict(capsys, image, "--checkpoint", tmp_path / "nowhere")
    assert missing.code == 2 and missing.error_lines[0].startswith("error: no checkpoint at")
    if pretrained.available():
        unknown = predict(capsys, image, "--pretrained", "huge")
        assert unknown.code == 2 and unknown.error_lines[0].startswith(
            "error: unknown pretrained model 'huge'; choose one of")


@pytest.mark.skipif(not pretrained.available(), reason="no shipped weights (make weights)")
def test_the_shipped_models_read_drawn_digits(tmp_path, capsys):
    files = [digit(tmp_path / "seven.png"), digit(tmp_path / "one.png", "1")]
    for name, _ in pretrained.available():
        if _ != "mnist":
            continue
        result = predict(capsys, *files, "--pretrained", name)
        assert result.code == 0, result.err
        firsts = [re.search(r": (\S+) \(", line)[1] for line in result.out.splitlines()]
        assert firsts == ["7", "1"], (name, result.out)


def test_the_command_is_wired_into_python_m_vit_lib(tmp_path):
    result = subprocess.run([sys.executable, "-m", "vit_lib", "predict", "--help"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "usage: python -m vit_lib predict" in result.stdout
    assert "--rollout OUT.png" in result.stdout and "exit status" in result.stdout.lower()


def test_a_light_image_for_a_model_trained_on_dark_ones_gets_a_note():
    import torch

    from vit_lib.cli.predict import _opposite_polarity
    mnist_like = ((0.1307,), (0.3081,))
    white_page_dark_ink = torch.ones(1, 28, 28)
    white_page_dark_ink[:, 10:18, 12:16] = 0
    assert _opposite_polarity(white_page_dark_ink, mnist_like)             # the drawn digit: a note
    assert not _opposite_polarity(1 - white_page_dark_ink, mnist_like)     # already light on dark
    assert not _opposite_polarity(white_page_dark_ink, ((0.7,), (0.3,)))  # a model of light pictures
    assert not _opposite_polarity(white_page_dark_ink, None)              # raw pixels: nothing known
