"""Training time until MNIST test accuracy reaches a target, for one pipeline.

    python benchmarks/time_to_accuracy.py --pipeline seed --target 97 --max-epochs 20
    python benchmarks/time_to_accuracy.py --pipeline seed-tuned --target 97

`seed` is the seed tutorial's own pipeline (benchmarks/seed_reference.py); any other name is a
vit_lib preset trained by vit_lib's engine. The test set is evaluated after every epoch; the
time counted is training time only (evaluation excluded), summed until the first epoch whose
test accuracy reaches the target. The per-epoch curve is written too (for the plot).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_reference import seed_evaluate, seed_loaders, seed_setup, seed_train_epoch  # noqa: E402

from vit_lib.data import get_loaders
from vit_lib.engine import fit, seed_everything
from vit_lib.model import VisionTransformer
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


def run_vit_lib(preset_name: str, target: float, seed: int) -> list[dict]:
    seed_everything(seed)
    preset = get_preset(preset_name)
    r = preset.recipe
    train, test = get_loaders("mnist", r.batch_size, normalize=r.normalize, augment=r.augment, seed=seed)
    model = VisionTransformer(preset.model)
    history = fit(model, train, test, r, progress=False)
    curve, elapsed = [], 0.0
    for h in history:
        elapsed += h["seconds"]
        curve.append({"epoch": h["epoch"], "seconds": elapsed, "test_accuracy": h["test_accuracy"]})
    return curve


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pipeline", default="seed", help="seed, or a vit_lib preset name")
    p.add_argument("--target", type=float, default=97.0)
    p.add_argument("--max-epochs", type=int, default=20, help="seed pipeline only")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    curve = (run_seed(args.target, args.max_epochs, args.seed) if args.pipeline == "seed"
             else run_vit_lib(args.pipeline, args.target, args.seed))
    reached = next((c for c in curve if c["test_accuracy"] >= args.target), None)
    result = {"pipeline": args.pipeline, "target": args.target, "curve": curve,
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
