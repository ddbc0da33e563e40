"""tools/colab.py: one setting (pyproject's [project.urls] Repository) writes every lesson's Colab
badge and install line; nothing while it is empty; idempotent; every other byte kept."""
from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

from IPython.core.inputtransformer2 import TransformerManager
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = "https://github.com/example/vit-from-scratch"

_spec = importlib.util.spec_from_file_location("colab_tool", ROOT / "tools" / "colab.py")
colab = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(colab)


def _copy(tmp_path: Path, url: str) -> Path:
    """A temporary repository root: the lessons and a pyproject whose Repository is `url`."""
    shutil.copytree(ROOT / "notebooks", tmp_path / "notebooks",
                    ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    (tmp_path / "pyproject.toml").write_text(_with_setting(pyproject, url), encoding="utf-8")
    return tmp_path


def _with_setting(pyproject: str, url: str) -> str:
    """pyproject.toml's text with `Repository = "url"` under [project.urls] (no entry when url
    is '')."""
    assert pyproject.count("[project.urls]\n") == 1, "pyproject.toml needs a [project.urls] table"
    text = re.sub(r'(?m)^Repository\s*=.*\n', "", pyproject)
    entry = f'Repository = "{url}"\n' if url else ""
    return text.replace("[project.urls]\n", f"[project.urls]\n{entry}")


def _run_tool(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "tools" / "colab.py"), "--root", str(root), *args],
                          capture_output=True, text=True)


def _snapshot(root: Path) -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in colab.lessons(root / "notebooks")}


def _without_colab_cells(text: str) -> str:
    nb = json.loads(text)
    nb["cells"] = [c for c in nb["cells"] if c.get("id") not in (colab.BADGE_ID, colab.SETUP_ID)]
    return colab.dumps_notebook(nb)


def _source(cell: dict) -> str:
    return "".join(cell["source"])


def _setup_cell(nb: dict) -> dict:
    cells = [c for c in nb["cells"] if c.get("id") == colab.SETUP_ID]
    assert len(cells) == 1
    return cells[0]


def test_sample_address_gives_each_lesson_its_own_badge_and_install_line(tmp_path):
    root = _copy(tmp_path, SAMPLE)
    before = _snapshot(root)
    assert len(before) >= 7
    result = _run_tool(root)
    assert result.returncode == 0, result.stderr
    after = _snapshot(root)
    for name, text in after.items():
        nb = json.loads(text)
        badge = nb["cells"][0]
        assert badge["id"] == colab.BADGE_ID and badge["cell_type"] == "markdown"
        links = re.findall(r"\)\]\((https://colab\.research\.google\.com/[^)]+)\)", _source(badge))
        assert links == [f"https://colab.research.google.com/github/example/vit-from-scratch/blob/main/notebooks/{name}"]
        # the title comes right after the badge, the setup cell right after the title
        assert nb["cells"][1]["cell_type"] == "markdown" and _source(nb["cells"][1]).startswith("# ")
        setup = nb["cells"][2]
        assert setup["id"] == colab.SETUP_ID and setup["cell_type"] == "code"
        lines = [ln.strip() for ln in _source(setup).splitlines() if "pip install" in ln]
        assert len(lines) == 1, _source(setup)
        requirement = Requirement(re.search(r'"([^"]+)"', lines[0])[1])   # what pip parses
        assert requirement.name == "vit-from-scratch"
        assert requirement.url == f"git+{SAMPLE}"
        # IPython turns the indented %pip into valid Python that installs only on ImportError
        code = TransformerManager().transform_cell(_source(setup))
        compile(code, name, "exec")
        assert "except ImportError:\n    get_ipython().run_line_magic('pip'" in code
        # every other cell is unchanged, and so is every byte of a notebook saved the way nbformat
        # writes them (as every executed lesson is): the tool writes that same format
        assert _without_colab_cells(text) == _without_colab_cells(before[name])


def test_running_twice_changes_nothing(tmp_path):
    root = _copy(tmp_path, SAMPLE)
    assert _run_tool(root).returncode == 0
    first = _snapshot(root)
    second = _run_tool(root)
    assert second.returncode == 0 and "every lesson is up to date" in second.stdout
    assert _snapshot(root) == first
    assert _run_tool(root, "--check").returncode == 0


def test_empty_setting_writes_no_badge_and_no_install_line(tmp_path):
    root = _copy(tmp_path, SAMPLE)
    assert _run_tool(root).returncode == 0          # first with an address, then emptied
    pyproject = (root / "pyproject.toml").read_text(encoding="utf-8")
    (root / "pyproject.toml").write_text(_with_setting(pyproject, ""), encoding="utf-8")
    result = _run_tool(root)
    assert result.returncode == 0 and "Repository is empty" in result.stdout
    for name, text in _snapshot(root).items():
        # no install line for vit_lib (lesson 08's `%pip install anywidget` fallback is from PyPI)
        for banned in ("colab.research.google.com", "git+", f'%pip install -q "{colab.DIST_NAME}'):
            assert banned not in text, (name, banned)
        nb = json.loads(text)
        assert not any(c.get("id") == colab.BADGE_ID for c in nb["cells"])
        assert _source(nb["cells"][0]).startswith("# ")
        assert nb["cells"][1] is _setup_cell(nb)


def test_empty_setting_setup_cell_passes_when_installed_and_explains_when_missing(tmp_path):
    code = colab.setup_source("")
    subprocess.run([sys.executable, "-c", code], check=True)            # vit_lib importable: silent
    missing = "import sys\nsys.modules['vit_lib'] = None\n" + code     # import vit_lib -> ImportError
    result = subprocess.run([sys.executable, "-c", missing], capture_output=True, text=True)
    assert result.returncode == 1
    assert "ImportError: vit_lib is not installed: run `pip install -e .`" in result.stderr


def test_a_non_github_address_is_refused_and_changes_nothing(tmp_path):
    root = _copy(tmp_path, "https://gitlab.com/example/vit-from-scratch")
    before = _snapshot(root)
    result = _run_tool(root)
    assert result.returncode == 2
    assert result.stderr.startswith("error: [project.urls] Repository = 'https://gitlab.com/example/vit-from-scratch'")
    assert "https://github.com/OWNER/NAME" in result.stderr
    assert _snapshot(root) == before


def test_the_lessons_in_this_checkout_match_the_setting():
    changed = colab.run(ROOT, check=True)
    assert not changed, (f"{', '.join(p.name for p in changed)} do not match [project.urls] Repository "
                         "in pyproject.toml: run `make colab` (python tools/colab.py)")
