"""The output folder and the messages keep their word: --out is checked before any training,
a full disk ends with one `error:` line naming the file and the intact checkpoint, one training
per folder (a lock the OS drops when its holder dies), evaluate prints before it plots, true
messages on Ctrl-C and SIGTERM, and only user errors lose their traceback.
In-process runs on small synthetic data (tests/cli_fakes.py)."""
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from cli_fakes import N_TEST, evaluate, train

from vit_lib.cli import common as cli
from vit_lib.cli.common import Terminated, output_lock, run_cli
from vit_lib.config import ConfigError
from vit_lib.data import DamagedDataError, DataNotFoundError
from vit_lib.engine import TrainingDivergedError
from vit_lib.machinery.checkpoint import CheckpointError, load_checkpoint
from vit_lib.machinery.errors import OutputError, RunInUseError, UserError
from vit_lib.machinery.runtime import DeviceError

ROOT = Path(__file__).resolve().parent.parent


def test_every_project_error_is_a_user_error():
    for cls in (ConfigError, DataNotFoundError, DamagedDataError, DeviceError, CheckpointError,
                TrainingDivergedError, OutputError, RunInUseError):
        assert issubclass(cls, UserError), cls
    assert issubclass(ConfigError, ValueError) and issubclass(OutputError, OSError)


def test_only_user_errors_lose_their_traceback(capsys):
    def user_mistake(argv):
        raise ConfigError("lr must be positive")

    def bug(argv):
        raise ValueError("a bug deep inside torch")

    def exists(argv):
        raise FileExistsError("a bug, not a run folder in use")
    assert run_cli(user_mistake, []) == 2
    assert capsys.readouterr().err == "error: lr must be positive\n"
    with pytest.raises(ValueError, match="a bug deep inside torch"):   # not swallowed
        run_cli(bug, [])
    with pytest.raises(FileExistsError):
        run_cli(exists, [])


@pytest.mark.parametrize("argv, message", [
    (["--lr", "inf"], "argument --lr: must be a positive finite number, got inf"),
    (["--lr", "nan"], "argument --lr: must be a positive finite number, got nan"),
    (["--seed", "-1"], "argument --seed: must be between 0 and 4294967295, got -1"),
    (["--seed", str(2**64)], "argument --seed: must be between 0 and 4294967295"),
    (["--out", ""], "argument --out: is empty; give a file or folder name"),
    (["--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
    (["--resume", "--overwrite"], "argument --overwrite: not allowed with argument --resume"),
])
def test_nonsense_values_are_refused_by_name(argv, message, capsys, tmp_path, fake_data):
    result = train(capsys, *(["--out", tmp_path / "r"] if "--out" not in argv else []), *argv)
    assert result.code == 2 and message in result.err and "Traceback" not in result.err


def test_train_subset_larger_than_the_dataset_is_refused(tmp_path, capsys, fake_data):
    result = train(capsys, "--train-subset", "100000", "--out", tmp_path / "r")
    assert result.code == 2
    assert "error: --train-subset 100000 is more than the 192 training images of mnist" in result.err


@pytest.mark.parametrize("where", ["under a file", "is a file"])
def test_unusable_out_is_refused_before_any_data_or_training(where, tmp_path, capsys, fake_data):
    (tmp_path / "notes.txt").write_text("a regular file")
    out = tmp_path / "notes.txt" / "run" if where == "under a file" else tmp_path / "notes.txt"
    result = train(capsys, "--out", out)
    assert result.code == 2 and len(result.error_lines) == 1, result.err
    assert str(out) in result.err and "choose another --out" in result.err
    assert fake_data.calls == []                        # failed before loading anything


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_refused_before_training(tmp_path, capsys, fake_data):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        result = train(capsys, "--out", folder / "run")
    finally:
        folder.chmod(0o700)
    assert result.code == 2 and "cannot write into the output folder" in result.err
    assert fake_data.calls == []


def test_full_disk_while_writing_a_checkpoint(tmp_path, capsys, fake_data, monkeypatch):
    out = tmp_path / "run"
    real_fsync, calls = os.fsync, []

    def fsync(fd):
        calls.append(fd)
        if len(calls) == 2:                             # the checkpoint of epoch 2
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)
    monkeypatch.setattr(os, "fsync", fsync)
    result = train(capsys, "--epochs", "3", "--out", out)
    assert result.code == 2 and "Traceback" not in result.err
    assert result.err.count("\n") == 1 and len(result.error_lines) == 1, result.err
    assert (f"error: epoch 2 finished but could not write {out / 'checkpoint.pt'} (No space left "
            "on device); the last good checkpoint (epoch 1) is intact: free some space or fix "
            f"{out}, then continue with --resume") in result.err
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 1
    assert sorted(p.name for p in out.iterdir()) == [".lock", "checkpoint.pt"]   # no temp file
    monkeypatch.setattr(os, "fsync", real_fsync)
    resumed = train(capsys, "--out", out, "--resume")
    assert resumed.code == 0 and load_checkpoint(out / "checkpoint.pt")["epoch"] == 3


def test_full_disk_while_writing_metrics(tmp_path, capsys, fake_data, monkeypatch):
    out = tmp_path / "run"
    real = Path.write_text

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(Path, "write_text", full)
    result = train(capsys, "--epochs", "1", "--out", out)
    assert result.code == 2 and len(result.error_lines) == 1, result.err
    assert (f"error: could not write {out / 'metrics.json'} (No space left on device); "
            f"{out / 'checkpoint.pt'} holds the finished run and is intact") in result.err
    assert "run the same command with --resume to write metrics.json and curves.png" in result.err
    monkeypatch.setattr(Path, "write_text", real)
    assert not (out / "metrics.json").exists() and not list(out.glob(".*partial*"))
    again = train(capsys, "--out", out, "--resume")
    assert again.code == 0 and "wrote the missing metrics.json, curves.png" in again.out
    assert json.loads((out / "metrics.json").read_text())["epochs"] == 1


def test_a_second_training_on_the_same_folder_is_refused(tmp_path, capsys, fake_data):
    out = tmp_path / "run"
    out.mkdir()
    with output_lock(out):                              # a first training holds the folder
        refused = train(capsys, "--out", out)
        assert refused.code == 2
        assert f"error: {out} is in use by another training (pid {os.getpid()}" in refused.err
        assert fake_data.calls == []
    assert train(capsys, "--epochs", "1", "--out", out).code == 0    # released on exit


def test_a_killed_run_does_not_keep_the_folder_locked(tmp_path, capsys, fake_data):
    out = tmp_path / "run"
    out.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; "
         "from vit_lib.cli.common import output_lock\n"
         f"with output_lock(Path({str(out)!r})):\n print('locked', flush=True); time.sleep(120)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        refused = train(capsys, "--out", out)
        assert refused.code == 2 and f"(pid {holder.pid}" in refused.err
    finally:
        holder.kill()                                   # SIGKILL: no clean-up runs
        holder.wait()
    assert (out / ".lock").read_text().strip() == str(holder.pid)      # the stale file is there
    assert train(capsys, "--epochs", "1", "--out", out).code == 0      # and does not block


@pytest.mark.parametrize("interrupt, code, said", [
    (KeyboardInterrupt(), 130, "interrupted (Ctrl-C)"), (Terminated(), 143, "stopped by SIGTERM")])
def test_interrupt_before_the_first_checkpoint_claims_none(interrupt, code, said, tmp_path,
                                                           capsys, fake_data):
    fake_data.interrupt_at, fake_data.interrupt = 0, interrupt
    result = train(capsys, "--epochs", "3", "--out", tmp_path / "run")
    assert result.code == code
    assert result.err == (f"{said}: no epoch had finished, so no checkpoint was written: run the "
                          "same command again to start over\n")
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


@pytest.mark.parametrize("interrupt, code", [(KeyboardInterrupt(), 130), (Terminated(), 143)])
def test_interrupt_after_an_epoch_names_the_saved_epoch(interrupt, code, tmp_path, capsys,
                                                        fake_data):
    out = tmp_path / "run"
    fake_data.interrupt_at, fake_data.interrupt = 2, interrupt
    result = train(capsys, "--epochs", "3", "--out", out)
    assert result.code == code
    assert (f"{out / 'checkpoint.pt'} holds epoch 2 of 3; continue with: python -m "
            f"vit_lib train --out {out} --resume") in result.err
    fake_data.interrupt_at = None
    assert train(capsys, "--out", out, "--resume").code == 0


def test_sigterm_handler_is_installed_only_while_the_cli_runs():
    import signal
    before = signal.getsignal(signal.SIGTERM)
    seen = []
    run_cli(lambda argv: seen.append(signal.getsignal(signal.SIGTERM)) or 0, [])
    assert seen[0] is not before and signal.getsignal(signal.SIGTERM) is before


def _python_checkpoint(path: Path, extra=None) -> None:
    from cli_fakes import synthetic

    from vit_lib.data import TensorLoader
    from vit_lib.engine import fit
    from vit_lib.model import VisionTransformer
    from vit_lib.presets import get_preset
    preset = get_preset("seed")
    tr = TensorLoader(*synthetic("mnist", 64, 0), 64, shuffle=True)
    te = TensorLoader(*synthetic("mnist", 64, 1), 64)
    fit(VisionTransformer(preset.model), tr, te, preset.recipe, epochs=1, checkpoint=path,
        progress=False, log=None, extra=extra)


def test_evaluate_reads_only_the_test_split_and_accepts_a_run_folder(tmp_path, capsys, fake_data):
    out = tmp_path / "run"
    assert train(capsys, "--epochs", "1", "--out", out).code == 0
    fake_data.calls.clear()
    result = evaluate(capsys, "--checkpoint", out)      # the folder, not the file
    assert result.code == 0, result.err
    assert fake_data.calls == [("test", "mnist")]
    assert "mnist test accuracy:" in result.out and f"/{N_TEST}), loss" in result.out
    assert (out / "confusion_matrix.png").stat().st_size > 5_000


def test_evaluate_prints_the_accuracy_before_a_plot_it_cannot_write(tmp_path, capsys, fake_data):
    _python_checkpoint(tmp_path / "c.pt", extra={"dataset": "mnist"})
    (tmp_path / "file").write_text("not a folder")
    bad = tmp_path / "file" / "cm.png"
    result = evaluate(capsys, "--checkpoint", tmp_path / "c.pt", "--out", bad)
    assert result.code == 2
    assert result.out.startswith("mnist test accuracy: ") and "confusion matrix:" not in result.out
    assert len(result.error_lines) == 1 and str(bad) in result.err
    assert "the accuracy above is complete: choose another --out" in result.err


def test_evaluate_a_python_checkpoint_without_extra(tmp_path, capsys, fake_data):
    _python_checkpoint(tmp_path / "c.pt")
    refused = evaluate(capsys, "--checkpoint", tmp_path / "c.pt")
    assert refused.code == 2 and "Traceback" not in refused.err
    assert "does not record which dataset it was trained on" in refused.err
    assert "pass --dataset mnist or fashion-mnist (its model takes 28x28x1 images" in refused.err
    done = evaluate(capsys, "--checkpoint", tmp_path / "c.pt", "--dataset", "mnist")
    assert done.code == 0 and "mnist test accuracy:" in done.out, done.err


def test_evaluate_refuses_a_dataset_the_model_cannot_read(tmp_path, capsys, fake_data):
    _python_checkpoint(tmp_path / "c.pt", extra={"dataset": "mnist"})
    wrong = evaluate(capsys, "--checkpoint", tmp_path / "c.pt", "--dataset", "cifar10")
    assert wrong.code == 2 and "takes 28x28x1 images and predicts 10 classes, but cifar10 has " \
        "32x32x3 images" in wrong.err
    other = evaluate(capsys, "--checkpoint", tmp_path / "c.pt", "--dataset", "fashion-mnist")
    assert other.code == 0 and "note: " in other.out and "trained on mnist; evaluating it on " \
        "fashion-mnist" in other.out
    fmt = evaluate(capsys, "--checkpoint", tmp_path / "c.pt", "--out", tmp_path / "cm.txt")
    assert fmt.code == 2 and "cannot tell the image format from its name" in fmt.err


def test_ctrl_c_during_evaluate_does_not_mention_resume(tmp_path, capsys, fake_data, monkeypatch):
    from vit_lib.cli import evaluate as evaluate_cli
    _python_checkpoint(tmp_path / "c.pt", extra={"dataset": "mnist"})

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(evaluate_cli, "evaluate", interrupted)
    result = evaluate(capsys, "--checkpoint", tmp_path / "c.pt")
    assert result.code == 130
    assert result.err == "interrupted (Ctrl-C): the evaluation was stopped; nothing was written\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_requested_without_a_gpu(tmp_path, capsys, fake_data):
    for result in (train(capsys, "--device", "cuda", "--out", tmp_path / "r"),
                   evaluate(capsys, "--checkpoint", tmp_path / "x.pt", "--device", "cuda")):
        assert result.code == 2 and "error: device 'cuda' was requested but PyTorch sees no " \
            "CUDA GPU here" in result.err
    assert not (tmp_path / "r").exists()


def test_interrupted_raised_while_handling_sigterm_reports_sigterm(capsys):
    def main(argv):
        try:
            raise Terminated()
        except KeyboardInterrupt:
            raise cli.Interrupted("half the work was saved") from None
    assert run_cli(main, []) == 143
    assert capsys.readouterr().err == "stopped by SIGTERM: half the work was saved\n"


def test_evaluate_out_may_be_a_folder(tmp_path, capsys, fake_data):
    _python_checkpoint(tmp_path / "c.pt", extra={"dataset": "mnist"})
    (tmp_path / "figures").mkdir()
    result = evaluate(capsys, "--checkpoint", tmp_path / "c.pt", "--out", tmp_path / "figures")
    assert result.code == 0 and (tmp_path / "figures" / "confusion_matrix.png").is_file()


def test_a_hand_made_checkpoint_names_what_it_lacks(tmp_path, capsys, fake_data):
    from vit_lib.machinery.checkpoint import save_checkpoint
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", {"format": 1, "model": {}})
    for result in (evaluate(capsys, "--checkpoint", tmp_path / "run"),
                   train(capsys, "--out", tmp_path / "run", "--resume")):
        assert result.code == 2 and "Traceback" not in result.err
        assert "lacks" in result.err and "config" in result.err and "recipe" in result.err
