"""The trained models that ship as package data (vit_lib/weights, `make weights`):
what ships and what each file records, `vit_lib.pretrained`, `pretrained:NAME[/DATASET]` on the
command line, clear errors for unknown names; and (slow) each model's recorded test accuracy
measured again on the real test split."""
from __future__ import annotations

import json

import pytest
import torch
from cli_fakes import evaluate, train

import vit_lib
from vit_lib.data import dataset_info, get_test_loader
from vit_lib.engine import evaluate as evaluate_model
from vit_lib.machinery import pretrained as shipped
from vit_lib.machinery.checkpoint import load_checkpoint
from vit_lib.machinery.errors import ConfigError
from vit_lib.model import count_parameters

EXPECTED = [("best", "fashion-mnist"), ("best", "mnist"), ("cnn-tiny", "mnist"),
            ("seed", "fashion-mnist"), ("seed", "mnist"), ("seed-tuned", "fashion-mnist"),
            ("seed-tuned", "mnist")]
BUDGET = 4 * 2**20
FACTS = {"name", "dataset", "classes", "normalize", "seed", "epochs", "params", "test_accuracy",
         "train_seconds", "torch", "threads", "recipe", "command", "file", "bytes", "sha256"}

pytestmark = pytest.mark.skipif(not shipped.available(),
                                reason="no shipped weights in vit_lib/weights (make weights)")


def test_every_model_ships_within_the_budget():
    assert shipped.available() == EXPECTED
    files = sorted(shipped.WEIGHTS.glob("*.pt"))
    assert [f.stem for f in files] == [f"{n}-{d}" for n, d in EXPECTED]
    assert sum(f.stat().st_size for f in files) <= BUDGET


@pytest.mark.parametrize("name, dataset", EXPECTED)
def test_each_file_records_how_it_was_made(name, dataset):
    path = shipped.weights_file(name, dataset)
    facts = json.loads(path.with_suffix(".json").read_text())
    assert FACTS <= set(facts), FACTS - set(facts)
    assert (facts["name"], facts["dataset"], facts["seed"], facts["file"]) == (name, dataset, 0, path.name)
    assert facts["bytes"] == path.stat().st_size
    assert facts["command"] == f"python -m vit_lib train --preset {name} --dataset {dataset} --seed 0"
    state = load_checkpoint(path)
    assert "optimizer" not in state and "scheduler" not in state        # small: weights only
    assert all(t.dtype == torch.float32 for t in state["model"].values() if t.is_floating_point())
    assert state["extra"]["dataset"] == dataset
    assert json.loads(json.dumps(state["recipe"])) == facts["recipe"]        # JSON has no tuples


@pytest.mark.parametrize("name, dataset", EXPECTED)
def test_pretrained_returns_the_model_in_eval_mode_with_its_facts(name, dataset):
    model = vit_lib.pretrained(name, dataset=dataset)
    info = model.info
    assert not model.training and isinstance(info, shipped.PretrainedInfo)
    assert (info.name, info.dataset, info.seed) == (name, dataset, 0)
    assert info.classes == dataset_info(dataset).classes
    assert info.params == count_parameters(model) and info.file == shipped.weights_file(name, dataset)
    assert info.test_accuracy > (95 if dataset == "mnist" else 84)
    meanstd = (dataset_info(dataset).mean, dataset_info(dataset).std)
    assert info.normalize == (meanstd if info.recipe["normalize"] else None)
    with torch.inference_mode():
        assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 10)


def test_unknown_names_and_datasets_name_the_choices():
    with pytest.raises(ConfigError, match=r"unknown pretrained model 'huge'; choose one of best "
                                          r"\(fashion-mnist, mnist\); cnn-tiny \(mnist\);"):
        vit_lib.pretrained("huge")
    with pytest.raises(ConfigError, match="pretrained 'cnn-tiny' ships trained on mnist, not "
                                          "'fashion-mnist'; choose one of those"):
        vit_lib.pretrained("cnn-tiny", dataset="fashion-mnist")
    with pytest.raises(ConfigError, match="not 'cifar10'"):
        vit_lib.pretrained("seed", dataset="cifar10")
    assert vit_lib.pretrained("seed", dataset="Fashion_MNIST").info.dataset == "fashion-mnist"


def test_pretrained_specs_on_the_command_line():
    assert shipped.parse_spec("pretrained:best") == ("best", "mnist")
    assert shipped.parse_spec("pretrained:best/fashion-mnist") == ("best", "fashion-mnist")
    assert shipped.resolve("pretrained:seed") == shipped.WEIGHTS / "seed-mnist.pt"
    state = shipped.pretrained_checkpoint("pretrained:seed-tuned/fashion-mnist")
    assert state["extra"]["dataset"] == "fashion-mnist"
    with pytest.raises(ConfigError, match="is not pretrained:NAME or pretrained:NAME/DATASET"):
        shipped.parse_spec("pretrained:a/b/c")


def test_evaluate_and_init_from_accept_pretrained(tmp_path, capsys, fake_data, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = evaluate(capsys, "--checkpoint", "pretrained:seed-tuned")
    assert result.code == 0, result.err
    assert "mnist test accuracy" in result.out and (tmp_path / "confusion_matrix-seed-tuned-mnist.png").is_file()
    assert not list(shipped.WEIGHTS.glob("*.png"))                    # nothing written into the package
    tuned = train(capsys, "--preset", "seed-tuned", "--dataset", "fashion-mnist", "--epochs", "1",
                  "--init-from", "pretrained:seed-tuned", "--out", tmp_path / "ft")
    assert tuned.code == 0, tuned.err
    assert "loaded 56 tensors from" in tuned.out
    missing = evaluate(capsys, "--checkpoint", "pretrained:huge")
    assert missing.code == 2 and missing.error_lines[0].startswith("error: unknown pretrained model 'huge'")


@pytest.mark.slow
@pytest.mark.parametrize("name, dataset", EXPECTED)
def test_the_recorded_test_accuracy_is_measured_again(name, dataset, data_dir):
    model = vit_lib.pretrained(name, dataset=dataset)
    loader = get_test_loader(dataset, data_dir, "cpu", model.info.recipe["normalize"], download=False)
    accuracy = evaluate_model(model, loader)["accuracy"]
    assert accuracy == pytest.approx(model.info.test_accuracy, abs=0.05)
