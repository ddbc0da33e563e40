"""What each of seed-tuned's changes contributes (lesson 05's ablation table).

    python benchmarks/seed_tuned_ablation.py                 # every row, seeds 0, 1, 2 (about 1 h on 2 cores)
    python benchmarks/seed_tuned_ablation.py --seeds 0       # one seed of every row
    python benchmarks/seed_tuned_ablation.py --report-only   # the table from the committed JSON

`seed-tuned` trains the seed's unchanged 14,410-parameter ViT with a better recipe: AdamW with
weight decay, a 5x learning rate at twice the batch, a cosine schedule, a warmup, normalised
inputs, gradient clipping and 1-pixel random shifts. Each row below is `seed-tuned` with ONE of
those changes undone (leave-one-out), trained the full 10 epochs on MNIST from the same seeds,
plus `seed-tuned` itself and the seed recipe as the two ends. The figure is the test accuracy
after the last epoch (median and range over the seeds), so a row's drop from `seed-tuned` is what
that change is worth with all the others in place.

Every run is its own process (`--job`, benchmarks/cnn_vs_vit.py's `run_job`) with one torch
thread, JOBS side by side; results accumulate in vit_lib/machinery/committed/seed_tuned_ablation.json
(shipped: lesson 05 reads it; runs already there are kept unless --rerun) and the table is written
to benchmarks/seed_tuned_ablation.md.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cnn_vs_vit import job_key, run_job  # noqa: E402  (one training loop for every benchmark)

ROOT = HERE.parent
RESULTS = ROOT / "vit_lib" / "machinery" / "committed" / "seed_tuned_ablation.json"
REPORT = HERE / "seed_tuned_ablation.md"

# (row name, preset, recipe overrides): each undoes one of seed-tuned's changes
ROWS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("seed-tuned (all changes)", "seed-tuned", {}),
    ("without weight decay (Adam instead of AdamW 0.05)", "seed-tuned",
     {"optimizer": "adam", "weight_decay": 0.0}),
    ("seed's learning rate and batch (1e-3, 64)", "seed-tuned", {"lr": 1e-3, "batch_size": 64}),
    ("constant learning rate after the warmup (no cosine)", "seed-tuned", {"schedule": "constant"}),
    ("without warmup", "seed-tuned", {"warmup": 0.0}),
    ("raw pixels (no normalisation)", "seed-tuned", {"normalize": False}),
    ("without gradient clipping", "seed-tuned", {"grad_clip": 0.0}),
    ("without random shifts", "seed-tuned", {"shift": 0.0}),
    ("seed (none of the changes)", "seed", {}),
)


def planned_jobs(seeds: list[int]) -> list[dict[str, Any]]:
    """Every run, seed by seed (all rows of seed 0 first: one seed of the table is soonest)."""
    return [{"part": "ablation", "name": name, "preset": preset, "dataset": "mnist", "seed": seed,
             "recipe": recipe} for seed in seeds for name, preset, recipe in ROWS]


def measure(seeds: list[int], jobs: int, rerun: bool) -> dict[str, Any]:
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": {}}
    todo = [j for j in planned_jobs(seeds) if rerun or job_key(j) not in results["runs"]]
    print(f"{len(todo)} runs to do, {jobs} at a time with one thread each", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def one(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        proc = subprocess.run([sys.executable, str(Path(__file__)), "--job", json.dumps(spec)],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"run failed: {spec}\n{proc.stderr[-3000:]}")
        return spec, json.loads(proc.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(jobs) as pool:
        for future in as_completed([pool.submit(one, spec) for spec in todo]):
            spec, result = future.result()
            result["date"] = time.strftime("%Y-%m-%d")
            results["runs"][job_key(spec)] = result
            results["summary"] = summary(results)
            RESULTS.write_text(json.dumps(results, indent=1) + "\n")   # keep what finished
            print(f"  {spec['name']} seed {spec['seed']}: {result['test_accuracy']:.2f}% "
                  f"in {result['train_seconds']:.0f}s", flush=True)
    return results


def summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    """One entry per row, in ROWS order: seeds measured, median / min / max test accuracy, and the
    median's difference from seed-tuned's median (percentage points)."""
    rows = []
    for name, _, _ in ROWS:
        accs = sorted(r["test_accuracy"] for r in results["runs"].values() if r["spec"]["name"] == name)
        if accs:
            rows.append({"name": name, "seeds": len(accs), "median": statistics.median(accs),
                         "min": accs[0], "max": accs[-1],
                         "seconds": statistics.median(r["train_seconds"] for r in results["runs"].values()
                                                      if r["spec"]["name"] == name)})
    base = next((r["median"] for r in rows if r["name"] == ROWS[0][0]), None)
    for r in rows:
        r["vs_seed_tuned"] = None if base is None else r["median"] - base
    return rows


def report(results: dict[str, Any]) -> str:
    lines = ["| recipe (seed-tuned with one change undone) | seeds | test accuracy, median (range) "
             "| vs seed-tuned |", "|---|---|---|---|"]
    for r in results.get("summary", []):
        diff = "" if r["vs_seed_tuned"] is None else f"{r['vs_seed_tuned']:+.2f} points"
        lines.append(f"| {r['name']} | {r['seeds']} | {r['median']:.2f}% ({r['min']:.2f}-{r['max']:.2f}) "
                     f"| {diff} |")
    lines += ["", "MNIST test accuracy after 10 epochs, one torch thread per run "
              "(`python benchmarks/seed_tuned_ablation.py`)."]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--jobs", type=int, default=2, help="runs side by side (default 2)")
    p.add_argument("--rerun", action="store_true", help="measure runs already in the JSON again")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--job", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.job:
        print(json.dumps(run_job(json.loads(args.job))))
        return
    if args.jobs < 1:
        p.error(f"--jobs must be at least 1, got {args.jobs}")
    if args.report_only:
        if not RESULTS.is_file():
            p.error(f"no results yet ({RESULTS}); run without --report-only first")
        results = json.loads(RESULTS.read_text())
    else:
        results = measure(args.seeds, args.jobs, args.rerun)
    text = report(results)
    REPORT.write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
