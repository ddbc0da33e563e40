"""Lesson 08: your own digits - preparing any image like MNIST, predicting, rollout figures.

Test images are drawn with PIL.ImageDraw (a "7", a tall "1", a "0") at several sizes, colours
and polarities and saved in every format; no training, CPU only.
Centre-of-mass convention (as vit_lib.digits): pixel centres at whole numbers 0..27, and
prepared digits put the ink's centre of mass at (14, 14), where MNIST's own digits have it.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFile, features

from vit_lib.cnn import CNNConfig, ConvNet
from vit_lib.config import ViTConfig
from vit_lib.data import dataset_info, load_tensors
from vit_lib.digits import Prediction, predict, predict_many, prepare_digit, rollout_figure
from vit_lib.machinery.errors import ImageError, UserError
from vit_lib.machinery.images import load_image, plot_preparation
from vit_lib.model import VisionTransformer

STEPS = ["grayscale", "inverted", "cropped", "scaled 20x20", "centred 28x28"]


def draw(kind: str = "7", size: tuple[int, int] = (200, 240), ink=0, paper=255,
         mode: str = "L", width: int | None = None, box=None) -> Image.Image:
    """A digit drawn with thick lines; size is (width, height); box = (x0, y0, x1, y1) as
    fractions of the image where the digit goes (default: most of it)."""
    img = Image.new(mode, size, paper)
    d = ImageDraw.Draw(img)
    bx0, by0, bx1, by1 = box or (0.15, 0.1, 0.85, 0.9)
    W, H = size

    def p(fx, fy):
        return (W * (bx0 + fx * (bx1 - bx0)), H * (by0 + fy * (by1 - by0)))

    w = width or max(2, min(W, H) // 12)
    if kind == "7":
        d.line([p(0.1, 0.1), p(0.9, 0.1), p(0.4, 0.95)], fill=ink, width=w, joint="curve")
    elif kind == "1":
        d.line([p(0.35, 0.2), p(0.5, 0.05), p(0.5, 0.95)], fill=ink, width=w, joint="curve")
    elif kind == "0":
        d.ellipse([p(0.2, 0.05), p(0.8, 0.95)], outline=ink, width=w)
    else:
        raise ValueError(kind)
    return img


def centre_of_mass(image: torch.Tensor) -> tuple[float, float]:
    """(row, column) of a [H, W] image's centre of mass, pixel centres at 0, 1, 2, ..."""
    rows = torch.arange(image.shape[0], dtype=torch.float32)
    cols = torch.arange(image.shape[1], dtype=torch.float32)
    mass = image.sum()
    return float((image.sum(1) * rows).sum() / mass), float((image.sum(0) * cols).sum() / mass)


def shift_tolerant_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean |a - b| of two [1, 28, 28] digits, minimised over shifting b by up to 1 pixel: a
    centre of mass exactly between two pixels (a symmetric "0") may be placed either way."""
    padded = torch.nn.functional.pad(b, (1, 1, 1, 1))
    return min(float((a - padded[:, 1 + dy:29 + dy, 1 + dx:29 + dx]).abs().mean())
               for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def ink_box(image: torch.Tensor) -> tuple[int, int]:
    """(height, width) of the bounding box of a [H, W] image's non-zero pixels."""
    rows, cols = torch.nonzero(image > 0, as_tuple=True)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.fixture
def mnist_test(data_dir):
    return load_tensors("mnist", train=False, data_dir=data_dir)


@pytest.fixture(scope="module")
def vit():
    torch.manual_seed(0)
    return VisionTransformer(ViTConfig())


# --------------------------------------------------------------------------- preparation


@pytest.mark.parametrize("kind", ["7", "1", "0"])
@pytest.mark.parametrize("size", [(28, 28), (200, 240), (640, 480)], ids=str)
def test_prepared_digit_is_in_mnist_format(kind, size):
    image, steps = prepare_digit(draw(kind, size), return_steps=True)
    assert image.shape == (1, 28, 28) and image.dtype == torch.float32
    assert image.min() >= 0 and image.max() == pytest.approx(1.0)
    assert list(steps) == STEPS
    assert all(step.ndim == 2 for step in steps.values())
    assert max(steps["scaled 20x20"].shape) == 20
    height, width = ink_box(image[0])
    assert max(height, width) <= 20
    cy, cx = centre_of_mass(image[0])
    # whole-pixel placement, as MNIST: within half a pixel of (14, 14) (never clamped here)
    assert abs(cy - 14) <= 0.5 + 1e-4 and abs(cx - 14) <= 0.5 + 1e-4, (cy, cx)
    assert image[0, [0, 0, -1, -1], [0, -1, 0, -1]].sum() == 0    # black corners


def test_aspect_ratio_is_kept():
    image, steps = prepare_digit(draw("1", (300, 400), width=30), return_steps=True)
    h, w = steps["scaled 20x20"].shape
    assert h == 20 and w < 12
    height, width = ink_box(image[0])
    assert height == 20 and width < height


@pytest.mark.parametrize("ink, paper, mode", [
    (255, 0, "L"),                             # MNIST's polarity already
    (0, 128, "L"),                             # black ink on grey paper
    (255, 110, "L"),                           # white chalk on a grey board
    ((20, 40, 160), (250, 240, 200), "RGB"),   # blue pen on yellowish paper
    ((250, 250, 250), (30, 60, 30), "RGB"),    # chalk on a green blackboard
], ids=["light-on-dark", "black-on-grey", "white-on-grey", "blue-on-yellow", "chalkboard"])
def test_polarity_and_colours_give_the_same_digit(ink, paper, mode):
    reference = prepare_digit(draw("7", ink=0, paper=255))   # dark on light
    other = prepare_digit(draw("7", ink=ink, paper=paper, mode=mode))
    # the background is subtracted and the strongest ink stretched to 1: measured max |diff|
    # under 1e-6 (float rounding); the tolerance leaves room for edge grey-level quantisation
    assert (other - reference).abs().max() < 0.01
    steps = prepare_digit(draw("7", ink=ink, paper=paper, mode=mode), return_steps=True)[1]
    inverted = not torch.equal(steps["inverted"], steps["grayscale"])
    assert inverted == (np.mean(ink) < np.mean(paper))


@pytest.mark.parametrize("ink", [(20, 20, 20), (255, 255, 255)], ids=["dark-ink", "light-ink"])
def test_transparent_background(ink):
    reference = prepare_digit(draw("7"))
    rgba = draw("7", ink=ink + (255,), paper=(0, 0, 0, 0), mode="RGBA")
    assert (prepare_digit(rgba) - reference).abs().max() < 0.05
    la = draw("7", ink=(ink[0], 255), paper=(0, 0), mode="LA")
    assert (prepare_digit(la) - reference).abs().max() < 0.05


def test_palette_png_with_transparency(tmp_path):
    reference = prepare_digit(draw("0"))
    img = draw("0", ink=1, paper=0, mode="P")
    img.putpalette([255, 255, 255, 10, 10, 10] + [0, 0, 0] * 254)   # 0: white, 1: near black
    path = tmp_path / "palette.png"
    img.save(path, transparency=0)
    assert "transparency" in Image.open(path).info
    assert (prepare_digit(path) - reference).abs().max() < 0.05


def test_photo_of_paper_with_uneven_light_and_noise():
    """A 600x400 'photo': grey paper lit unevenly, sensor noise, dark ink off-centre."""
    rng = np.random.default_rng(0)
    w, h = 600, 400
    yy, xx = np.mgrid[0:h, 0:w]
    paper = 150 + 70 * xx / w + 20 * yy / h                 # 150 (dark corner) .. 240
    clean = np.asarray(draw("7", (w, h), ink=255, paper=0, width=22,
                            box=(0.45, 0.15, 0.8, 0.85)), dtype=np.float64) / 255
    photo = paper * (1 - clean) + 40 * clean + rng.normal(0, 8, (h, w))
    photo = Image.fromarray(np.clip(photo, 0, 255).astype(np.uint8)).convert("RGB")
    image, steps = prepare_digit(photo, return_steps=True)
    reference = prepare_digit(draw("7", (w, h), width=22, box=(0.45, 0.15, 0.8, 0.85)))
    assert steps["grayscale"].shape == (400, 600)
    # the crop found the digit, not the shading: about the digit's box (35% x 70% of the image)
    ch, cw = steps["cropped"].shape
    assert 0.6 * h < ch < 0.8 * h and 0.25 * w < cw < 0.4 * w, (ch, cw)
    assert (image - reference).abs().mean() < 0.02     # measured 0.002 (noise, shading)
    assert (image[0] == 0).float().mean() > 0.6          # the paper became black
    assert max(ink_box(image[0])) <= 20
    cy, cx = centre_of_mass(image[0])
    assert abs(cy - 14) <= 0.5 + 1e-4 and abs(cx - 14) <= 0.5 + 1e-4


def test_arrays_and_tensors():
    img = draw("7", (120, 140))
    reference = prepare_digit(img)
    gray = np.array(img)                                             # H x W uint8
    sources = [gray, gray[..., None], np.stack([gray] * 3, -1).astype(np.float32) / 255,
               torch.from_numpy(gray), torch.from_numpy(gray)[None].float() / 255,
               torch.from_numpy(gray)[None, None], torch.from_numpy(gray).expand(3, -1, -1)]
    for source in sources:
        assert (prepare_digit(source) - reference).abs().max() < 1e-5
    assert load_image(gray).size == (120, 140)


# --------------------------------------------------------------------------- formats


FORMATS = ["PNG", "JPEG", "BMP", "GIF",
           pytest.param("WEBP", marks=pytest.mark.skipif(
               not features.check("webp"), reason="this Pillow was built without WebP"))]


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_round_trips(fmt, tmp_path):
    img = draw("0", (180, 220), ink=(30, 30, 90), paper=(245, 240, 230), mode="RGB")
    path = tmp_path / f"digit.{fmt.lower()}"
    img.save(path, format=fmt)
    loaded = load_image(path)
    assert loaded.size == (180, 220)
    (image, steps), (reference, ref_steps) = (prepare_digit(x, return_steps=True)
                                              for x in (path, img))
    # lossy JPEG/WebP and GIF's 256-colour palette change the grey levels slightly...
    assert steps["cropped"].shape == ref_steps["cropped"].shape
    assert (steps["scaled 20x20"] - ref_steps["scaled 20x20"]).abs().mean() < 0.01  # <= 0.003
    # ...and this symmetric "0" has its centre of mass exactly between two pixels, so a
    # slightly different grey level may place it one pixel over
    assert shift_tolerant_diff(image, reference) < 0.01                           # <= 0.001


def test_gif_uses_the_first_frame(tmp_path):
    seven, one = draw("7"), draw("1")
    path = tmp_path / "animated.gif"
    seven.save(path, save_all=True, append_images=[one], duration=100, loop=0)
    prepared = prepare_digit(path)
    assert (prepared - prepare_digit(seven)).abs().mean() < 0.02
    assert (prepared - prepare_digit(one)).abs().mean() > 0.05


def test_phone_photo_orientation_and_16_bit_png(tmp_path):
    upright = draw("1", (100, 200))
    exif = Image.Exif()
    exif[0x0112] = 6                       # "rotate 90 degrees clockwise to display"
    path = tmp_path / "phone.jpg"
    upright.rotate(90, expand=True).save(path, exif=exif)
    assert Image.open(path).size == (200, 100) and load_image(path).size == (100, 200)
    deep = tmp_path / "deep.png"
    Image.fromarray(np.array(draw("7")).astype(np.uint16) * 257).save(deep)   # 16-bit gray
    assert (prepare_digit(deep) - prepare_digit(draw("7"))).abs().max() < 1e-5


# --------------------------------------------------------------------------- bad inputs


def _png_cut_in_half(folder):
    noise = np.random.default_rng(0).integers(0, 256, (64, 64), dtype=np.uint8)
    good = folder / "good.png"
    Image.fromarray(noise).save(good)            # noise: the PNG is mostly image data
    data = good.read_bytes()
    bad = folder / "half.png"
    bad.write_bytes(data[:len(data) // 2])
    return bad


def _make(kind, folder):
    if kind == "missing":
        return folder / "no_such_digit.png", "does not exist"
    if kind == "folder":
        sub = folder / "digits_folder"
        sub.mkdir()
        return sub, "is a folder"
    if kind == "text":
        path = folder / "x.png"
        path.write_text("this is not a picture\n")
        return path, "not an image"
    if kind == "empty":
        path = folder / "empty.png"
        path.write_bytes(b"")
        return path, "empty"
    if kind == "truncated":
        return _png_cut_in_half(folder), "cut short"
    colour = {"blank-white": 255, "blank-black": 0, "blank-grey-noise": None}[kind]
    path = folder / f"{kind}.png"
    if colour is None:   # uniform grey with a little sensor noise: still no digit
        rng = np.random.default_rng(1)
        Image.fromarray(np.clip(rng.normal(128, 3, (60, 80)), 0, 255).astype(np.uint8)).save(path)
    else:
        Image.new("L", (80, 60), colour).save(path)
    return path, "is blank: no digit found"


@pytest.mark.parametrize("kind", ["missing", "folder", "text", "empty", "truncated",
                                  "blank-white", "blank-black", "blank-grey-noise"])
def test_bad_files_raise_image_error(kind, tmp_path):
    path, problem = _make(kind, tmp_path)
    with pytest.raises(ImageError) as info:
        prepare_digit(path)
    message = str(info.value)
    assert path.name in message and problem in message, message
    assert isinstance(info.value, UserError) and isinstance(info.value, ValueError)
    with pytest.raises(ImageError):
        prepare_digit(str(path))                 # str paths too


def test_truncated_file_is_not_silently_loaded(tmp_path):
    assert not ImageFile.LOAD_TRUNCATED_IMAGES         # Pillow's default: refuse cut files
    with pytest.raises(ImageError, match="cut short"):
        load_image(_png_cut_in_half(tmp_path))


@pytest.mark.parametrize("source, problem", [
    (np.zeros((2, 3, 5, 5), dtype=np.uint8), "height x width"),
    (np.zeros((3, 28, 28), dtype=np.uint8), "transpose(1, 2, 0)"),
    (np.full((28, 28), 200.0), "[0, 1]"),
    (np.zeros((28, 28), dtype=np.uint16) + 1000, "0..255"),
    (torch.zeros(2, 1, 28, 28), "batch of 2"),
    (torch.zeros(28, 28, 3), "permute(2, 0, 1)"),
    (torch.full((1, 28, 28), -0.42), "normalisation"),
    ("not a path".encode(), "bytes"),
], ids=["4d-array", "channels-first-array", "float-0-255", "uint16", "batch-tensor",
        "channels-last-tensor", "normalised-tensor", "bytes"])
def test_unsupported_arrays_raise_image_error(source, problem):
    with pytest.raises(ImageError) as info:
        prepare_digit(source)
    assert problem in str(info.value), str(info.value)


# --------------------------------------------------------------------------- real MNIST


def test_mnist_digits_survive_preparation(mnist_test, tmp_path):
    """MNIST's digits were prepared this way: saving one as PNG and preparing it again gives it
    back. Measured over the first 300 test digits: median mean-abs-difference 0.0005, 99% under
    0.002, worst 0.082 (a centre of mass exactly between two pixels, placed the other way)."""
    images, _ = mnist_test
    diffs = []
    for i in range(60):
        path = tmp_path / f"mnist_{i}.png"
        Image.fromarray(images[i, 0].numpy()).save(path)
        original = images[i].float() / 255
        diffs.append(float((prepare_digit(path) - original).abs().mean()))
    assert np.median(diffs) < 0.005
    assert max(diffs) < 0.1, max(diffs)


def test_predict_on_a_saved_mnist_digit(mnist_test, vit, tmp_path):
    images, labels = mnist_test
    path = tmp_path / "my_digit.png"
    Image.fromarray(images[0, 0].numpy()).save(path)      # as it would arrive from a user
    vit.train()
    prediction = predict(vit, path)
    assert vit.training                                     # mode restored
    assert isinstance(prediction, Prediction)
    assert len(prediction.top) == 3
    probs = [p for _, p in prediction.top]
    assert probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-6
    assert prediction.probabilities.shape == (10,)
    assert float(prediction.probabilities.sum()) == pytest.approx(1.0, abs=1e-5)
    assert prediction.label == prediction.top[0][0] == str(prediction.index)
    assert prediction.image.shape == (1, 28, 28) and prediction.image.max() <= 1
    assert re.fullmatch(r"\d \(\d+\.\d%\), \d \(\d+\.\d%\), \d \(\d+\.\d%\)", str(prediction))
    again = predict(vit, prediction.image, prepared=True)
    assert torch.allclose(again.probabilities, prediction.probabilities)


def test_predict_normalisation_classes_and_cnn(vit):
    img = draw("7")
    info = dataset_info("mnist")
    raw = predict(vit, img)
    assert raw.normalization is None
    normalised = predict(vit, img, normalize=True)
    explicit = predict(vit, img, normalize=(info.mean, info.std))
    assert normalised.normalization == (info.mean, info.std)
    assert torch.allclose(normalised.probabilities, explicit.probabilities)
    assert not torch.allclose(normalised.probabilities, raw.probabilities)
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    named = predict(vit, img, classes=names, k=5)
    assert len(named.top) == 5 and named.label == names[named.index]
    with pytest.raises(ValueError, match="3 names"):
        predict(vit, img, classes=["a", "b", "c"])
    cnn = ConvNet(CNNConfig()).eval()
    result = predict(cnn, img, normalize=True)
    assert not cnn.training and len(result.top) == 3
    assert float(result.probabilities.sum()) == pytest.approx(1.0, abs=1e-5)


def test_prediction_str():
    p = Prediction("7", 7, torch.zeros(10), [("7", 0.931), ("1", 0.042), ("2", 0.011)],
                   torch.zeros(1, 28, 28))
    assert str(p) == "7 (93.1%), 1 (4.2%), 2 (1.1%)"


def test_predict_many_keeps_going_past_a_bad_file(vit, tmp_path):
    good = tmp_path / "seven.png"
    draw("7").save(good)
    blank = tmp_path / "blank.png"
    Image.new("L", (50, 50), 255).save(blank)
    results = predict_many(vit, [good, tmp_path / "missing.png", draw("1"), blank],
                           normalize=True)
    assert [type(r) for r in results] == [Prediction, ImageError, Prediction, ImageError]
    assert "missing.png" in str(results[1]) and "blank.png" in str(results[3])
    single = predict(vit, good, normalize=True)
    assert torch.allclose(results[0].probabilities, single.probabilities, atol=1e-6)
    assert predict_many(vit, [tmp_path / "missing.png"]) and \
        isinstance(predict_many(vit, [tmp_path / "missing.png"])[0], ImageError)


# --------------------------------------------------------------------------- figures


def test_plot_preparation():
    import matplotlib.pyplot as plt
    _, steps = prepare_digit(draw("7", (300, 200)), return_steps=True)
    fig = plot_preparation(steps)
    try:
        assert len(fig.axes) == 5
        assert fig.get_size_inches()[0] / 5 >= 1.6
        titles = [ax.get_title() for ax in fig.axes]
        for name, title in zip(STEPS, titles, strict=True):
            assert name in title
        assert "300x200 px" in titles[0] and "28x28 px" in titles[-1]
    finally:
        plt.close(fig)
    fig, axes = plt.subplots(2, 5)
    try:
        assert plot_preparation(steps, ax_row=axes[1]) is fig
    finally:
        plt.close(fig)


@pytest.mark.parametrize("pool", ["cls", "mean"])
def test_rollout_figure(pool):
    import matplotlib.pyplot as plt
    torch.manual_seed(0)
    model = VisionTransformer(ViTConfig(pool=pool))
    prediction = predict(model, draw("7"), normalize=True)
    fig = rollout_figure(model, prediction)
    try:
        assert len(fig.axes) == 2                          # the digit and its colour bar
        assert fig.axes[1].get_ylabel() == "attention rollout"
        assert f"predicted {prediction.label}" in fig.axes[0].get_title()
    finally:
        plt.close(fig)


def test_rollout_needs_a_vit():
    cnn = ConvNet(CNNConfig())
    prediction = predict(cnn, draw("7"))
    with pytest.raises(TypeError, match="attention rollout needs a VisionTransformer"):
        rollout_figure(cnn, prediction)
