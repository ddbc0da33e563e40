"""The checks of notebook 00 accept the worked solutions and explain typical mistakes."""
from __future__ import annotations

import torch

from vit_lib.classroom.exercises.common import RESULTS
from vit_lib.classroom.exercises.lesson00 import check_class_counts, check_class_means, check_normalize

MEAN, STD = (0.1307,), (0.3081,)


def _data(n: int = 60) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.arange(n) % 10
    return images, labels


def _out(capsys) -> str:
    out = capsys.readouterr().out.strip()
    assert "\n" not in out, "a check prints exactly one line"
    return out


def test_class_counts_accepts_bincount(capsys):
    _, labels = _data()
    assert check_class_counts(torch.bincount(labels, minlength=10), labels)
    assert _out(capsys).startswith("✓ class counts")


def test_class_counts_hints(capsys):
    _, labels = _data()
    labels = labels.clone()
    labels[labels == 9] = 0                      # class 9 never occurs
    assert not check_class_counts(torch.bincount(labels), labels)
    assert "minlength=10" in _out(capsys)
    counts = torch.bincount(labels, minlength=10)
    assert not check_class_counts(counts.float() / len(labels), labels)
    assert "fractions" in _out(capsys)
    assert not check_class_counts(torch.bincount(labels[:30], minlength=10), labels)
    assert "add up to 30" in _out(capsys)
    shuffled = counts.flip(0)
    assert not check_class_counts(shuffled, labels)
    assert "class 0 has" in _out(capsys)
    assert not check_class_counts([6] * 10, labels)
    assert "torch.Tensor" in _out(capsys)


def test_normalize_accepts_solution(capsys):
    images, _ = _data(8)
    m = torch.tensor(MEAN).view(1, 1, 1, 1)
    s = torch.tensor(STD).view(1, 1, 1, 1)
    assert check_normalize((images.float() / 255 - m) / s, images, MEAN, STD)
    assert _out(capsys).startswith("✓ normalise a batch")


def test_normalize_hints(capsys):
    images, _ = _data(8)
    x = images.float()
    cases = [((x - MEAN[0]) / STD[0], "division by 255"),
             (x / 255, "only the pixels scaled"),
             (x / 255 - MEAN[0], "did not divide by the std"),
             ((x / 255 - STD[0]) / MEAN[0], "swapped"),
             (((x / 255) - (x / 255).mean()) / (x / 255).std(), "batch's own mean"),
             (x[:, 0] / 255, "never the shape")]
    for answer, hint in cases:
        assert not check_normalize(answer, images, MEAN, STD)
        out = _out(capsys)
        assert out.startswith("✗") and hint in out, out


def test_class_means_accepts_solution(capsys):
    images, labels = _data()
    means = torch.stack([images[labels == k].float().div(255).mean(0) for k in range(10)])
    assert check_class_means(means, images, labels)
    assert _out(capsys).startswith("✓ mean image per class")


def test_class_means_hints(capsys):
    images, labels = _data()
    means = torch.stack([images[labels == k].float().div(255).mean(0) for k in range(10)])
    cases = [(means[:, 0], "keep the channel dimension"),
             (means * 255, "0-255 scale"),
             (images.float().div(255).mean(0, keepdim=True).repeat(10, 1, 1, 1), "averaged over all"),
             (means.mean(0), "that is one image"),
             (means.flip(0), "differs from the expected values")]
    for answer, hint in cases:
        assert not check_class_means(answer, images, labels)
        out = _out(capsys)
        assert out.startswith("✗") and hint in out, out


def test_missing_answer_is_not_attempted_and_wrong_type_is_reported(capsys):
    images, labels = _data()
    result = check_class_means(None, images, labels)
    assert not result and result.status == "not attempted"
    assert _out(capsys).startswith("✗ mean image per class: not attempted yet")
    result = check_class_means([0.0], images, labels)
    assert not result and result.status == "failed"
    assert "torch.Tensor" in _out(capsys)


def test_every_unanswered_exercise_is_not_attempted(capsys):
    """The notebook's attempt cells pass None (`answer = None  # YOUR CODE HERE`)."""
    images, labels = _data()
    for check, args in ((check_class_counts, (None, labels)),
                        (check_normalize, (None, images, MEAN, STD)),
                        (check_class_means, (None, images, labels))):
        result = check(*args)
        assert result.status == "not attempted" and not result
        assert "not attempted yet: write your answer where it says # YOUR CODE HERE" in _out(capsys)
    assert [(r.lesson, r.exercise) for r in RESULTS[-3:]] == [("00", 1), ("00", 2), ("00", 3)]
