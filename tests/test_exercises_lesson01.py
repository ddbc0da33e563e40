"""The checks of notebook 01 accept the worked solutions and explain typical mistakes."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from vit_lib.classroom.exercises.lesson01 import check_num_patches, check_patches, check_unpatchify


def _out(capsys) -> str:
    out = capsys.readouterr().out.strip()
    assert "\n" not in out, "a check prints exactly one line"
    return out


def _images(c: int = 1, h: int = 28, w: int = 28) -> torch.Tensor:
    return torch.rand(3, c, h, w, generator=torch.Generator().manual_seed(0))


def _by_hand(x: torch.Tensor, p: int, order=(0, 2, 4, 1, 3, 5)) -> torch.Tensor:
    b, c, h, w = x.shape
    return x.reshape(b, c, h // p, p, w // p, p).permute(*order).reshape(b, -1, c * p * p)


def test_patches_accepts_solutions(capsys):
    x = _images()
    assert check_patches(_by_hand(x, 4), x, 4)
    assert _out(capsys) == "✓ patches of size 4: 49 patches of 16 values each, in row-major order"
    unfolded = x.unfold(2, 4, 4).unfold(3, 4, 4).permute(0, 2, 3, 1, 4, 5).reshape(3, 49, 16)
    assert check_patches(unfolded, x, 4)
    assert check_patches(F.unfold(x, 4, stride=4).transpose(1, 2), x, 4)
    rgb = _images(3, 8, 12)
    assert check_patches(_by_hand(rgb, 4), rgb, 4)
    capsys.readouterr()


def test_patches_hints(capsys):
    x = _images()
    cases = [(x.reshape(3, 49, 16), "plain reshape"),
             (_by_hand(x, 4, (0, 4, 2, 1, 3, 5)), "column by column: the patch order"),
             (_by_hand(x, 4, (0, 2, 4, 1, 5, 3)), "flattened column by column"),
             (F.unfold(x, 4, stride=4), "transpose(1, 2)"),
             (_by_hand(x, 4)[0], "batch dimension"),
             (_by_hand(x, 7), "look like 7x7 patches"),
             (torch.zeros(3, 50, 16), "49 patches of C*4*4 = 16 values"),
             (_by_hand(x, 4).flip(-1), "wrong order")]
    for answer, hint in cases:
        assert not check_patches(answer, x, 4)
        out = _out(capsys)
        assert out.startswith("✗") and hint in out, out
    rgb = _images(3, 8, 8)
    assert not check_patches(_by_hand(rgb, 4, (0, 2, 4, 3, 5, 1)), rgb, 4)
    assert "channel must come first" in _out(capsys)


def test_num_patches(capsys):
    assert check_num_patches(lambda h, w, p: (h // p) * (w // p))
    assert _out(capsys).startswith("✓ number of patches")
    cases = [(lambda h, w, p: (h // p) * (w // p) + 1, "CLS"),
             (lambda h, w, p: h * w // p, "P squared"),
             (lambda h, w, p: (h // p) ** 2, "not square"),
             (lambda h, w, p: h * w / p ** 2, "float"),
             (lambda h, w, p: "16", "expected the int 16"),
             (lambda h, w, p: 1 // 0, "raised ZeroDivisionError")]
    for fn, hint in cases:
        assert not check_num_patches(fn)
        out = _out(capsys)
        assert out.startswith("✗") and hint in out, out


def test_num_patches_names_the_learners_function(capsys):
    def count_patches(height: int, width: int, patch_size: int) -> int:
        return height * width // patch_size

    assert not check_num_patches(count_patches)
    out = _out(capsys)
    assert "count_patches(28, 28, 7) returned 112, expected 16" in out, out
    assert "num_patches(" not in out.replace("count_patches(", "")
    assert not check_num_patches(lambda h, w, p: h * w)
    assert "your function(28, 28, 7) returned 784" in _out(capsys)


def test_num_patches_stub_is_not_attempted(capsys):
    def count_patches(height: int, width: int, patch_size: int) -> int:
        raise NotImplementedError()

    result = check_num_patches(count_patches)
    assert not result and result.status == "not attempted"
    assert _out(capsys).startswith("✗ number of patches: not attempted yet")


def _unpatchify(patches: torch.Tensor, p: int, h: int, w: int) -> torch.Tensor:
    b, n, size = patches.shape
    c = size // (p * p)
    x = patches.reshape(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, h, w)


def test_unpatchify_accepts_solution(capsys):
    assert check_unpatchify(_unpatchify)
    assert _out(capsys).startswith("✓ patches back to an image")


def test_unpatchify_hints(capsys):
    def plain(patches, p, h, w):
        return patches.reshape(patches.shape[0], -1, h, w)

    def transposed(patches, p, h, w):
        b, n, size = patches.shape
        c = size // (p * p)
        return patches.reshape(b, h // p, w // p, c, p, p).permute(0, 3, 1, 5, 2, 4).reshape(b, c, h, w)

    def square_only(patches, p, h, w):
        b, n, size = patches.shape
        return patches.reshape(b, h // p, h // p, 1, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, 1, h, h)

    def channels_last(patches, p, h, w):
        b, n, size = patches.shape
        c = size // (p * p)
        return patches.reshape(b, h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4).reshape(b, c, h, w)

    def drops_channel(patches, p, h, w):
        return _unpatchify(patches, p, h, w)[:, 0]

    cases = [(plain, "plain reshape"), (transposed, "transposed"),
             (square_only, "H // P grid rows"), (channels_last, "channel, row, column"),
             (drops_channel, "keep the batch and channel")]
    for fn, hint in cases:
        assert not check_unpatchify(fn)
        out = _out(capsys)
        assert out.startswith("✗") and hint in out, out
