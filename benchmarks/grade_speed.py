"""Time `python -m vit_lib grade` on 16 real submissions with --jobs 1 and --jobs 2 (issue #23).

    python benchmarks/grade_speed.py [--copies 16] [--lesson 01]

The submissions are copies of the full edition of a lesson (its worked solutions pass every check),
graded with the default sandbox; prints each time, the ratio, and writes grade_speed.json beside
this script. The machine may be shared: run it on a quiet one for numbers that mean something.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def grade(folder: Path, jobs: int, out: Path) -> tuple[float, int, int]:
    """(seconds, exercises passed, rows) for one run of the grader over folder."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "vit_lib", "grade", str(folder), "--jobs", str(jobs),
                           "--no-progress", "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"error: the grader failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    return seconds, sum(r["passed"] == "true" for r in rows), len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=16)
    parser.add_argument("--lesson", default="01")
    args = parser.parse_args()
    source = next(ROOT.glob(f"notebooks/{args.lesson}_*.ipynb"), None)
    if source is None or args.copies < 1:
        sys.exit(f"error: no notebooks/{args.lesson}_*.ipynb, or --copies below 1")
    result: dict[str, object] = {"lesson": args.lesson, "copies": args.copies, "cores": len(os.sched_getaffinity(0))}
    with tempfile.TemporaryDirectory(prefix="grade-speed-") as tmp:
        folder = Path(tmp) / "submissions"
        folder.mkdir()
        for k in range(args.copies):
            shutil.copy(source, folder / f"student{k:02d}_{source.name}")
        for jobs in (1, 2):
            seconds, passed, rows = grade(folder, jobs, Path(tmp) / f"book{jobs}.csv")
            result[f"jobs{jobs}_s"] = round(seconds, 1)
            print(f"--jobs {jobs}: {args.copies} submissions of lesson {args.lesson} in {seconds:.1f} s "
                  f"({passed}/{rows} exercises passed)", flush=True)
    result["speedup"] = round(float(result["jobs1_s"]) / float(result["jobs2_s"]), 2)
    print(f"speed-up of --jobs 2 over --jobs 1: {result['speedup']:.2f}x on {result['cores']} cores")
    (Path(__file__).with_suffix(".json")).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
