"""Train a preset from the command line.

    python -m vit_lib train --preset seed --dataset mnist --epochs 10 --out runs/seed

Writes OUT/checkpoint.pt (after every epoch, atomically), OUT/metrics.json and OUT/curves.png.
One training at a time per folder: a second one on the same --out is refused while the first
runs (OUT/.lock). An existing run is never replaced unless you pass --overwrite.

--resume continues the run in OUT from its last checkpoint, with its own preset, dataset, seed,
batch size and data. With --resume you may also give:
  --epochs N     train to N epochs in all, e.g. more epochs for a finished run. The learning-rate
                 schedule is recomputed for N epochs: a constant schedule (the seed preset)
                 continues unchanged, so the result equals an uninterrupted N-epoch run; a cosine
                 schedule jumps to where the N-epoch curve is at that step (its lr rises again).
  --lr X         a new base learning rate from the next step on (e.g. after the loss diverged)
  --grad-clip X  clip gradients to norm X from the next step on (0 = off)
  --device, --data-dir, --no-download, --no-progress, --cuda-graph
Flags that would change the experiment (--preset, --dataset, --seed, --batch-size, --patch-size,
--stem, --train-subset) are refused unless they repeat the run's own value. Resuming a finished run
trains nothing and changes nothing (it only writes metrics.json / curves.png if they are missing).

After a diverged run (NaN loss), OUT/checkpoint.pt holds the last good epoch: continue from it
with --resume --lr X (lower) or --resume --grad-clip 1.0, or start again with --overwrite --lr X.

Ctrl-C (exit 130) and SIGTERM (exit 143) stop the run and say which epoch the checkpoint holds.
A mistake you can fix (a bad value, missing or damaged data, an unwritable --out) prints one
"error:" line (exit 2); --out is checked before training starts.

--dataset folder:PATH trains on your own images: one subfolder per class (PATH/cat/*.png,
PATH/dog/*.jpg...), split into PATH/train/ and PATH/test/ when both are there, else a seeded
--val-split of each class is held out for testing. Grayscale when every image is (else RGB, or
--channels 1|3), resized to --image-size (default: the images' own size, when they all share one
square size). The images are decoded once and cached (VIT_CACHE_DIR, see
vit_lib.machinery.image_folder); the class names go into the checkpoint and predict's output.
Fine-tune a shipped MNIST model on your own digits:
    python -m vit_lib train --preset seed-tuned --dataset folder:my_digits --init-from pretrained:seed-tuned

--cuda-graph (CUDA GPUs with bf16 only; refused elsewhere and under torchrun) replays the training
step as one CUDA graph per batch: the same arithmetic, without the launch overhead that leaves a
GPU idle on models this small (see vit_lib.machinery.cuda_graphs).

Several processes (data-parallel, DistributedDataParallel; gloo on CPUs, nccl on GPUs):

    torchrun --standalone --nproc_per_node=2 -m vit_lib train --preset seed --out runs/ddp

The batch size stays the global batch (each process trains on its part of every batch) and must
divide by the number of processes; rank 0 alone prints, evaluates and writes OUT; --resume works
the same way, and checkpoints of 1 and N processes are interchangeable. An error on any process
stops them all (set VIT_DIST_TIMEOUT=seconds to bound waiting for a peer, default 600). See the
page docs/distributed.md ("Outgrowing one machine") for multi-GPU and multi-node launch lines.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from contextlib import ExitStack, nullcontext, redirect_stderr, redirect_stdout
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch

from vit_lib.cli.common import (
    Interrupted,
    Terminated,
    check_model_fits_dataset,
    check_output_folder,
    non_negative_float,
    output_lock,
    path_arg,
    positive_float,
    positive_int,
    require_keys,
    run_cli,
    seed_int,
)
from vit_lib.cnn import DISTILLATION, check_teacher, distillation
from vit_lib.config import STEMS, ConfigError
from vit_lib.data import (
    DatasetInfo,
    dataset_info,
    folder_data,
    folder_dataset_name,
    get_loaders,
    is_folder_dataset,
    use_folder,
)
from vit_lib.engine import fit
from vit_lib.machinery import distributed, pretrained
from vit_lib.machinery.checkpoint import load_checkpoint
from vit_lib.machinery.cuda_graphs import check_cuda_graph
from vit_lib.machinery.errors import (
    CheckpointError,
    OutputError,
    RunExistsError,
    TrainingDivergedError,
    UserError,
)
from vit_lib.machinery.families import (
    ModelConfig,
    architecture_of,
    build_model,
    checkpoint_config,
    describe,
    model_from_checkpoint,
)
from vit_lib.machinery.files import write_atomically, write_json
from vit_lib.machinery.runtime import resolve_device, seed_everything
from vit_lib.model import count_parameters
from vit_lib.presets import PRESETS, Recipe, get_preset
from vit_lib.transfer import freeze_all_but_head, init_from_checkpoint

CHECKPOINT, METRICS, CURVES = "checkpoint.pt", "metrics.json", "curves.png"
RUN_FILES = (CHECKPOINT, METRICS, CURVES, "confusion_matrix.png")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m vit_lib train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", help=f"one of: {', '.join(PRESETS)} (default seed)")
    p.add_argument("--dataset", help="mnist, fashion-mnist, cifar10 or folder:PATH (a folder of "
                                     "images, one subfolder per class; default mnist)")
    p.add_argument("--epochs", type=positive_int,
                   help="override the preset's epochs; with --resume: train to N epochs in all")
    p.add_argument("--batch-size", type=positive_int, help="override the preset's batch size")
    p.add_argument("--lr", type=positive_float,
                   help="override the preset's learning rate; with --resume: the new base lr")
    p.add_argument("--grad-clip", type=non_negative_float, metavar="NORM",
                   help="clip the gradient norm to NORM (0 = off; default: the preset's)")
    p.add_argument("--patch-size", type=positive_int, help="override the model's patch size")
    p.add_argument("--stem", choices=STEMS,
                   help="override how a ViT makes its tokens: linear (one projection per patch) "
                        "or conv (lesson 07's stride-2 3x3 convolutions; patch size 2, 4, 8...)")
    p.add_argument("--seed", type=seed_int, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="auto (cuda > mps > cpu), cpu, cuda or mps")
    p.add_argument("--data-dir", type=path_arg,
                   help="dataset folder (default: $VIT_DATA_DIR, else ./data)")
    p.add_argument("--no-download", action="store_true", help="never try to download data")
    p.add_argument("--out", type=path_arg, help="output folder (default runs/PRESET-DATASET)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--resume", action="store_true",
                       help="continue the run in --out from its last checkpoint")
    group.add_argument("--overwrite", action="store_true",
                       help="replace the run in --out (its checkpoint, metrics and figures)")
    p.add_argument("--train-subset", type=positive_int, help="train on the first N images only")
    p.add_argument("--init-from", type=path_arg, metavar="CHECKPOINT",
                   help="start from a trained checkpoint (or its run folder, or "
                        "pretrained:NAME[/DATASET]) of the same architecture: fine-tuning; a "
                        "head of another size is re-initialised")
    p.add_argument("--linear-probe", action="store_true",
                   help="with --init-from: train only the classification head (linear probing)")
    p.add_argument("--teacher", type=path_arg, metavar="CHECKPOINT",
                   help="for a distilled preset (best-distilled): the trained model (a checkpoint "
                        "or its run folder, e.g. a cnn run) whose predictions the ViT's "
                        "distillation token learns (DeiT)")
    p.add_argument("--distill", choices=DISTILLATION,
                   help="with --teacher: learn the teacher's top class (hard, DeiT's best; "
                        "default) or its whole softened distribution (soft)")
    p.add_argument("--temperature", type=positive_float,
                   help="with --distill soft: divide both models' logits by this before the "
                        "softmax, so the teacher's runner-up classes weigh more (default 1; DeiT "
                        "uses 3)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--cuda-graph", action="store_true",
                   help="on a CUDA GPU: record the training step once as a CUDA graph and "
                        "replay it for every batch (same arithmetic, far less launch overhead)")
    p.add_argument("--dist-backend", choices=distributed.BACKENDS,
                   help="under torchrun: the process-group backend (default auto: nccl on "
                        "CUDA GPUs, gloo on CPUs)")
    folder = p.add_argument_group("with --dataset folder:PATH")
    folder.add_argument("--image-size", type=positive_int, metavar="N",
                        help="resize every image to NxN (default: the images' own size)")
    folder.add_argument("--channels", type=int, choices=(1, 3),
                        help="1 (grayscale) or 3 (RGB); default 1 when every image is grayscale")
    folder.add_argument("--val-split", type=_fraction, metavar="F",
                        help="without PATH/train and PATH/test: hold out this fraction of each "
                             "class for testing, the same images every run (default 0.1)")
    return p


def _fraction(text: str) -> float:
    """argparse type: a number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (e.g. 0.1), got {text}")
    return value


FOLDER_FLAGS = (("image_size", "--image-size"), ("channels", "--channels"),
                ("val_split", "--val-split"))


def _dataset_label(name: str) -> str:
    """The dataset's part of a default run folder name: mnist, or the image folder's name."""
    if is_folder_dataset(name):
        return Path(folder_dataset_name(name)[len("folder:"):]).name or "folder"
    return dataset_info(name).name


def _read_folder(name: str, requested: dict[str, Any],
                 stats: tuple[tuple[float, ...], tuple[float, ...]] | None = None) -> DatasetInfo:
    """Decode (or read from the cache) a folder dataset. Under torchrun rank 0 reads it first,
    then the other ranks, which find it in the cache instead of all decoding at once."""
    path = folder_dataset_name(name)[len("folder:"):]
    for turn in ("first", "then"):
        with distributed.agreement(f"reading the image folder {path}"):
            if distributed.is_main() == (turn == "first"):
                use_folder(name, requested["image_size"], requested["channels"],
                           requested["val_split"], stats=stats,
                           log=print if distributed.is_main() else None)
    data = folder_data(name)
    print(f"{data.describe()}; {'read from the cache' if data.from_cache else 'decoded'} in "
          f"{data.seconds:.1f} s")
    return dataset_info(name)


def _init_stats(spec: Path | None) -> tuple[tuple[float, ...], tuple[float, ...]] | None:
    """The (mean, std) the --init-from model was trained with (None: unknown, or raw pixels):
    a folder dataset fine-tuning it is normalised the same way, so the model sees its inputs
    as it learned them."""
    if spec is None:
        return None
    try:
        return pretrained.checkpoint_normalization(load_checkpoint(pretrained.resolve(spec)))
    except CheckpointError:
        return None


def _quiet(quiet: bool, stream: str = "stdout"):
    """Send stdout (or stderr) to /dev/null on ranks other than 0, so only rank 0 prints."""
    if not quiet:
        return nullcontext()
    sink = open(os.devnull, "w")
    return redirect_stdout(sink) if stream == "stdout" else redirect_stderr(sink)


def main(argv: Sequence[str] | None = None) -> int:
    parallel = distributed.launched()
    quiet = parallel and distributed.env_rank() > 0
    with _quiet(quiet), _quiet(quiet, "stderr"):   # rank 0 alone shows usage errors and --help
        args = build_parser().parse_args(argv)
    if not parallel:
        if args.dist_backend is not None:
            raise ConfigError("--dist-backend applies to runs started by torchrun (several "
                              "processes); drop it, or launch with torchrun --nproc_per_node=N")
        return _main(args, resolve_device(args.device))
    with distributed.process_group(args.device, args.dist_backend or "auto") as device:
        try:
            with _quiet(not distributed.is_main()):
                return _main(args, device)
        except Exception as exc:
            distributed.report_failure(exc)
            if not distributed.is_main() and distributed.was_agreed(exc):
                # rank 0 prints this error (or the one that caused it): stop quietly
                raise SystemExit(2 if isinstance(exc, UserError) else 1) from None
            raise


def _main(args: argparse.Namespace, device: torch.device) -> int:
    """The run on this process, once the command line is parsed and the device chosen."""
    preset_name = args.preset or "seed"
    if preset_name not in PRESETS:
        raise ConfigError(f"unknown preset {preset_name!r}; choose one of {', '.join(PRESETS)}")
    folder = is_folder_dataset(args.dataset)
    given = [flag for key, flag in FOLDER_FLAGS if getattr(args, key) is not None]
    if given and not folder and not args.resume:
        raise ConfigError(f"{', '.join(given)} appl{'y' if len(given) > 1 else 'ies'} to a folder "
                          f"of images (--dataset folder:PATH); {args.dataset or 'mnist'} has "
                          f"images of one fixed size: drop {' and '.join(given)}")
    out = args.out or Path(f"runs/{preset_name}-{_dataset_label(args.dataset or 'mnist')}")
    ckpt = out / CHECKPOINT
    if args.init_from is not None and args.resume:
        raise ConfigError("--init-from starts a new run from another run's weights, but --resume "
                          f"continues the run in {out} from its own checkpoint; drop one of them")
    if args.linear_probe and args.init_from is None and not args.resume:
        raise ConfigError("--linear-probe trains only the head of a trained model: give the "
                          "model with --init-from CHECKPOINT")
    if args.linear_probe and args.resume:
        raise ConfigError("--linear-probe applies to a new run; a resumed run keeps its own "
                          "setting: drop --linear-probe")
    if args.cuda_graph:
        check_cuda_graph(device, parallel=distributed.is_initialized())
    if args.resume and not ckpt.is_file():
        load_checkpoint(ckpt)   # raises the "no checkpoint" error before anything is created
    if folder and not args.resume:   # a bad folder is reported before anything is created
        stats = _init_stats(args.init_from)
        _read_folder(args.dataset, {k: getattr(args, k) for k, _ in FOLDER_FLAGS}, stats)
        if stats is not None and dataset_info(args.dataset).mean == tuple(stats[0]):
            print(f"inputs normalised like --init-from's training data (mean {stats[0]}, "
                  f"std {stats[1]}), as that model learned them")
    with ExitStack() as stack:   # rank 0 checks and locks the folder; the others wait for it
        with distributed.agreement(f"preparing the output folder {out}"):
            if distributed.is_main():
                check_output_folder(out)
                stack.enter_context(output_lock(out))
                for pattern in (f"{CHECKPOINT}.*.tmp", ".*.partial.*"):   # left by a kill mid-write
                    for leftover in out.glob(pattern):
                        leftover.unlink(missing_ok=True)              # safe: we hold the folder
        try:
            return _resume(args, out, device) if args.resume else _start(args, out, device)
        except KeyboardInterrupt as exc:
            raise Interrupted(_saved_state(ckpt), isinstance(exc, Terminated)) from None


def _start(args: argparse.Namespace, out: Path, device: torch.device) -> int:
    """A new run in `out` (refused when one is there, unless --overwrite)."""
    existing = [name for name in (CHECKPOINT, METRICS) if (out / name).exists()]
    if existing and not args.overwrite:
        raise RunExistsError(f"{out} already holds a run ({', '.join(existing)}); pass --resume "
                             "to continue it, --overwrite to replace it, or choose another --out")
    preset = get_preset(args.preset or "seed", args.dataset or "mnist",
                        {"patch_size": args.patch_size, "stem": args.stem}, epochs=args.epochs,
                        batch_size=args.batch_size, lr=args.lr, grad_clip=args.grad_clip)
    info = dataset_info(args.dataset or "mnist")
    seed = 0 if args.seed is None else args.seed
    run = {"preset": preset.name, "dataset": info.name, "seed": seed,
           "train_subset": args.train_subset, "classes": list(info.classes)}
    if is_folder_dataset(info.name):
        data = folder_data(info.name)
        run["folder"] = {"path": str(data.root), "image_size": info.image_size,
                         "channels": info.channels, "val_split": data.val_split,
                         "split": data.split,
                         "train_images": len(data.train_images),
                         "test_images": len(data.test_images),
                         "mean": list(info.mean), "std": list(info.std),
                         "requested": {k: getattr(args, k) for k, _ in FOLDER_FLAGS}}
    distilled = preset.architecture == "vit-distilled"
    if distilled and args.teacher is None:
        raise ConfigError(f"preset {preset.name!r} is a ViT with a distillation token that learns a "
                          "teacher's predictions: give the teacher with --teacher CHECKPOINT (for "
                          "example a run of --preset cnn on the same dataset)")
    if args.teacher is not None and not distilled:
        raise ConfigError(f"--teacher applies to a distilled preset (best-distilled); preset "
                          f"{preset.name!r} has no distillation token: drop --teacher")
    if args.teacher is not None:
        teacher = pretrained.resolve(args.teacher)
        run["teacher"] = {"checkpoint": str(teacher), "distill": args.distill or "hard"}
        if args.temperature is not None and run["teacher"]["distill"] != "soft":
            raise ConfigError("--temperature softens the teacher's distribution, which only "
                              "--distill soft learns: use --distill soft, or drop --temperature")
        if run["teacher"]["distill"] == "soft":
            run["teacher"]["temperature"] = args.temperature or 1.0
    elif args.distill is not None or args.temperature is not None:
        flags = " and ".join(f for f, v in (("--distill", args.distill),
                                            ("--temperature", args.temperature)) if v is not None)
        raise ConfigError(f"{flags} say{'s' if ' and ' not in flags else ''} how to learn from a "
                          "teacher: give --teacher CHECKPOINT too (with a distilled preset such as "
                          f"best-distilled), or drop {flags}")
    if args.init_from is not None:
        source = pretrained.resolve(args.init_from)
        if source.resolve() == (out / CHECKPOINT).resolve():
            raise ConfigError(f"--init-from {source} is the checkpoint this run would write; "
                              "copy it elsewhere or choose another --out")
        run["init_from"] = {"checkpoint": str(source)}
        run["linear_probe"] = args.linear_probe
    return _train(args, out, device, preset.model, preset.recipe, run, resume=False)


def _resume(args: argparse.Namespace, out: Path, device: torch.device) -> int:
    """Continue the run in `out`: honour --epochs, --lr, --grad-clip; refuse flags that would
    change the experiment; a finished run is reported and left alone."""
    ckpt = out / CHECKPOINT
    state = load_checkpoint(ckpt)
    require_keys(state, ("model", "optimizer", "scheduler", "epoch", "epochs", "config", "recipe",
                         "history", "rng"), ckpt)
    config = checkpoint_config(state)
    recipe = Recipe.from_dict(state["recipe"])
    run = _stored_run(args, state, ckpt)
    if is_folder_dataset(run["dataset"]):
        _resume_folder(args, run, ckpt)
    else:
        given = [flag for key, flag in FOLDER_FLAGS if getattr(args, key) is not None]
        if given:
            raise ConfigError(f"{' and '.join(given)}: the run in {out} trains on "
                              f"{run['dataset']}, not a folder of images: drop them")
    info = dataset_info(run["dataset"])
    check_model_fits_dataset(config, info, ckpt)
    if args.teacher is not None or args.distill is not None or args.temperature is not None:
        if "teacher" not in run:
            raise ConfigError(f"the run in {out} learns from no teacher; a resumed run keeps that: "
                              "drop --teacher / --distill / --temperature")
        if args.distill is not None and args.distill != run["teacher"]["distill"]:
            raise ConfigError(f"--distill {args.distill} differs from the run in {out} "
                              f"({run['teacher']['distill']}); a resumed run keeps it: drop --distill")
        stored = run["teacher"].get("temperature",       # a soft run from before the flag: 1
                                    1.0 if run["teacher"]["distill"] == "soft" else None)
        if args.temperature is not None and args.temperature != stored:
            was = f"temperature {stored:g}" if stored is not None else \
                f"{run['teacher']['distill']} distillation without a temperature"
            raise ConfigError(f"--temperature {args.temperature:g} differs from the run in {out} "
                              f"({was}); a resumed run keeps it: drop --temperature")
        if args.teacher is not None:    # the same teacher, found somewhere else
            teacher = pretrained.resolve(args.teacher)
            run["teacher"] = {**run["teacher"], "checkpoint": str(teacher)}
    for flag, given, stored in (("--batch-size", args.batch_size, recipe.batch_size),
                                ("--patch-size", args.patch_size, getattr(config, "patch_size", None)),
                                ("--stem", args.stem, getattr(config, "stem", None))):
        if given is not None and given != stored:
            raise ConfigError(f"{flag} {given} differs from the run in {out} ({stored}); a resumed "
                              f"run keeps it: drop {flag}, or start a new run with --overwrite "
                              "or another --out")
    done, planned = state["epoch"], state["epochs"]
    epochs = planned if args.epochs is None else args.epochs
    if epochs < done:
        raise ConfigError(f"--epochs {epochs} is fewer than the {done} epochs {out} has already "
                          f"trained; give at least {done + 1} to train further")
    if done == epochs < planned:
        raise ConfigError(f"--epochs {epochs} asks for the {done} epochs {out} has already "
                          f"trained, so there is nothing to train; leave --epochs out to finish "
                          f"the {planned} planned, or give more than {done}")
    if done >= epochs:
        for flag, value in (("--lr", args.lr), ("--grad-clip", args.grad_clip)):
            if value is not None:
                raise ConfigError(f"{out} holds a finished run ({done} of {done} epochs), so "
                                  f"{flag} has nothing to act on; add --epochs N (more than "
                                  f"{done}) to train it further with it")
        with distributed.agreement(f"writing the missing files into {out}") as shared:
            if distributed.is_main():
                shared.value = _finish_files(out, state, run, config, recipe, device)
        written = shared.value
        print(f"{out} holds a finished run ({done} of {done} epochs, test accuracy "
              f"{state['history'][-1]['test_accuracy']:.2f}%): nothing to train"
              + (f"; wrote the missing {', '.join(written)}" if written else "; nothing changed")
              + f". To train it further: --resume --epochs N (N > {done}).")
        return 0
    changes = {k: v for k, v in (("lr", args.lr), ("grad_clip", args.grad_clip),
                                 ("epochs", epochs)) if v is not None and getattr(recipe, k) != v}
    new_recipe = replace(recipe, **changes)
    print(f"resuming {ckpt} after epoch {done} of {planned}")
    for name, value in changes.items():
        print(f"  {name}: {getattr(recipe, name)} -> {value} from epoch {done + 1}"
              + (_schedule_note(recipe, epochs) if name == "epochs" else ""))
    return _train(args, out, device, config, new_recipe, run, resume=True)


def _resume_folder(args: argparse.Namespace, run: dict[str, Any], ckpt: Path) -> None:
    """Read a resumed run's image folder as that run read it (same size, channels, split and
    normalisation); refuse folder flags that differ and a folder whose classes changed."""
    stored = run.get("folder") or {}
    requested = dict(stored.get("requested") or {k: None for k, _ in FOLDER_FLAGS})
    for key, flag in FOLDER_FLAGS:
        given = getattr(args, key)
        resolved = stored.get(key, requested.get(key))
        if given is not None and given != resolved and given != requested.get(key):
            raise ConfigError(f"{flag} {given} differs from the run in {ckpt.parent} "
                              f"({resolved if resolved is not None else 'not given'}); a resumed "
                              f"run keeps it: drop {flag}")
    stats = (tuple(stored["mean"]), tuple(stored["std"])) if stored.get("mean") else None
    info = _read_folder(run["dataset"], requested, stats)
    if run.get("classes") and list(info.classes) != list(run["classes"]):
        raise ConfigError(f"the classes of {info.folder} changed since the run in {ckpt.parent} "
                          f"began ({', '.join(run['classes'])} -> {', '.join(info.classes)}); "
                          "resume with the folder as it was, or start a new run")


def _schedule_note(recipe: Recipe, epochs: int) -> str:
    if recipe.schedule == "constant" and recipe.warmup == 0:
        return " (constant schedule: it continues unchanged, as in an uninterrupted run)"
    return (f" (the {recipe.schedule} schedule is recomputed for {epochs} epochs and the lr "
            "continues from that curve's value at this step)")


def _stored_run(args: argparse.Namespace, state: dict[str, Any], ckpt: Path) -> dict[str, Any]:
    """preset, dataset, seed, train_subset of the stored run (`extra`), checked against the
    flags; a checkpoint written by fit() without them takes them from --dataset / --seed."""
    extra = dict(state.get("extra") or {})
    given = {"preset": args.preset,
             "dataset": (None if not args.dataset else folder_dataset_name(args.dataset)
                         if is_folder_dataset(args.dataset) else dataset_info(args.dataset).name),
             "seed": args.seed, "train_subset": args.train_subset}
    flags = {"preset": "--preset", "dataset": "--dataset", "seed": "--seed",
             "train_subset": "--train-subset"}
    missing = [flags[k] for k in ("dataset", "seed") if k not in extra and given[k] is None]
    if missing:
        raise CheckpointError(
            f"{ckpt} does not record its {' and '.join(m[2:] for m in missing)} (it was written "
            "by fit() without extra={'dataset': ..., 'seed': ...}); pass "
            f"{' and '.join(missing)} with the values that run used so it continues on the "
            "same data in the same order")
    if "preset" not in extra and given["preset"] is not None:
        raise ConfigError(f"{ckpt} records no preset, so --preset cannot be checked against it; "
                          "drop --preset (the stored model and recipe are used)")
    run = {key: extra[key] for key in ("init_from", "linear_probe", "teacher", "classes", "folder")
           if key in extra}
    for key in ("preset", "dataset", "seed", "train_subset"):
        if key in extra:
            if given[key] is not None and given[key] != extra[key]:
                raise ConfigError(f"{flags[key]} {given[key]} differs from the run in "
                                  f"{ckpt.parent} ({extra[key]}); a resumed run keeps it: drop "
                                  f"{flags[key]}, or start a new run with --overwrite or "
                                  "another --out")
            run[key] = extra[key]
        else:
            run[key] = given[key]
    return run


def _train(args: argparse.Namespace, out: Path, device: torch.device, config: ModelConfig,
           recipe: Recipe, run: dict[str, Any], resume: bool) -> int:
    info = dataset_info(run["dataset"])
    ckpt = out / CHECKPOINT
    distributed.check_global_batch(recipe.batch_size)   # before anything costly, on every rank
    seed_everything(run["seed"])
    model = build_model(config)
    if "init_from" in run and not resume:   # a resumed run has these weights in its checkpoint
        source = Path(run["init_from"]["checkpoint"])
        report = init_from_checkpoint(model, load_checkpoint(source), source=str(source))
        run["init_from"] = {"checkpoint": str(source), "architecture": report.architecture,
                            "dataset": report.dataset, "loaded_tensors": len(report.loaded),
                            "reinitialised": report.reinitialised}
        print(report.summary())
    if run.get("linear_probe"):
        trained = freeze_all_but_head(model)
        print(f"linear probe: only {', '.join(trained)} are trained")
    model = model.to(device)
    train_loader, test_loader = get_loaders(
        info.name, recipe.batch_size, args.data_dir, device, recipe.normalize, recipe.augment,
        seed=run["seed"], download=not args.no_download, train_subset=run["train_subset"])
    subset = run["train_subset"]
    if subset is not None and train_loader.dataset_size < subset:
        raise ConfigError(f"--train-subset {subset} is more than the {train_loader.dataset_size:,} "
                          f"training images of {info.name}; give at most that many, or leave it out")
    params = count_parameters(model)
    print(f"preset {run['preset']} ({describe(config)}) on {info.name}: {params:,} trained "
          f"parameters, {recipe.epochs} epochs, "
          f"batch {recipe.batch_size}, {recipe.optimizer} lr {recipe.lr:g}, device {device}"
          + (f" x {distributed.world_size()} processes (global batch {recipe.batch_size}, "
             f"{recipe.batch_size // distributed.world_size()} per process)"
             if distributed.is_initialized() else ""))
    wall = time.perf_counter()
    train_epoch = _distillation(run, config, recipe, info.name, device)
    if args.overwrite and not resume and distributed.is_main():   # every check passed: replace it
        for name in RUN_FILES:
            (out / name).unlink(missing_ok=True)
    try:
        history = fit(model, train_loader, test_loader, recipe, epochs=recipe.epochs,
                      checkpoint=ckpt, resume=resume, progress=not args.no_progress, extra=run,
                      cuda_graph=args.cuda_graph, train_epoch=train_epoch)
    except TrainingDivergedError as exc:
        raise distributed.carry_agreement(TrainingDivergedError(
            f"{exc.args[0]}\n  {_retry_hint(ckpt, recipe)}"), exc) from None
    except OutputError as exc:
        then = ("continue with --resume" if ckpt.is_file() else "run the same command again")
        raise distributed.carry_agreement(OutputError(
            f"{exc.args[0]}: free some space or fix {out}, then {then}"), exc) from None
    metrics = _metrics(history, run, config, recipe, device, count_parameters(model))
    metrics["wall_seconds_this_session"] = time.perf_counter() - wall
    if distributed.is_initialized():
        metrics["processes"] = distributed.world_size()
        metrics["dist_backend"] = torch.distributed.get_backend()
    with distributed.agreement(f"writing {METRICS} and {CURVES}"):
        if distributed.is_main():
            _write_results(out, metrics, history, run)
    final = history[-1]
    print(f"test accuracy {final['test_accuracy']:.2f}% after {recipe.epochs} epochs, "
          f"{metrics['train_seconds']:.0f}s of training; wrote {out}/{METRICS}, "
          f"{CHECKPOINT}, {CURVES}")
    return 0


def _distillation(run: dict[str, Any], config: ModelConfig, recipe: Recipe, dataset: str,
                  device: torch.device):
    """fit's train_epoch for a run with a teacher (None without one): the teacher's checkpoint
    loaded and checked against the student (images, classes, dataset, input normalisation)."""
    if "teacher" not in run:
        return None
    source = Path(run["teacher"]["checkpoint"])
    state = load_checkpoint(source)
    check_teacher(model_from_checkpoint(state), config, f"--teacher {source}")
    theirs = (state.get("extra") or {}).get("dataset")
    if theirs is not None and theirs != dataset:
        raise ConfigError(f"--teacher {source} was trained on {theirs}, the student trains on "
                          f"{dataset}; give a teacher trained on {dataset}")
    if state["recipe"].get("normalize") != recipe.normalize:
        raise ConfigError(f"--teacher {source} was trained on "
                          f"{'normalised' if state['recipe'].get('normalize') else 'raw'} pixels "
                          "and the student's recipe differs, so the teacher would see other "
                          "inputs; choose a teacher trained with the same normalisation")
    teacher = model_from_checkpoint(state, device)
    kind, temperature = run["teacher"]["distill"], run["teacher"].get("temperature", 1.0)
    how = f"{kind}, temperature {temperature:g}" if kind == "soft" else kind
    print(f"distillation ({how}) from {source} ({describe(teacher.config)})")
    return distillation(teacher, kind, temperature)


def _retry_hint(ckpt: Path, recipe: Recipe) -> str:
    lower = f"{recipe.lr / 3:.2g}"
    if ckpt.is_file():
        epoch = load_checkpoint(ckpt)["epoch"]
        return (f"{ckpt} holds epoch {epoch}, the last good one: continue from it with "
                f"--resume --lr {lower} (or --resume --grad-clip 1.0), or start again with "
                f"--overwrite --lr {lower}")
    return (f"no epoch finished, so no checkpoint was written: run the same command again with "
            f"--lr {lower} (or --grad-clip 1.0)")


def _saved_state(ckpt: Path) -> str:
    """What an interrupted run leaves, read from the checkpoint file itself (so it is true)."""
    if not ckpt.is_file():
        return ("no epoch had finished, so no checkpoint was written: run the same command "
                "again to start over")
    try:
        state = load_checkpoint(ckpt)
    except CheckpointError as exc:
        return f"the checkpoint could not be read back ({exc})"
    launcher = (f"torchrun --nproc_per_node={distributed.world_size()}"
                if distributed.is_initialized() else "python")
    return (f"{ckpt} holds epoch {state['epoch']} of {state['epochs']}; continue with: "
            f"{launcher} -m vit_lib train --out {ckpt.parent} --resume")


def _metrics(history: list[dict[str, Any]], run: dict[str, Any], config: ModelConfig,
             recipe: Recipe, device: torch.device, params: int) -> dict[str, Any]:
    final = history[-1]
    return {
        "preset": run["preset"], "dataset": run["dataset"], "seed": run["seed"],
        "device": str(device), "params": params, "epochs": recipe.epochs,
        "test_accuracy": final["test_accuracy"], "test_loss": final["test_loss"],
        "train_accuracy": final["train_accuracy"],
        "train_seconds": sum(r["seconds"] for r in history),
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "architecture": architecture_of(config), "config": config.to_dict(),
        "recipe": recipe.to_dict(), "init_from": run.get("init_from"),
        "linear_probe": bool(run.get("linear_probe")), "history": history,
    }


def _write_results(out: Path, metrics: dict[str, Any], history: list[dict[str, Any]],
                   run: dict[str, Any], only_missing: bool = False) -> list[str]:
    """Write metrics.json and curves.png (only those missing when only_missing); returns the
    names written. A failed write says the checkpoint is intact and how to finish."""
    from vit_lib.machinery.plots import plot_history
    writers = {METRICS: lambda: write_json(out / METRICS, metrics),
               CURVES: lambda: write_atomically(out / CURVES, lambda tmp: plot_history(
                   history, tmp, title=f"{run['preset']} on {run['dataset']}"))}
    written = []
    for name, write in writers.items():
        if only_missing and (out / name).exists():
            continue
        try:
            write()
        except OutputError as exc:
            raise OutputError(f"{exc.args[0]}; {out / CHECKPOINT} holds the finished run and is intact: "
                              f"free some space or fix {out}, then run the same command with "
                              f"--resume to write {METRICS} and {CURVES}") from None
        written.append(name)
    return written


def _finish_files(out: Path, state: dict[str, Any], run: dict[str, Any], config: ModelConfig,
                  recipe: Recipe, device: torch.device) -> list[str]:
    """metrics.json / curves.png of a finished run whose writing was cut short (full disk, a
    kill after the last checkpoint); files already there are left untouched."""
    if all((out / name).exists() for name in (METRICS, CURVES)):
        return []
    model = build_model(config)
    if run.get("linear_probe"):
        freeze_all_but_head(model)
    params = count_parameters(model)
    metrics = _metrics(state["history"], run, config, recipe, device, params)
    return _write_results(out, metrics, state["history"], run, only_missing=True)


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
