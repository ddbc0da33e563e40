"""Execute notebooks top to bottom and save them with their outputs (what nbval compares).

    python tools/execute_notebooks.py                 # every notebook in notebooks/
    python tools/execute_notebooks.py notebooks/02_attention.ipynb

Set VIT_DATA_DIR first if the datasets are not in ./data. Every run trains for real
(VIT_CACHE_DIR=off: no run is loaded from vit_lib.machinery.run_cache), so the saved logs show training.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str]) -> int:
    paths = [Path(a).resolve() for a in argv] or sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
    for path in paths:
        start = time.perf_counter()
        cmd = [sys.executable, "-m", "jupyter", "nbconvert", "--to", "notebook", "--execute",
               "--inplace", "--ExecutePreprocessor.timeout=1800", str(path.resolve())]
        result = subprocess.run(cmd, cwd=path.parent, env={**os.environ, "VIT_CACHE_DIR": "off"})
        print(f"{path.name}: {'ok' if result.returncode == 0 else 'FAILED'} "
              f"in {time.perf_counter() - start:.0f}s", flush=True)
        if result.returncode:
            return result.returncode
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
