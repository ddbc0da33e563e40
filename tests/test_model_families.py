"""Model families by name (vit_lib.machinery.families), the CNN presets, and reusing a trained model
(vit_lib.transfer, `train --init-from` / `--linear-probe`)."""
import json

import pytest
import torch
from cli_fakes import evaluate, train

from vit_lib.cnn import CNNConfig, ConvNet, ConvStem
from vit_lib.config import ConfigError, ViTConfig
from vit_lib.engine import build_optimizer, fit
from vit_lib.machinery.checkpoint import load_checkpoint
from vit_lib.machinery.errors import CheckpointError
from vit_lib.machinery.families import (
    architecture_of,
    build_model,
    config_from_dict,
    model_from_checkpoint,
)
from vit_lib.model import VisionTransformer, count_parameters
from vit_lib.presets import PRESETS, get_preset
from vit_lib.transfer import freeze_all_but_head, init_from_checkpoint


# ---------------------------------------------------------------- the registry and the presets
def test_presets_record_their_architecture_and_build_it():
    assert {name: p.architecture for name, p in PRESETS.items()} == {
        "seed": "vit", "seed-tuned": "vit", "seed-speedrun": "vit", "best": "vit", "cnn-tiny": "cnn", "cnn": "cnn",
        "best-distilled": "vit-distilled"}
    assert isinstance(build_model(PRESETS["cnn"].model), ConvNet)
    assert isinstance(build_model(PRESETS["best"].model), VisionTransformer)
    with pytest.raises(ConfigError, match="unknown architecture 'mlp'; this vit_lib knows vit, cnn"):
        config_from_dict("mlp", {})


@pytest.mark.parametrize("cnn, vit", [("cnn-tiny", "seed"), ("cnn", "best")])
def test_each_cnn_preset_is_within_10_percent_of_its_vit(cnn, vit):
    c = count_parameters(build_model(PRESETS[cnn].model))
    v = count_parameters(build_model(PRESETS[vit].model))
    assert abs(c - v) <= 0.10 * v, (cnn, c, vit, v)
    assert PRESETS[cnn].recipe == PRESETS["seed-tuned" if vit == "seed" else vit].recipe


def test_cnn_adapts_to_a_dataset_and_refuses_vit_options():
    p = get_preset("cnn-tiny", "cifar10")
    model = build_model(p.model)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ConfigError, match="builds a CNNConfig, which has no patch_size"):
        get_preset("cnn-tiny", "mnist", {"patch_size": 4})
    with pytest.raises(ConfigError, match="widths must be one or more positive whole numbers"):
        CNNConfig(widths=())
    with pytest.raises(ConfigError, match="use at most 5 widths"):
        CNNConfig(widths=(8,) * 7)


def test_vit_stem_and_position_options():
    stem = VisionTransformer(ViTConfig(patch_size=4, stem="conv"))
    assert isinstance(stem.patch_embed, ConvStem)
    assert stem(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert stem.patch_embed(torch.randn(2, 1, 28, 28)).shape == (2, 49, 16)   # 7x7 tokens
    with pytest.raises(ConfigError, match="patch_size must be a power of two"):
        ViTConfig(stem="conv")                  # 7x7 patches cannot be made by halving
    bag = VisionTransformer(ViTConfig(pos_embed="none"))
    assert bag.pos_embed is None and bag.no_weight_decay() == {"cls_token"}
    # without positions (and with mean pooling) the model cannot tell a shuffled image apart
    bag = VisionTransformer(ViTConfig(pos_embed="none", pool="mean")).eval()
    x = torch.randn(2, 1, 28, 28)
    swapped = x.clone()
    swapped[..., :7, :7], swapped[..., 7:14, 7:14] = x[..., 7:14, 7:14], x[..., :7, :7]
    torch.testing.assert_close(bag(x), bag(swapped), rtol=1e-5, atol=1e-5)


def test_each_model_says_which_matrices_take_no_weight_decay():
    preset = get_preset("seed-tuned")
    vit = VisionTransformer(preset.model)
    assert vit.no_weight_decay() == {"cls_token", "pos_embed"}
    decayed = build_optimizer(vit, preset.recipe).param_groups[0]["params"]
    names = {id(p): n for n, p in vit.named_parameters()}
    assert {names[id(p)] for p in decayed} >= {"patch_embed.proj.weight", "head.weight"}
    assert not {"cls_token", "pos_embed"} & {names[id(p)] for p in decayed}
    cnn = ConvNet(CNNConfig())
    groups = build_optimizer(cnn, preset.recipe).param_groups
    names = {id(p): n for n, p in cnn.named_parameters()}
    assert all(names[id(p)].endswith("weight") and p.ndim >= 2 for p in groups[0]["params"])
    assert any("features.0.1" in names[id(p)] for p in groups[1]["params"])   # BatchNorm


def _synthetic(n=64, classes=10, seed=0):
    from cli_fakes import synthetic

    from vit_lib.data import TensorLoader
    x, y = synthetic("mnist", n, seed)
    y = y % classes
    return TensorLoader(x, y, 32, shuffle=True, seed=seed), TensorLoader(x, y, 64)


def test_a_cnn_checkpoint_records_its_architecture_and_resumes(tmp_path):
    preset = get_preset("cnn-tiny", "mnist", epochs=2)
    train_loader, test_loader = _synthetic()
    torch.manual_seed(0)
    model = build_model(preset.model)
    fit(model, train_loader, test_loader, preset.recipe, epochs=1, checkpoint=tmp_path / "c.pt",
        progress=False, log=None)
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["arch"] == "cnn" and list(state["config"]["widths"]) == [16, 32, 32]
    again = model_from_checkpoint(state)
    assert isinstance(again, ConvNet) and architecture_of(again.config) == "cnn"
    history = fit(build_model(preset.model), train_loader, test_loader, preset.recipe, epochs=2,
                  checkpoint=tmp_path / "c.pt", resume=True, progress=False, log=None)
    assert [h["epoch"] for h in history] == [1, 2]
    with pytest.raises(CheckpointError, match="holds a different model"):
        fit(VisionTransformer(ViTConfig()), train_loader, test_loader, preset.recipe, epochs=3,
            checkpoint=tmp_path / "c.pt", resume=True, progress=False, log=None)


def test_an_old_vit_checkpoint_without_arch_still_loads(tmp_path):
    model = VisionTransformer(ViTConfig())
    config = ViTConfig().to_dict()
    del config["stem"]                          # written before the field existed
    state = {"format": 1, "model": model.state_dict(), "config": config}
    rebuilt = model_from_checkpoint(state)
    assert isinstance(rebuilt, VisionTransformer) and rebuilt.config == ViTConfig()


# ---------------------------------------------------------------- fine-tuning in Python
def _trained_state(config, classes=10):
    torch.manual_seed(1)
    model = build_model(config)
    return {"format": 1, "arch": architecture_of(config), "config": config.to_dict(),
            "model": {k: v.clone() for k, v in model.state_dict().items()},
            "extra": {"dataset": "mnist"}}


def test_init_from_loads_every_matching_weight_and_reinitialises_another_head():
    state = _trained_state(ViTConfig())
    torch.manual_seed(2)
    model = VisionTransformer(ViTConfig(num_classes=5))
    fresh_head = model.head.weight.detach().clone()
    report = init_from_checkpoint(model, state, source="pre.pt")
    assert report.reinitialised == ["head.weight", "head.bias"]
    assert report.dataset == "mnist" and report.architecture == "vit"
    assert len(report.loaded) == len(model.state_dict()) - 2
    for name in report.loaded:
        assert torch.equal(model.state_dict()[name], state["model"][name]), name
    assert torch.equal(model.head.weight, fresh_head)
    assert "re-initialised head.weight, head.bias" in report.summary()
    same = VisionTransformer(ViTConfig())
    assert init_from_checkpoint(same, state).reinitialised == []
    assert torch.equal(same.head.weight, state["model"]["head.weight"])


def test_init_from_names_what_does_not_fit():
    state = _trained_state(ViTConfig())
    with pytest.raises(CheckpointError, match=r"pos_embed is \[1, 17, 16\] there but \[1, 50, 16\] "
                                              r"here.*Only the classification head may differ"):
        init_from_checkpoint(VisionTransformer(ViTConfig(patch_size=4)), state, source="pre.pt")
    with pytest.raises(CheckpointError, match="it has blocks.3.norm1.weight.*which the model does not"):
        init_from_checkpoint(VisionTransformer(ViTConfig(depth=3)), state)
    with pytest.raises(CheckpointError, match=r"pre.pt holds a CNN \(CNN \(3 stages of width "
                                              r"16/32/32.*model to initialise is a VIT"):
        init_from_checkpoint(VisionTransformer(ViTConfig()), _trained_state(CNNConfig()),
                             source="pre.pt")


def test_linear_probe_trains_only_the_head():
    model = VisionTransformer(ViTConfig())
    assert freeze_all_but_head(model) == ["head.weight", "head.bias"]
    before = {k: v.clone() for k, v in model.state_dict().items()}
    recipe = get_preset("seed-tuned").recipe
    train_loader, test_loader = _synthetic()
    fit(model, train_loader, test_loader, recipe, epochs=1, progress=False, log=None)
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"head.weight", "head.bias"}


# ---------------------------------------------------------------- the same from the CLI
def test_cli_trains_a_cnn_and_evaluates_it(tmp_path, capsys, fake_data):
    result = train(capsys, "--preset", "cnn-tiny", "--epochs", "1", "--out", tmp_path / "c")
    assert result.code == 0, result.err
    assert "preset cnn-tiny (CNN (3 stages of width 16/32/32, 1 conv(s) each))" in result.out
    metrics = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert metrics["architecture"] == "cnn" and metrics["params"] == 14_458
    assert evaluate(capsys, "--checkpoint", tmp_path / "c").code == 0
    refused = train(capsys, "--preset", "cnn-tiny", "--patch-size", "4", "--out", tmp_path / "p")
    assert refused.code == 2 and "has no --patch-size" in refused.err


def test_cli_init_from_fine_tunes_and_records_the_source(tmp_path, capsys, fake_data):
    assert train(capsys, "--preset", "seed", "--epochs", "1", "--out", tmp_path / "pre").code == 0
    pre = load_checkpoint(tmp_path / "pre" / "checkpoint.pt")
    result = train(capsys, "--preset", "seed", "--dataset", "fashion-mnist", "--epochs", "1",
                   "--init-from", tmp_path / "pre", "--out", tmp_path / "ft")
    assert result.code == 0, result.err
    assert f"loaded 56 tensors from {tmp_path / 'pre' / 'checkpoint.pt'}" in result.out
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    assert metrics["init_from"] == {"checkpoint": str(tmp_path / "pre" / "checkpoint.pt"),
                                    "architecture": "vit", "dataset": "mnist",
                                    "loaded_tensors": 56, "reinitialised": []}
    assert metrics["linear_probe"] is False
    probe = train(capsys, "--preset", "seed", "--epochs", "1", "--init-from", tmp_path / "pre",
                  "--linear-probe", "--out", tmp_path / "probe")
    assert probe.code == 0, probe.err
    assert "linear probe: only head.weight, head.bias are trained" in probe.out
    probed = load_checkpoint(tmp_path / "probe" / "checkpoint.pt")["model"]
    assert torch.equal(probed["blocks.0.attn.qkv.weight"], pre["model"]["blocks.0.attn.qkv.weight"])
    assert not torch.equal(probed["head.weight"], pre["model"]["head.weight"])
    assert json.loads((tmp_path / "probe" / "metrics.json").read_text())["params"] == 170


@pytest.mark.parametrize("args, fragment", [
    (["--preset", "cnn-tiny"], "holds a VIT (ViT (7x7 patches, width 16, 4 blocks)), but the "
                               "model to initialise is a CNN"),
    (["--preset", "seed", "--patch-size", "4"], "pos_embed is [1, 17, 16] there but [1, 50, 16] here"),
    (["--preset", "seed", "--resume"], "--init-from starts a new run"),
])
def test_cli_init_from_refuses_what_does_not_fit(args, fragment, tmp_path, capsys, fake_data):
    assert train(capsys, "--preset", "seed", "--epochs", "1", "--out", tmp_path / "pre").code == 0
    result = train(capsys, *args, "--epochs", "1", "--init-from", tmp_path / "pre",
                   "--out", tmp_path / "x")
    assert result.code == 2 and len(result.error_lines) == 1, result.err
    assert fragment in result.err and "Traceback" not in result.err


def test_cli_linear_probe_needs_init_from(tmp_path, capsys, fake_data):
    result = train(capsys, "--linear-probe", "--out", tmp_path / "x")
    assert result.code == 2 and "give the model with --init-from CHECKPOINT" in result.err
