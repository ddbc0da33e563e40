"""Draw the Vision Transformer of a ViTConfig (by default the seed's) as vit.png and vit.svg.

    python vit_architecture/draw.py              # rewrites vit_architecture/vit.png and vit.svg
                                                 # and the lessons' you_are_here/lesson_NN.png
    python vit_architecture/draw.py OUT_DIR      # writes them into OUT_DIR instead
    python vit_architecture/draw.py --lesson 02 OUT_DIR   # only OUT_DIR/you_are_here/lesson_02.png

The "you are here" pictures are a compact map of the same model, one per lesson: the part the
lesson builds is drawn in colour with a red frame, parts built in earlier lessons in colour, parts
still to come in grey. `python tools/embed_images.py` puts them into the notebooks.

Every number in the picture is read from the config or counted on the built model, so the
diagram cannot disagree with vit_lib. The files are written deterministically: no dates or
version strings in the metadata and a fixed SVG id salt, so rerunning gives the same bytes
with the same matplotlib.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle

import vit_lib
from vit_lib.config import ViTConfig
from vit_lib.model import VisionTransformer, count_parameters
from vit_lib.presets import Recipe

HERE = Path(__file__).resolve().parent
YOU_ARE_HERE = "you_are_here"   # sub-folder of the lessons' pictures

# Colours by kind of component.
COLOURS = {
    "input": "#e8eef7", "embed": "#cfe0f5", "token": "#e4d7f5", "norm": "#fbefc2",
    "attn": "#fbd5b5", "mlp": "#cdeccd", "head": "#f7c9c9", "block": "#f6f6f6",
}
X_MAIN = 40.0          # x of the main data path
BOX_W = 44.0           # width of a stage box
X_PARAMS = 95.0        # right edge of the parameter column
MONO = {"family": "DejaVu Sans Mono", "size": 9.5}


@dataclass
class Layout:
    """Keeps the y cursor while stages are drawn from the top of the page downwards."""

    ax: plt.Axes
    y: float

    def box(self, text: str, kind: str, height: float = 5.0, params: int | None = None,
            width: float = BOX_W, param_note: str = "") -> tuple[float, float]:
        """A rounded box centred on the main path below the cursor; returns (top, bottom)."""
        top, bottom = self.y, self.y - height
        self.ax.add_patch(FancyBboxPatch(
            (X_MAIN - width / 2, bottom), width, height, boxstyle="round,pad=0,rounding_size=1.2",
            facecolor=COLOURS[kind], edgecolor="#444444", linewidth=1.0))
        self.ax.text(X_MAIN, (top + bottom) / 2, text, ha="center", va="center", fontsize=10.5)
        if params is not None:
            self.ax.text(X_PARAMS, (top + bottom) / 2, f"{params:,}" + param_note, ha="right",
                         va="center", fontsize=10.5)
        self.y = bottom
        return top, bottom

    def arrow(self, shape: str, length: float = 5.0, head: bool = True) -> None:
        """A downward arrow from the cursor, labelled with the tensor shape it carries."""
        start, end, x = self.y, self.y - length, X_MAIN
        self.ax.add_patch(FancyArrowPatch((x, start), (x, end), arrowstyle="-|>" if head else "-",
                                          mutation_scale=12, linewidth=1.2, color="#333333",
                                          shrinkA=0, shrinkB=0))
        self.ax.text(x + 1.5, (start + end) / 2, shape, ha="left", va="center",
                     color="#1f4e9a", **MONO)
        self.y = end


def _plus(ax: plt.Axes, x: float, y: float, r: float = 1.6) -> None:
    """The residual addition: a circled plus."""
    ax.add_patch(Circle((x, y), r, facecolor="white", edgecolor="#333333", linewidth=1.2,
                        zorder=3))
    ax.text(x, y - 0.05, "+", ha="center", va="center", fontsize=13, zorder=4)


def _skip(ax: plt.Axes, y_from: float, y_to: float, x_side: float) -> None:
    """A residual skip line: leaves the main path at y_from, rejoins the circled plus at y_to."""
    ax.plot([X_MAIN, x_side, x_side], [y_from, y_from, y_to], color="#333333", linewidth=1.2)
    ax.add_patch(FancyArrowPatch((x_side, y_to), (X_MAIN - 1.6, y_to), arrowstyle="-|>",
                                 mutation_scale=12, linewidth=1.2, color="#333333",
                                 shrinkA=0, shrinkB=0))
    ax.plot([X_MAIN], [y_from], marker="o", markersize=4, color="#333333")


def _image_grid(ax: plt.Axes, c: ViTConfig, top: float, side: float) -> float:
    """The input image as a square cut into grid_size x grid_size numbered patches."""
    left, g = X_MAIN - side / 2, c.grid_size
    cell = side / g
    ax.add_patch(Rectangle((left, top - side), side, side, facecolor=COLOURS["input"],
                           edgecolor="#444444", linewidth=1.2))
    for i in range(1, g):
        ax.plot([left + i * cell] * 2, [top - side, top], color="#7a8aa6", linewidth=0.8)
        ax.plot([left, left + side], [top - i * cell] * 2, color="#7a8aa6", linewidth=0.8)
    if g <= 8:
        for k in range(c.num_patches):
            row, col = divmod(k, g)
            ax.text(left + (col + 0.5) * cell, top - (row + 0.5) * cell, str(k), ha="center",
                    va="center", fontsize=8 if g <= 4 else 6, color="#555555")
    ax.text(left + side + 3, top - side / 2,
            f"input image {c.image_size}×{c.image_size}×{c.in_channels}\n"
            f"cut into a {g}×{g} grid:\n{c.num_patches} patches of {c.patch_size}×{c.patch_size}",
            ha="left", va="center", fontsize=10.5)
    return top - side


def draw(config: ViTConfig | None = None) -> plt.Figure:
    """The architecture diagram of `config` (default: the seed config) as a matplotlib figure."""
    c = config or ViTConfig()
    model = VisionTransformer(c)
    total = count_parameters(model)
    block0 = model.blocks[0]
    n_norm = count_parameters(block0.norm1)
    n_attn = count_parameters(block0.attn)
    n_mlp = count_parameters(block0.mlp)
    n_block = count_parameters(block0)
    d, t, b = c.dim, c.num_tokens, "B"
    tokens = f"[{b}, {t}, {d}]"

    height = 150.0
    fig = plt.figure(figsize=(10.0, height / 10.0))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, height)
    ax.axis("off")

    seed = c == ViTConfig()
    ax.text(50, height - 3.5, "Vision Transformer" + (": the seed configuration" if seed else ""),
            ha="center", va="center", fontsize=15, weight="bold")
    ax.text(50, height - 7.5,
            ("ViTConfig(): " if seed else "")
            + f"image {c.image_size}, patch {c.patch_size}, dim {d}, depth {c.depth}, "
            f"heads {c.heads}, MLP {c.mlp_dim}, {c.num_classes} classes  -  "
            f"{total:,} trainable parameters",
            ha="center", va="center", fontsize=10.5)
    ax.text(X_PARAMS, height - 12.0, "parameters", ha="right", va="center", fontsize=10.5,
            weight="bold")
    ax.text(X_MAIN + 1.5, height - 12.0, "shape on each arrow (B = batch)", ha="left",
            va="center", fontsize=10.5, color="#1f4e9a", weight="bold")

    lay = Layout(ax, _image_grid(ax, c, top=height - 15.0, side=16.0))
    lay.arrow(f"[{b}, {c.in_channels}, {c.image_size}, {c.image_size}]")
    patch_in = c.in_channels * c.patch_size ** 2
    lay.box(f"patch embedding: Conv2d {c.in_channels}→{d}, kernel = stride = {c.patch_size}\n"
            f"(the same as a Linear {patch_in}→{d} on each flattened patch)", "embed",
            height=7.0, params=count_parameters(model.patch_embed))
    lay.arrow(f"[{b}, {c.num_patches}, {d}]")
    if model.cls_token is not None:
        lay.box(f"prepend the learnable CLS token (1×{d})", "token",
                params=model.cls_token.numel())
        lay.arrow(tokens)
    if c.pos_embed == "learned":
        lay.box(f"+ learned position embedding ({t}×{d})", "token",
                params=model.pos_embed.numel())
    else:
        lay.box(f"+ fixed 2-D sin-cos position table ({t}×{d})", "token", params=0)
    lay.arrow(tokens, length=6.0, head=False)

    # The encoder block, drawn once with its residual paths, repeated depth times.
    block_top = lay.y
    ax.plot([X_MAIN, X_MAIN], [block_top, block_top - 4.5], color="#333333", linewidth=1.2)
    lay.y -= 4.5
    ax.text(X_MAIN - BOX_W / 2 - 3.5, block_top - 2.5, "encoder block (pre-norm)", ha="left",
            va="center", fontsize=10.5, weight="bold")
    def residual_sublayer(label: str, kind: str, params: int) -> None:
        """LayerNorm -> sub-layer -> (+), with the skip connection drawn around both."""
        split = lay.y
        lay.arrow("", length=3.0)
        lay.box("LayerNorm", "norm", height=4.0, width=BOX_W - 12, params=n_norm)
        lay.arrow(tokens, length=4.5)
        lay.box(label, kind, height=7.0, width=BOX_W - 4, params=params)
        lay.arrow(tokens, length=5.0)
        lay.y -= 1.6
        _plus(ax, X_MAIN, lay.y)
        _skip(ax, split, lay.y, X_MAIN - BOX_W / 2 - 0.5)
        lay.y -= 1.6

    residual_sublayer(f"multi-head self-attention (MHSA)\n{c.heads} heads × {c.head_dim} dims, "
                      f"qkv {d}→{3 * d}, out {d}→{d}", "attn", n_attn)
    lay.arrow(tokens, length=4.5)
    residual_sublayer(f"MLP: Linear {d}→{c.mlp_dim}, GELU, Linear {c.mlp_dim}→{d}\n"
                      f"(hidden tokens [{b}, {t}, {c.mlp_dim}])", "mlp", n_mlp)
    block_bottom = lay.y - 2.5
    ax.plot([X_MAIN, X_MAIN], [lay.y, block_bottom], color="#333333", linewidth=1.2)
    left = X_MAIN - BOX_W / 2 - 4.5
    ax.add_patch(FancyBboxPatch((left, block_bottom), X_PARAMS + 2.0 - left,
                                block_top - block_bottom,
                                boxstyle="round,pad=0,rounding_size=2", facecolor=COLOURS["block"],
                                edgecolor="#666666", linewidth=1.2, linestyle=(0, (5, 3)),
                                zorder=0))
    ax.text(X_MAIN + BOX_W / 2 + 3.0, (block_top + block_bottom) / 2 + 2.0, f"× {c.depth}",
            ha="left", va="center", fontsize=22, weight="bold", color="#555555")
    ax.text(X_MAIN + BOX_W / 2 + 3.0, (block_top + block_bottom) / 2 - 3.0,
            "blocks, each with\nits own weights", ha="left", va="center", fontsize=9.5,
            color="#555555")
    ax.text(X_PARAMS, block_bottom + 2.0,
            f"{n_block:,} per block × {c.depth} = {n_block * c.depth:,}", ha="right",
            va="center", fontsize=10.5, weight="bold")
    lay.y = block_bottom
    lay.arrow(tokens, length=6.0)

    lay.box("final LayerNorm", "norm", height=4.5, params=count_parameters(model.norm))
    lay.arrow(tokens)
    if model.cls_token is not None:
        lay.box("take token 0 (the CLS token)", "token", height=4.5, params=0)
    else:
        lay.box(f"average the {t} tokens (mean pooling)", "token", height=4.5, params=0)
    lay.arrow(f"[{b}, {d}]")
    lay.box(f"classification head: Linear {d}→{c.num_classes}", "head", height=4.5,
            params=count_parameters(model.head))
    lay.arrow(f"[{b}, {c.num_classes}]")
    ax.text(X_MAIN, lay.y - 2.0, f"logits: one score per class ({c.num_classes} classes)",
            ha="center", va="center", fontsize=10.5)

    y_total = lay.y - 2.0
    ax.plot([X_PARAMS - 20, X_PARAMS], [y_total + 2.6] * 2, color="#333333", linewidth=0.8)
    ax.text(X_PARAMS, y_total, f"total {total:,}", ha="right", va="center", fontsize=11,
            weight="bold")
    ax.set_ylim(y_total - 4.0, height)
    fig.set_size_inches(10.0, (height - y_total + 4.0) / 10.0)
    return fig


# ---------------------------------------------------------------------------------------------
# "You are here": one compact map of the model per lesson, the lesson's part highlighted.

# the short title of each lesson, from the one table of lessons (vit_lib.LESSONS)
LESSONS: dict[str, str] = {lesson.number: lesson.short for lesson in vit_lib.LESSONS}
# Lesson 06 builds nothing new: it opens up these trained parts.
INSPECTED_IN_06 = ("patch_embed", "pos", "attn")
# Lesson 07 changes these parts of the ViT (patch size / conv stem, no positions, a new head).
CHANGED_IN_07 = ("patch_embed", "pos", "head")
# Lesson 08 prepares its own input image, reads the head's answer and the attention (rollout).
USED_IN_08 = ("image", "attn", "head")
HERE_EDGE = "#c0392b"       # the red frame of "this lesson"
LATER_FACE, LATER_EDGE, LATER_TEXT = "#f4f4f4", "#c4c4c4", "#9a9a9a"


def _state(lesson: str, built_in: str, part: str) -> str:
    """'here' (this lesson's part), 'done' (an earlier lesson's) or 'later' (still to come)."""
    if lesson == "06":
        return "here" if part in INSPECTED_IN_06 else "done"
    if lesson == "07":
        return "here" if part in CHANGED_IN_07 else "done"
    if lesson == "08":
        return "here" if part in USED_IN_08 else "done"
    if built_in == lesson:
        return "here"
    return "done" if built_in < lesson else "later"


def _captions(c: ViTConfig, total: int, recipe: Recipe) -> dict[str, str]:
    """One line per lesson under its picture: what the highlighted part does."""
    opt = {"adam": "Adam", "adamw": "AdamW"}[recipe.optimizer]
    return {
        "00": f"This lesson: the data, {c.image_size}×{c.image_size}×{c.in_channels} images "
              f"and their labels ({c.num_classes} classes), and the tools.",
        "01": f"This lesson: cut the image into {c.num_patches} patches of "
              f"{c.patch_size}×{c.patch_size} and turn each into a {c.dim}-number token.",
        "02": f"This lesson: multi-head self-attention ({c.heads} heads × {c.head_dim} dims), "
              "how the tokens exchange information.",
        "03": "This lesson: the encoder block, LayerNorm + MLP + two residual connections "
              f"around attention, stacked × {c.depth}.",
        "04": "This lesson: CLS token, position embedding, final LayerNorm and head complete "
              f"the model ({total:,} parameters).",
        "05": f"This lesson: train it end to end, cross-entropy loss and {opt} update all "
              f"{total:,} parameters.",
        "06": "This lesson: look inside the trained model, patch filters, position "
              "embeddings and attention maps.",
        "07": "This lesson: the ViT against a CNN of the same size; smaller patches, a conv "
              "stem, no positions; a new head to transfer.",
        "08": f"This lesson: your own digit, prepared into a {c.image_size}×{c.image_size} image "
              "as MNIST's were; the head's answer and the attention rollout.",
    }


class _Map:
    """Draws boxes on the map in the style of their state for one lesson."""

    def __init__(self, ax: plt.Axes, lesson: str) -> None:
        self.ax, self.lesson = ax, lesson
        self.faces: dict[str, str] = {}     # state -> face of the first box drawn in that state

    def seen(self, st: dict) -> None:
        """Remember the face of a box in this state, for the legend's swatch."""
        self.faces.setdefault(st["state"], st["face"])

    def style(self, built_in: str, part: str, kind: str) -> dict:
        """Colours and line widths of a part: box face and edge, text, and plain lines."""
        state = _state(self.lesson, built_in, part)
        if state == "later":
            return {"state": state, "face": LATER_FACE, "edge": LATER_EDGE, "lw": 1.0,
                    "text": LATER_TEXT, "weight": "normal", "line": LATER_EDGE, "line_lw": 1.0}
        here = state == "here"
        return {"state": state, "face": COLOURS[kind], "edge": HERE_EDGE if here else "#555555",
                "lw": 2.8 if here else 1.0, "text": "#111111",
                "weight": "bold" if here else "normal",
                "line": HERE_EDGE if here else "#555555", "line_lw": 1.8 if here else 1.0}

    def box(self, x0: float, x1: float, yc: float, text: str, kind: str, built_in: str,
            part: str, h: float = 6.4, size: float = 9.5) -> tuple[float, float]:
        """A rounded box from x0 to x1 centred at height yc; returns (x0, x1)."""
        st = self.style(built_in, part, kind)
        self.seen(st)
        self.ax.add_patch(FancyBboxPatch(
            (x0, yc - h / 2), x1 - x0, h, boxstyle="round,pad=0,rounding_size=0.9",
            facecolor=st["face"], edgecolor=st["edge"], linewidth=st["lw"], zorder=2))
        self.ax.text((x0 + x1) / 2, yc, text, ha="center", va="center", fontsize=size,
                     color=st["text"], weight=st["weight"], zorder=3, linespacing=1.15)
        return x0, x1

    def plus(self, x: float, yc: float, built_in: str, part: str) -> None:
        st = self.style(built_in, part, "block")
        self.ax.add_patch(Circle((x, yc), 1.3, facecolor="white", edgecolor=st["edge"],
                                 linewidth=max(st["lw"], 1.2), zorder=3))
        self.ax.text(x, yc - 0.05, "+", ha="center", va="center", fontsize=12,
                     color=st["text"], weight="bold", zorder=4)

    def arrow(self, x0: float, x1: float, y: float, colour: str = "#333333") -> None:
        self.ax.add_patch(FancyArrowPatch((x0, y), (x1, y), arrowstyle="-|>", mutation_scale=10,
                                          linewidth=1.1, color=colour, shrinkA=0, shrinkB=0,
                                          zorder=1))

    def wrap(self, x_from: float, y_from: float, x_to: float, y_to: float, shape: str) -> None:
        """The connector from the end of one row to the start of the next, with its shape."""
        y_mid = (y_from + y_to) / 2
        self.ax.plot([x_from, x_from, x_to, x_to], [y_from, y_mid, y_mid, y_to + 0.4],
                     color="#333333", linewidth=1.1, zorder=1)
        self.ax.add_patch(FancyArrowPatch((x_to, y_to + 0.8), (x_to, y_to), arrowstyle="-|>",
                                          mutation_scale=10, linewidth=1.1, color="#333333",
                                          shrinkA=0, shrinkB=0, zorder=1))
        self.ax.text((x_from + x_to) / 2, y_mid + 0.25, shape, ha="center", va="bottom",
                     color="#1f4e9a", fontsize=8.5, family="DejaVu Sans Mono",
                     bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.5}, zorder=2)


def draw_you_are_here(lesson: str, config: ViTConfig | None = None) -> plt.Figure:
    """The model as a three-row map with lesson `lesson`'s part highlighted (about 860 px wide).

    Row 1: image, patches and the embeddings; row 2: the encoder block with its residuals;
    row 3: the head and the training loss. All numbers come from the config (default: seed).
    """
    if lesson not in LESSONS:
        raise ValueError(f"lesson must be one of {sorted(LESSONS)}, got {lesson!r}")
    c = config or ViTConfig()
    recipe = Recipe()
    model = VisionTransformer(c)
    total = count_parameters(model)
    d = c.dim
    width, height = 86.0, 52.5
    fig = plt.figure(figsize=(width / 10, height / 10))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, width)
    ax.set_ylim(0, height)
    ax.axis("off")
    m = _Map(ax, lesson)

    ax.text(2, height - 2.6, f"You are here: lesson {lesson} · {LESSONS[lesson]}", ha="left",
            va="center", fontsize=13, weight="bold")
    # Row 1: the input image cut into patches, the patch embedding, CLS and position.
    y1 = 39.0
    st = m.style("00", "image", "input")
    side, g = 8.6, c.grid_size
    left, top = 2.5, y1 + side / 2
    ax.add_patch(Rectangle((left, top - side), side, side, facecolor=st["face"],
                           edgecolor=st["edge"], linewidth=st["lw"], zorder=2))
    m.seen(st)
    grid = m.style("01", "grid", "input")           # the patch grid is lesson 01's
    grid_colour = {"here": HERE_EDGE, "done": "#8a98b0", "later": LATER_EDGE}[grid["state"]]
    grid_lw = 1.6 if grid["state"] == "here" else 0.7
    for i in range(1, g):
        ax.plot([left + i * side / g] * 2, [top - side, top], zorder=3, linewidth=grid_lw,
                color=grid_colour)
        ax.plot([left, left + side], [top - i * side / g] * 2, zorder=3, linewidth=grid_lw,
                color=grid_colour)
    ax.text(left + side / 2, top - side - 1.2,
            f"image {c.image_size}×{c.image_size}×{c.in_channels}\n"
            f"{c.num_patches} patches {c.patch_size}×{c.patch_size}",
            ha="center", va="top", fontsize=8.5, color=st["text"], weight=st["weight"])
    m.arrow(left + side, 15.5, y1)
    m.box(15.5, 37.0, y1, f"patch embedding\nConv2d {c.in_channels}→{d},\n"
          f"kernel = stride = {c.patch_size}", "embed", "01", "patch_embed", h=7.4)
    m.arrow(37.0, 40.5, y1)
    x_end1 = 80.0
    if model.cls_token is not None:
        m.box(40.5, 58.0, y1, f"prepend the\nCLS token (1×{d})", "token", "04", "cls")
        m.arrow(58.0, 61.5, y1)
        m.box(61.5, x_end1, y1, f"+ position\nembedding ({c.num_tokens}×{d})", "token", "04",
              "pos")
    else:
        m.box(40.5, x_end1, y1, f"+ position\nembedding ({c.num_tokens}×{d})", "token", "04",
              "pos")

    # Row 2: the encoder block, LN -> MHSA -> (+) -> LN -> MLP -> (+), repeated depth times.
    y2 = 18.5
    frame = m.style("03", "block", "block")
    ax.add_patch(FancyBboxPatch((2.0, y2 - 5.2), 82.0, 12.4,
                                boxstyle="round,pad=0,rounding_size=1.2", facecolor="#fafafa",
                                edgecolor=frame["edge"], linewidth=frame["lw"],
                                linestyle=(0, (5, 3)), zorder=0))
    ax.text(80.0, y2 + 3.4, "encoder\nblock\n(pre-norm)", ha="center", va="center",
            fontsize=8.5, color=frame["text"], weight="bold", linespacing=1.1)
    # The tokens arrive from above into the first LayerNorm.
    m.wrap((61.5 + x_end1) / 2, y1 - 3.2, 8.25, y2 + 3.2, f"[B, {c.num_tokens}, {d}]")
    m.box(3.5, 13.0, y2, "Layer-\nNorm", "norm", "03", "norm", h=6.4, size=9)
    m.arrow(13.0, 15.5, y2)
    m.box(15.5, 33.5, y2, f"multi-head\nself-attention\n{c.heads} heads × {c.head_dim} dims",
          "attn", "02", "attn", h=7.4, size=9)
    m.arrow(33.5, 36.0, y2)
    m.plus(37.3, y2, "03", "residual")
    m.arrow(38.6, 41.0, y2)
    m.box(41.0, 50.5, y2, "Layer-\nNorm", "norm", "03", "norm", h=6.4, size=9)
    m.arrow(50.5, 53.0, y2)
    m.box(53.0, 70.0, y2, f"MLP {d}→{c.mlp_dim}\n→ GELU → {d}", "mlp", "03", "mlp", size=9)
    m.arrow(70.0, 72.5, y2)
    m.plus(73.8, y2, "03", "residual")
    res = m.style("03", "residual", "block")
    res_colour = res["line"]
    y_top = y2 + 4.6
    # The two skip connections, drawn above: from the path into each LayerNorm to its (+).
    for x_from, y_from, x_to in ((8.25, y_top, 37.3), (39.8, y2, 73.8)):
        ax.plot([x_from, x_from, x_to, x_to], [y_from, y_top, y_top, y2 + 1.3],
                color=res_colour, linewidth=res["line_lw"], zorder=1)
        ax.plot([x_from], [y_from], marker="o", markersize=3.5, color=res_colour, zorder=3)
        ax.text((x_from + x_to) / 2, y_top + 0.2, "residual (skip)", ha="center", va="bottom",
                fontsize=8, color=res["text"])
    ax.text(80.0, y2 - 2.6, f"× {c.depth}", ha="center", va="center", fontsize=15, weight="bold",
            color=frame["text"] if frame["text"] == LATER_TEXT else "#555555")

    # Row 3: final norm, pooling, head, then the loss against the label and the optimiser.
    y3 = 5.6
    m.wrap(77.0, y2 - 5.2, 7.5, y3 + 3.2, f"[B, {c.num_tokens}, {d}]")
    m.box(2.5, 12.5, y3, "final\nLayerNorm", "norm", "04", "final_norm", size=9)
    m.arrow(12.5, 15.0, y3)
    pool = "take the\nCLS token" if model.cls_token is not None else "mean of\nthe tokens"
    m.box(15.0, 26.0, y3, pool, "token", "04", "pool", size=9)
    m.arrow(26.0, 28.5, y3)
    m.box(28.5, 42.0, y3, f"head\nLinear {d}→{c.num_classes}", "head", "04", "head", size=9)
    m.arrow(42.0, 47.5, y3)
    ax.text(44.7, y3 + 0.5, f"[B, {c.num_classes}]", ha="center", va="bottom", fontsize=8,
            color="#1f4e9a", family="DejaVu Sans Mono")
    m.box(47.5, 61.5, y3, "cross-entropy\nloss", "head", "05", "loss", size=9)
    m.box(64.5, 74.0, y3, f"label y\n(0–{c.num_classes - 1})", "input", "00", "label", size=9)
    ax.add_patch(FancyArrowPatch((64.5, y3), (61.5, y3), arrowstyle="-|>", mutation_scale=10,
                                 linewidth=1.1, color="#333333", shrinkA=0, shrinkB=0))
    opt = {"adam": "Adam", "adamw": "AdamW"}[recipe.optimizer]
    m.box(76.5, 85.0, y3, f"{opt}\nlr {recipe.lr:g}", "embed", "05", "optim", size=9)
    train = m.style("05", "loss", "head")
    ax.text(66.0, y3 - 4.3, f"gradients update all {total:,} parameters", ha="center",
            va="center", fontsize=8.5, color=train["text"], style="italic")

    # Legend, on the line below the title, drawn last: one swatch per state present in this map,
    # filled like a box of the map in that state (the fill says what kind of part a box is, the
    # frame says the state), so every swatch matches boxes of the picture.
    lx, ly = 2.0, height - 6.2
    for state, label, edge, lw in (("here", "this lesson", HERE_EDGE, 2.4),
                                   ("done", "built in an earlier lesson", "#555555", 1.0),
                                   ("later", "still to come", LATER_EDGE, 1.0)):
        if state not in m.faces:
            continue
        ax.add_patch(FancyBboxPatch((lx, ly - 1.0), 2.6, 2.0,
                                    boxstyle="round,pad=0,rounding_size=0.4", facecolor=m.faces[state],
                                    edgecolor=edge, linewidth=lw))
        ax.text(lx + 3.3, ly, label, ha="left", va="center", fontsize=9)
        lx += 3.3 + 0.62 * len(label) + 3.5

    ax.text(width / 2, -1.6, _captions(c, total, recipe)[lesson], ha="center", va="top",
            fontsize=9.5, color="#222222")
    fig.set_size_inches(width / 10, (height + 4.5) / 10)
    ax.set_ylim(-4.5, height)
    return fig


def save_you_are_here(out_dir: Path, lessons: list[str] | None = None) -> list[Path]:
    """Write out_dir/you_are_here/lesson_NN.png for each lesson (default: all), reproducibly."""
    folder = out_dir / YOU_ARE_HERE
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for lesson in lessons or sorted(LESSONS):
        fig = draw_you_are_here(lesson)
        path = folder / f"lesson_{lesson}.png"
        fig.savefig(path, dpi=100, metadata={"Software": None})
        plt.close(fig)
        paths.append(path)
    (folder / "DRAWN_WITH.txt").write_text(
        f"matplotlib {matplotlib.__version__}\n", encoding="utf-8")
    return paths


def save(fig: plt.Figure, out_dir: Path) -> tuple[Path, Path]:
    """Write vit.png and vit.svg into out_dir with reproducible bytes; returns both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png, svg = out_dir / "vit.png", out_dir / "vit.svg"
    with plt.rc_context({"svg.hashsalt": "vit-from-scratch", "svg.fonttype": "none"}):
        fig.savefig(png, dpi=100, metadata={"Software": None})
        fig.savefig(svg, metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    return png, svg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", nargs="?", default=str(HERE),
                        help="folder for vit.png, vit.svg and you_are_here/ "
                             "(default: vit_architecture/)")
    parser.add_argument("--lesson", choices=sorted(LESSONS),
                        help="draw only this lesson's you_are_here/lesson_NN.png")
    args = parser.parse_args(argv)
    out_dir = Path(args.out_dir)
    if args.lesson is None:
        fig = draw(ViTConfig())
        png, svg = save(fig, out_dir)
        plt.close(fig)
        print(f"wrote {png} and {svg}")
    paths = save_you_are_here(out_dir, [args.lesson] if args.lesson else None)
    print(f"wrote {len(paths)} you-are-here picture(s) into {paths[0].parent}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
