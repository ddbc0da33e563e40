"""The CUDA path: mixed precision, the fused attention kernel, GPU checkpoints read on the CPU,
`--device auto`, and exact resume on the GPU.

Marked `gpu` and skipped where PyTorch sees no CUDA device. `make gpu-check` runs them on a GPU
machine. VIT_GPU_TESTS_ON_CPU=1 runs the device-independent ones on the CPU instead: a rehearsal
of the test code itself, not a GPU result.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vit_lib.config import ViTConfig
from vit_lib.data import get_loaders
from vit_lib.engine import build_optimizer, fit, train_one_epoch
from vit_lib.machinery.checkpoint import load_checkpoint
from vit_lib.machinery.families import model_from_checkpoint
from vit_lib.machinery.runtime import amp_context, resolve_device, seed_everything
from vit_lib.model import VisionTransformer
from vit_lib.presets import get_preset

ROOT = Path(__file__).resolve().parent.parent
HAS_CUDA = torch.cuda.is_available()
REHEARSAL = not HAS_CUDA and os.environ.get("VIT_GPU_TESTS_ON_CPU") == "1"
pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not (HAS_CUDA or REHEARSAL), reason="needs a CUDA GPU")]
DEVICE = torch.device("cuda" if HAS_CUDA else "cpu")
cuda_only = pytest.mark.skipif(not HAS_CUDA, reason="only meaningful on a real CUDA device")


@pytest.fixture(autouse=True)
def _exact_float32():
    """fp32 means fp32 here: no TF32 rounding in matmuls or convolutions during a test."""
    if HAS_CUDA:
        old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
        yield
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
    else:
        yield


def _batches(n_batches: int = 8, batch: int = 64):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n_batches * batch, 1, 28, 28, generator=g)
    labels = (images.mean((1, 2, 3)) * 10).long().clamp(0, 9)        # a learnable rule
    return [(images[i:i + batch].to(DEVICE), labels[i:i + batch].to(DEVICE))
            for i in range(0, len(images), batch)]


def _train_steps(amp, batches, lr: float = 3e-3):
    """Seeded seed-config model trained on `batches` with train_one_epoch -> (model, losses)."""
    seed_everything(0)
    model = VisionTransformer(ViTConfig()).to(DEVICE)
    recipe = get_preset("seed").recipe
    optimizer = build_optimizer(model, type(recipe).from_dict({**recipe.to_dict(), "lr": lr}))
    losses = []
    for x, y in batches:               # one batch per call: we want the loss after every step
        losses.append(train_one_epoch(model, [(x, y)], optimizer, amp=amp)["loss"])
    return model, losses


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_mixed_precision_trains_and_stays_close_to_fp32(dtype):
    if dtype == "float16" and not HAS_CUDA:
        pytest.skip("fp16 with a gradient scaler is the CUDA path")
    batches = _batches()
    ref_model, ref_losses = _train_steps(None, batches)
    torch_dtype = getattr(torch, dtype)
    autocast = torch.autocast(DEVICE.type, dtype=torch_dtype)
    scaler = torch.amp.GradScaler("cuda") if dtype == "float16" else None
    model, losses = _train_steps((autocast, scaler), batches)
    assert losses[-1] < losses[0], f"{dtype} did not train: losses {losses}"
    worst = max(abs(a - b) for a, b in zip(losses, ref_losses, strict=True))
    assert worst < 0.05, f"{dtype} losses differ from fp32 by up to {worst:.4f} (tolerance 0.05)"
    x = batches[0][0]
    with torch.no_grad():
        diff = (model.eval()(x) - ref_model.eval()(x)).abs().max().item()
    assert diff < 0.1, f"{dtype} logits differ from fp32 by up to {diff:.4f} after 8 steps"
    if scaler is not None:
        assert 0 < scaler.get_scale() < float("inf")


def test_amp_context_picks_the_right_precision():
    autocast, scaler = amp_context(DEVICE)
    if HAS_CUDA:
        expected = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        assert autocast.fast_dtype == expected
        assert (scaler is None) == (expected == torch.bfloat16)
    else:
        assert scaler is None


@pytest.mark.parametrize("dtype, tolerance", [("float32", 1e-5), ("bfloat16", 3e-2)])
def test_fused_attention_equals_hand_written(dtype, tolerance):
    seed_everything(0)
    model = VisionTransformer(ViTConfig()).to(DEVICE).eval()
    x = torch.rand(32, 1, 28, 28, device=DEVICE)
    outputs = {}
    for fused in (True, False):
        for block in model.blocks:
            block.attn.use_sdpa = fused
        with torch.no_grad(), torch.autocast(DEVICE.type, dtype=getattr(torch, dtype),
                                             enabled=dtype != "float32"):
            outputs[fused] = model(x).float()
    diff = (outputs[True] - outputs[False]).abs().max().item()
    assert diff <= tolerance, f"fused vs hand-written attention ({dtype}): {diff:.3g} > {tolerance}"


def test_checkpoint_written_on_gpu_gives_same_logits_on_cpu(tmp_path, data_dir):
    preset = get_preset("seed", epochs=1)
    seed_everything(0)
    model = VisionTransformer(preset.model).to(DEVICE)
    train, test = get_loaders("mnist", 64, data_dir, DEVICE, preset.recipe.normalize,
                              train_subset=2048, test_subset=512)
    fit(model, train, test, preset.recipe, checkpoint=tmp_path / "c.pt", progress=False, log=None)
    state = load_checkpoint(tmp_path / "c.pt", map_location="cpu")
    cpu_model = model_from_checkpoint(state, "cpu")
    x = torch.rand(16, 1, 28, 28)
    with torch.no_grad():
        on_device = model.eval()(x.to(DEVICE)).cpu()
        on_cpu = cpu_model(x)
    diff = (on_device - on_cpu).abs().max().item()
    assert diff < 1e-4, f"GPU and CPU logits of the same checkpoint differ by {diff:.3g}"
    assert on_device.argmax(1).equal(on_cpu.argmax(1))


def test_resume_on_gpu_continues_exactly(tmp_path, data_dir):
    preset = get_preset("seed-tuned", epochs=2)

    def run(epochs_first: int | None):
        seed_everything(0)
        model = VisionTransformer(preset.model).to(DEVICE)
        train, test = get_loaders("mnist", preset.recipe.batch_size, data_dir, DEVICE,
                                  preset.recipe.normalize, preset.recipe.augment,
                                  train_subset=2048, test_subset=512)
        ckpt = tmp_path / f"resume-{epochs_first}.pt"
        if epochs_first is None:
            fit(model, train, test, preset.recipe, checkpoint=ckpt, progress=False, log=None)
            return model
        fit(model, train, test, preset.recipe, checkpoint=ckpt, progress=False, log=None,
            stop_at_accuracy=0.0)                       # stops after the first epoch
        seed_everything(123)                            # resume must restore every RNG itself
        fresh = VisionTransformer(preset.model).to(DEVICE)
        fit(fresh, train, test, preset.recipe, checkpoint=ckpt, resume=True, progress=False,
            log=None)
        return fresh

    whole, resumed = run(None), run(1)
    different = [k for k, v in whole.state_dict().items()
                 if not torch.equal(v, resumed.state_dict()[k])]
    assert not different, f"resumed run differs in {different[:5]}"


@cuda_only
def test_device_auto_picks_cuda_in_python_and_the_cli(tmp_path, data_dir):
    assert resolve_device("auto").type == "cuda"
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "vit_lib.cli.train", "--preset", "seed", "--epochs", "1",
         "--train-subset", "1024", "--device", "auto", "--no-progress", "--no-download",
         "--data-dir", str(data_dir), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["device"].startswith("cuda"), metrics["device"]


@cuda_only
def test_cuda_graph_trains_as_the_eager_step_and_its_checkpoints_resume(tmp_path, data_dir):
    """fit(cuda_graph=True) replays the recorded step; it trains as the eager bf16 step does
    (the same kernels), and checkpoints pass both ways between graphed and eager runs."""
    preset = get_preset("seed-tuned", epochs=2)
    r = preset.recipe

    def run(graphed: bool, name: str, epochs: int = 2, resume: bool = False):
        seed_everything(0)
        model = VisionTransformer(preset.model).to(DEVICE)
        train, test = get_loaders("mnist", r.batch_size, data_dir, DEVICE, r.normalize, r.augment,
                                  train_subset=4000, test_subset=1000)   # 31 full batches + 32
        return fit(model, train, test, r, epochs=epochs, checkpoint=tmp_path / name, resume=resume,
                   progress=False, log=None, cuda_graph=graphed)

    eager, graphed = run(False, "eager.pt"), run(True, "graphed.pt")
    for e, g in zip(eager, graphed, strict=True):
        assert abs(e["train_loss"] - g["train_loss"]) < 0.01, (eager, graphed)
        assert abs(e["test_accuracy"] - g["test_accuracy"]) < 1.0, (eager, graphed)
    assert graphed[-1]["train_loss"] < graphed[0]["train_loss"] - 0.2, graphed     # it learns
    saved = load_checkpoint(tmp_path / "graphed.pt")
    assert isinstance(saved["optimizer"]["param_groups"][0]["lr"], float)
    # a graphed run's checkpoint continues eagerly, and an eager one with graphs
    more_eager = run(False, "graphed.pt", epochs=3, resume=True)
    more_graphed = run(True, "eager.pt", epochs=3, resume=True)
    assert len(more_eager) == len(more_graphed) == 3
    assert abs(more_eager[-1]["test_accuracy"] - more_graphed[-1]["test_accuracy"]) < 1.0


@cuda_only
def test_cuda_graph_flag_of_the_cli(tmp_path, data_dir):
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "vit_lib.cli.train", "--preset", "seed-tuned", "--epochs", "2",
         "--train-subset", "2000", "--cuda-graph", "--no-progress", "--no-download",
         "--data-dir", str(data_dir), "--out", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert len(history) == 2 and history[1]["train_loss"] < history[0]["train_loss"], history
