"""The checks of notebook 07 accept the worked solutions and explain typical mistakes."""
from __future__ import annotations

from torch import nn

from vit_lib.classroom.exercises import lesson07 as ex
from vit_lib.transfer import freeze_all_but_head

# --- worked solutions (the same as in the notebook) ------------------------------------------

def conv_parameters(in_channels: int, out_channels: int, kernel_size: int, bias: bool) -> int:
    return out_channels * in_channels * kernel_size * kernel_size + (out_channels if bias else 0)


def receptive_field(layers: list[tuple[int, int]]) -> int:
    rf, jump = 1, 1
    for kernel, stride in layers:
        rf += (kernel - 1) * jump
        jump *= stride
    return rf


def token_cost(image_size: int, patch_size: int) -> tuple[int, int]:
    tokens = (image_size // patch_size) ** 2 + 1
    return tokens, tokens ** 2


def freeze_backbone(model: nn.Module) -> None:
    for name, p in model.named_parameters():
        p.requires_grad = name.startswith("head.")


def last_line(capsys) -> str:
    return capsys.readouterr().out.strip().splitlines()[-1]


# --- exercise 1: parameters of a convolution --------------------------------------------------

def test_conv_parameters_accepts_solution(capsys):
    assert ex.check_conv_parameters(conv_parameters)
    assert last_line(capsys).startswith("✓")


def test_conv_parameters_kernel_not_squared(capsys):
    assert not ex.check_conv_parameters(lambda i, o, k, b: o * i * k + (o if b else 0))
    assert "square the kernel size" in last_line(capsys)


def test_conv_parameters_forgets_input_channels(capsys):
    # the first case has in_channels=1, where the mistake does not show: the check goes on
    assert not ex.check_conv_parameters(lambda i, o, k, b: o * k * k + (o if b else 0))
    assert "multiply by in_channels" in last_line(capsys)


def test_conv_parameters_forgets_bias(capsys):
    assert not ex.check_conv_parameters(lambda i, o, k, b: o * i * k * k)
    assert "+ out_channels" in last_line(capsys)


def test_conv_parameters_bias_always(capsys):
    assert not ex.check_conv_parameters(lambda i, o, k, b: o * i * k * k + o)
    assert "bias=False means no bias" in last_line(capsys)


def test_conv_parameters_not_a_number(capsys):
    assert not ex.check_conv_parameters(lambda i, o, k, b: "144")
    assert "whole number" in last_line(capsys)


# --- exercise 2: receptive field --------------------------------------------------------------

def test_receptive_field_accepts_solution(capsys):
    assert ex.check_receptive_field(receptive_field)
    assert "cnn-tiny sees 18 pixels" in last_line(capsys)


def test_receptive_field_adds_whole_kernels(capsys):
    assert not ex.check_receptive_field(lambda layers: sum(k for k, _ in layers))
    assert "overlap" in last_line(capsys)


def test_receptive_field_ignores_strides(capsys):
    assert not ex.check_receptive_field(lambda layers: 1 + sum(k - 1 for k, _ in layers))
    assert "product of the earlier strides" in last_line(capsys)


def test_receptive_field_reversed(capsys):
    assert not ex.check_receptive_field(lambda layers: receptive_field(layers[::-1]))
    assert "from the input" in last_line(capsys)


def test_receptive_field_reference_values():
    assert ex.receptive_field_of([(3, 1), (2, 2), (3, 1), (2, 2), (3, 1)]) == 18
    assert ex.receptive_field_of([(3, 2), (3, 2), (1, 1)]) == 7      # the conv stem, patch 4
    assert ex.receptive_field_of([(7, 7)]) == 7


# --- exercise 3: tokens and attention cost ----------------------------------------------------

def test_token_cost_accepts_solution(capsys):
    assert ex.check_token_cost(token_cost)
    assert last_line(capsys).startswith("✓")


def test_token_cost_forgets_cls(capsys):
    assert not ex.check_token_cost(lambda s, p: ((s // p) ** 2, (s // p) ** 4))
    assert "CLS token is a token too" in last_line(capsys)


def test_token_cost_one_side(capsys):
    assert not ex.check_token_cost(lambda s, p: (s // p + 1, (s // p + 1) ** 2))
    assert "along one side" in last_line(capsys)


def test_token_cost_not_squared(capsys):
    assert not ex.check_token_cost(lambda s, p: ((s // p) ** 2 + 1, (s // p) ** 2 + 1))
    assert "tokens ** 2" in last_line(capsys)


def test_token_cost_single_number(capsys):
    assert not ex.check_token_cost(lambda s, p: (s // p) ** 2 + 1)
    assert "return a pair" in last_line(capsys)


# --- exercise 4: freeze the backbone ----------------------------------------------------------

def test_freeze_accepts_solution_and_library(capsys):
    assert ex.check_freeze_backbone(freeze_backbone)
    assert last_line(capsys).startswith("✓")
    assert ex.check_freeze_backbone(freeze_all_but_head)


def test_freeze_eval_is_not_freezing(capsys):
    assert not ex.check_freeze_backbone(lambda model: model.eval())
    assert "nothing was frozen" in last_line(capsys)


def test_freeze_everything(capsys):
    def wrong(model):
        for p in model.parameters():
            p.requires_grad = False
    assert not ex.check_freeze_backbone(wrong)
    assert "head must keep training" in last_line(capsys)


def test_freeze_inverted(capsys):
    def wrong(model):
        for name, p in model.named_parameters():
            p.requires_grad = not name.startswith("head.")
    assert not ex.check_freeze_backbone(wrong)
    assert "other way round" in last_line(capsys)


def test_freeze_modules_only_misses_cls_and_positions(capsys):
    def wrong(model):
        for name, module in model.named_children():
            if name != "head":
                for p in module.parameters():
                    p.requires_grad = False
    assert not ex.check_freeze_backbone(wrong)
    assert "cls_token and pos_embed" in last_line(capsys)
