"""Train the small models that ship with vit_lib and write them as package data (`make weights`).

    python tools/make_weights.py                 # every model below (about 15-25 min on 2 cores)
    python tools/make_weights.py --only seed-tuned/mnist

Each (preset, dataset) is trained with seed 0 by `python -m vit_lib train` into
runs/weights/PRESET-DATASET (a finished run there is reused), then written to
vit_lib/weights/PRESET-DATASET.pt (the model's weights and what rebuilds it: architecture,
config, recipe, dataset, classes) and PRESET-DATASET.json beside it (recipe, seed, torch version,
test accuracy, training time). `vit_lib.pretrained(name, dataset)` loads them; the test accuracy
is checked again on the real test split by tests/test_pretrained.py.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "vit_lib" / "weights"
MODELS = ("seed/mnist", "seed-tuned/mnist", "best/mnist", "cnn-tiny/mnist",
          "seed/fashion-mnist", "seed-tuned/fashion-mnist", "best/fashion-mnist")
BUDGET_MB = 4.0


def make(spec: str, runs: Path) -> dict:
    from vit_lib.data import dataset_info
    from vit_lib.machinery.checkpoint import CHECKPOINT_FORMAT, load_checkpoint

    preset, dataset = spec.split("/")
    out = runs / f"{preset}-{dataset}"
    metrics_file = out / "metrics.json"
    if not metrics_file.is_file():
        cmd = [sys.executable, "-m", "vit_lib", "train", "--preset", preset, "--dataset", dataset,
               "--seed", "0", "--no-progress", "--out", str(out)]
        if (out / "checkpoint.pt").is_file():
            cmd.append("--resume")
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
    metrics = json.loads(metrics_file.read_text())
    state = load_checkpoint(out / "checkpoint.pt")
    info = dataset_info(dataset)
    facts = {"name": preset, "dataset": info.name, "classes": list(info.classes),
             "seed": metrics["seed"], "epochs": metrics["epochs"], "params": metrics["params"],
             "test_accuracy": round(metrics["test_accuracy"], 2),
             "train_seconds": round(metrics["train_seconds"], 1), "torch": metrics["torch"],
             "threads": metrics["threads"], "recipe": state["recipe"],
             "command": f"python -m vit_lib train --preset {preset} --dataset {dataset} --seed 0"}
    small = {"format": CHECKPOINT_FORMAT, "model": state["model"], "arch": state.get("arch", "vit"),
             "config": state["config"], "recipe": state["recipe"], "epoch": state["epoch"],
             "epochs": state["epochs"], "extra": {**state.get("extra", {}), **facts}}
    WEIGHTS.mkdir(exist_ok=True)
    torch.save(small, WEIGHTS / f"{preset}-{info.name}.pt")
    (WEIGHTS / f"{preset}-{info.name}.json").write_text(json.dumps(facts, indent=2) + "\n")
    return facts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=MODELS, help="train and write only these")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "weights")
    args = p.parse_args(argv)
    for spec in args.only or MODELS:
        facts = make(spec, args.runs)
        print(f"{spec}: {facts['params']:,} parameters, test accuracy {facts['test_accuracy']:.2f}%, "
              f"{facts['train_seconds']:.0f} s of training", flush=True)
    total = sum(f.stat().st_size for f in WEIGHTS.glob("*.pt")) / 2**20
    print(f"vit_lib/weights: {total:.2f} MB in all (budget {BUDGET_MB:g} MB)")
    if total > BUDGET_MB:
        print("error: the shipped weights exceed their budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
