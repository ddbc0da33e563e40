"""Training engine: schedule, resume = uninterrupted, atomic checkpoints, clear failures."""
import errno
import os

import pytest
import torch

from vit_lib.config import ConfigError, ViTConfig
from vit_lib.data import TensorLoader, get_loaders
from vit_lib.engine import TrainingDivergedError, build_optimizer, evaluate, fit, lr_factor
from vit_lib.machinery.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from vit_lib.machinery.errors import OutputError
from vit_lib.machinery.families import model_from_checkpoint
from vit_lib.machinery.runtime import DeviceError, parse_device, resolve_device, seed_everything
from vit_lib.model import VisionTransformer
from vit_lib.presets import Recipe, get_preset

TINY = ViTConfig(dim=8, depth=2, heads=2, mlp_dim=16, dropout=0.1, drop_path=0.1)


def _loaders(n: int = 96):
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 1, 28, 28), dtype=torch.uint8, generator=g)
    labels = images.float().mean((1, 2, 3)).gt(127.5).long()     # a learnable rule
    train = TensorLoader(images, labels, 16, shuffle=True, seed=0, mean=(0.5,), std=(0.3,))
    test = TensorLoader(images[:32], labels[:32], 32, mean=(0.5,), std=(0.3,))
    return train, test


class StopAtEpoch(TensorLoader):
    """A loader that simulates the process being killed when epoch `stop` begins."""

    def __init__(self, base: TensorLoader, stop: int):
        self.__dict__.update(base.__dict__)
        self.stop = stop

    def set_epoch(self, epoch: int) -> None:
        if epoch == self.stop:
            raise KeyboardInterrupt
        super().set_epoch(epoch)


RECIPE = Recipe(optimizer="adamw", lr=3e-3, weight_decay=0.05, batch_size=16, epochs=4,
                schedule="cosine", warmup=0.1, grad_clip=1.0)


def test_resumed_run_ends_with_the_same_weights(tmp_path):
    seed_everything(0)
    model = VisionTransformer(TINY)
    train, test = _loaders()
    full = fit(model, train, test, RECIPE, progress=False, log=None)
    expected = model.state_dict()

    seed_everything(0)
    interrupted = VisionTransformer(TINY)
    ckpt = tmp_path / "run" / "checkpoint.pt"
    with pytest.raises(KeyboardInterrupt):
        fit(interrupted, StopAtEpoch(train, 2), test, RECIPE, checkpoint=ckpt, progress=False, log=None)
    assert load_checkpoint(ckpt)["epoch"] == 2

    seed_everything(123)   # a fresh process: different RNG state, different initial weights
    resumed = VisionTransformer(TINY)
    history = fit(resumed, train, test, RECIPE, checkpoint=ckpt, resume=True, progress=False, log=None)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert history[-1]["test_accuracy"] == full[-1]["test_accuracy"]
    for name, tensor in resumed.state_dict().items():
        assert torch.equal(tensor, expected[name]), name
    assert list(ckpt.parent.iterdir()) == [ckpt]   # no temporary files left behind


def test_checkpoint_restores_model_and_metadata(tmp_path):
    seed_everything(0)
    model = VisionTransformer(TINY)
    train, test = _loaders()
    fit(model, train, test, RECIPE, epochs=1, checkpoint=tmp_path / "c.pt", progress=False, log=None,
        extra={"dataset": "mnist"})
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["extra"] == {"dataset": "mnist"} and state["recipe"]["lr"] == RECIPE.lr
    assert {"model", "optimizer", "scheduler", "epoch", "rng", "config", "history"} <= set(state)
    again = model_from_checkpoint(state)
    model.eval()
    x = next(iter(test))[0]
    assert torch.equal(again(x), model(x))


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"format": 1, "epoch": 1})

    def full_disk(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OutputError, match=f"could not write {path} \\(No space left on device\\)"):
        save_checkpoint(path, {"format": 1, "epoch": 2})
    monkeypatch.undo()
    assert load_checkpoint(path)["epoch"] == 1
    assert list(tmp_path.iterdir()) == [path]
    (tmp_path / "file").write_text("")
    with pytest.raises(OutputError, match="could not write .*file/c.pt"):   # also an OSError
        save_checkpoint(tmp_path / "file" / "c.pt", {"format": 1})


def test_fit_says_which_checkpoint_survived_a_failed_write(tmp_path, monkeypatch):
    seed_everything(0)
    train, test = _loaders()
    real, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OutputError, match=r"epoch 3 finished but could not write .*; the last "
                                          r"good checkpoint \(epoch 2\) is intact"):
        fit(VisionTransformer(TINY), train, test, RECIPE, checkpoint=tmp_path / "c.pt",
            progress=False, log=None)
    assert load_checkpoint(tmp_path / "c.pt")["epoch"] == 2


CONSTANT = Recipe(optimizer="adamw", lr=3e-3, weight_decay=0.05, batch_size=16, epochs=2)


def test_more_epochs_on_a_constant_schedule_equal_an_uninterrupted_run(tmp_path):
    seed_everything(0)
    train, test = _loaders()
    full_model = VisionTransformer(TINY)     # dropout and drop-path: the RNG must carry over
    full = fit(full_model, train, test, CONSTANT, epochs=4, progress=False, log=None)
    seed_everything(0)
    short = VisionTransformer(TINY)
    fit(short, train, test, CONSTANT, checkpoint=tmp_path / "c.pt", progress=False, log=None)
    seed_everything(7)
    extended = VisionTransformer(TINY)
    history = fit(extended, train, test, CONSTANT, epochs=4, checkpoint=tmp_path / "c.pt",
                  resume=True, progress=False, log=None)
    assert [r["test_loss"] for r in history] == [r["test_loss"] for r in full]
    for name, tensor in full_model.state_dict().items():
        assert torch.equal(extended.state_dict()[name], tensor), name
    assert load_checkpoint(tmp_path / "c.pt")["epochs"] == 4


def test_resume_may_change_only_lr_epochs_and_grad_clip(tmp_path):
    from dataclasses import replace
    seed_everything(0)
    train, test = _loaders()
    fit(VisionTransformer(TINY), train, test, RECIPE, epochs=1, checkpoint=tmp_path / "c.pt",
        progress=False, log=None)
    with pytest.raises(CheckpointError, match=r"another recipe \(batch_size 16 -> 32; "
                                              r"schedule 'cosine' -> 'constant'\); a resumed run "
                                              r"may change only lr, epochs, grad_clip"):
        fit(VisionTransformer(TINY), train, test, replace(RECIPE, batch_size=32, schedule="constant"),
            checkpoint=tmp_path / "c.pt", resume=True, progress=False, log=None)
    lower = replace(RECIPE, lr=1e-3, grad_clip=0.5)
    history = fit(VisionTransformer(TINY), train, test, lower, epochs=3,
                  checkpoint=tmp_path / "c.pt", resume=True, progress=False, log=None)
    # 6 steps per epoch: the 1-epoch cosine curve had reached 0; the resumed run follows the
    # 3-epoch curve of the new base lr from step 6 on
    assert history[0]["lr"] == 0.0
    assert history[1]["lr"] > 0
    assert history[1]["lr"] == pytest.approx(1e-3 * lr_factor(12, 18, lower), rel=1e-12)
    assert history[2]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert load_checkpoint(tmp_path / "c.pt")["recipe"]["lr"] == 1e-3
    with pytest.raises(CheckpointError, match="already holds 3 epochs; epochs=2 would undo"):
        fit(VisionTransformer(TINY), train, test, lower, epochs=2,
            checkpoint=tmp_path / "c.pt", resume=True, progress=False, log=None)


def test_bad_checkpoints_are_explained(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at .*missing.pt; train first"):
        load_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt is not a readable vit_lib checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="is not a vit_lib checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_resume_with_a_different_model_is_refused(tmp_path):
    seed_everything(0)
    train, test = _loaders()
    fit(VisionTransformer(TINY), train, test, RECIPE, epochs=1, checkpoint=tmp_path / "c.pt",
        progress=False, log=None)
    with pytest.raises(CheckpointError, match="holds a different model"):
        fit(VisionTransformer(ViTConfig()), train, test, RECIPE, checkpoint=tmp_path / "c.pt",
            resume=True, progress=False, log=None)


def test_nan_loss_stops_with_a_clear_message():
    seed_everything(0)
    model = VisionTransformer(TINY)
    with torch.no_grad():
        model.head.bias.fill_(float("nan"))
    train, test = _loaders()
    with pytest.raises(TrainingDivergedError,
                       match=r"epoch 1: the loss became nan at step 1 .*lower the learning rate"):
        fit(model, train, test, RECIPE, progress=False, log=None)


def test_devices():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in {"cpu", "cuda", "mps"}
    assert resolve_device("CPU:0") == torch.device("cpu", 0)        # PyTorch's spelling, any case
    with pytest.raises(DeviceError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError,
                           match="PyTorch sees no CUDA GPU here; use device='auto' or cpu") as err:
            resolve_device("cuda")
        assert "use --device auto or cpu" in err.value.for_cli()


@pytest.mark.parametrize("name, parsed", [("auto", ("auto", None)), ("cpu", ("cpu", None)),
                                          ("CUDA:1", ("cuda", 1)), ("mps:0", ("mps", 0)),
                                          (torch.device("cuda", 2), ("cuda", 2))])
def test_parse_device_reads_what_pytorch_accepts(name, parsed):
    assert parse_device(name) == parsed


@pytest.mark.parametrize("name", ["tpu", "", "cuda:", "cuda:x", "cuda:-1", "auto:0", "cpu:0:1"])
def test_parse_device_refuses_anything_else_by_name(name):
    with pytest.raises(DeviceError,
                       match=f"unknown device '{name}'; use auto, cpu, cuda, cuda:N or mps"):
        parse_device(name)


def test_adamw_decays_only_weight_matrices_and_adam_is_one_group():
    model = VisionTransformer(ViTConfig())
    names = {id(p): n for n, p in model.named_parameters()}
    decayed, plain = build_optimizer(model, Recipe(optimizer="adamw", weight_decay=0.05)).param_groups
    assert decayed["weight_decay"] == 0.05 and plain["weight_decay"] == 0.0
    decayed_names = {names[id(p)] for p in decayed["params"]}
    assert "blocks.0.attn.qkv.weight" in decayed_names and "head.weight" in decayed_names
    assert not any(k in n for n in decayed_names for k in ("bias", "norm", "pos_embed", "cls_token"))
    assert len(decayed["params"]) + len(plain["params"]) == len(names)
    (group,) = build_optimizer(model, Recipe()).param_groups      # the seed's plain Adam
    assert len(group["params"]) == len(names) and group["weight_decay"] == 0.0
    assert group["betas"] == (0.9, 0.999)                         # PyTorch's defaults, as the seed


def test_beta2_reaches_both_optimisers_and_is_checked():
    model = VisionTransformer(ViTConfig())
    for optimizer in ("adam", "adamw"):
        groups = build_optimizer(model, Recipe(optimizer=optimizer, beta2=0.95)).param_groups
        assert all(g["betas"] == (0.9, 0.95) for g in groups)
    for bad in (1.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match=r"beta2 must be in \[0, 1\), got"):
            Recipe(beta2=bad)


def test_lr_schedule_warmup_then_cosine():
    r = Recipe(schedule="cosine", warmup=0.1)
    factors = [lr_factor(s, 100, r) for s in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0) and factors[55] == pytest.approx(0.5, abs=0.01)
    assert all(a >= b for a, b in zip(factors[9:], factors[10:], strict=False))
    assert lr_factor(50, 100, Recipe()) == 1.0


def test_lr_schedule_warmup_then_linear_to_zero():
    r = Recipe(schedule="linear", warmup=0.1)
    factors = [lr_factor(s, 100, r) for s in range(100)]
    assert factors[:10] == pytest.approx([(s + 1) / 10 for s in range(10)])
    after = factors[10:]                                   # 1, 1 - 1/90, 1 - 2/90, ... 1/90
    assert after == pytest.approx([1 - k / 90 for k in range(90)])
    assert factors[30] < lr_factor(30, 100, Recipe(schedule="cosine", warmup=0.1))   # below the cosine
    with pytest.raises(ConfigError, match="schedule must be one of"):
        Recipe(schedule="step")


@pytest.mark.slow
def test_short_run_on_real_mnist_beats_an_untrained_model(data_dir):
    """20,000 real training digits, two epochs of the seed model: an untrained one scores ~10%."""
    seed_everything(0)
    preset = get_preset("seed-tuned")
    model = VisionTransformer(preset.model)
    train, test = get_loaders("mnist", 128, data_dir, normalize=True, train_subset=20_000,
                              download=False)
    untrained = evaluate(model, test)["accuracy"]
    recipe = Recipe(optimizer="adamw", lr=3e-3, weight_decay=0.05, batch_size=128, epochs=2,
                    schedule="cosine", warmup=0.1, normalize=True)
    history = fit(model, train, test, recipe, progress=False, log=None)
    assert untrained < 25
    assert history[-1]["test_accuracy"] > 85, history   # 90.8% measured


def test_resume_restores_the_fp16_gradient_scaler(tmp_path, monkeypatch):
    """On a CUDA GPU without bf16 (a T4, say) training uses fp16 with a GradScaler whose loss
    scale grows and backs off as it goes: a resumed run must carry it on. Rehearsed on the CPU
    with a CPU GradScaler (fp32 scaled by powers of two: the weights are unchanged by it)."""
    import contextlib

    from vit_lib import engine
    scalers = []

    def amp_with_scaler(device):
        scalers.append(torch.amp.GradScaler("cpu", growth_interval=3))
        return contextlib.nullcontext(), scalers[-1]
    monkeypatch.setattr(engine, "amp_context", amp_with_scaler)
    train, test = _loaders()
    seed_everything(0)
    fit(VisionTransformer(TINY), train, test, RECIPE, progress=False, log=None)
    expected = scalers[-1].state_dict()
    assert expected["scale"] == 65536.0 * 2 ** 8          # 24 steps, growth every 3
    seed_everything(0)
    with pytest.raises(KeyboardInterrupt):
        fit(VisionTransformer(TINY), StopAtEpoch(train, 2), test, RECIPE,
            checkpoint=tmp_path / "c.pt", progress=False, log=None)
    assert load_checkpoint(tmp_path / "c.pt")["scaler"]["scale"] == 65536.0 * 2 ** 4
    fit(VisionTransformer(TINY), train, test, RECIPE, checkpoint=tmp_path / "c.pt", resume=True,
        progress=False, log=None)
    assert scalers[-1].state_dict() == expected
