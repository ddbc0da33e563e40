"""fit_or_reuse: a finished run is loaded instead of trained again, exactly as training leaves it."""
from __future__ import annotations

import pytest
import torch
from test_engine import RECIPE, TINY, StopAtEpoch, _loaders
from torch import nn

from vit_lib.engine import fit
from vit_lib.machinery import run_cache
from vit_lib.machinery.checkpoint import load_checkpoint
from vit_lib.machinery.run_cache import cache_dir, fit_or_reuse, run_fingerprint
from vit_lib.machinery.runtime import seed_everything
from vit_lib.model import VisionTransformer


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv("VIT_CACHE_DIR", str(folder))
    return folder


def _run(recipe=RECIPE, seed=0, loaders=None, **kwargs):
    """A fresh seeded model trained (or reused) with fit_or_reuse; the log lines it printed."""
    seed_everything(seed)
    model = VisionTransformer(TINY)
    train, test = loaders or _loaders()
    lines: list[str] = []
    history = fit_or_reuse(model, train, test, recipe, progress=False, log=lines.append, **kwargs)
    return model, history, lines, train


def test_the_second_call_reuses_the_run_and_leaves_everything_as_training_would(cache, monkeypatch):
    model, history, lines, train = _run()
    after_training = torch.get_rng_state()
    assert len(lines) == RECIPE.epochs and not lines[0].startswith("reused")
    assert [p.name for p in cache.iterdir()] and all(not p.name.endswith(".partial.pt")
                                                     for p in cache.iterdir())

    def no_training(*args, **kwargs):
        raise AssertionError("a cached run must not train again")

    monkeypatch.setattr("vit_lib.engine.train_one_epoch", no_training)
    again, history_again, lines_again, train_again = _run()
    assert lines_again[0].startswith("reused the finished run in " + str(cache))
    assert lines_again[1:] == lines                       # the stored epoch lines, as printed
    assert history_again == history
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name
    assert torch.equal(torch.get_rng_state(), after_training)   # dropout draws continue the same
    assert train_again.epoch == train.epoch == RECIPE.epochs - 1


def test_anything_that_changes_the_weights_is_a_new_run(cache):
    _run()
    _, _, lines, _ = _run(seed=1)                                  # other initial weights
    assert not lines[0].startswith("reused")
    _, _, lines, _ = _run(recipe=RECIPE.__class__(**{**RECIPE.to_dict(), "lr": 1e-3}))
    assert not lines[0].startswith("reused")
    _, _, lines, _ = _run(epochs=2)
    assert not lines[0].startswith("reused") and len(lines) == 2
    assert len(list(cache.glob("*.pt"))) == 4
    seed_everything(0)
    model = VisionTransformer(TINY)
    train, test = _loaders()
    key = run_fingerprint(model, train, test, RECIPE, RECIPE.epochs)
    train.batch_size = 32
    assert run_fingerprint(model, train, test, RECIPE, RECIPE.epochs) != key
    train.batch_size = 16
    train.images = train.images.flip(0)
    assert run_fingerprint(model, train, test, RECIPE, RECIPE.epochs) != key


def test_an_interrupted_run_resumes_and_ends_as_an_uninterrupted_one(cache):
    seed_everything(0)
    reference = VisionTransformer(TINY)
    train, test = _loaders()
    fit(reference, train, test, RECIPE, progress=False, log=None)

    train, test = _loaders()
    with pytest.raises(KeyboardInterrupt):
        _run(loaders=(StopAtEpoch(train, 2), test))
    partial = list(cache.glob("*.partial.pt"))
    assert len(partial) == 1 and load_checkpoint(partial[0])["epoch"] == 2
    model, history, lines, _ = _run()
    assert [r["epoch"] for r in history] == [1, 2, 3, 4] and len(lines) == 2   # epochs 3 and 4
    assert not list(cache.glob("*.partial.pt"))
    for name, tensor in reference.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name


def test_checkpoint_gets_a_copy_of_the_run_both_times(cache, tmp_path):
    first = tmp_path / "a" / "run.pt"
    _run(checkpoint=first, extra={"dataset": "toy"})
    second = tmp_path / "b" / "run.pt"
    _, _, lines, _ = _run(checkpoint=second, extra={"dataset": "toy", "lesson": 6})
    assert lines[0].startswith("reused")                  # extra facts: the same run
    a, b = load_checkpoint(first), load_checkpoint(second)
    assert a["extra"] == {"dataset": "toy"} and b["extra"] == {"dataset": "toy", "lesson": 6}
    assert a["epoch"] == b["epoch"] == 4 and a["history"] == b["history"]
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_a_run_stopped_early_is_reused_with_its_epochs(cache):
    _, history, _, _ = _run(stop_at_accuracy=0.0)          # stops after epoch 1
    assert len(history) == 1
    _, again, lines, _ = _run(stop_at_accuracy=0.0)
    assert lines[0].startswith("reused") and again == history


class Wrapped:
    """A loader of another kind (it serves a TensorLoader's batches)."""

    def __init__(self, inner):
        self.inner = inner

    def set_epoch(self, epoch: int) -> None:
        self.inner.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.inner)

    def __iter__(self):
        return iter(self.inner)


def test_off_unreadable_source_or_other_loaders_train_without_a_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VIT_CACHE_DIR", "off")
    assert cache_dir() is None
    _run()
    _, _, lines, _ = _run()
    assert not lines[0].startswith("reused")

    monkeypatch.setenv("VIT_CACHE_DIR", str(tmp_path / "c"))
    seed_everything(0)
    model = VisionTransformer(TINY)
    model.extra = type("Made", (nn.Module,), {"forward": lambda self, x: x})()  # no source file
    train, test = _loaders()
    assert run_fingerprint(model, train, test, RECIPE, 4) is None
    loader = Wrapped(train)                         # not a TensorLoader: no fingerprint
    assert run_fingerprint(VisionTransformer(TINY), loader, test, RECIPE, 4) is None
    fit_or_reuse(VisionTransformer(TINY), loader, test, RECIPE, epochs=1, progress=False, log=None)
    assert not (tmp_path / "c").exists()


def test_the_default_folder_follows_xdg_cache_home(monkeypatch, tmp_path):
    monkeypatch.delenv("VIT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert run_cache.cache_dir() == tmp_path / "vit-from-scratch"


def test_a_cnn_with_batchnorm_is_reused_with_its_running_statistics(cache):
    from vit_lib.cnn import CNNConfig, ConvNet

    def run():
        seed_everything(0)
        model = ConvNet(CNNConfig(widths=(4, 8), num_classes=2))
        train, test = _loaders()
        lines: list[str] = []
        fit_or_reuse(model, train, test, RECIPE, epochs=2, progress=False, log=lines.append)
        return model, lines

    trained, lines = run()
    reused, lines_again = run()
    assert lines_again[0].startswith("reused") and lines_again[1:] == lines
    state = reused.state_dict()
    assert any(name.endswith("num_batches_tracked") for name in state)
    for name, tensor in trained.state_dict().items():
        assert torch.equal(tensor, state[name]), name
