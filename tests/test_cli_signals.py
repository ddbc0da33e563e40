"""A real `python -m vit_lib train` stopped by SIGINT (Ctrl-C), SIGTERM (`timeout`, `docker stop`,
job schedulers) or SIGKILL during its second epoch, then continued with --resume, ends with
exactly the weights of an uninterrupted run; SIGINT and SIGTERM say which epoch was kept."""
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from vit_lib.machinery.checkpoint import load_checkpoint

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--preset", "seed-tuned", "--epochs", "3", "--train-subset", "3000", "--no-download",
        "--no-progress"]   # cosine schedule and random shifts: both must be restored exactly
_reference: dict[str, dict[str, torch.Tensor]] = {}


def _train(out: Path, data_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "vit_lib.cli.train", *ARGS, "--data-dir", str(data_dir), "--out",
         str(out), *extra], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a shell may start background jobs with SIGINT ignored; a terminal user's Ctrl-C is not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _uninterrupted(tmp_path: Path, data_dir: Path) -> dict[str, torch.Tensor]:
    if "weights" not in _reference:
        run = _train(tmp_path / "reference", data_dir)
        _, err = run.communicate(timeout=600)
        assert run.returncode == 0, err
        _reference["weights"] = load_checkpoint(tmp_path / "reference" / "checkpoint.pt")["model"]
    return _reference["weights"]


@pytest.mark.slow
@pytest.mark.parametrize("sig, code, said", [
    (signal.SIGINT, 130, "interrupted (Ctrl-C): "), (signal.SIGTERM, 143, "stopped by SIGTERM: "),
    (signal.SIGKILL, -signal.SIGKILL, None)])
def test_a_signal_mid_epoch_then_resume_gives_the_exact_weights(sig, code, said, tmp_path,
                                                                data_dir):
    expected = _uninterrupted(tmp_path, data_dir)
    out = tmp_path / "run"
    run = _train(out, data_dir)
    deadline = time.monotonic() + 600
    while not (out / "checkpoint.pt").exists():         # epoch 1 is saved: epoch 2 is running
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()
        time.sleep(0.02)
    run.send_signal(sig)
    _, err = run.communicate(timeout=120)
    assert run.returncode == code, err
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] < 3, "the run ended before the signal"
    if said is not None:
        assert err.startswith(said) and "Traceback" not in err, err
        assert re.search(rf"{re.escape(str(out / 'checkpoint.pt'))} holds epoch [12] of 3; "
                         rf"continue with: python -m vit_lib train --out {re.escape(str(out))} "
                         "--resume", err), err
    resumed = _train(out, data_dir, "--resume")
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err
    weights = load_checkpoint(out / "checkpoint.pt")["model"]
    for name, tensor in expected.items():
        assert torch.equal(weights[name], tensor), name
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
