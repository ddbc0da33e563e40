"""vit_architecture/draw.py redraws the diagram from the seed config, and the drawing is committed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from vit_lib.config import ViTConfig
from vit_lib.model import VisionTransformer, count_parameters

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / "vit_architecture"


def _expected_strings() -> list[str]:
    """Numbers of the seed config that the diagram must show, computed here independently."""
    c = ViTConfig()
    model = VisionTransformer(c)
    block = count_parameters(model.blocks[0])
    return [
        f"{count_parameters(model):,}",                       # 14,410
        f"[B, {c.num_tokens}, {c.dim}]",                      # [B, 17, 16]
        f"[B, {c.in_channels}, {c.image_size}, {c.image_size}]",
        f"[B, {c.num_patches}, {c.dim}]",
        f"[B, {c.num_classes}]",
        f"{c.num_patches} patches of {c.patch_size}×{c.patch_size}",
        f"{c.heads} heads",
        f"Linear {c.dim}→{c.mlp_dim}",
        f"Linear {c.mlp_dim}→{c.dim}",
        f"Linear {c.dim}→{c.num_classes}",
        f"({c.num_tokens}×{c.dim})",
        f"{block:,} per block × {c.depth} = {block * c.depth:,}",
        f"× {c.depth}",
    ]


def test_seed_numbers_are_what_the_diagram_claims():
    assert count_parameters(VisionTransformer(ViTConfig())) == 14410
    assert "14,410" in _expected_strings() and "[B, 17, 16]" in _expected_strings()


def test_draw_writes_png_and_svg_with_the_config_numbers(tmp_path: Path):
    result = subprocess.run([sys.executable, str(FOLDER / "draw.py"), str(tmp_path)],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    png, svg = tmp_path / "vit.png", tmp_path / "vit.svg"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = svg.read_text(encoding="utf-8")
    missing = [s for s in _expected_strings() if s not in text]
    assert not missing, f"the SVG lacks {missing}"
    # Reproducible: nothing that changes from run to run or version to version.
    for volatile in ("<dc:date>", "Matplotlib v", "matplotlib.org/) version"):
        assert volatile not in text


def test_committed_drawing_exists_and_matches_the_config():
    png, svg = FOLDER / "vit.png", FOLDER / "vit.svg"
    assert png.is_file() and svg.is_file(), "run `python vit_architecture/draw.py` (make diagram)"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = svg.read_text(encoding="utf-8")
    missing = [s for s in _expected_strings() if s not in text]
    assert not missing, f"the committed SVG is stale, it lacks {missing}: run make diagram"
