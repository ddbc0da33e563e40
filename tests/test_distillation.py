"""DeiT distillation (lesson 07's vit_lib.cnn): a distillation token and head, trained against
a teacher; refused without one; teachers that see other images are refused by name."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from test_engine import _loaders  # 96 random images, a learnable rule, batch 16

from vit_lib.cnn import CNNConfig, ConvNet, DistilledViT, DistilledViTConfig, check_teacher, distillation
from vit_lib.config import ViTConfig
from vit_lib.engine import evaluate, fit
from vit_lib.machinery.checkpoint import load_checkpoint, save_checkpoint
from vit_lib.machinery.errors import ConfigError, CudaGraphError
from vit_lib.machinery.families import build_model, checkpoint_config, model_from_checkpoint
from vit_lib.model import VisionTransformer, count_parameters
from vit_lib.presets import Recipe, get_preset

TINY = dict(dim=8, depth=2, heads=2, mlp_dim=16)
RECIPE = Recipe(optimizer="adamw", lr=3e-3, weight_decay=0.05, batch_size=16, epochs=3,
                schedule="cosine", warmup=0.1, grad_clip=1.0)


def _teacher(num_classes: int = 2, image_size: int = 28) -> ConvNet:
    torch.manual_seed(1)
    return ConvNet(CNNConfig(image_size=image_size, widths=(4, 8), num_classes=num_classes)).eval()


def test_the_distillation_token_adds_dim_x_2_and_the_second_head():
    for dims in ({}, TINY):
        plain = count_parameters(VisionTransformer(ViTConfig(**dims)))
        distilled = count_parameters(DistilledViT(DistilledViTConfig(**dims)))
        c = DistilledViTConfig(**dims)
        assert distilled - plain == c.dim * 2 + (c.dim * c.num_classes + c.num_classes)


def test_tokens_are_cls_distillation_then_patches():
    model = DistilledViT(DistilledViTConfig(**TINY)).eval()
    logits, maps = model(torch.randn(2, 1, 28, 28), return_attention=True)
    assert logits.shape == (2, 10) and maps[0].shape == (2, 2, 18, 18)     # 16 patches + 2
    cls_logits, dist_logits = model(torch.randn(2, 1, 28, 28), return_both=True)
    assert cls_logits.shape == dist_logits.shape == (2, 10)


def test_eval_logits_are_the_mean_of_the_two_heads():
    model = DistilledViT(DistilledViTConfig(**TINY)).eval()
    x = torch.randn(4, 1, 28, 28)
    cls_logits, dist_logits = model(x, return_both=True)
    torch.testing.assert_close(model(x), (cls_logits + dist_logits) / 2)


def test_a_distilled_model_without_a_teacher_refuses_to_train():
    model = DistilledViT(DistilledViTConfig(**TINY, num_classes=2))
    train, test = _loaders()
    with pytest.raises(ConfigError, match="trains against a teacher") as err:
        fit(model, train, test, RECIPE, progress=False, log=None)
    assert "--teacher CHECKPOINT" in err.value.for_cli()


@pytest.mark.parametrize("teacher, what", [
    (lambda: _teacher(num_classes=10), "number of classes 10, the student 2"),
    (lambda: _teacher(image_size=32), "image size 32, the student 28"),
])
def test_a_teacher_of_another_size_or_class_count_is_refused_by_name(teacher, what):
    with pytest.raises(ConfigError, match=what):
        check_teacher(teacher(), DistilledViTConfig(**TINY, num_classes=2), "runs/cnn")


def test_config_refusals():
    with pytest.raises(ConfigError, match="pool must be 'cls'"):
        DistilledViTConfig(pool="mean")
    with pytest.raises(ConfigError, match="no fixed position"):
        DistilledViTConfig(pos_embed="sincos2d")
    with pytest.raises(ConfigError, match="distillation must be one of"):
        distillation(_teacher(), kind="medium")


@pytest.mark.parametrize("kind", ["hard", "soft"])
def test_distillation_trains_the_student_towards_the_teacher(kind):
    torch.manual_seed(0)
    model = DistilledViT(DistilledViTConfig(**TINY, num_classes=2))
    train, test = _loaders()
    history = fit(model, train, test, RECIPE, progress=False, log=None,
                  train_epoch=distillation(_teacher(), kind=kind, temperature=2.0))
    assert len(history) == 3 and history[-1]["train_loss"] < history[0]["train_loss"]


def test_a_distilled_run_resumes_as_an_uninterrupted_one(tmp_path):
    train, test = _loaders()
    torch.manual_seed(0)
    whole = DistilledViT(DistilledViTConfig(**TINY, num_classes=2))
    fit(whole, train, test, RECIPE, progress=False, log=None,
        train_epoch=distillation(_teacher()))
    torch.manual_seed(0)
    first = DistilledViT(DistilledViTConfig(**TINY, num_classes=2))
    ckpt = tmp_path / "c.pt"
    fit(first, train, test, RECIPE, epochs=3, checkpoint=ckpt, progress=False, log=None,
        train_epoch=distillation(_teacher()))
    state = load_checkpoint(ckpt)
    assert state["arch"] == "vit-distilled"
    assert isinstance(checkpoint_config(state), DistilledViTConfig)
    torch.manual_seed(0)
    second = DistilledViT(DistilledViTConfig(**TINY, num_classes=2))
    short = tmp_path / "short.pt"
    fit(second, train, test, RECIPE, epochs=3, checkpoint=short, progress=False, log=None,
        train_epoch=distillation(_teacher()), stop_at_accuracy=0.0)        # stops after epoch 1
    resumed = DistilledViT(DistilledViTConfig(**TINY, num_classes=2))
    fit(resumed, train, test, RECIPE, epochs=3, checkpoint=short, resume=True, progress=False,
        log=None, train_epoch=distillation(_teacher()))
    for a, b in zip(whole.state_dict().values(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)
    rebuilt = model_from_checkpoint(load_checkpoint(short))
    assert isinstance(rebuilt, DistilledViT)
    assert evaluate(rebuilt, test)["accuracy"] == evaluate(resumed.eval(), test)["accuracy"]


def test_cuda_graphs_refuse_distillation():
    from vit_lib.machinery.training import epoch_runner
    model = DistilledViT(DistilledViTConfig(**TINY, num_classes=2))
    train, _ = _loaders()
    with pytest.raises(CudaGraphError, match="cannot record another epoch function"):
        epoch_runner(model, train, None, RECIPE, None, distillation(_teacher()), cuda_graph=True,
                     parallel=False)


def test_the_best_distilled_preset_is_best_with_a_distillation_token():
    preset, best = get_preset("best-distilled", "mnist"), get_preset("best", "mnist")
    assert preset.architecture == "vit-distilled"
    assert preset.recipe == replace(best.recipe, epochs=24)      # longer: the teacher's pass costs time
    assert count_parameters(build_model(preset.model)) - count_parameters(build_model(best.model)) \
        == 64 * 2 + 64 * 10 + 10


# ---------------------------------------------------------------------------------------------
# The command line: --teacher (in-process runs on synthetic data, tests/cli_fakes.py)

def test_cli_distils_from_a_cnn_teacher_and_resumes(tmp_path, capsys, fake_data):
    from cli_fakes import train
    teacher = train(capsys, "--preset", "cnn-tiny", "--epochs", "1", "--out", tmp_path / "cnn")
    assert teacher.code == 0, teacher.err
    student = train(capsys, "--preset", "best-distilled", "--epochs", "1", "--teacher",
                    tmp_path / "cnn", "--out", tmp_path / "student")
    assert student.code == 0, student.err
    assert "distillation (hard) from" in student.out
    state = load_checkpoint(tmp_path / "student" / "checkpoint.pt")
    assert state["arch"] == "vit-distilled" and state["extra"]["teacher"]["distill"] == "hard"
    more = train(capsys, "--out", tmp_path / "student", "--resume", "--epochs", "2")
    assert more.code == 0, more.err
    assert load_checkpoint(tmp_path / "student" / "checkpoint.pt")["epoch"] == 2


def test_cli_soft_distillation_keeps_its_temperature_on_resume(tmp_path, capsys, fake_data):
    from cli_fakes import train
    assert train(capsys, "--preset", "cnn-tiny", "--epochs", "1", "--out", tmp_path / "cnn").code == 0
    student = train(capsys, "--preset", "best-distilled", "--epochs", "1", "--teacher",
                    tmp_path / "cnn", "--distill", "soft", "--temperature", "3",
                    "--out", tmp_path / "student")
    assert student.code == 0, student.err
    assert "distillation (soft, temperature 3) from" in student.out
    teacher = load_checkpoint(tmp_path / "student" / "checkpoint.pt")["extra"]["teacher"]
    assert teacher["distill"] == "soft" and teacher["temperature"] == 3.0
    other = train(capsys, "--out", tmp_path / "student", "--resume", "--epochs", "2",
                  "--temperature", "2")
    assert other.code == 2 and "--temperature 2 differs from the run" in other.err
    assert "(temperature 3)" in other.err and "Traceback" not in other.err
    more = train(capsys, "--out", tmp_path / "student", "--resume", "--epochs", "2")
    assert more.code == 0, more.err
    assert "distillation (soft, temperature 3) from" in more.out
    default = train(capsys, "--preset", "best-distilled", "--epochs", "1", "--teacher",
                    tmp_path / "cnn", "--distill", "soft", "--out", tmp_path / "t1")
    assert default.code == 0 and "distillation (soft, temperature 1) from" in default.out
    assert load_checkpoint(tmp_path / "t1" / "checkpoint.pt")["extra"]["teacher"]["temperature"] == 1.0
    state = load_checkpoint(tmp_path / "t1" / "checkpoint.pt")        # as written before the flag
    del state["extra"]["teacher"]["temperature"]
    save_checkpoint(tmp_path / "t1" / "checkpoint.pt", state)
    same = train(capsys, "--out", tmp_path / "t1", "--resume", "--epochs", "2", "--temperature", "1")
    assert same.code == 0, same.err                        # an old soft run trained at 1: honoured
    assert "distillation (soft, temperature 1) from" in same.out


def test_cli_refuses_a_temperature_it_cannot_use(tmp_path, capsys, fake_data):
    from cli_fakes import train
    assert train(capsys, "--preset", "cnn-tiny", "--epochs", "1", "--out", tmp_path / "cnn").code == 0
    hard = train(capsys, "--preset", "best-distilled", "--teacher", tmp_path / "cnn",
                 "--temperature", "3", "--out", tmp_path / "s")
    assert hard.code == 2 and "only --distill soft learns: use --distill soft" in hard.err
    explicit = train(capsys, "--preset", "best-distilled", "--teacher", tmp_path / "cnn",
                     "--distill", "hard", "--temperature", "3", "--out", tmp_path / "s")
    assert explicit.code == 2 and "use --distill soft, or drop --temperature" in explicit.err
    alone = train(capsys, "--preset", "seed", "--temperature", "3", "--out", tmp_path / "s")
    assert alone.code == 2 and "--temperature says how to learn from a teacher" in alone.err
    both = train(capsys, "--preset", "seed", "--distill", "soft", "--temperature", "3",
                 "--out", tmp_path / "s")
    assert both.code == 2 and "--distill and --temperature say how" in both.err
    zero = train(capsys, "--preset", "best-distilled", "--teacher", tmp_path / "cnn",
                 "--distill", "soft", "--temperature", "0", "--out", tmp_path / "s")
    assert zero.code == 2 and "--temperature" in zero.err and "Traceback" not in zero.err
    assert not (tmp_path / "s" / "checkpoint.pt").exists()
    with pytest.raises(ConfigError, match="temperature must be positive"):
        distillation(_teacher(), "soft", temperature=0.0)
    assert train(capsys, "--preset", "seed", "--epochs", "1", "--out", tmp_path / "plain").code == 0
    resumed = train(capsys, "--out", tmp_path / "plain", "--resume", "--epochs", "2",
                    "--temperature", "3")
    assert resumed.code == 2 and "learns from no teacher" in resumed.err
    assert load_checkpoint(tmp_path / "plain" / "checkpoint.pt")["epoch"] == 1
    hard_run = train(capsys, "--preset", "best-distilled", "--epochs", "1", "--teacher",
                     tmp_path / "cnn", "--out", tmp_path / "hard")
    assert hard_run.code == 0, hard_run.err
    hot = train(capsys, "--out", tmp_path / "hard", "--resume", "--epochs", "2", "--temperature", "3")
    assert hot.code == 2 and "(hard distillation without a temperature)" in hot.err


def test_cli_overwrite_keeps_the_old_run_when_the_new_one_is_refused(tmp_path, capsys, fake_data):
    """--overwrite replaces a run only once every check has passed: a bad flag loses nothing."""
    from cli_fakes import train
    assert train(capsys, "--preset", "seed", "--epochs", "1", "--out", tmp_path / "raw").code == 0
    before = (tmp_path / "raw" / "checkpoint.pt").read_bytes()
    refused = train(capsys, "--preset", "best-distilled", "--teacher", tmp_path / "raw",
                    "--overwrite", "--out", tmp_path / "raw")       # raw pixels: refused in _train
    assert refused.code == 2 and "raw pixels" in refused.err
    assert (tmp_path / "raw" / "checkpoint.pt").read_bytes() == before
    assert (tmp_path / "raw" / "metrics.json").is_file()


def test_the_temperature_reaches_the_training_step(tmp_path, capsys, fake_data, monkeypatch):
    """Not only printed and stored: distill_one_epoch is called with it, and it changes the loss."""
    from cli_fakes import train

    import vit_lib.cnn
    seen = []
    real = vit_lib.cnn.distill_one_epoch

    def spy(*args, **kwargs):
        seen.append((kwargs["kind"], kwargs["temperature"]))
        return real(*args, **kwargs)
    monkeypatch.setattr(vit_lib.cnn, "distill_one_epoch", spy)
    assert train(capsys, "--preset", "cnn-tiny", "--epochs", "1", "--out", tmp_path / "cnn").code == 0
    student = train(capsys, "--preset", "best-distilled", "--epochs", "1", "--teacher",
                    tmp_path / "cnn", "--distill", "soft", "--temperature", "3",
                    "--out", tmp_path / "student")
    assert student.code == 0, student.err
    assert seen and set(seen) == {("soft", 3.0)}
    monkeypatch.undo()
    losses = []
    for temperature in (1.0, 3.0):
        torch.manual_seed(0)
        model = DistilledViT(DistilledViTConfig(**TINY, num_classes=2))
        train_loader, _ = _loaders()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
        losses.append(vit_lib.cnn.distill_one_epoch(model, train_loader, optimizer, teacher=_teacher(),
                                                    kind="soft", temperature=temperature)["loss"])
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


def test_cli_refuses_a_distilled_preset_without_a_teacher(tmp_path, capsys, fake_data):
    from cli_fakes import train
    result = train(capsys, "--preset", "best-distilled", "--out", tmp_path / "s")
    assert result.code == 2 and "give the teacher with --teacher CHECKPOINT" in result.err
    assert "Traceback" not in result.err


def test_cli_refuses_a_teacher_for_a_plain_preset_and_distill_alone(tmp_path, capsys, fake_data):
    from cli_fakes import train
    result = train(capsys, "--preset", "seed", "--teacher", tmp_path, "--out", tmp_path / "s")
    assert result.code == 2 and "has no distillation token: drop --teacher" in result.err
    result = train(capsys, "--preset", "best-distilled", "--distill", "soft", "--out", tmp_path / "s")
    assert result.code == 2


def test_cli_refuses_a_teacher_with_other_inputs(tmp_path, capsys, fake_data):
    from cli_fakes import train
    assert train(capsys, "--preset", "seed", "--epochs", "1", "--out", tmp_path / "raw").code == 0
    result = train(capsys, "--preset", "best-distilled", "--teacher", tmp_path / "raw",
                   "--out", tmp_path / "s")       # seed trains on raw pixels, best normalises
    assert result.code == 2 and "raw pixels" in result.err and "Traceback" not in result.err
