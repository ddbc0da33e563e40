"""Every lesson works outside the checkout, both editions: vit_lib from a built wheel (not editable,
not this checkout), the notebook alone in an empty folder, executed top to bottom there.

The wheel is built from a copy of the sources and installed with `pip install --target` into a
temporary folder that goes first on PYTHONPATH of a kernel run by this test environment's python
(so torch and friends come from there); the kernel checks that `vit_lib` is the wheel's copy.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# every lesson, full and student edition (student/NN_*.ipynb); the lessons that train reuse the
# runs of this test session through the run cache ($VIT_CACHE_DIR, set by `make test`), whichever
# edition trains them first, so the whole set costs about the lessons' non-training cells twice
LESSONS = sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
EDITIONS = [*LESSONS, *(f"student/{name}" for name in LESSONS)]


def _pip(*args: str, cwd: Path) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"


def _build_isolation() -> list[str]:
    """Build with this environment's setuptools when it can make wheels by itself (>= 70.1, or with
    the `wheel` package); otherwise pip fetches the build backend from PyPI (a fresh Python 3.11
    venv has setuptools 65 without `wheel`)."""
    try:
        import setuptools
    except ImportError:
        return []
    from packaging.version import Version

    if Version(setuptools.__version__) >= Version("70.1") or importlib.util.find_spec("wheel"):
        return ["--no-build-isolation"]
    return []


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """A folder holding vit_lib installed from a freshly built wheel (put it on PYTHONPATH)."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"      # build from a copy: no build/ or egg-info left in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    shutil.copytree(ROOT / "vit_lib", src / "vit_lib", ignore=shutil.ignore_patterns("__pycache__"))
    _pip("wheel", "--no-deps", *_build_isolation(), "-w", str(tmp / "dist"), str(src), cwd=tmp)
    wheels = list((tmp / "dist").glob("vit_from_scratch-*.whl"))
    assert len(wheels) == 1, wheels
    names = zipfile.ZipFile(wheels[0]).namelist()
    assert "vit_lib/__init__.py" in names and "vit_lib/classroom/exercises/__init__.py" in names
    shipped = sorted(p.name for p in (ROOT / "vit_lib" / "weights").glob("*.pt"))
    assert shipped, "vit_lib/weights holds no trained models: run make weights"
    for name in shipped:     # the trained models ship as package data, each with its description
        assert f"vit_lib/weights/{name}" in names and f"vit_lib/weights/{name[:-3]}.json" in names
    site = tmp / "site"
    _pip("install", "--no-deps", "--no-index", "--target", str(site), str(wheels[0]), cwd=tmp)
    return site


def _env(site: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIT_DATA_DIR")}
    env.update(PYTHONPATH=str(site), PYTHONNOUSERSITE="1", **extra)
    return env


@pytest.mark.slow
def test_default_data_folder_of_the_installed_package_is_data_under_the_working_folder(installed, tmp_path):
    code = ("import os, vit_lib\nfrom vit_lib.data import resolve_data_dir\n"
            "print(os.path.realpath(vit_lib.__file__))\nprint(resolve_data_dir().resolve())")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(installed),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    module, data = result.stdout.split()
    assert Path(module).is_relative_to(installed.resolve())
    assert Path(data) == tmp_path.resolve() / "data"


@pytest.mark.parametrize("lesson", sorted(p.name for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")))
def test_no_lesson_refers_to_files_outside_its_folder(lesson):
    """A lesson copied alone (or opened on Colab) has no ../ images or paths: images are embedded."""
    for cell in json.loads((ROOT / "notebooks" / lesson).read_text(encoding="utf-8"))["cells"]:
        source = "".join(cell["source"])
        assert "../" not in source, f"{lesson} refers to a file outside its folder: {source[:300]!r}"


@pytest.mark.slow
def test_the_installed_wheel_has_its_trained_models(installed, tmp_path):
    """vit_lib.pretrained and `python -m vit_lib predict` work from the wheel, reading the weights
    installed with it (not the checkout's)."""
    from PIL import Image, ImageDraw

    code = ("import vit_lib\nfrom vit_lib.machinery.pretrained import available\n"
            "m = vit_lib.pretrained('seed-tuned')\n"
            "print(m.info.file, m.info.test_accuracy, m.training, len(available()))")
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=_env(installed),
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    file, accuracy, training, count = result.stdout.split()
    assert Path(file).is_relative_to(installed.resolve()) and Path(file).is_file()
    assert float(accuracy) > 97 and training == "False"
    assert int(count) == len(list((ROOT / "vit_lib" / "weights").glob("*.pt")))
    img = Image.new("L", (90, 120), 255)
    ImageDraw.Draw(img).line([(20, 20), (70, 20), (40, 105)], fill=0, width=10)
    img.save(tmp_path / "seven.png")
    predicted = subprocess.run([sys.executable, "-m", "vit_lib", "predict", "seven.png"],
                               cwd=tmp_path, env=_env(installed), capture_output=True, text=True)
    assert predicted.returncode == 0, predicted.stderr
    assert predicted.stdout.startswith("seven.png: 7 (")


RUNNER = textwrap.dedent("""
    import json, os, sys
    import nbformat
    from nbclient import NotebookClient

    path = sys.argv[1]
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "import os, sys, vit_lib\\nprint(os.path.realpath(vit_lib.__file__))\\nprint(sys.executable)"))
    NotebookClient(nb, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": os.getcwd()}}).execute()
    print("RESULT " + json.dumps("".join(o.get("text", "") for o in nb.cells[-1].outputs).split()))
""")


@pytest.mark.slow
@pytest.mark.parametrize("lesson", EDITIONS)
def test_a_lesson_alone_in_an_empty_folder_runs_with_the_installed_wheel(installed, lesson, data_dir, tmp_path):
    work = tmp_path / "lesson"
    work.mkdir()
    name = Path(lesson).name
    shutil.copy2(ROOT / "notebooks" / lesson, work / name)
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", RUNNER, name], cwd=work,
                            env=_env(installed, VIT_DATA_DIR=str(data_dir)), capture_output=True, text=True)
    took = time.perf_counter() - start
    assert result.returncode == 0, f"{lesson} failed outside the checkout:\n{result.stderr[-4000:]}"
    module, python = json.loads(result.stdout.split("RESULT ", 1)[1])
    assert Path(module).is_relative_to(installed.resolve()), f"the kernel imported vit_lib from {module}"
    assert not Path(module).is_relative_to(ROOT)
    assert Path(python).resolve() == Path(sys.executable).resolve()
    print(f"{lesson} ran outside the checkout in {took:.0f} s")
