"""The command-line tools: a real end-to-end run, resume, evaluate, and one clear message per
bad input (exit code 2, no traceback)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)


def assert_clean_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


@pytest.mark.parametrize("args, fragments", [
    (["--preset", "huge"], ["error: unknown preset 'huge'; choose one of seed, seed-tuned, seed-speedrun, best"]),
    (["--dataset", "imagenet"], ["error: unknown dataset 'imagenet'; choose one of mnist"]),
    (["--patch-size", "6"],
     ["error: patch_size 6 does not divide image_size 28; try one of 2, 4, 7, 14"]),
    (["--stem", "conv"], ["error: stem 'conv' halves the image once per layer", "--patch-size 4",
                          "--stem linear"]),
    (["--stem", "cnn"], ["argument --stem: invalid choice: 'cnn'"]),
    (["--preset", "cnn-tiny", "--stem", "conv"], ["error: preset 'cnn-tiny' builds a CNNConfig, "
                                                  "which has no --stem"]),
    (["--batch-size", "0"], ["argument --batch-size: must be at least 1, got 0"]),
    (["--lr", "fast"], ["argument --lr: 'fast' is not a number"]),
    (["--device", "cuda"] if not __import__("torch").cuda.is_available() else ["--device", "tpu"],
     ["error: device"]),
    (["--grad-clip", "x"], ["argument --grad-clip: 'x' is not a number"]),
    (["--seed", "1.5"], ["argument --seed: '1.5' is not a whole number"]),
    (["--cuda-graph", "--device", "cpu"], ["error: CUDA graphs need a CUDA GPU, and this run "
                                           "trains on cpu; drop --cuda-graph"]),
])
def test_train_rejects_bad_arguments(args, fragments, tmp_path):
    assert_clean_error(run("vit_lib.cli.train", "--out", str(tmp_path / "r"), "--no-download", *args),
                       *fragments)


def test_train_without_data_offline_explains_where_to_put_it(tmp_path):
    result = run("vit_lib.cli.train", "--out", str(tmp_path / "r"), "--no-download",
                 "--data-dir", str(tmp_path / "nowhere"))
    assert_clean_error(result, "error: mnist: dataset not found in", "train-images-idx3-ubyte",
                       "VIT_DATA_DIR")


def test_resume_without_checkpoint_and_evaluate_of_missing_file(tmp_path):
    assert_clean_error(run("vit_lib.cli.train", "--out", str(tmp_path / "r"), "--resume"),
                       "error: no checkpoint at", "train first")
    assert not (tmp_path / "r").exists()     # nothing created for a run that is not there
    assert_clean_error(run("vit_lib.cli.evaluate", "--checkpoint", str(tmp_path / "x.pt")),
                       "error: no checkpoint at")


@pytest.mark.slow
def test_train_resume_and_evaluate_end_to_end(tmp_path, data_dir):
    out = tmp_path / "run"
    common = ["--data-dir", str(data_dir), "--no-download", "--no-progress"]
    first = run("vit_lib.cli.train", "--preset", "seed-tuned", "--epochs", "2", "--train-subset", "3000",
                "--out", str(out), *common)
    assert first.returncode == 0, first.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"test_accuracy", "train_seconds", "params", "history"} <= set(metrics)
    assert metrics["params"] == 14_410 and len(metrics["history"]) == 2
    assert (out / "curves.png").stat().st_size > 10_000 and (out / "checkpoint.pt").is_file()

    again = run("vit_lib.cli.train", "--out", str(out), *common)     # never overwrite a run
    assert_clean_error(again, "already holds a run (checkpoint.pt, metrics.json); pass --resume")
    finished = run("vit_lib.cli.train", "--out", str(out), "--resume", *common)
    assert finished.returncode == 0, finished.stderr
    assert "holds a finished run (2 of 2 epochs" in finished.stdout
    assert json.loads((out / "metrics.json").read_text()) == metrics     # untouched
    extended = run("vit_lib.cli.train", "--out", str(out), "--resume", "--epochs", "3", *common)
    assert extended.returncode == 0 and "resuming" in extended.stdout, extended.stderr
    assert "the cosine schedule is recomputed for 3 epochs" in extended.stdout
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert history[:2] == metrics["history"] and len(history) == 3
    metrics = json.loads((out / "metrics.json").read_text())

    evaluated = run("vit_lib.cli.evaluate", "--checkpoint", str(out / "checkpoint.pt"), *common[:-1])
    assert evaluated.returncode == 0, evaluated.stderr
    assert f"mnist test accuracy: {metrics['test_accuracy']:.2f}%" in evaluated.stdout
    assert (out / "confusion_matrix.png").stat().st_size > 10_000
