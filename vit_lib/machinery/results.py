"""Benchmark results that lessons compare with, shipped inside the package.

`benchmarks/cnn_vs_vit.py` writes `vit_lib/machinery/committed/cnn_vs_vit.json` (hours of CPU, run
by hand); lesson 07 reads it with `committed_results("cnn_vs_vit.json")`, so the lesson runs the
same from a checkout and from an installed wheel.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from vit_lib.machinery.errors import UserError

FOLDER = Path(__file__).resolve().parent / "committed"


def committed_results(name: str) -> dict[str, Any]:
    """The committed benchmark file `name` (e.g. "cnn_vs_vit.json"), read as JSON."""
    path = FOLDER / name
    if not path.is_file():
        known = ", ".join(sorted(p.name for p in FOLDER.glob("*.json"))) or "none"
        raise UserError(f"no committed benchmark results named {name!r}; vit_lib ships {known}")
    return json.loads(path.read_text())
