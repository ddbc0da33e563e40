"""Checks for the exercises of notebook 00 (setup and data).

Each check takes the learner's answer plus the data it was computed from, prints one line of
feedback (✓ or ✗ with a hint) and returns a `CheckResult` (truthy when passed). None of them
raises on a wrong answer.
"""
from __future__ import annotations

from typing import Sequence

import torch

from vit_lib.classroom.exercises.common import (
    CheckResult,
    Exercise,
    Mismatch,
    exercise_check,
    expect_close,
    expect_shape,
    expect_tensor,
    run_check,
)

__all__ = ["check_class_counts", "check_normalize", "check_class_means"]

# The lesson's exercises, in notebook order: what the grader expects to find.
EXERCISES = (
    Exercise("00", 1, "class counts", "check_class_counts", ("test_counts", "y_test")),
    Exercise("00", 2, "normalise a batch", "check_normalize",
             ("batch_normalised", "images", "mnist.mean", "mnist.std")),
    Exercise("00", 3, "mean image per class", "check_class_means", ("class_means", "x_train", "y_train")),
)


def _close(a: torch.Tensor, b: torch.Tensor, atol: float) -> bool:
    return a.shape == b.shape and bool(((a.float() - b.float()).abs() <= atol).all())


@exercise_check()
def check_class_counts(counts: torch.Tensor, labels: torch.Tensor, num_classes: int = 10) -> CheckResult:
    """counts: [num_classes] how many labels of each class, computed from labels: [N]."""

    def body() -> str:
        tensor = expect_tensor(counts, "your counts")
        expected = torch.bincount(labels.long().cpu(), minlength=num_classes)
        if tensor.ndim == 1 and tensor.numel() < num_classes:
            raise Mismatch(f"your counts has {tensor.numel()} entries, expected {num_classes}: "
                           "a class that never occurs still needs its 0; pass "
                           f"minlength={num_classes} to torch.bincount")
        got = expect_shape(tensor, (num_classes,), "your counts",
                           hint="one number per class, e.g. torch.bincount(labels, minlength=10)")
        got = got.detach().cpu()
        total = got.float().sum().item()
        if abs(total - 1.0) < 1e-3 and len(labels) > 1:
            raise Mismatch("your counts sum to 1: those are fractions; the exercise asks for how "
                           "many images each class has (drop the division by len(labels))")
        if round(total) != len(labels):
            raise Mismatch(f"your counts add up to {total:.0f}, but labels holds {len(labels)} "
                           "examples: did you count a different split or a slice of it?")
        if not _close(got, expected, 0.5):
            wrong = int(torch.nonzero((got.float() - expected.float()).abs() > 0.5)[0])
            raise Mismatch(f"class {wrong} has {expected[wrong].item()} examples, you counted "
                           f"{got[wrong].item():g}: entry i must count the labels equal to i")
        top = int(expected.argmax())
        return (f"{len(labels)} labels; most frequent class {top} "
                f"({expected[top].item()}), rarest {int(expected.argmin())} "
                f"({expected.min().item()})")

    return run_check("class counts", body)


@exercise_check()
def check_normalize(normalized: torch.Tensor, images: torch.Tensor, mean: Sequence[float],
                    std: Sequence[float]) -> CheckResult:
    """normalized: float [B, C, H, W] = (images / 255 - mean) / std, images: uint8 [B, C, H, W]."""

    def body() -> str:
        got = expect_shape(normalized, images.shape, "your normalised batch",
                           hint="normalising changes values, never the shape")
        got = got.detach().float().cpu()
        x = images.detach().cpu().float()
        c = x.shape[1]
        m = torch.tensor(mean, dtype=torch.float32).view(1, c, 1, 1)
        s = torch.tensor(std, dtype=torch.float32).view(1, c, 1, 1)
        expected = (x / 255 - m) / s
        if _close(got, expected, 1e-4):
            return (f"values from {expected.min().item():.4f} to {expected.max().item():.4f}, "
                    f"batch mean {expected.mean().item():.2f}, std {expected.std().item():.2f}")
        hints = [
            ((x - m) / s, "you skipped the division by 255: scale the uint8 pixels to [0, 1] "
                          "first, since mean and std are measured on that scale"),
            (x / 255, "these are only the pixels scaled to [0, 1]: subtract the mean, then "
                      "divide by the std"),
            (x / 255 - m, "you subtracted the mean but did not divide by the std"),
            ((x / 255 - s) / m, "mean and std are swapped: subtract the mean, divide by the std"),
            (x / 255 / s - m, "the order is wrong: subtract the mean first, then divide by the std"),
            ((x / 255 - (x / 255).mean()) / (x / 255).std(),
             "you used this batch's own mean and std: use the training-set statistics you were "
             "given, so every batch (and the test set) is shifted by the same amounts"),
        ]
        for candidate, hint in hints:
            if _close(got, candidate, 1e-3):
                raise Mismatch(hint)
        expect_close(got, expected, "your normalised batch", atol=1e-4,
                     hint="compute (images.float() / 255 - mean) / std")
        return ""

    return run_check("normalise a batch", body)


@exercise_check()
def check_class_means(means: torch.Tensor, images: torch.Tensor, labels: torch.Tensor,
                      num_classes: int = 10) -> CheckResult:
    """means: float [num_classes, C, H, W], the average image of each class in [0, 1] units.

    images: uint8 [N, C, H, W]; labels: int64 [N].
    """

    def body() -> str:
        x = images.detach().cpu().float() / 255
        y = labels.detach().cpu().long()
        expected = torch.stack([x[y == k].mean(0) for k in range(num_classes)])
        tensor = expect_tensor(means, "your class means")
        if tuple(tensor.shape) == (num_classes, *x.shape[2:]) and x.shape[1] == 1:
            raise Mismatch(f"your class means has shape {list(tensor.shape)}, expected "
                           f"{list(expected.shape)}: keep the channel dimension (index with "
                           "images[labels == k] and average over dim 0 only)")
        if tuple(tensor.shape) == (1, *x.shape[1:]) or tuple(tensor.shape) == tuple(x.shape[1:]):
            raise Mismatch(f"your class means has shape {list(tensor.shape)}: that is one image; "
                           f"stack one mean image per class into [{num_classes}, C, H, W]")
        got = expect_shape(tensor, expected.shape, "your class means",
                           hint="one mean image per class: torch.stack([... for k in range(10)])")
        got = got.detach().float().cpu()
        if _close(got, expected * 255, 1e-2):
            raise Mismatch("your means are on the 0-255 scale: divide the uint8 images by 255 "
                           "first (the exercise asks for [0, 1] units)")
        overall = x.mean(0, keepdim=True).expand_as(expected)
        if _close(got, overall, 1e-4):
            raise Mismatch("every class has the same mean image: you averaged over all images; "
                           "select the images of class k with images[labels == k]")
        expect_close(got, expected, "your class means", atol=1e-4,
                     hint="class k's mean is images[labels == k].float().div(255).mean(0)")
        brightest = int(expected.flatten(1).mean(1).argmax())
        return (f"{num_classes} mean images of shape {list(expected.shape[1:])}; "
                f"class {brightest} has the most ink on average")

    return run_check("mean image per class", body)
