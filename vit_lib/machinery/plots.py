"""Figures shared by the notebooks and the command-line tools (matplotlib)."""
from __future__ import annotations

import os
from typing import Any, Sequence

import torch


def pyplot():
    """matplotlib.pyplot, drawing to files only (Agg) in headless scripts and CI."""
    import matplotlib
    if not os.environ.get("DISPLAY") and "ipykernel" not in __import__("sys").modules:
        matplotlib.use("Agg")   # headless scripts and CI: draw to files only
    import matplotlib.pyplot as plt
    return plt


def lesson_style(dpi: int = 110) -> None:
    """The lessons' figure settings: readable at 100% zoom (figures about 700-1100 px wide)."""
    plt = pyplot()
    plt.rcParams.update({"figure.dpi": dpi, "savefig.dpi": dpi, "font.size": 10,
                         "axes.titlesize": 11, "axes.labelsize": 10, "legend.fontsize": 9})


def _finish(fig, path: str | os.PathLike | None):
    """Lay the figure out; with a `path`, save it there (110 dpi) and close it."""
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
        pyplot().close(fig)
    return fig


def plot_history(histories: dict[str, list[dict[str, Any]]] | list[dict[str, Any]],
                 path: str | os.PathLike | None = None, title: str | None = None):
    """Loss and accuracy per epoch; one colour per run, dashed = training split, solid = test.

    histories: one run's history (a list of per-epoch records, as `fit` returns) or
    {label: history} for several runs.
    """
    plt = pyplot()
    runs = histories if isinstance(histories, dict) else {"run": histories}
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for index, (label, history) in enumerate(runs.items()):
        colour = f"C{index % 10}"
        epochs = [r["epoch"] for r in history]
        for ax, key in ((ax_loss, "loss"), (ax_acc, "accuracy")):
            ax.plot(epochs, [r[f"train_{key}"] for r in history], "--", color=colour,
                    label=f"{label} train")
            ax.plot(epochs, [r[f"test_{key}"] for r in history], "-", marker="o", markersize=3,
                    color=colour, label=f"{label} test")
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    # Zoom on the test curves: the first epoch's training loss and accuracy (running means over
    # an epoch that starts from random weights) would otherwise squash the interesting range.
    records = [r for h in runs.values() for r in h]
    if records:
        top = 1.25 * max(r["test_loss"] for r in records)
        ax_loss.set_ylim(0.0, top)
        if max(r["train_loss"] for r in records) > top:
            ax_loss.set_title("loss (higher training values run off the top)")
        bottom = max(0.0, min(r["test_accuracy"] for r in records) - 2.0)
        ax_acc.set_ylim(bottom, min(100.0, max(max(r["test_accuracy"], r["train_accuracy"])
                                              for r in records) + 0.5))
        if min(r["train_accuracy"] for r in records) < bottom:
            ax_acc.set_title("accuracy (lower training values run off the bottom)")
    ax_loss.legend(fontsize=8)
    ax_acc.legend(fontsize=8, loc="lower right")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    return _finish(fig, path)


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[num_classes, num_classes] counts: row = true class, column = predicted class."""
    index = labels.long() * num_classes + predictions.long()
    return torch.bincount(index, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def plot_confusion_matrix(matrix: torch.Tensor, classes: Sequence[str],
                          path: str | os.PathLike | None = None, title: str | None = None):
    """Confusion matrix [n, n] (row = true, column = predicted) with the count in every cell.

    The colour shows only the mistakes (off-diagonal counts, with a colour bar); the diagonal,
    which would dwarf them, is grey with its count written in bold.
    """
    import numpy as np
    plt = pyplot()
    n = len(classes)
    counts = matrix.detach().cpu().long().numpy()
    mistakes = np.ma.masked_array(counts, mask=np.eye(n, dtype=bool))
    top = max(int(mistakes.max()) if mistakes.count() else 0, 1)
    cmap = plt.get_cmap("Reds").with_extremes(bad="0.85")   # the masked diagonal in grey
    fig, ax = plt.subplots(figsize=(max(6.5, 1.6 + 0.55 * n), max(5.5, 1.0 + 0.5 * n)))
    image = ax.imshow(mistakes, cmap=cmap, vmin=0, vmax=top)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04,
                 label="number of mistakes (off-diagonal counts)")
    for i in range(n):
        for j in range(n):
            v = int(counts[i, j])
            if i == j:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7, fontweight="bold")
            elif v:
                ax.text(j, i, str(v), ha="center", va="center", fontsize=7,
                        color="white" if v > top / 2 else "black")
    ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set(xlabel="predicted class", ylabel="true class",
           title=title or "confusion matrix (diagonal = correct, grey)")
    return _finish(fig, path)


def show_images(images: torch.Tensor, titles: Sequence[str] | None = None, ncols: int = 8,
                size: float = 1.3, cmap: str = "gray"):
    """A grid of images [B, C, H, W] (any value range: each image is scaled for display)."""
    plt = pyplot()
    b = images.shape[0]
    nrows = (b + ncols - 1) // ncols
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.2 * nrows),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i >= b:
            continue
        img = images[i].detach().float().cpu()
        img = (img - img.min()) / (img.max() - img.min() + 1e-8)
        if img.shape[0] == 1:
            ax.imshow(img[0], cmap=cmap)
        else:
            ax.imshow(img.permute(1, 2, 0))
        if titles is not None:
            ax.set_title(titles[i], fontsize=8)
    fig.tight_layout()
    return fig
