"""vit_architecture/draw.py redraws the diagram from the seed config, and the drawing is committed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import vit_lib
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


# --- The lessons' "you are here" pictures (vit_architecture/you_are_here/lesson_NN.png) -------

def _draw_module():
    """vit_architecture/draw.py imported as a module (it is a script, not part of vit_lib)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location("vit_draw", FOLDER / "draw.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["vit_draw"] = module     # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    import struct
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def test_you_are_here_one_picture_per_lesson_with_deterministic_bytes(tmp_path: Path):
    draw = _draw_module()
    lessons = sorted(draw.LESSONS)
    assert lessons == [f"{n:02d}" for n in range(len(vit_lib.LESSONS))]
    first = [p.read_bytes() for p in draw.save_you_are_here(tmp_path / "a")]
    second = [p.read_bytes() for p in draw.save_you_are_here(tmp_path / "b")]
    assert first == second, "drawing the same lesson twice gave different bytes"
    assert len(set(first)) == len(lessons), "two lessons got the same picture"
    for data in first:
        width, height = _png_size(data)
        assert 700 <= width <= 900, f"{width} px wide: the pictures should read at 700-900 px"
        assert height < width


def test_you_are_here_highlights_the_lessons_part():
    draw = _draw_module()
    assert draw._state("02", "02", "attn") == "here"
    assert draw._state("02", "01", "patch_embed") == "done"
    assert draw._state("02", "04", "head") == "later"
    assert draw._state("05", "05", "loss") == "here" and draw._state("05", "03", "mlp") == "done"
    assert draw._state("06", "02", "attn") == "here" and draw._state("06", "03", "mlp") == "done"
    assert draw._state("07", "04", "head") == "here" and draw._state("07", "02", "attn") == "done"
    assert draw._state("08", "00", "image") == "here" and draw._state("08", "03", "mlp") == "done"
    captions = draw._captions(ViTConfig(), 14410, draw.Recipe())
    assert "16 patches of 7×7" in captions["01"] and "14,410 parameters" in captions["04"]


def test_you_are_here_rejects_an_unknown_lesson():
    import pytest
    draw = _draw_module()
    with pytest.raises(ValueError, match="lesson must be one of"):
        draw.draw_you_are_here("7")
    result = subprocess.run([sys.executable, str(FOLDER / "draw.py"), "--lesson", "9"],
                            capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 2 and "invalid choice: '9'" in result.stderr


def test_committed_you_are_here_pictures_are_current(tmp_path: Path):
    """The committed pictures are what draw.py draws now (byte for byte with the matplotlib
    version that drew them, recorded in DRAWN_WITH.txt; same size with any other version)."""
    import matplotlib
    draw = _draw_module()
    folder = FOLDER / "you_are_here"
    fresh = draw.save_you_are_here(tmp_path)
    drawn_with = (folder / "DRAWN_WITH.txt").read_text(encoding="utf-8").split()
    for path in fresh:
        committed = folder / path.name
        assert committed.is_file(), f"{committed} is missing: run make images"
        if drawn_with == ["matplotlib", matplotlib.__version__]:
            assert committed.read_bytes() == path.read_bytes(), \
                f"{committed} is stale: run make images (redraws and embeds it in the lessons)"
        else:
            assert _png_size(committed.read_bytes()) == _png_size(path.read_bytes())
