"""Every benchmark in one command; writes docs/results.md's results section and the plot.

    python benchmarks/run_all.py                 # full run: about 46 minutes on 2 CPU cores
    python benchmarks/run_all.py --seeds 0 --datasets mnist --presets seed   # a quick subset
    python benchmarks/run_all.py --report-only   # rebuild the table from benchmarks/results.json
    python benchmarks/run_all.py --update --skip-accuracy   # re-measure only the speed figures

Measures (each job in its own process, so its peak memory is its own):
  1. training images/s: the seed pipeline against vit_lib's path (benchmarks/throughput.py);
  2. training time to 97% MNIST test accuracy with the seed's model: seed pipeline against
     vit_lib's seed-tuned and seed-speedrun presets (benchmarks/time_to_accuracy.py);
  3. test accuracy after each preset's epochs for several seeds on MNIST and Fashion-MNIST
     (python -m vit_lib train), with training time;
  4. peak memory (max RSS) of every job.
Writes benchmarks/results.json, benchmarks/results.md, benchmarks/accuracy_vs_time.png and the
section of docs/results.md between the `results:start` / `results:end` markers.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from cnn_vs_vit import replace_section  # noqa: E402  (one way to rewrite a docs section)

ROOT = HERE.parent
RESULTS = HERE / "results.json"
# the seed pipeline first, then the presets that train the seed's model, timed against it
SPEED_PIPELINES = ("seed", "seed-tuned", "seed-speedrun")
TARGETS = {"seed_tuned_mnist": 98.0, "speedup_to_97": 10.0, "throughput": 3.0, "best_mnist": 99.5,
           "best_fashion": 92.0, "best_seconds": 600}


def run_job(cmd: list[str], log: Path) -> dict:
    """Run a command, teeing nothing; return exit code, wall seconds and peak memory (MiB)."""
    start = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=f, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"benchmark job failed ({code}): {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return {"wall_seconds": time.perf_counter() - start, "peak_mib": usage.ru_maxrss / 1024}


def measure(args: argparse.Namespace) -> dict:
    py = sys.executable
    work = Path(tempfile.mkdtemp(prefix="vit-bench-"))
    results: dict = {"threads": None, "jobs": {}}
    import torch
    results["threads"] = torch.get_num_threads()
    results["torch"] = torch.__version__
    if not args.skip_speed:
        print("1/3 throughput (round-robin)...", flush=True)
        job = run_job([py, str(HERE / "throughput.py"), "--json", str(work / "tp.json")], work / "tp.log")
        results["throughput"] = {**json.loads((work / "tp.json").read_text()), **job}
        print("2/3 time to 97%: seed pipeline, then vit_lib seed-tuned and seed-speedrun, for each seed...",
              flush=True)
        for name in SPEED_PIPELINES:
            runs = []
            for seed in args.seeds:
                out = work / f"t97-{name}-{seed}.json"
                job = run_job([py, str(HERE / "time_to_accuracy.py"), "--pipeline", name,
                               "--target", "97", "--seed", str(seed), "--json", str(out)],
                              work / f"t97-{name}-{seed}.log")
                runs.append({**json.loads(out.read_text()), **job})
                print(f"  {name} seed {seed}: {runs[-1]['seconds_to_target']} s", flush=True)
            times = [r["seconds_to_target"] for r in runs]
            results.setdefault("time_to_97", {})[name] = {
                "runs": runs, "seeds": list(args.seeds),
                "median_seconds": statistics.median(times) if None not in times else None}
    print("3/3 accuracy grid...", flush=True)
    for dataset in ([] if args.skip_accuracy else args.datasets):
        for preset in args.presets:
            for seed in args.seeds:
                out = work / f"{preset}-{dataset}-{seed}"
                job = run_job([py, "-m", "vit_lib.cli.train", "--preset", preset, "--dataset", dataset,
                               "--seed", str(seed), "--out", str(out), "--no-progress"],
                              work / f"{preset}-{dataset}-{seed}.log")
                m = json.loads((out / "metrics.json").read_text())
                key = f"{preset}/{dataset}/{seed}"
                results["jobs"][key] = {"preset": preset, "dataset": dataset, "seed": seed,
                                        "test_accuracy": m["test_accuracy"], "params": m["params"],
                                        "train_seconds": m["train_seconds"], "epochs": m["epochs"],
                                        "history": m["history"], **job}
                print(f"  {key}: {m['test_accuracy']:.2f}% in {m['train_seconds']:.0f}s, "
                      f"peak {job['peak_mib']:.0f} MiB", flush=True)
    return results


def _stats(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.median(values):.2f} ({min(values):.2f}-{max(values):.2f})"


def report(results: dict) -> str:
    lines = [f"Measured on a 2-core CPU, {results['threads']} threads, torch {results['torch']}, "
             "by `make bench` (`python benchmarks/run_all.py`).", ""]
    if results.get("note"):
        lines += [results["note"], ""]
    jobs = list(results["jobs"].values())
    presets = list(dict.fromkeys(j["preset"] for j in jobs))
    datasets = list(dict.fromkeys(j["dataset"] for j in jobs))
    seeds = sorted({j["seed"] for j in jobs})
    lines += [f"Test accuracy (%) after each preset's epochs: median (min-max) over seeds "
              f"{', '.join(map(str, seeds))}; training time and peak memory are medians.", "",
              "| preset | params | epochs | " + " | ".join(f"{d} accuracy" for d in datasets)
              + " | MNIST train time | peak memory |", "|---" * (5 + len(datasets)) + "|"]
    for preset in presets:
        rows = [j for j in jobs if j["preset"] == preset]
        accs = [_stats([j["test_accuracy"] for j in rows if j["dataset"] == d]) for d in datasets]
        first = [j for j in rows if j["dataset"] == datasets[0]]
        secs = statistics.median(j["train_seconds"] for j in first)
        mem = statistics.median(j["peak_mib"] for j in rows)
        lines.append(f"| `{preset}` | {rows[0]['params']:,} | {rows[0]['epochs']} | "
                     + " | ".join(accs) + f" | {secs:.0f} s | {mem:.0f} MiB |")
    t97 = results.get("time_to_97")
    if t97:
        at10 = {r["seed"]: c["test_accuracy"] for r in t97["seed"]["runs"] for c in r["curve"]
                if c["epoch"] == 10}
        if at10:
            lines += ["", "The seed's own pipeline (DataLoader, ToTensor, nn.MultiheadAttention): "
                      + ", ".join(f"{a:.2f}% (seed {s})" for s, a in sorted(at10.items()))
                      + " MNIST test accuracy after 10 epochs."]
    tp = results.get("throughput")
    if tp:
        lines += ["", "Training throughput on MNIST, round-robin medians in one process:", "",
                  "| pipeline | images/s | vs seed pipeline |", "|---|---|---|"]
        for row in tp["rows"]:
            lines.append(f"| {row['variant']} | {row['images_per_second']:,.0f} | {row['ratio']:.2f}x |")
    if t97:
        lines += ["", "Training time to 97% MNIST test accuracy with the seed's 14,410-parameter "
                  "model (one row per seed; the target compares the medians):", "",
                  "| pipeline | seed | epochs | training time | peak memory |",
                  "|---|---|---|---|---|"]
        for label, key in (("seed pipeline, one run evaluated after every epoch", "seed"),
                           ("vit_lib `seed-tuned`, shortest schedule that reaches 97%",
                            "seed-tuned"),
                           ("vit_lib `seed-speedrun`, shortest schedule that reaches 97%",
                            "seed-speedrun")):
            for r in t97.get(key, {}).get("runs", []):
                when = f"{r['seconds_to_target']:.1f} s" if r["seconds_to_target"] else "not reached"
                lines.append(f"| {label} | {r['seed']} | {r['epochs_to_target'] or '-'} | {when} | "
                             f"{r['peak_mib']:.0f} MiB |")
    lines += ["", "Targets ((b): ratios of the unrounded times, rounded down):", "",
              "| target | goal | measured | met |", "|---|---|---|---|"]
    lines += _targets(results)
    lines += ["", "![accuracy against training time](../benchmarks/accuracy_vs_time.png)"]
    return "\n".join(lines) + "\n"


def _floor2(ratio: float) -> str:
    """A ratio with 2 decimals, rounded down: 9.996 is '9.99', never '10.00' beside a 'no'."""
    return f"{math.floor(ratio * 100 + 1e-9) / 100:.2f}"


def _targets(results: dict) -> list[str]:
    rows = []
    jobs = list(results["jobs"].values())

    def accs(preset: str, dataset: str = "mnist") -> list[float]:
        return [j["test_accuracy"] for j in jobs if j["preset"] == preset and j["dataset"] == dataset]

    st = accs("seed-tuned")
    if st:
        med = statistics.median(st)
        rows.append(f"| (a) `seed-tuned` MNIST, median of {len(st)} seeds | >= 98.0% | {med:.2f}% | "
                    f"{'yes' if med >= TARGETS['seed_tuned_mnist'] else 'no'} |")
    t97 = results.get("time_to_97")
    goal = TARGETS["speedup_to_97"]
    for name in [n for n in SPEED_PIPELINES[1:] if t97 and n in t97]:
        s, o = t97["seed"]["median_seconds"], t97[name]["median_seconds"]
        n = len(t97["seed"]["runs"])
        if s and o:
            rows.append(f"| (b) time to 97%, seed pipeline / `{name}`, medians of {n} seeds | >= "
                        f"{goal:.0f}x | {s:.1f} s / {o:.1f} s = {_floor2(s / o)}x | "
                        f"{'yes' if s / o >= goal else 'no'} |")
        else:
            rows.append(f"| (b) time to 97%, seed pipeline / `{name}` | >= {goal:.0f}x | a seed did "
                        "not reach 97% (see the table above) | no |")
    tp = results.get("throughput")
    for name in SPEED_PIPELINES[1:] if tp else ():
        row = next((r for r in tp["rows"] if f"{name} recipe" in r["variant"]), None)
        if row is not None:
            rows.append(f"| (e) training throughput of `{name}` / seed pipeline | >= "
                        f"{TARGETS['throughput']:.0f}x | {row['ratio']:.2f}x | "
                        f"{'yes' if row['ratio'] >= TARGETS['throughput'] else 'no'} |")
    for dataset, goal_acc in (("mnist", TARGETS["best_mnist"]), ("fashion-mnist", TARGETS["best_fashion"])):
        best = [j for j in jobs if j["preset"] == "best" and j["dataset"] == dataset]
        if best:
            med = statistics.median(j["test_accuracy"] for j in best)
            slowest = max(j["train_seconds"] for j in best)
            ok = med >= goal_acc and slowest <= TARGETS["best_seconds"]
            rows.append(f"| (c) `best` {dataset} within 10 min of training | >= {goal_acc}%, "
                        f"<= 600 s | {med:.2f}% (median of {len(best)}), slowest run "
                        f"{slowest:.0f} s | {'yes' if ok else 'no'} |")
    fashion = {j["preset"] for j in jobs if j["dataset"] == "fashion-mnist"}
    every = {j["preset"] for j in jobs}
    rows.append(f"| (d) Fashion-MNIST for every preset of the accuracy table | all of them | "
                f"{', '.join(sorted(fashion)) or 'none'} | {'yes' if fashion == every else 'no'} |")
    return rows


def plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    t97 = results.get("time_to_97", {})
    if "seed" in t97:
        c = t97["seed"]["runs"][0]["curve"]
        ax.plot([p["seconds"] for p in c], [p["test_accuracy"] for p in c], "o-", color="gray",
                label="seed pipeline")
    for _key, job in results["jobs"].items():
        if job["dataset"] == "mnist" and job["seed"] == min(j["seed"] for j in results["jobs"].values()):
            t, xs, ys = 0.0, [], []
            for h in job["history"]:
                t += h["seconds"]
                xs.append(t)
                ys.append(h["test_accuracy"])
            ax.plot(xs, ys, "o-", label=f"vit_lib {job['preset']}")
    ax.axhline(97, ls=":", color="k", lw=0.8)
    ax.axhline(99, ls=":", color="k", lw=0.8)
    ax.set(xscale="log", xlabel="training time (s, log scale), 2-core CPU",
           ylabel="MNIST test accuracy (%)", ylim=(94, 100), title="accuracy against training time")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)


DOCS_PAGE = ROOT / "docs" / "results.md"    # its section between the results markers
MARK_START, MARK_END = "<!-- results:start -->", "<!-- results:end -->"
README = ROOT / "README.md"


def update_docs(table: str, page: Path | None = None) -> None:
    """Rewrite the results section of docs/results.md (generated sections live in docs/, never in
    the README, whose headline table is copied from this one: see `stale_headline`)."""
    replace_section(page or DOCS_PAGE, MARK_START, MARK_END, table)


def preset_table(table: str) -> list[str]:
    """The lines of the per-preset accuracy table in `report`'s output (header included)."""
    lines = table.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("| preset |")), None)
    if start is None:
        return []
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    return lines[start:end]


def stale_headline(table: str, readme: str) -> bool:
    """Does the README's results headline (its table under "## Results") differ from the preset
    table just written? tests/test_readme.py fails until it is copied again."""
    section = readme.split("\n## Results", 1)[-1].split("\n## ", 1)[0]
    shown = [line for line in section.splitlines() if line.startswith("|")]
    return shown != preset_table(table)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    p.add_argument("--presets", nargs="+", default=["seed", "seed-tuned", "best"])
    p.add_argument("--skip-speed", action="store_true", help="skip throughput and time-to-97%%")
    p.add_argument("--skip-accuracy", action="store_true",
                   help="skip the accuracy grid (with --update: keep results.json's)")
    p.add_argument("--report-only", action="store_true", help="rebuild outputs from results.json")
    p.add_argument("--update", action="store_true",
                   help="keep results.json's other figures; replace only what this run measures")
    args = p.parse_args()
    if args.report_only:
        results = json.loads(RESULTS.read_text())
    else:
        results = measure(args)
        if args.update and RESULTS.is_file():
            old = json.loads(RESULTS.read_text())
            results = {**old, **{k: v for k, v in results.items() if k != "jobs"},
                       "jobs": {**old.get("jobs", {}), **results["jobs"]}}
            if args.skip_accuracy and "throughput" in results and old.get("jobs"):
                base = results["throughput"]["rows"][0]["images_per_second"]
                results["note"] = (
                    f"The speed figures (throughput, time to 97%) were measured on "
                    f"{time.strftime('%Y-%m-%d')} by `python benchmarks/run_all.py --update "
                    f"--skip-accuracy` (the seed pipeline trained at {base:,.0f} images/s), "
                    "the accuracy table in an earlier run, when the shared machine may have been "
                    "loaded differently: compare times only within one table; ratios are "
                    "measured within one run.")
        RESULTS.write_text(json.dumps(results, indent=1) + "\n")
    table = report(results)
    (HERE / "results.md").write_text(table.replace("](benchmarks/", "]("))
    plot(results, HERE / "accuracy_vs_time.png")
    update_docs(table)
    print("\n" + table)
    if README.is_file() and stale_headline(table, README.read_text()):
        print("README.md's results headline no longer matches docs/results.md: copy this table "
              "under its \"## Results\" (tests/test_readme.py checks it):\n\n"
              + "\n".join(preset_table(table)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
