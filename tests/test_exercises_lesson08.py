"""The checks of notebook 08 accept the worked solutions and explain typical mistakes."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vit_lib.classroom.exercises import lesson08 as ex

# --- worked solutions (the same as in the notebook) ------------------------------------------


def centre_of_mass(image: torch.Tensor) -> tuple[float, float]:
    rows = torch.arange(image.shape[0], dtype=torch.float32)
    cols = torch.arange(image.shape[1], dtype=torch.float32)
    mass = image.sum()
    return float((image.sum(dim=1) * rows).sum() / mass), float((image.sum(dim=0) * cols).sum() / mass)


def scale_into_box(cropped: torch.Tensor, box: int) -> torch.Tensor:
    h, w = cropped.shape
    size = (round(h * box / max(h, w)), round(w * box / max(h, w)))
    scaled = F.interpolate(cropped[None, None], size=size, mode="bilinear", antialias=True)[0, 0]
    scaled = scaled.clamp(min=0)
    return scaled / scaled.max()


def paste_centred(scaled: torch.Tensor) -> torch.Tensor:
    h, w = scaled.shape
    cy, cx = centre_of_mass(scaled)
    y0 = min(max(round(14 - cy), 0), 28 - h)
    x0 = min(max(round(14 - cx), 0), 28 - w)
    canvas = torch.zeros(28, 28)
    canvas[y0:y0 + h, x0:x0 + w] = scaled
    return canvas


def model_input(prepared: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    return ((prepared - mean) / std)[None]


def _out(capsys) -> str:
    out = capsys.readouterr().out.strip()
    assert "\n" not in out, "a check prints exactly one line"
    return out


def _fails_with(capsys, check, answer, hint: str) -> None:
    result = check(answer)
    out = _out(capsys)
    assert not result and result.status == "failed", out
    assert out.startswith("✗") and hint in out, out


# --- exercise 1 ----------------------------------------------------------------------------------


def test_centre_of_mass(capsys):
    assert ex.check_centre_of_mass(centre_of_mass)
    assert _out(capsys).startswith("✓ centre of mass: right on three test digits")
    assert ex.check_centre_of_mass(lambda im: torch.tensor(centre_of_mass(im)))    # a tensor is fine


def test_centre_of_mass_hints(capsys):
    def unweighted(image):
        rows, cols = torch.nonzero(image > 0, as_tuple=True)
        return rows.float().mean(), cols.float().mean()

    def without_division(image):
        rows, cols = torch.arange(image.shape[0]), torch.arange(image.shape[1])
        return float((image.sum(1) * rows).sum()), float((image.sum(0) * cols).sum())

    cases = [(lambda im: centre_of_mass(im)[::-1], "swapped"),
             (without_division, "divide the weighted sums by the total mass"),
             (lambda im: tuple(v + 1 for v in centre_of_mass(im)), "not 1, 2, 3"),
             (lambda im: tuple(v + 0.5 for v in centre_of_mass(im)), "no + 0.5"),
             (unweighted, "each counted once"),
             (lambda im: ((im.shape[0] - 1) / 2, (im.shape[1] - 1) / 2), "the image's middle"),
             (lambda im: 3.0, "return two numbers"),
             (lambda im: 1 / 0, "raised ZeroDivisionError")]
    for answer, hint in cases:
        _fails_with(capsys, ex.check_centre_of_mass, answer, hint)


# --- exercise 2 ----------------------------------------------------------------------------------


def test_scale_into_box(capsys):
    assert ex.check_scale_into_box(scale_into_box)
    assert _out(capsys).startswith("✓ scaling into the 20x20 box")

    def nearest(cropped, box):
        h, w = cropped.shape
        size = (round(h * box / max(h, w)), round(w * box / max(h, w)))
        scaled = F.interpolate(cropped[None, None], size=size, mode="nearest")[0, 0]
        return scaled / scaled.max()

    assert ex.check_scale_into_box(nearest)           # any sensible interpolation passes
    capsys.readouterr()


def test_scale_into_box_hints(capsys):
    def resize(size_of):
        def fn(cropped, box):
            scaled = F.interpolate(cropped[None, None], size=size_of(*cropped.shape, box),
                                   mode="bilinear")[0, 0]
            return scaled / scaled.max()
        return fn

    def by_reshape(cropped, box):
        good = scale_into_box(cropped, box)
        return good.flatten().flip(0).reshape(good.shape)

    cases = [(resize(lambda h, w, b: (b, b)), "squashes the digit"),
             (resize(lambda h, w, b: (round(w * b / max(h, w)), round(h * b / max(h, w)))),
              "height and width are swapped"),
             (resize(lambda h, w, b: (round(h * b / min(h, w)), round(w * b / min(h, w)))),
              "the shorter side became 20"),
             (resize(lambda h, w, b: (int(h * b / max(h, w)), int(w * b / max(h, w)))),
              "use round(), not int()"),
             (lambda c, b: scale_into_box(c, b) * 0.8, "divide by the maximum"),
             (lambda c, b: scale_into_box(c, b)[None, None], "drop the [1, 1]"),
             (by_reshape, "does not look like the crop"),
             (lambda c, b: scale_into_box(c, b) * 1.1 - 0.1, "below 0")]
    for answer, hint in cases:
        _fails_with(capsys, ex.check_scale_into_box, answer, hint)


# --- exercise 3 ----------------------------------------------------------------------------------


def test_paste_centred(capsys):
    assert ex.check_paste_centred(paste_centred)
    assert _out(capsys).startswith("✓ pasting by the centre of mass")


def test_paste_centred_hints(capsys):
    def box_centred(scaled):
        h, w = scaled.shape
        canvas = torch.zeros(28, 28)
        canvas[(28 - h) // 2:(28 - h) // 2 + h, (28 - w) // 2:(28 - w) // 2 + w] = scaled
        return canvas

    def unclamped(scaled):
        h, w = scaled.shape
        cy, cx = centre_of_mass(scaled)
        y0, x0 = round(14 - cy), round(14 - cx)
        canvas = torch.zeros(40, 40)
        canvas[y0:y0 + h, x0:x0 + w] = scaled
        return canvas[:28, :28]

    def swapped(scaled):
        h, w = scaled.shape
        cy, cx = centre_of_mass(scaled)
        y0, x0 = min(max(round(14 - cx), 0), 28 - h), min(max(round(14 - cy), 0), 28 - w)
        canvas = torch.zeros(28, 28)
        canvas[y0:y0 + h, x0:x0 + w] = scaled
        return canvas

    def middle(scaled):
        h, w = scaled.shape
        cy, cx = centre_of_mass(scaled)
        y0 = min(max(round(13.5 - cy - 0.01), 0), 28 - h)
        x0 = min(max(round(13.5 - cx - 0.01), 0), 28 - w)
        canvas = torch.zeros(28, 28)
        canvas[y0:y0 + h, x0:x0 + w] = scaled
        return canvas

    def resized(scaled):
        return F.interpolate(scaled[None, None], size=(28, 28), mode="bilinear")[0, 0]

    cases = [(box_centred, "centres the bounding box"),
             (unclamped, "was cut off"),
             (swapped, "offsets are swapped"),
             (resized, "not pasted unchanged"),
             (lambda s: paste_centred(s)[None], "expected [28, 28]")]
    for answer, hint in cases:
        _fails_with(capsys, ex.check_paste_centred, answer, hint)
    result = ex.check_paste_centred(middle)           # 13.5: off by half a pixel or more somewhere
    out = _out(capsys)
    assert result or "13.5" in out, out


# --- exercise 4 ----------------------------------------------------------------------------------


def test_model_input(capsys):
    assert ex.check_model_input(model_input)
    assert _out(capsys).startswith("✓ the model's input")


def test_model_input_hints(capsys):
    cases = [(lambda x, m, s: x[None], "not normalised"),
             (lambda x, m, s: ((x - m) * s)[None], "do not multiply"),
             (lambda x, m, s: ((x - s) / m)[None], "swapped"),
             (lambda x, m, s: ((x / 255 - m) / s)[None], "divide by 255 again"),
             (lambda x, m, s: (x / s - m)[None], "subtract the mean first"),
             (lambda x, m, s: ((x - m) / s ** 2)[None], "not the variance"),
             (lambda x, m, s: (x - m) / s, "add the batch dimension"),
             (lambda x, m, s: x[:, :14], "expected [1, 1, 28, 28]")]
    for answer, hint in cases:
        _fails_with(capsys, ex.check_model_input, answer, hint)


def test_stubs_are_not_attempted(capsys):
    def stub(*args):
        # YOUR CODE HERE
        raise NotImplementedError()

    for check in (ex.check_centre_of_mass, ex.check_scale_into_box, ex.check_paste_centred,
                  ex.check_model_input):
        result = check(stub)
        assert result.status == "not attempted", result
        assert "not attempted yet" in _out(capsys)
