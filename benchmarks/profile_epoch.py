"""Where does the time of one training epoch go? Data, forward, backward, optimiser, the rest.

    python benchmarks/profile_epoch.py --preset seed-tuned            # one epoch of MNIST
    python benchmarks/profile_epoch.py --preset seed-tuned --batch-size 512 --steps 100
    python benchmarks/profile_epoch.py --preset seed-tuned --torch-profiler   # top operators

Times each phase of the training step of vit_lib's engine (the same calls train_one_epoch makes)
with perf_counter; on a CPU every op is synchronous, so the phases add up to the step. "other" is
what the loop itself costs (the loss/accuracy read-outs, the scheduler, Python).
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import nn

from vit_lib.data import get_loaders
from vit_lib.engine import build_optimizer, build_scheduler
from vit_lib.machinery.families import build_model
from vit_lib.machinery.runtime import seed_everything
from vit_lib.presets import PRESETS, get_preset


def profile(preset_name: str, batch_size: int | None, steps: int | None, dataset: str = "mnist",
            ) -> dict[str, float]:
    """Seconds per phase over `steps` training steps (default: one whole epoch)."""
    preset = get_preset(preset_name, dataset, batch_size=batch_size)
    recipe = preset.recipe
    seed_everything(0)
    model = build_model(preset.model)
    train, _ = get_loaders(dataset, recipe.batch_size, None, "cpu", recipe.normalize,
                           recipe.augment, seed=0)
    optimizer = build_optimizer(model, recipe)
    scheduler = build_scheduler(optimizer, recipe, recipe.epochs * len(train))
    phases: dict[str, float] = defaultdict(float)
    model.train()
    total_steps = steps or len(train)
    it = iter(train)
    images = 0
    start_all = time.perf_counter()
    for _step in range(total_steps):
        t0 = time.perf_counter()
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(train)
            x, y = next(it)
        t1 = time.perf_counter()
        logits = model(x)
        loss = F.cross_entropy(logits.float(), y, label_smoothing=recipe.label_smoothing)
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        if recipe.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        t4 = time.perf_counter()
        optimizer.step()
        t5 = time.perf_counter()
        scheduler.step()
        loss.item()
        (logits.argmax(1) == y).sum().item()
        t6 = time.perf_counter()
        for name, a, b in (("data (batch, augmentation, normalisation)", t0, t1),
                           ("forward + loss", t1, t2), ("backward", t2, t3),
                           ("gradient clipping", t3, t4), ("optimiser step", t4, t5),
                           ("other (scheduler, read-outs, loop)", t5, t6)):
            phases[name] += b - a
        images += y.numel()
    phases["total"] = time.perf_counter() - start_all
    phases["images_per_second"] = images / phases["total"]
    phases["steps"] = total_steps
    phases["batch_size"] = recipe.batch_size
    return dict(phases)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="seed-tuned", choices=list(PRESETS))
    p.add_argument("--batch-size", type=int)
    p.add_argument("--steps", type=int, help="training steps to time (default: one epoch)")
    p.add_argument("--torch-profiler", action="store_true",
                   help="also print torch.profiler's top 15 operators by CPU time")
    p.add_argument("--json", help="write the figures to this file")
    args = p.parse_args()
    result = profile(args.preset, args.batch_size, args.steps)
    total = result["total"]
    print(f"{args.preset}, batch {result['batch_size']}, {result['steps']} steps, "
          f"{torch.get_num_threads()} thread(s): {total:.2f} s, "
          f"{result['images_per_second']:,.0f} images/s")
    for name, seconds in result.items():
        if name not in ("total", "images_per_second", "steps", "batch_size"):
            print(f"  {name:45} {seconds:7.2f} s  {100 * seconds / total:5.1f}%")
    if args.torch_profiler:
        from torch.profiler import ProfilerActivity
        from torch.profiler import profile as torch_profile
        with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
            profile(args.preset, args.batch_size, 50)
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=15))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
