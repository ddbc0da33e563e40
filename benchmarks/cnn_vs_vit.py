"""ViT versus CNN on the same budget (lesson 07's full-size figures).

    python benchmarks/cnn_vs_vit.py                      # everything, median of seeds 0, 1, 2
    python benchmarks/cnn_vs_vit.py --parts pairs --seeds 0 --datasets mnist   # a subset
    python benchmarks/cnn_vs_vit.py --report-only        # rebuild the tables and plot from JSON

Parts:
  pairs      each ViT preset against the CNN of its size, same recipe, only the model differs:
             seed-tuned vs cnn-tiny (about 14.4k parameters) and best vs cnn (about 210k),
             test accuracy after every epoch, so accuracy at equal training time can be read off;
  data       data efficiency on MNIST: seed-tuned vs cnn-tiny trained on the first 1k, 5k, 20k
             and 60k training images, every run seeing the same number of images (BUDGET), tested
             on the full test split;
  ladder     closing the gap for the ViT on MNIST, each step against the previous one: seed-tuned
             -> patch size 4 (49 tokens) -> + conv stem -> + stronger augmentation; and the
             ablation without position embeddings.
Every run is a separate process (`--job`), seeded; JOBS processes run side by side with THREADS
torch threads each (default 2 x 1: one per core). Results accumulate in vit_lib/machinery/committed/cnn_vs_vit.json
(runs already there are kept unless --rerun) with their medians under "summary" (pairs,
data, ladder: what lesson 07 compares its shortened runs with); the section of docs/results.md
between `cnn:start` / `cnn:end`, benchmarks/cnn_vs_vit.md and benchmarks/data_efficiency.png are
rewritten from it.
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
ROOT = HERE.parent
RESULTS = HERE.parent / "vit_lib" / "machinery" / "committed" / "cnn_vs_vit.json"   # shipped: lesson 07 reads it
REPORT = HERE / "cnn_vs_vit.md"
PLOT = HERE / "data_efficiency.png"
DOCS_PAGE = ROOT / "docs" / "results.md"   # its section between the cnn markers (never the README)
MARK_START, MARK_END = "<!-- cnn:start -->", "<!-- cnn:end -->"

SIZES = (1000, 5000, 20000, 60000)
BUDGET = 240_000          # images seen by every data-efficiency run (4 epochs of the full set)
LADDER_EPOCHS = 5         # the ladder's schedule (the 49-token steps cost 2-4x an epoch of 16)
PAIRS = (("seed-tuned", "cnn-tiny"), ("best", "cnn"))
LADDER = (  # (name, preset, model overrides, recipe overrides); each step keeps the previous ones
    ("seed-tuned ViT, 7x7 patches (16 tokens)", "seed-tuned", {}, {}),
    ("patch size 4 (49 tokens)", "seed-tuned", {"patch_size": 4}, {}),
    ("+ conv stem", "seed-tuned", {"patch_size": 4, "stem": "conv"}, {}),
    ("+ stronger augmentation (shift 2, rotate 10, zoom 0.9-1.1)", "seed-tuned",
     {"patch_size": 4, "stem": "conv"}, {"shift": 2.0, "rotate": 10.0, "scale": [0.9, 1.1]}),
    ("ablation: seed-tuned without position embeddings", "seed-tuned", {"pos_embed": "none"}, {}),
)


def data_epochs(size: int) -> int:
    """Epochs that make a run on `size` images see BUDGET images."""
    return max(1, round(BUDGET / size))


# ---------------------------------------------------------------- one run, in its own process
def run_job(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one model as `spec` says; returns accuracy, seconds of training, params, curve."""
    import torch

    from vit_lib.data import get_loaders
    from vit_lib.engine import build_optimizer, build_scheduler, evaluate, train_one_epoch
    from vit_lib.machinery.families import build_model
    from vit_lib.machinery.runtime import seed_everything
    from vit_lib.model import count_parameters
    from vit_lib.presets import get_preset

    recipe_overrides = dict(spec.get("recipe", {}))
    if "scale" in recipe_overrides:
        recipe_overrides["scale"] = tuple(recipe_overrides["scale"])
    preset = get_preset(spec["preset"], spec["dataset"], spec.get("model", {}), **recipe_overrides)
    recipe = preset.recipe
    epochs = spec.get("epochs") or recipe.epochs
    seed_everything(spec["seed"])
    model = build_model(preset.model)
    train, test = get_loaders(spec["dataset"], recipe.batch_size, None, torch.device("cpu"),
                              recipe.normalize, recipe.augment, seed=spec["seed"],
                              train_subset=spec.get("train_subset"))
    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe, epochs * len(train))
    curve, seconds = [], 0.0
    for epoch in range(epochs):
        train.set_epoch(epoch)
        start = time.perf_counter()
        train_one_epoch(model, train, optimizer, scheduler, label_smoothing=recipe.label_smoothing,
                        grad_clip=recipe.grad_clip)
        seconds += time.perf_counter() - start
        if spec.get("curve") or epoch == epochs - 1:
            curve.append({"epoch": epoch + 1, "seconds": seconds,
                          "test_accuracy": evaluate(model, test)["accuracy"]})
    return {"spec": spec, "test_accuracy": curve[-1]["test_accuracy"], "train_seconds": seconds,
            "epochs": epochs, "params": count_parameters(model), "curve": curve,
            "threads": torch.get_num_threads(), "torch": torch.__version__}


def job_key(spec: dict[str, Any]) -> str:
    return json.dumps(spec, sort_keys=True)


def planned_jobs(parts: list[str], seeds: list[int], datasets: list[str]) -> list[dict[str, Any]]:
    """Every run the chosen parts need, most important first."""
    jobs = []
    for seed in seeds:
        if "pairs" in parts:
            for dataset in datasets:
                for vit, cnn in PAIRS:
                    for preset in (vit, cnn):
                        jobs.append({"part": "pairs", "preset": preset, "dataset": dataset,
                                     "seed": seed, "curve": True})
        if "data" in parts:
            for size in SIZES:
                for preset in PAIRS[0]:
                    jobs.append({"part": "data", "preset": preset, "dataset": "mnist",
                                 "seed": seed, "train_subset": size, "epochs": data_epochs(size)})
        if "ladder" in parts:
            for name, preset, model, recipe in LADDER:
                jobs.append({"part": "ladder", "name": name, "preset": preset, "dataset": "mnist",
                             "seed": seed, "model": model, "recipe": recipe, "curve": True,
                             "epochs": LADDER_EPOCHS})
    return sorted(jobs, key=_priority)


def _priority(job: dict[str, Any]) -> tuple[int, int, int]:
    """Seed 0 of everything small first (what lesson 07 checks against), then more seeds of the
    small pair on MNIST, then the rest; the big pair (about 15 minutes a run) last."""
    big = job["part"] == "pairs" and job["preset"] in ("best", "cnn")
    if job["seed"] == 0 and not big:
        tier = 0
    elif job["part"] == "pairs" and not big and job["dataset"] == "mnist":
        tier = 1
    elif not big:
        tier = 2
    else:
        tier = 3
    return tier, job["seed"], ("data", "ladder", "pairs").index(job["part"])


def measure(args: argparse.Namespace) -> None:
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {"runs": {}}
    todo = [j for j in planned_jobs(args.parts, args.seeds, args.datasets)
            if args.rerun or job_key(j) not in results["runs"]]
    print(f"{len(todo)} runs to do, {args.jobs} at a time with {args.threads} thread(s) each",
          flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads)}

    def one(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        proc = subprocess.run([sys.executable, str(Path(__file__)), "--job", json.dumps(spec)],
                              cwd=ROOT, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"run failed: {spec}\n{proc.stderr[-3000:]}")
        return spec, json.loads(proc.stdout.strip().splitlines()[-1])

    with ThreadPoolExecutor(args.jobs) as pool:
        for future in as_completed([pool.submit(one, spec) for spec in todo]):
            spec, result = future.result()
            results["runs"][job_key(spec)] = result
            results["summary"] = summary(results)
            RESULTS.write_text(json.dumps(results, indent=1) + "\n")   # keep what finished
            print(f"  {spec['part']:6} {spec.get('name', spec['preset'])} {spec['dataset']} "
                  f"seed {spec['seed']}" + (f" n={spec['train_subset']}" if "train_subset" in spec
                                            else "")
                  + f": {result['test_accuracy']:.2f}% in {result['train_seconds']:.0f}s",
                  flush=True)


# ---------------------------------------------------------------- tables, plot, docs page
def _runs(results: dict, **match: Any) -> list[dict]:
    return [r for r in results["runs"].values()
            if all(r["spec"].get(k) == v for k, v in match.items())]


def _acc(runs: list[dict]) -> str:
    values = sorted(r["test_accuracy"] for r in runs)
    if not values:
        return "not measured"
    if len(values) == 1:
        return f"{values[0]:.2f} (1 seed)"
    return f"{statistics.median(values):.2f} ({values[0]:.2f}-{values[-1]:.2f})"


def _at_time(run: dict, seconds: float) -> float | None:
    """Test accuracy after the last epoch finished within `seconds` of training."""
    done = [c for c in run["curve"] if c["seconds"] <= seconds + 1e-9]
    return done[-1]["test_accuracy"] if done else None


def summary(results: dict) -> dict[str, Any]:
    """The figures docs/results.md and lesson 07 use, as plain numbers (medians over seeds)."""
    out: dict[str, Any] = {"pairs": {}, "data": {}, "ladder": [], "budget_images": BUDGET,
                           "ladder_epochs": LADDER_EPOCHS}
    for dataset in ("mnist", "fashion-mnist"):
        for vit, cnn in PAIRS:
            rv, rc = _runs(results, part="pairs", preset=vit, dataset=dataset), \
                _runs(results, part="pairs", preset=cnn, dataset=dataset)
            if not rv or not rc:
                continue
            seeds = sorted({r["spec"]["seed"] for r in rv} & {r["spec"]["seed"] for r in rc})
            eq = []
            for s in seeds:
                v = next(r for r in rv if r["spec"]["seed"] == s)
                c = next(r for r in rc if r["spec"]["seed"] == s)
                budget = min(v["train_seconds"], c["train_seconds"])
                eq.append((budget, _at_time(v, budget), _at_time(c, budget)))
            med = statistics.median
            out["pairs"][f"{vit}/{dataset}"] = {
                "vit": vit, "cnn": cnn, "dataset": dataset, "seeds": seeds,
                "vit_params": rv[0]["params"], "cnn_params": rc[0]["params"],
                "vit_accuracy": med(r["test_accuracy"] for r in rv),
                "cnn_accuracy": med(r["test_accuracy"] for r in rc),
                "vit_seconds": med(r["train_seconds"] for r in rv),
                "cnn_seconds": med(r["train_seconds"] for r in rc),
                "vit_images_per_second": med(r["epochs"] * _epoch_images(r) / r["train_seconds"]
                                             for r in rv),
                "cnn_images_per_second": med(r["epochs"] * _epoch_images(r) / r["train_seconds"]
                                             for r in rc),
                "equal_time_seconds": med(e[0] for e in eq),
                "vit_accuracy_equal_time": _median_or_none([e[1] for e in eq]),
                "cnn_accuracy_equal_time": _median_or_none([e[2] for e in eq]),
                "runs": {"vit": len(rv), "cnn": len(rc)}}
    for preset in PAIRS[0]:
        for size in SIZES:
            runs = _runs(results, part="data", preset=preset, train_subset=size)
            if runs:
                out["data"].setdefault(preset, {})[str(size)] = {
                    "median": statistics.median(r["test_accuracy"] for r in runs),
                    "all": [r["test_accuracy"] for r in runs], "epochs": runs[0]["epochs"]}
    for name, *_ in LADDER:
        runs = _runs(results, part="ladder", name=name)
        if runs:
            out["ladder"].append({"name": name, "params": runs[0]["params"],
                                  "accuracy": statistics.median(r["test_accuracy"] for r in runs),
                                  "all": [r["test_accuracy"] for r in runs],
                                  "seconds": statistics.median(r["train_seconds"] for r in runs)})
    return out


def _epoch_images(run: dict) -> int:
    return run["spec"].get("train_subset") or 60000


def _median_or_none(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def report(results: dict) -> str:
    s = summary(results)
    threads = sorted({r["threads"] for r in results["runs"].values()})
    lines = [f"Measured by `python benchmarks/cnn_vs_vit.py` on a 2-core CPU, two runs side by "
             f"side with {', '.join(map(str, threads))} torch thread(s) each, torch "
             f"{next(iter(results['runs'].values()))['torch']}. Accuracy: median (min-max) over "
             "the seeds measured; times are medians. The two runs of a pair ran side by side on "
             "a machine shared with other jobs: compare times within a table, not with the "
             "results table above.", "",
             "**Same recipe, only the model differs.** At equal time: both models' test accuracy "
             "after the last epoch that ended within the faster model's whole training time (the "
             "slower model is then mid-schedule, its learning rate not yet decayed).", "",
             "| dataset | ViT | params | CNN | params | ViT accuracy | CNN accuracy | ViT time "
             "| CNN time | ViT img/s | CNN img/s | at equal time: ViT / CNN |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for _key, p in s["pairs"].items():
        rv = _runs(results, part="pairs", preset=p["vit"], dataset=p["dataset"])
        rc = _runs(results, part="pairs", preset=p["cnn"], dataset=p["dataset"])
        eq_v, eq_c = p["vit_accuracy_equal_time"], p["cnn_accuracy_equal_time"]
        eq = (f"{eq_v:.2f} / {eq_c:.2f} ({p['equal_time_seconds']:.0f} s)"
              if eq_v is not None and eq_c is not None else "-")
        lines.append(f"| {p['dataset']} | `{p['vit']}` | {p['vit_params']:,} | `{p['cnn']}` | "
                     f"{p['cnn_params']:,} | {_acc(rv)} | {_acc(rc)} | {p['vit_seconds']:.0f} s | "
                     f"{p['cnn_seconds']:.0f} s | {p['vit_images_per_second']:,.0f} | "
                     f"{p['cnn_images_per_second']:,.0f} | {eq} |")
    if s["data"]:
        lines += ["", f"**Data efficiency** (MNIST; each run sees {BUDGET:,} training images, "
                  "so smaller subsets get more epochs; tested on the full 10,000-image test "
                  "split):", "", "| training images | epochs | `seed-tuned` ViT | `cnn-tiny` CNN |",
                  "|---|---|---|---|"]
        for size in SIZES:
            cells = []
            for preset in PAIRS[0]:
                cells.append(_acc(_runs(results, part="data", preset=preset, train_subset=size)))
            lines.append(f"| {size:,} | {data_epochs(size)} | {' | '.join(cells)} |")
        lines += ["", "![data efficiency](../benchmarks/data_efficiency.png)"]
    if s["ladder"]:
        lines += ["", f"**Closing the gap** (MNIST, seed-tuned's recipe shortened to {LADDER_EPOCHS} "
                  "epochs; each step "
                  "keeps the ones above it, the last row is an ablation of the first):", "",
                  "| step | params | accuracy | change | training time |", "|---|---|---|---|---|"]
        previous = None
        for _i, step in enumerate(s["ladder"]):
            runs = _runs(results, part="ladder", name=step["name"])
            base = s["ladder"][0]["accuracy"] if step["name"].startswith("ablation") else previous
            change = "" if base is None else f"{step['accuracy'] - base:+.2f}"
            lines.append(f"| {step['name']} | {step['params']:,} | {_acc(runs)} | {change} | "
                         f"{step['seconds']:.0f} s |")
            if not step["name"].startswith("ablation"):
                previous = step["accuracy"]
    return "\n".join(lines) + "\n"


def plot(results: dict) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    s = summary(results)
    if not s["data"]:
        return
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    for preset, label, marker in (("seed-tuned", "ViT (seed-tuned, 14,410 params)", "o"),
                                  ("cnn-tiny", "CNN (cnn-tiny, 14,458 params)", "s")):
        points = s["data"].get(preset, {})
        sizes = sorted(int(k) for k in points)
        ax.plot(sizes, [points[str(n)]["median"] for n in sizes], marker=marker, label=label)
        for n in sizes:
            ax.scatter([n] * len(points[str(n)]["all"]), points[str(n)]["all"], s=10, alpha=0.4,
                       marker=marker, color=ax.lines[-1].get_color())
    ax.set_xscale("log")
    ax.set_xticks(SIZES, [f"{n:,}" for n in SIZES])
    ax.set_xlabel("training images (log scale); every run sees the same number of images")
    ax.set_ylabel("MNIST test accuracy (%)")
    ax.set_title("Data efficiency: median over seeds (line), each seed (dots)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(PLOT)
    plt.close(fig)


def replace_section(page: Path, start: str, end: str, text: str) -> None:
    """Rewrite the part of `page` between the markers `start` and `end` with `text`."""
    body = page.read_text()
    if start not in body or end not in body:
        raise SystemExit(f"{page} has no {start} ... {end} section to fill")
    head, rest = body.split(start, 1)
    _, tail = rest.split(end, 1)
    page.write_text(f"{head}{start}\n{text}{end}{tail}")


def update_docs(text: str, page: Path | None = None) -> None:
    """Rewrite the section of docs/results.md between the cnn markers with `text`."""
    replace_section(page or DOCS_PAGE, MARK_START, MARK_END, text)


def write_outputs(results: dict) -> None:
    text = report(results)
    REPORT.write_text("# ViT versus CNN\n\n" + text)
    plot(results)
    update_docs(text)
    print(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", default=["pairs", "data", "ladder"],
                   choices=["pairs", "data", "ladder"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    p.add_argument("--jobs", type=int, default=2, help="runs side by side (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--rerun", action="store_true", help="measure runs already in the JSON again")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--job", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.job:
        print(json.dumps(run_job(json.loads(args.job))))
        return
    if not args.report_only:
        measure(args)
    write_outputs(json.loads(RESULTS.read_text()))


if __name__ == "__main__":
    main()
