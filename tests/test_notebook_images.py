"""Every picture a lesson shows travels inside the notebook (issue #7): attachments that exist,
no image linked from outside notebooks/, and the embedded architecture pictures are the ones
tools/embed_images.py would embed now (so redrawing without re-embedding fails here)."""
from __future__ import annotations

import copy
import json
import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
import embed_images  # noqa: E402  (tools/ is not a package: after the sys.path line)

NOTEBOOKS = sorted((ROOT / "notebooks").rglob(embed_images.LESSON_GLOB))
# ![alt](target "title") and <img ... src="target">
MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\(\s*<?([^)\s>]+)")
HTML_IMAGE = re.compile(r"<img\b[^>]*\bsrc\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)


def _markdown_cells(path: Path) -> list[tuple[int, dict]]:
    nb = json.loads(path.read_text(encoding="utf-8"))
    return [(i, cell) for i, cell in enumerate(nb["cells"]) if cell["cell_type"] == "markdown"]


def _image_targets(source: str) -> list[str]:
    return MARKDOWN_IMAGE.findall(source) + HTML_IMAGE.findall(source)


def image_problems(path: Path) -> list[str]:
    """What is wrong with the pictures of one notebook, one line each (empty: all good)."""
    problems = []
    for i, cell in _markdown_cells(path):
        source = embed_images.cell_source(cell)
        attachments = cell.get("attachments", {})
        for name in embed_images.referenced_attachments(cell):
            bundle = attachments.get(name)
            if not bundle or not any(key.startswith("image/") for key in bundle):
                problems.append(f"{path.name} cell {i}: attachment:{name} is referenced but "
                                "not attached (run python tools/embed_images.py)")
        for target in _image_targets(source):
            if target.startswith(("attachment:", "data:image/", "https://", "http://")):
                continue
            problems.append(f"{path.name} cell {i}: image {target!r} is a file link, which "
                            "breaks in exported HTML and in a copied notebook: embed it as an "
                            "attachment or draw it with code")
    return problems


def stale_pictures(path: Path) -> list[str]:
    """Cells whose you_are_here / vit_architecture attachments differ from what the tool embeds."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    fresh = embed_images.embed(copy.deepcopy(nb), embed_images.lesson_of(path))
    stale = []
    for i, (old, new) in enumerate(zip(nb["cells"], fresh["cells"], strict=True)):
        for name in (embed_images.YOU_ARE_HERE, embed_images.ARCHITECTURE):
            before = old.get("attachments", {}).get(name)
            if before is None and name in embed_images.referenced_attachments(old):
                continue                        # missing: image_problems reports it
            if before != new.get("attachments", {}).get(name):
                stale.append(f"{path.name} cell {i}: {name} is not the current picture "
                             "(run make images)")
    return stale


def test_there_are_lessons_to_check():
    assert len([p for p in NOTEBOOKS if p.parent.name == "notebooks"]) >= 7


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: str(p.relative_to(ROOT / "notebooks")))
def test_every_image_is_embedded_and_current(path: Path):
    problems = image_problems(path) + stale_pictures(path)
    assert not problems, "\n".join(problems)


# --- The checks and the tool, on small notebooks made here --------------------------------

def _lesson(tmp_path: Path, name: str = "01_demo.ipynb", extra: str = "") -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# Lesson 01 · Demo"),
        nbformat.v4.new_markdown_cell("![you are here: lesson 01](attachment:you_are_here.png)\n"
                                      "**Prerequisites:** none"),
        nbformat.v4.new_code_cell("print('ü')"),
        nbformat.v4.new_markdown_cell("The model:\n\n![ViT](attachment:vit_architecture.png)"
                                      + extra),
    ]
    path = tmp_path / name
    nbformat.write(nb, path)
    return path


def test_the_tool_embeds_only_attachments_and_is_idempotent(tmp_path: Path):
    path = _lesson(tmp_path)
    before = path.read_text(encoding="utf-8")
    assert image_problems(path), "a referenced but missing attachment must be reported"
    assert embed_images.main([str(path)]) == 0
    after = path.read_text(encoding="utf-8")
    assert after != before and not image_problems(path) and not stale_pictures(path)
    # Remove the attachments again: the rest of the file is byte for byte what it was.
    nb = json.loads(after)
    for cell in nb["cells"]:
        cell.pop("attachments", None)
    assert embed_images.dumps_notebook(nb) == before
    # The embedded pictures are the committed files.
    cells = json.loads(after)["cells"]
    assert cells[1]["attachments"]["you_are_here.png"] == \
        embed_images.png_bundle(ROOT / "vit_architecture/you_are_here/lesson_01.png")
    assert cells[3]["attachments"]["vit_architecture.png"] == \
        embed_images.png_bundle(ROOT / "vit_architecture/vit.png")
    # Idempotent: a second run changes nothing, --check agrees.
    assert embed_images.main([str(path)]) == 0
    assert path.read_text(encoding="utf-8") == after
    assert embed_images.main(["--check", str(path)]) == 0
    # nbformat reads it back as a valid notebook.
    nbformat.validate(nbformat.read(path, as_version=4))


def test_a_redraw_without_re_embedding_is_caught(tmp_path: Path):
    pictures = tmp_path / "pictures"
    shutil.copytree(ROOT / "vit_architecture", pictures)
    path = _lesson(tmp_path)
    assert embed_images.embed_file(path, pictures=pictures)
    assert not stale_pictures(path)
    # The notebook holds an older drawing (here: another lesson's picture), not the current one.
    nb = json.loads(path.read_text(encoding="utf-8"))
    nb["cells"][1]["attachments"]["you_are_here.png"] = embed_images.png_bundle(
        pictures / "you_are_here/lesson_02.png")
    path.write_text(embed_images.dumps_notebook(nb), encoding="utf-8")
    assert stale_pictures(path) == [
        "01_demo.ipynb cell 1: you_are_here.png is not the current picture (run make images)"]
    assert embed_images.main(["--check", str(path)]) == 1
    assert embed_images.main([str(path)]) == 0 and not stale_pictures(path)


def test_file_links_to_images_are_reported(tmp_path: Path):
    path = _lesson(tmp_path, extra="\n\n![old](../vit_architecture/vit.png)\n"
                                   '<img src="/tmp/x.png">\n![web](https://example.org/a.png)')
    embed_images.main([str(path)])
    problems = image_problems(path)
    assert len(problems) == 2
    assert "'../vit_architecture/vit.png' is a file link" in problems[0]
    assert "'/tmp/x.png' is a file link" in problems[1]


def test_an_attachment_nobody_embeds_is_reported_missing(tmp_path: Path):
    path = _lesson(tmp_path, extra="\n\n![mine](attachment:my_figure.png)")
    embed_images.main([str(path)])
    assert image_problems(path) == ["01_demo.ipynb cell 3: attachment:my_figure.png is "
                                    "referenced but not attached (run python "
                                    "tools/embed_images.py)"]


def test_the_tool_says_what_is_wrong(tmp_path: Path, capsys):
    bad_name = _lesson(tmp_path, name="demo.ipynb")
    assert embed_images.main([str(bad_name)]) == 2
    assert "not a lesson notebook (expected a name like 01_patches.ipynb)" in \
        capsys.readouterr().err
    broken = tmp_path / "02_broken.ipynb"
    broken.write_text("{not json", encoding="utf-8")
    assert embed_images.main([str(broken)]) == 2
    assert "not valid notebook JSON" in capsys.readouterr().err
    path = _lesson(tmp_path)
    with pytest.raises(embed_images.EmbedError, match="is missing: run"):
        embed_images.embed_file(path, pictures=tmp_path / "nowhere")
    assert embed_images.main([str(tmp_path / "03_absent.ipynb")]) == 2
    assert "no such notebook" in capsys.readouterr().err
