"""Train the small models that ship with vit_lib and write them as package data (`make weights`).

    python tools/make_weights.py                 # every model below (about 15-25 min on 2 cores)
    python tools/make_weights.py --only seed-tuned/mnist

Each (preset, dataset) is trained with seed 0 by `python -m vit_lib train` into
runs/weights/PRESET-DATASET (a finished run there is reused), then written to
vit_lib/weights/PRESET-DATASET.pt (the model's weights and what rebuilds it: architecture,
config, recipe, dataset, classes) and PRESET-DATASET.json beside it (recipe, seed, torch version,
test accuracy, training time, size and SHA-256 of the .pt). `vit_lib.pretrained(name, dataset)`
loads them; the test accuracy is checked again on the real test split by tests/test_pretrained.py.

Training runs on one CPU thread (OMP_NUM_THREADS=1): the result then does not depend on how
many cores the machine has (the same torch on the same CPU instructions gives the same weights),
and on a shared 2-core machine one thread is many times faster than two fighting for the cores.
The recorded test accuracy is measured again on the written file's own weights (fp32, no
optimiser state), so it is the accuracy of what ships.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEIGHTS = ROOT / "vit_lib" / "weights"
MODELS = ("seed/mnist", "seed-tuned/mnist", "best/mnist", "cnn-tiny/mnist",
          "seed/fashion-mnist", "seed-tuned/fashion-mnist", "best/fashion-mnist")
BUDGET_MB = 4.0


def make(spec: str, runs: Path, data_dir: Path | None = None) -> dict:
    from vit_lib.data import dataset_info, get_test_loader
    from vit_lib.engine import evaluate
    from vit_lib.machinery.checkpoint import CHECKPOINT_FORMAT, load_checkpoint, save_checkpoint
    from vit_lib.machinery.families import model_from_checkpoint

    preset, dataset = spec.split("/")
    out = runs / f"{preset}-{dataset}"
    metrics_file = out / "metrics.json"
    command = ["python", "-m", "vit_lib", "train", "--preset", preset, "--dataset", dataset,
               "--seed", "0"]
    if not metrics_file.is_file():
        cmd = [sys.executable, *command[1:], "--no-progress", "--out", str(out)]
        if data_dir is not None:
            cmd += ["--data-dir", str(data_dir)]
        if (out / "checkpoint.pt").is_file():
            cmd.append("--resume")
        print("+ OMP_NUM_THREADS=1", " ".join(cmd), flush=True)
        env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
        subprocess.run(cmd, check=True, cwd=ROOT, env=env)
    metrics = json.loads(metrics_file.read_text())
    state = load_checkpoint(out / "checkpoint.pt")
    info = dataset_info(dataset)
    ran = (metrics["preset"], metrics["dataset"], metrics["seed"], state["epoch"])
    if ran != (preset, info.name, 0, state["epochs"]):
        raise SystemExit(f"error: {out} holds preset {ran[0]} on {ran[1]}, seed {ran[2]}, "
                         f"{ran[3]} of {state['epochs']} epochs, not a finished {spec} run with "
                         "seed 0: delete it and run again")
    weights = {k: (v.float() if v.is_floating_point() else v).clone().contiguous()
               for k, v in state["model"].items()}      # fp32, no views into larger storages
    model = model_from_checkpoint({**state, "model": weights})
    test = get_test_loader(info.name, data_dir, "cpu", state["recipe"]["normalize"], download=False)
    accuracy = evaluate(model, test)["accuracy"]
    if abs(accuracy - metrics["test_accuracy"]) > 0.005:
        raise SystemExit(f"error: {spec}: the written weights score {accuracy:.2f}% but the run "
                         f"recorded {metrics['test_accuracy']:.2f}%")
    facts = {"name": preset, "dataset": info.name, "classes": list(info.classes),
             "normalize": ({"mean": list(info.mean), "std": list(info.std)}
                           if state["recipe"]["normalize"] else None),
             "seed": metrics["seed"], "epochs": metrics["epochs"], "params": metrics["params"],
             "architecture": metrics["architecture"],
             "test_accuracy": round(accuracy, 2), "test_loss": round(metrics["test_loss"], 4),
             "train_seconds": round(metrics["train_seconds"], 1), "torch": metrics["torch"],
             "threads": metrics["threads"], "dtype": "float32", "recipe": state["recipe"],
             "command": " ".join(command)}
    small = {"format": CHECKPOINT_FORMAT, "model": weights, "arch": state.get("arch", "vit"),
             "config": state["config"], "recipe": state["recipe"], "epoch": state["epoch"],
             "epochs": state["epochs"], "extra": {**state.get("extra", {}), **facts}}
    path = WEIGHTS / f"{preset}-{info.name}.pt"
    save_checkpoint(path, small)
    path.chmod(0o644)                      # package data: readable by everyone who installs it
    blob = path.read_bytes()
    facts.update(file=path.name, bytes=len(blob), sha256=hashlib.sha256(blob).hexdigest())
    path.with_suffix(".json").write_text(json.dumps(facts, indent=2) + "\n")
    return facts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", nargs="+", choices=MODELS, help="train and write only these")
    p.add_argument("--runs", type=Path, default=ROOT / "runs" / "weights")
    p.add_argument("--data-dir", type=Path, help="dataset folder (default: $VIT_DATA_DIR, else ./data)")
    args = p.parse_args(argv)
    for spec in args.only or MODELS:
        facts = make(spec, args.runs, args.data_dir)
        print(f"{spec}: {facts['params']:,} parameters, test accuracy {facts['test_accuracy']:.2f}%, "
              f"{facts['train_seconds']:.0f} s of training, {facts['bytes'] / 1024:.0f} KB", flush=True)
    total = sum(f.stat().st_size for f in WEIGHTS.glob("*.pt")) / 2**20
    print(f"vit_lib/weights: {total:.2f} MB in all (budget {BUDGET_MB:g} MB)")
    if total > BUDGET_MB:
        print("error: the shipped weights exceed their budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
