"""Embed the architecture pictures into the lessons as markdown cell attachments.

    python tools/embed_images.py                         # every notebooks/NN_*.ipynb
    python tools/embed_images.py notebooks/01_patches.ipynb
    python tools/embed_images.py --check                 # exit 1 if a notebook is out of date

A markdown cell whose source contains `attachment:you_are_here.png` gets the lesson's
vit_architecture/you_are_here/lesson_NN.png (NN = the first two characters of the file name) as
its attachment `you_are_here.png`; one containing `attachment:vit_architecture.png` gets
vit_architecture/vit.png; either is removed from a cell that no longer references it, other
attachments are left alone. Nothing else in the file changes: it is rewritten the way nbformat
writes (indent 1, sorted keys, UTF-8, trailing newline), and only when an attachment changed.
Run it after `make diagram` (`make images` does both).
"""
from __future__ import annotations

import argparse
import base64
import json
import re
import sys
from pathlib import Path
from typing import Any

from vit_lib.classroom.notebooks import dumps_notebook, lesson_number

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
PICTURES = ROOT / "vit_architecture"
LESSON_GLOB = "[0-9][0-9]_*.ipynb"
YOU_ARE_HERE = "you_are_here.png"
ARCHITECTURE = "vit_architecture.png"
ATTACHMENT_REF = re.compile(r"attachment:([^\s)\"'>]+)")


class EmbedError(Exception):
    """A notebook or picture the tool cannot use; the message says how to fix it."""


def cell_source(cell: dict[str, Any]) -> str:
    """The cell's source as one string (notebooks store it as a list of lines)."""
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def referenced_attachments(cell: dict[str, Any]) -> list[str]:
    """Names used as `attachment:NAME` in a markdown cell, in order of first use."""
    return list(dict.fromkeys(ATTACHMENT_REF.findall(cell_source(cell))))


def lesson_of(path: Path) -> str:
    """'01' for notebooks/01_patches.ipynb."""
    number = lesson_number(path)
    if number is None:
        raise EmbedError(f"{path}: not a lesson notebook (expected a name like 01_patches.ipynb)")
    return number


def picture_for(name: str, lesson: str, pictures: Path = PICTURES) -> Path | None:
    """The file the tool embeds as attachment `name` in lesson `lesson` (None: not its job)."""
    if name == YOU_ARE_HERE:
        return pictures / "you_are_here" / f"lesson_{lesson}.png"
    if name == ARCHITECTURE:
        return pictures / "vit.png"
    return None


def png_bundle(path: Path) -> dict[str, str]:
    """The attachment value for a PNG file: {"image/png": base64 text on one line}."""
    if not path.is_file():
        raise EmbedError(f"{path} is missing: run `python vit_architecture/draw.py` "
                         "(make diagram) first")
    data = path.read_bytes()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise EmbedError(f"{path} is not a PNG file: redraw it with vit_architecture/draw.py")
    return {"image/png": base64.b64encode(data).decode("ascii")}


def embed(nb: dict[str, Any], lesson: str, pictures: Path = PICTURES) -> dict[str, Any]:
    """Fill (in place) the attachments of every markdown cell that references our pictures."""
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "markdown":
            continue
        names = referenced_attachments(cell)
        attachments = dict(cell.get("attachments", {}))
        for name in (YOU_ARE_HERE, ARCHITECTURE):
            if name in names:
                attachments[name] = png_bundle(picture_for(name, lesson, pictures))
            else:
                attachments.pop(name, None)     # ours, but the cell no longer shows it
        if attachments:
            cell["attachments"] = attachments
        else:
            cell.pop("attachments", None)
    return nb


def embed_file(path: Path, check: bool = False, pictures: Path = PICTURES) -> bool:
    """Embed the pictures into one notebook file; returns True when its bytes changed (or, with
    check=True, would change; the file is then left alone)."""
    lesson = lesson_of(path)
    text = path.read_text(encoding="utf-8")
    try:
        nb = json.loads(text)
    except json.JSONDecodeError as err:
        raise EmbedError(f"{path}: not valid notebook JSON ({err}); fix or restore the file") \
            from None
    new = dumps_notebook(embed(nb, lesson, pictures))
    if new == text:
        return False
    if not check:
        path.write_text(new, encoding="utf-8")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help=f"lesson notebooks (default: notebooks/{LESSON_GLOB})")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if any notebook's pictures are out of date")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(NOTEBOOKS.glob(LESSON_GLOB))
    stale = []
    try:
        for path in paths:
            if not path.is_file():
                raise EmbedError(f"{path}: no such notebook")
            if embed_file(path, check=args.check):
                stale.append(path)
                print(f"{path.name}: {'out of date' if args.check else 'pictures embedded'}")
    except EmbedError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if not stale:
        print(f"{len(paths)} notebook(s) already up to date")
    return 1 if args.check and stale else 0


if __name__ == "__main__":
    sys.exit(main())
