"""Write the "Open in Colab" badge and the setup cell of every lesson from one setting.

    python tools/colab.py                  # or: make colab
    python tools/colab.py --check          # exit 1 if a notebook is not up to date (changes nothing)

The setting is `Repository` under `[project.urls]` in pyproject.toml, the repository's public
GitHub address (for example https://github.com/OWNER/vit-from-scratch); until the repository is
published the entry is left out (commented), which counts as empty. For every lesson
`notebooks/NN_*.ipynb` the command makes

- a markdown cell at the very top with an "Open in Colab" badge that opens that notebook from the
  repository's `main` branch (`--branch` to change it); no badge while the setting is empty;
- a code cell right after the title that imports vit_lib and, only when that fails, installs it:
  with `pip install "vit-from-scratch @ git+ADDRESS"` when the setting is filled in, otherwise by
  stopping with a message that says how to install it.

Both cells are found again by their cell ids (`colab-badge`, `colab-setup`), so running the
command twice changes nothing, and every other byte of a notebook stays as it was (notebooks are
written the way nbformat writes them: sorted keys, indent 1, UTF-8, trailing newline).
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from vit_lib.classroom.notebooks import dumps_notebook

ROOT = Path(__file__).resolve().parent.parent
BADGE_ID = "colab-badge"
SETUP_ID = "colab-setup"
DIST_NAME = "vit-from-scratch"
BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"
_GITHUB = re.compile(r"^https://github\.com/(?P<owner>[A-Za-z0-9_.-]+)/(?P<repo>[A-Za-z0-9_.-]+?)(?:\.git)?/?$")


class ColabError(ValueError):
    """The setting or a notebook cannot be used; the message says what to fix."""


def read_repository_url(pyproject: Path) -> str:
    """The `Repository` value of `[project.urls]` in pyproject.toml ('' when absent or empty)."""
    import tomllib

    with open(pyproject, "rb") as f:
        data = tomllib.load(f)
    return str(data.get("project", {}).get("urls", {}).get("Repository", "")).strip()


def github_owner_repo(url: str) -> tuple[str, str]:
    """('OWNER', 'NAME') of https://github.com/OWNER/NAME; Colab opens notebooks from GitHub only."""
    m = _GITHUB.match(url)
    if not m:
        raise ColabError(f"[project.urls] Repository = {url!r} is not a GitHub address: Colab opens "
                         "notebooks from GitHub, so write it as https://github.com/OWNER/NAME "
                         "(or leave it empty for no badge and no install line)")
    return m["owner"], m["repo"]


def colab_url(url: str, notebook: str, branch: str = "main") -> str:
    """The Colab address that opens `notebook` (a path inside the repository) from GitHub."""
    owner, repo = github_owner_repo(url)
    return f"https://colab.research.google.com/github/{owner}/{repo}/blob/{branch}/{notebook}"


def install_requirement(url: str) -> str:
    """The pip requirement that installs this project from its git repository (PEP 508)."""
    owner, repo = github_owner_repo(url)
    return f"{DIST_NAME} @ git+https://github.com/{owner}/{repo}"


def badge_source(url: str, notebook: str, branch: str = "main") -> str:
    return f"[![Open In Colab]({BADGE_SVG})]({colab_url(url, notebook, branch)})"


def setup_source(url: str) -> str:
    """The setup cell: import vit_lib, install it only when missing."""
    if url:
        return ("# On Colab or anywhere vit_lib is missing, install it (this cell does nothing where it "
                "is present).\n"
                "try:\n"
                "    import vit_lib\n"
                "except ImportError:\n"
                f"    %pip install -q \"{install_requirement(url)}\"")
    return ("# vit_lib holds the finished code of every lesson; this cell does nothing where it is "
            "installed.\n"
            "try:\n"
            "    import vit_lib\n"
            "except ImportError:\n"
            "    raise ImportError(\"vit_lib is not installed: run `pip install -e .` in the course's "
            "repository \"\n"
            "                      \"(or `pip install` the wheel you were given), then restart the "
            "kernel\") from None")


def _lines(text: str) -> list[str]:
    """A source string as nbformat stores it: a list of lines, each but the last ending in \\n."""
    return text.splitlines(keepends=True)


def _new_cell(cell_id: str, cell_type: str, source: str) -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": cell_type, "id": cell_id, "metadata": {},
                            "source": _lines(source)}
    if cell_type == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def _title_index(cells: list[dict[str, Any]], name: str) -> int:
    for i, cell in enumerate(cells):
        if cell["cell_type"] == "markdown" and "".join(cell["source"]).lstrip().startswith("# "):
            return i
    raise ColabError(f"{name}: no title cell (a markdown cell starting with '# ') to put the setup "
                     "cell after")


def _set_cell(cells: list[dict[str, Any]], cell_id: str, cell_type: str, source: str,
              index: int) -> None:
    """Make cells[index] the cell `cell_id` with `source`, moving or creating it as needed.
    An existing cell keeps its outputs unless its source changes."""
    current = next((i for i, c in enumerate(cells) if c.get("id") == cell_id), None)
    if current is None:
        cells.insert(index, _new_cell(cell_id, cell_type, source))
        return
    cell = cells.pop(current)
    if current < index:
        index -= 1
    if "".join(cell["source"]) != source:
        cell["source"] = _lines(source)
        if cell_type == "code":
            cell.update(execution_count=None, outputs=[])
    cells.insert(index, cell)


def update_notebook(nb: dict[str, Any], url: str, notebook: str, branch: str = "main") -> dict[str, Any]:
    """Put the badge (only when `url` is set) and the setup cell into a notebook dict, in place."""
    cells = nb["cells"]
    if url:
        _set_cell(cells, BADGE_ID, "markdown", badge_source(url, notebook, branch), 0)
    else:
        cells[:] = [c for c in cells if c.get("id") != BADGE_ID]
    title = _title_index(cells, notebook)
    _set_cell(cells, SETUP_ID, "code", setup_source(url), title + 1)
    return nb


def lessons(notebooks_dir: Path) -> list[Path]:
    return sorted(notebooks_dir.glob("[0-9][0-9]_*.ipynb"))


def run(root: Path, branch: str = "main", check: bool = False, url: str | None = None) -> list[Path]:
    """Update every lesson under root/notebooks from root/pyproject.toml; returns the changed ones
    (with check=True, the ones that would change, writing nothing)."""
    url = read_repository_url(root / "pyproject.toml") if url is None else url.strip()
    if url:
        github_owner_repo(url)   # fail before touching any file
    changed = []
    paths = lessons(root / "notebooks")
    if not paths:
        raise ColabError(f"no lesson notebooks (NN_*.ipynb) in {root / 'notebooks'}")
    for path in paths:
        text = path.read_text(encoding="utf-8")
        nb = json.loads(text)
        new = dumps_notebook(update_notebook(nb, url, path.relative_to(root).as_posix(), branch))
        if new != text:
            changed.append(path)
            if not check:
                path.write_text(new, encoding="utf-8")
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", type=Path, default=ROOT,
                        help="repository root (default: this checkout)")
    parser.add_argument("--branch", default="main", help="branch the Colab badges open (default: main)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if a notebook is out of date")
    args = parser.parse_args(argv)
    try:
        url = read_repository_url(args.root / "pyproject.toml")
        changed = run(args.root, args.branch, args.check, url)
    except (ColabError, OSError, json.JSONDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    what = "would change" if args.check else "updated"
    setting = f"Repository = {url}" if url else "Repository is empty: no badge, no install line"
    print(f"[project.urls] {setting}")
    for path in changed:
        print(f"{what}: {path.relative_to(args.root).as_posix()}")
    if not changed:
        print("every lesson is up to date")
    return 1 if args.check and changed else 0


if __name__ == "__main__":
    sys.exit(main())
