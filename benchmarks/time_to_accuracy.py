"""Training time until MNIST test accuracy reaches a target, for one pipeline.

    python benchmarks/time_to_accuracy.py --pipeline seed --target 97 --seed 1
    python benchmarks/time_to_accuracy.py --pipeline seed-tuned --target 97 --seed 1

`seed` is the seed tutorial's own pipeline (benchmarks/seed_reference.py): one run at its
constant learning rate, evaluated after every epoch; its time is the training time (evaluation
excluded) summed until the first epoch whose test accuracy reaches the target (it trains on to
10 epochs at least, so its 10-epoch accuracy is known too).
Any other name is a vit_lib preset trained by vit_lib's engine. Its schedule decays the
learning rate to zero at the end, so the fair question is the shortest schedule that gets there:
fresh runs with the recipe shortened to 1, 2, 3, ... epochs until one ends at the target; its
time is that run's whole training time. `make bench` runs both for seeds 0, 1 and 2 and compares
the medians.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_reference import seed_evaluate, seed_loaders, seed_setup, seed_train_epoch

from vit_lib.data import get_loaders
from vit_lib.engine import fit
from vit_lib.machinery.families import build_model
from vit_lib.machinery.runtime import seed_everything
from vit_lib.presets import get_preset


def run_seed(target: float, max_epochs: int, seed: int) -> list[dict]:
    seed_everything(seed)
    train, test = seed_loaders()
    model, optimizer, criterion = seed_setup()
    curve, elapsed = [], 0.0
    for epoch in range(1, max_epochs + 1):
        _, train_acc, _, seconds = seed_train_epoch(model, train, optimizer, criterion, "cpu")
        elapsed += seconds
        acc = seed_evaluate(model, test, "cpu")
        curve.append({"epoch": epoch, "seconds": elapsed, "test_accuracy": acc})
        print(f"seed pipeline epoch {epoch}: test {acc:.2f}%  {elapsed:.0f}s", flush=True)
        if acc >= target and epoch >= 10:
            break
    return curve


def run_vit_lib(preset_name: str, target: float, seed: int, min_epochs: int) -> list[dict]:
    """The shortest schedule of a preset that reaches the target: train with its recipe
    shortened to E = min_epochs, min_epochs + 1, ... epochs (warmup and cosine compressed to
    fit), each a fresh run, until one ends at or above the target. Each entry is one run."""
    preset = get_preset(preset_name)
    r = preset.recipe
    runs = []
    for epochs in range(min_epochs, r.epochs + 1):
        seed_everything(seed)
        train, test = get_loaders("mnist", r.batch_size, normalize=r.normalize, augment=r.augment,
                                  seed=seed)
        model = build_model(preset.model)
        history = fit(model, train, test, r, epochs=epochs, progress=False, log=None)
        seconds = sum(h["seconds"] for h in history)
        runs.append({"epoch": epochs, "seconds": seconds, "test_accuracy": history[-1]["test_accuracy"]})
        print(f"{preset_name} shortened to {epochs} epochs: test {runs[-1]['test_accuracy']:.2f}% "
              f"{seconds:.1f}s", flush=True)
        if runs[-1]["test_accuracy"] >= target:
            break
    return runs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", default="seed", help="seed, or a vit_lib preset name")
    p.add_argument("--target", type=float, default=97.0)
    p.add_argument("--max-epochs", type=int, default=20, help="seed pipeline only")
    p.add_argument("--min-epochs", type=int, default=1, help="vit_lib presets: shortest schedule tried")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    curve = (run_seed(args.target, args.max_epochs, args.seed) if args.pipeline == "seed"
             else run_vit_lib(args.pipeline, args.target, args.seed, args.min_epochs))
    reached = next((c for c in curve if c["test_accuracy"] >= args.target), None)
    result = {"pipeline": args.pipeline, "target": args.target, "seed": args.seed, "curve": curve,
              "seconds_to_target": reached["seconds"] if reached else None,
              "epochs_to_target": reached["epoch"] if reached else None}
    if reached:
        print(f"{args.pipeline}: {args.target}% after {reached['epoch']} epochs, "
              f"{reached['seconds']:.1f}s of training")
    else:
        print(f"{args.pipeline}: never reached {args.target}% (best "
              f"{max(c['test_accuracy'] for c in curve):.2f}%)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
