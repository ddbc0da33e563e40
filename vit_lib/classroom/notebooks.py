"""Notebook files as plain JSON: read them, write them byte for byte as nbformat does, and tell
which lesson one belongs to. Shared by the student-edition writer, the grader, the mirror check
and the tools that edit lessons (tools/embed_images.py, tools/colab.py)."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from vit_lib.machinery.errors import StudentEditionError

LESSON_GLOB = "[0-9][0-9]_*.ipynb"


def read_notebook(path: Path) -> dict[str, Any]:
    """The notebook at `path` as plain JSON (no validation, nothing added)."""
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def dumps_notebook(nb: dict[str, Any]) -> str:
    """The text nbformat.write produces: sorted keys, indent 1, UTF-8, trailing newline."""
    return json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def cell_source(cell: dict[str, Any]) -> str:
    """A cell's source as one string (on disk it may be a list of lines)."""
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def set_source(cell: dict[str, Any], text: str) -> None:
    """Store `text` as nbformat stores sources on disk: a list of lines that keep their newline."""
    cell["source"] = text.splitlines(keepends=True)


def lesson_number(path: Path, nb: dict[str, Any] | None = None) -> str | None:
    """The lesson "NN" a notebook belongs to: its metadata `vit_lib.lesson`, else the `NN_` of its
    file name; None when neither says."""
    metadata = (nb or {}).get("metadata")
    meta = metadata.get("vit_lib", {}) if isinstance(metadata, dict) else {}
    if isinstance(meta, dict) and re.fullmatch(r"\d\d", str(meta.get("lesson", ""))):
        return str(meta["lesson"])
    m = re.match(r"(\d\d)_", Path(path).name)
    return m.group(1) if m else None


def lesson_of(path: Path, nb: dict[str, Any] | None = None) -> str:
    """lesson_number, or StudentEditionError when the notebook names no lesson."""
    number = lesson_number(path, nb)
    if number is None:
        raise StudentEditionError(f"{path}: no lesson number (metadata vit_lib.lesson or an NN_ name)")
    return number
