"""Prove the oldest versions pyproject.toml claims: install them and run the tests on them.

    make test-oldest          # or: python3 tools/test_oldest.py

1. Reads the runtime dependencies of pyproject.toml; each must be `name>=floor`.
2. Creates .venv-oldest (when missing) and installs the project (editable, with its test extras)
   with every runtime dependency pinned to exactly its floor (`pip install -c`); the test tools
   (pytest, nbval, ...) may be current. The first run downloads torch's CUDA build from PyPI
   (a few GB).
3. Checks that the installed versions are the floors, then runs every test under tests/ (the
   unit tests, the short real-MNIST training runs, and lessons 01 and 04 executed outside the
   checkout from a built wheel; not the nbval comparison of saved outputs, which were saved with
   the newest torch, nor the `site` tests, which check the HTML book and need its extras; `gpu`
   tests skip without CUDA) and, for every preset, one short training run
   (`python -m vit_lib train --preset P --epochs 1 --train-subset 512`) and an evaluation of the
   checkpoint it wrote (`python -m vit_lib evaluate`).

Data come from $VIT_DATA_DIR (or the usual default, see docs/setup.md, "Data"). Exit code 0 only when
everything passed; the last lines summarise the versions and results.
"""
from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_FLOOR = re.compile(r"^\s*([A-Za-z0-9_.-]+)\s*>=\s*([0-9][A-Za-z0-9.]*)\s*$")


def floors(pyproject: Path) -> dict[str, str]:
    """{distribution: floor version} for every runtime dependency ('name>=X' only)."""
    import tomllib

    with open(pyproject, "rb") as f:
        deps = tomllib.load(f)["project"]["dependencies"]
    out = {}
    for dep in deps:
        m = _FLOOR.match(dep)
        if not m:
            raise SystemExit(f"error: dependency {dep!r} in pyproject.toml is not of the form "
                             "'name>=floor'; test-oldest can only pin such floors")
        out[m[1]] = m[2]
    return out


FAILED: list[str] = []


def step(title: str, cmd: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT,
         echo: bool = True, fatal: bool = True) -> float:
    """Run one command, echoing it. A failure ends the run when `fatal`, else it is recorded in
    FAILED and the run goes on. Returns seconds taken."""
    print(f"\n== {title}" + (f"\n$ {shlex.join(cmd)}" if echo else ""), flush=True)
    start = time.perf_counter()
    result = subprocess.run(cmd, env=env, cwd=cwd)
    took = time.perf_counter() - start
    if result.returncode:
        print(f"\n-- FAILED: {title} (exit {result.returncode})", flush=True)
        if fatal:
            print(f"\ntest-oldest FAILED at: {title}", flush=True)
            sys.exit(result.returncode)
        FAILED.append(title)
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--venv", type=Path, default=ROOT / ".venv-oldest",
                        help="environment (default .venv-oldest)")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter that creates the environment")
    parser.add_argument("--skip-install", action="store_true", help="use the environment as it is")
    args = parser.parse_args(argv)

    pins = floors(ROOT / "pyproject.toml")
    data = Path(os.environ.get("VIT_DATA_DIR") or ROOT / "data")
    if not (data / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
        raise SystemExit(f"error: MNIST not found in {data}/MNIST/raw: set VIT_DATA_DIR to a folder "
                         "holding torchvision's MNIST layout (or run `make train` once to download it)")
    py = args.venv / "bin" / "python"
    if not args.skip_install:
        if not py.exists():
            step("create the environment", [args.python, "-m", "venv", str(args.venv)])
        constraints = args.venv / "floors.txt"
        constraints.write_text("".join(f"{name}=={v}\n" for name, v in pins.items()))
        step("install the floors", [str(py), "-m", "pip", "install", "-q", "-c", str(constraints),
                                    "-e", ".[test]"])

    check = ("import importlib.metadata as m, platform, sys\n"
             f"pins = {pins!r}\n"
             "bad = {n: m.version(n) for n, v in pins.items() if m.version(n).split('+')[0] != v}\n"
             "print('python', platform.python_version(), '|',\n"
             "      ', '.join(f'{n} {m.version(n)}' for n in pins))\n"
             "sys.exit(f'not the floors: {bad}' if bad else 0)\n")
    step("the installed versions are the floors", [str(py), "-c", check], echo=False)

    times = {"tests": step("tests", [str(py), "-m", "pytest", "tests", "-q", "-rs", "-m", "not site"],
                           fatal=False)}
    presets = subprocess.run([str(py), "-c", "from vit_lib.presets import PRESETS; print(*PRESETS)"],
                             cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="test-oldest-") as tmp:
        for preset in presets:
            out = Path(tmp) / preset
            took = step(f"train preset {preset}",
                        [str(py), "-m", "vit_lib.cli.train", "--preset", preset, "--epochs", "1",
                         "--train-subset", "512", "--device", "cpu", "--no-progress", "--out", str(out)],
                        env=env, fatal=False)
            took += step(f"evaluate preset {preset}",
                         [str(py), "-m", "vit_lib.cli.evaluate", "--checkpoint",
                          str(out / "checkpoint.pt"), "--device", "cpu",
                          "--out", str(out / "confusion_matrix.png")],
                         env=env, fatal=False)
            times[f"preset {preset}"] = took
    versions = subprocess.run([str(py), "-c", check], capture_output=True, text=True).stdout.strip()
    print("\n" + ", ".join(f"{k} {v:.0f} s" for k, v in times.items()))
    if FAILED:
        print(f"test-oldest FAILED on {versions}: {'; '.join(FAILED)}")
        return 1
    print(f"test-oldest passed on {versions}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
