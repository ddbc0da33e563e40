"""Draw the Vision Transformer of a ViTConfig (by default the seed's) as vit.png and vit.svg.

    python vit_architecture/draw.py              # rewrites vit_architecture/vit.png and vit.svg
    python vit_architecture/draw.py OUT_DIR      # writes OUT_DIR/vit.png and OUT_DIR/vit.svg

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
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Rectangle  # noqa: E402

from vit_lib.config import ViTConfig  # noqa: E402
from vit_lib.model import VisionTransformer, count_parameters  # noqa: E402

HERE = Path(__file__).resolve().parent

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
            ("ViTConfig(): " if seed else "") + f"image {c.image_size}, patch {c.patch_size}, dim {d}, depth {c.depth}, "
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
                        help="folder for vit.png and vit.svg (default: vit_architecture/)")
    args = parser.parse_args(argv)
    fig = draw(ViTConfig())
    png, svg = save(fig, Path(args.out_dir))
    plt.close(fig)
    print(f"wrote {png} and {svg}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
