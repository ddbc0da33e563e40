"""`vit_lib.cli.train --resume` keeps its word: every flag given with it is honoured or refused by
name, an extended constant-schedule run equals an uninterrupted one, a finished run is left alone,
and a diverged run can be retried from the command line (--lr, --grad-clip, --overwrite).
In-process runs on small synthetic data (tests/cli_fakes.py): each takes well under a second."""
import json

import pytest
import torch
from cli_fakes import train

from vit_lib.machinery.checkpoint import load_checkpoint


def weights(run_dir):
    return load_checkpoint(run_dir / "checkpoint.pt")["model"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_extending_a_constant_schedule_equals_an_uninterrupted_run(tmp_path, capsys, fake_data):
    assert train(capsys, "--preset", "seed", "--epochs", "3", "--out", tmp_path / "full").code == 0
    assert train(capsys, "--preset", "seed", "--epochs", "2", "--out", tmp_path / "ext").code == 0
    extended = train(capsys, "--out", tmp_path / "ext", "--resume", "--epochs", "3")
    assert extended.code == 0, extended.err
    assert "epochs: 2 -> 3 from epoch 3 (constant schedule: it continues unchanged" in extended.out
    assert_same_weights(weights(tmp_path / "ext"), weights(tmp_path / "full"))
    full = json.loads((tmp_path / "full" / "metrics.json").read_text())
    ext = json.loads((tmp_path / "ext" / "metrics.json").read_text())
    assert ext["epochs"] == 3 and [r["epoch"] for r in ext["history"]] == [1, 2, 3]
    assert [r["test_loss"] for r in ext["history"]] == [r["test_loss"] for r in full["history"]]


def test_extending_a_cosine_schedule_says_how_the_lr_continues(tmp_path, capsys, fake_data):
    out = tmp_path / "run"
    assert train(capsys, "--preset", "seed-tuned", "--epochs", "2", "--out", out).code == 0
    decayed = load_checkpoint(out / "checkpoint.pt")["history"][-1]["lr"]
    extended = train(capsys, "--out", out, "--resume", "--epochs", "4")
    assert extended.code == 0, extended.err
    assert "the cosine schedule is recomputed for 4 epochs" in extended.out
    history = load_checkpoint(out / "checkpoint.pt")["history"]
    assert len(history) == 4 and history[2]["lr"] > decayed      # the lr rose again
    assert history[3]["lr"] < history[2]["lr"]                   # and decays to the new end


def test_resuming_a_finished_run_changes_nothing(tmp_path, capsys, fake_data):
    out = tmp_path / "run"
    assert train(capsys, "--epochs", "2", "--out", out).code == 0
    before = {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("[!.]*")}
    again = train(capsys, "--out", out, "--resume")
    assert again.code == 0, again.err
    assert "holds a finished run (2 of 2 epochs" in again.out and "nothing changed" in again.out
    assert "--resume --epochs N (N > 2)" in again.out
    assert {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in out.glob("[!.]*")} == before


def test_resuming_a_finished_run_writes_only_its_missing_files(tmp_path, capsys, fake_data):
    """A run killed (or out of disk) after its last checkpoint gets metrics.json / curves.png."""
    out = tmp_path / "run"
    assert train(capsys, "--epochs", "1", "--out", out).code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    (out / "metrics.json").unlink()
    ckpt = (out / "checkpoint.pt").stat().st_mtime_ns
    again = train(capsys, "--out", out, "--resume")
    assert again.code == 0 and "wrote the missing metrics.json" in again.out, again.err
    rewritten = json.loads((out / "metrics.json").read_text())
    assert rewritten["history"] == metrics["history"] and rewritten["params"] == 14_410
    assert (out / "checkpoint.pt").stat().st_mtime_ns == ckpt


@pytest.mark.parametrize("flag, value, stored", [
    ("--preset", "seed-tuned", "seed"), ("--dataset", "fashion-mnist", "mnist"),
    ("--seed", "1", "0"), ("--batch-size", "32", "64"), ("--patch-size", "4", "7"),
    ("--stem", "conv", "linear"), ("--train-subset", "100", "None"),
])
def test_resume_refuses_a_flag_that_would_change_the_run(flag, value, stored, tmp_path, capsys,
                                                         fake_data):
    out = tmp_path / "run"
    assert train(capsys, "--epochs", "1", "--out", out).code == 0
    before = (out / "checkpoint.pt").read_bytes()
    refused = train(capsys, "--out", out, "--resume", "--epochs", "2", flag, value)
    assert refused.code == 2 and len(refused.error_lines) == 1, refused.err
    assert f"error: {flag} {value} differs from the run in" in refused.err
    assert f"({stored}); a resumed run keeps it: drop {flag}" in refused.err
    assert (out / "checkpoint.pt").read_bytes() == before


def test_resume_accepts_flags_that_repeat_the_run(tmp_path, capsys, fake_data):
    out = tmp_path / "run"
    assert train(capsys, "--epochs", "1", "--train-subset", "128", "--out", out).code == 0
    again = train(capsys, "--out", out, "--resume", "--epochs", "2", "--preset", "seed",
                  "--dataset", "MNIST", "--seed", "0", "--batch-size", "64", "--patch-size", "7",
                  "--stem", "linear", "--train-subset", "128")
    assert again.code == 0, again.err
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 2


def test_resume_refuses_fewer_epochs_than_trained(tmp_path, capsys, fake_data):
    out = tmp_path / "run"
    assert train(capsys, "--epochs", "2", "--out", out).code == 0
    refused = train(capsys, "--out", out, "--resume", "--epochs", "1")
    assert refused.code == 2
    assert "error: --epochs 1 is fewer than the 2 epochs" in refused.err
    finished = train(capsys, "--out", out, "--resume", "--lr", "1e-4")
    assert finished.code == 2 and "finished run (2 of 2 epochs), so --lr has nothing" in finished.err


def test_a_diverged_run_can_be_continued_with_a_lower_lr(tmp_path, capsys, fake_data):
    out = tmp_path / "run"
    fake_data.nan_at = 1                                  # epoch 2 diverges
    diverged = train(capsys, "--epochs", "3", "--out", out)
    assert diverged.code == 2 and "Traceback" not in diverged.err
    assert "error: epoch 2: the loss became nan at step 1" in diverged.err
    assert "--grad-clip 1.0" in diverged.err              # the remedies it names...
    assert "holds epoch 1, the last good one: continue from it with --resume --lr 0.00033" \
        in diverged.err
    assert "or start again with --overwrite --lr 0.00033" in diverged.err
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1

    fake_data.nan_at = None                               # ...are all doable from the CLI
    resumed = train(capsys, "--out", out, "--resume", "--lr", "0.00033", "--grad-clip", "1.0")
    assert resumed.code == 0, resumed.err
    assert "lr: 0.001 -> 0.00033 from epoch 2" in resumed.out
    assert "grad_clip: 0.0 -> 1.0 from epoch 2" in resumed.out
    state = load_checkpoint(out / "checkpoint.pt")
    assert [r["lr"] for r in state["history"]] == [1e-3, 0.00033, 0.00033]
    assert state["recipe"]["lr"] == 0.00033 and state["recipe"]["grad_clip"] == 1.0


def test_overwrite_starts_a_diverged_run_again_with_a_new_lr(tmp_path, capsys, fake_data):
    out = tmp_path / "run"
    assert train(capsys, "--epochs", "2", "--out", out).code == 0
    (out / "confusion_matrix.png").write_bytes(b"old")
    refused = train(capsys, "--epochs", "2", "--out", out)
    assert refused.code == 2 and "already holds a run (checkpoint.pt, metrics.json); pass " \
        "--resume to continue it, --overwrite to replace it" in refused.err
    again = train(capsys, "--epochs", "1", "--lr", "3e-4", "--out", out, "--overwrite")
    assert again.code == 0, again.err
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 1 and state["recipe"]["lr"] == 3e-4
    assert not (out / "confusion_matrix.png").exists()    # no figure of the old run is left


def test_divergence_in_the_first_epoch_says_nothing_was_saved(tmp_path, capsys, fake_data):
    fake_data.nan_at = 0
    diverged = train(capsys, "--epochs", "2", "--out", tmp_path / "run")
    assert diverged.code == 2
    assert "no epoch finished, so no checkpoint was written: run the same command again with " \
        "--lr 0.00033" in diverged.err


def test_grad_clip_flag_sets_the_recipe(tmp_path, capsys, fake_data):
    out = tmp_path / "run"
    assert train(capsys, "--epochs", "1", "--grad-clip", "0.5", "--out", out).code == 0
    assert load_checkpoint(out / "checkpoint.pt")["recipe"]["grad_clip"] == 0.5
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["recipe"]["grad_clip"] == 0.5
    bad = train(capsys, "--grad-clip", "-1", "--out", tmp_path / "x")
    assert bad.code == 2 and "argument --grad-clip: must be a finite number >= 0" in bad.err


def test_python_checkpoint_without_extra_resumes_with_dataset_and_seed(tmp_path, capsys,
                                                                      fake_data):
    from cli_fakes import synthetic

    from vit_lib.data import TensorLoader
    from vit_lib.engine import fit
    from vit_lib.machinery.runtime import seed_everything
    from vit_lib.model import VisionTransformer
    from vit_lib.presets import get_preset
    out = tmp_path / "run"
    preset = get_preset("seed", epochs=2)
    seed_everything(0)
    tr = TensorLoader(*synthetic("mnist", 192, 0), 64, shuffle=True, seed=0)
    te = TensorLoader(*synthetic("mnist", 64, 1), 1000)
    fit(VisionTransformer(preset.model), tr, te, preset.recipe, epochs=1,
        checkpoint=out / "checkpoint.pt", progress=False, log=None)     # no extra
    refused = train(capsys, "--out", out, "--resume")
    assert refused.code == 2 and "Traceback" not in refused.err
    assert "does not record its dataset and seed (it was written by fit() without extra=" \
        in refused.err and "pass --dataset and --seed" in refused.err
    resumed = train(capsys, "--out", out, "--resume", "--dataset", "mnist", "--seed", "0",
                    "--epochs", "2")
    assert resumed.code == 0, resumed.err
    assert load_checkpoint(out / "checkpoint.pt")["extra"]["dataset"] == "mnist"


def test_epochs_equal_to_those_trained_on_an_unfinished_run_is_refused(tmp_path, capsys, fake_data):
    out = tmp_path / "run"
    fake_data.interrupt_at = 2
    assert train(capsys, "--epochs", "4", "--out", out).code == 130
    fake_data.interrupt_at = None
    refused = train(capsys, "--out", out, "--resume", "--epochs", "2")
    assert refused.code == 2 and "--epochs 2 asks for the 2 epochs" in refused.err
    assert "leave --epochs out to finish the 4 planned" in refused.err


def test_files_left_by_a_kill_mid_write_are_cleaned_up(tmp_path, capsys, fake_data):
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoint.pt.abc123.tmp").write_bytes(b"half")
    (out / ".metrics.partial.json").write_text("{")
    assert train(capsys, "--epochs", "1", "--out", out).code == 0
    assert sorted(p.name for p in out.iterdir()) == [".lock", "checkpoint.pt", "curves.png",
                                                     "metrics.json"]


def test_stem_flag_builds_a_conv_stem_and_a_resume_keeps_it(tmp_path, capsys, fake_data):
    out = tmp_path / "run"
    first = train(capsys, "--epochs", "1", "--patch-size", "4", "--stem", "conv", "--out", out)
    assert first.code == 0, first.err
    assert "ViT (4x4 patches, width 16, 4 blocks, conv stem)" in first.out
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["config"]["stem"] == "conv" and "patch_embed.convs.0.0.weight" in state["model"]
    again = train(capsys, "--out", out, "--resume", "--epochs", "2", "--stem", "conv")
    assert again.code == 0, again.err
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 2
