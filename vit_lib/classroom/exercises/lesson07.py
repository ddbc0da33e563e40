"""Checks for the exercises of notebook 07 (ViT versus CNN): convolution parameters, receptive
field, the token cost of small patches, and freezing a backbone for linear probing.

Every check takes the learner's function, runs it, prints one line of feedback ('✓ ...' or
'✗ ...' with a hint) and returns a CheckResult; none raises on a wrong answer.
"""
from __future__ import annotations

import math
import random
from typing import Callable, Sequence

from torch import nn

from vit_lib.classroom.exercises.common import (
    CheckResult,
    Exercise,
    Mismatch,
    exercise_check,
    grading_cases,
    run_check,
)
from vit_lib.cnn import CNNConfig, ConvNet
from vit_lib.config import ViTConfig
from vit_lib.model import VisionTransformer

__all__ = ["check_conv_parameters", "check_receptive_field", "check_token_cost",
           "check_freeze_backbone"]

# The lesson's exercises, in notebook order: what the grader expects to find.
EXERCISES = (
    Exercise("07", 1, "parameters of a convolution", "check_conv_parameters", ("conv_parameters",)),
    Exercise("07", 2, "receptive field of a stack of layers", "check_receptive_field", ("receptive_field",)),
    Exercise("07", 3, "tokens and attention cost of a patch size", "check_token_cost", ("token_cost",)),
    Exercise("07", 4, "freeze the backbone for a linear probe", "check_freeze_backbone", ("freeze_backbone",)),
)


def _whole_number(value: object, what: str) -> int:
    """An int (or a float / 0-d tensor holding one), else Mismatch."""
    if hasattr(value, "item") and getattr(value, "numel", lambda: 0)() == 1:
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Mismatch(f"{what} should be a whole number, got {type(value).__name__} {value!r}")
    if isinstance(value, float) and not value.is_integer():
        raise Mismatch(f"{what} should be a whole number, got {value}")
    return int(value)


# ---------------------------------------------------------------------------------------------
# Exercise 1: parameters of a convolution
# ---------------------------------------------------------------------------------------------

@exercise_check()
def check_conv_parameters(fn: Callable[[int, int, int, bool], int]) -> CheckResult:
    """fn(in_channels, out_channels, kernel_size, bias) -> the number of parameters of
    nn.Conv2d(in_channels, out_channels, kernel_size, bias=bias)."""
    cases = grading_cases([(1, 16, 3, False), (16, 32, 5, True), (3, 8, 1, True), (32, 32, 3, False),
                           (1, 16, 7, True)],
                          lambda rng: (rng.randint(1, 16), rng.randint(1, 32), rng.randint(1, 7), rng.random() < 0.5))

    def body() -> str:
        for c_in, c_out, k, bias in cases:
            conv = nn.Conv2d(c_in, c_out, k, bias=bias)
            expected = sum(p.numel() for p in conv.parameters())
            got = _whole_number(fn(c_in, c_out, k, bias),
                                f"conv_parameters({c_in}, {c_out}, {k}, bias={bias})")
            if got == expected:
                continue
            where = (f"Conv2d({c_in}, {c_out}, kernel_size={k}, bias={bias}) has {expected:,} "
                     f"parameters, you say {got:,}")
            weights = c_out * c_in * k * k
            if got == c_out * c_in * k + (c_out if bias else 0):
                hint = "a kernel is k x k: square the kernel size"
            elif got == c_out * k * k + (c_out if bias else 0):
                hint = ("each output channel has one k x k kernel per input channel: multiply "
                        "by in_channels too")
            elif bias and got == weights:
                hint = "bias=True adds one number per output channel: + out_channels"
            elif not bias and got == weights + c_out:
                hint = "bias=False means no bias at all: count only the kernels"
            elif got == weights + (c_in if bias else 0):
                hint = "there is one bias per output channel, not per input channel"
            else:
                hint = "out_channels x in_channels x k x k kernels, + out_channels if bias"
            raise Mismatch(f"{where}: {hint}")
        return f"right for {len(cases)} convolutions, with and without bias"

    return run_check("parameters of a convolution", body)


# ---------------------------------------------------------------------------------------------
# Exercise 2: receptive field
# ---------------------------------------------------------------------------------------------

def receptive_field_of(layers: Sequence[tuple[int, int]]) -> int:
    """The reference: rf = 1 + sum over layers of (kernel - 1) x (product of earlier strides)."""
    rf, jump = 1, 1
    for kernel, stride in layers:
        rf += (kernel - 1) * jump
        jump *= stride
    return rf


@exercise_check()
def check_receptive_field(fn: Callable[[list[tuple[int, int]]], int]) -> CheckResult:
    """fn(layers: [(kernel_size, stride), ...] in order from the input) -> the side, in input
    pixels, of the square one output position of the last layer depends on."""
    cases = {
        "one 3x3 conv": [(3, 1)],
        "two 3x3 convs": [(3, 1), (3, 1)],
        "cnn-tiny (conv, pool, conv, pool, conv)": [(3, 1), (2, 2), (3, 1), (2, 2), (3, 1)],
        "the conv stem of 4x4 patches (two stride-2 3x3 convs, a 1x1 conv)": [(3, 2), (3, 2),
                                                                              (1, 1)],
        "the ViT's 7x7 patch embedding": [(7, 7)],
        "cnn (four stages, one conv each)": [(3, 1), (2, 2), (3, 1), (2, 2), (3, 1), (2, 2),
                                             (3, 1)],
        "two 3x3 convs per stage, two stages": [(3, 1), (3, 1), (2, 2), (3, 1), (3, 1)],
        "a 2x2 pool, a stride-2 3x3 conv, a 3x3 conv": [(2, 2), (3, 2), (3, 1)],
    }
    drawn = grading_cases([], lambda rng: [(rng.randint(1, 7), rng.randint(1, 3)) for _ in range(rng.randint(1, 5))])
    cases.update({f"the stack {layers}": layers for layers in drawn})

    def body() -> str:
        for name, layers in cases.items():
            expected = receptive_field_of(layers)
            got = _whole_number(fn(list(layers)), f"the receptive field of {name}")
            if got == expected:
                continue
            where = f"{name} {layers}: receptive field {expected}, you say {got}"
            if got == sum(k for k, _ in layers):
                hint = ("consecutive layers overlap: each layer adds (kernel - 1) x jump pixels, "
                        "not its whole kernel")
            elif got == 1 + sum(k - 1 for k, _ in layers):
                hint = ("after a stride-s layer one step of the next layer moves s input pixels: "
                        "multiply (kernel - 1) by the product of the earlier strides (the jump)")
            elif got == math.prod(k for k, _ in layers):
                hint = "the sizes do not multiply: add (kernel - 1) x jump for each layer"
            elif got == receptive_field_of([(k, s) for k, s in reversed(layers)]):
                hint = "the layers are listed from the input: walk them in that order"
            else:
                hint = "start at rf = 1, jump = 1; per layer rf += (kernel - 1) * jump; jump *= stride"
            raise Mismatch(f"{where}: {hint}")
        tiny = receptive_field_of(cases['cnn-tiny (conv, pool, conv, pool, conv)'])
        return f"right for all {len(cases)} stacks, cnn-tiny sees {tiny} pixels"

    return run_check("receptive field of a stack of layers", body)


# ---------------------------------------------------------------------------------------------
# Exercise 3: tokens and attention cost
# ---------------------------------------------------------------------------------------------

def _draw_size_and_patch(rng: random.Random) -> tuple[int, int]:
    patch = rng.randint(2, 16)
    return patch * rng.randint(1, 16), patch


@exercise_check()
def check_token_cost(fn: Callable[[int, int], tuple[int, int]]) -> CheckResult:
    """fn(image_size, patch_size) -> (tokens, attention_entries) of a ViT with a CLS token:
    tokens = (image_size / patch_size)**2 + 1, entries = tokens**2 per head and image."""
    cases = grading_cases([(28, 7), (28, 4), (28, 14), (32, 4), (224, 16)], _draw_size_and_patch)

    def body() -> str:
        for size, patch in cases:
            n = (size // patch) ** 2 + 1
            expected = (n, n * n)
            got = fn(size, patch)
            if not isinstance(got, (tuple, list)) or len(got) != 2:
                raise Mismatch(f"return a pair (tokens, attention_entries), got {got!r}")
            got = (_whole_number(got[0], "tokens"), _whole_number(got[1], "attention_entries"))
            if got == expected:
                continue
            where = (f"{size}x{size} images, {patch}x{patch} patches: expected {expected}, "
                     f"you say {got}")
            side = size // patch
            if got[0] == n - 1:
                hint = "the CLS token is a token too: add 1 to the number of patches"
            elif got[0] in (side, side + 1):
                hint = ("that is the patches along one side: the grid has side x side "
                        "patches, (image_size // patch_size) ** 2")
            elif got[0] == n and got[1] == n:
                hint = "every token attends to every token: the attention matrix has tokens ** 2 entries"
            elif got[0] == n and got[1] == (n - 1) ** 2:
                hint = "the CLS token attends and is attended to as well: square all the tokens"
            else:
                hint = "tokens = (image_size // patch_size) ** 2 + 1; entries = tokens ** 2"
            raise Mismatch(f"{where}: {hint}")
        return "right for 5 patch sizes: 7x7 patches give 17 tokens, 4x4 give 50 (8.7x the attention)"

    return run_check("tokens and attention cost of a patch size", body)


# ---------------------------------------------------------------------------------------------
# Exercise 4: freeze the backbone
# ---------------------------------------------------------------------------------------------

def _fresh_models() -> dict[str, nn.Module]:
    return {"the seed ViT": VisionTransformer(ViTConfig()), "cnn-tiny": ConvNet(CNNConfig())}


@exercise_check()
def check_freeze_backbone(fn: Callable[[nn.Module], object]) -> CheckResult:
    """fn(model) freezes every parameter outside `model.head` (requires_grad=False) and leaves
    the head trainable; tried on a fresh ViT and a fresh CNN."""

    def body() -> str:
        for name, model in _fresh_models().items():
            model.train()
            fn(model)
            trainable = sorted(n for n, p in model.named_parameters() if p.requires_grad)
            head = sorted(n for n, _ in model.named_parameters() if n.startswith("head."))
            if trainable == head:
                continue
            where = f"{name}: still trained after your function: {trainable or 'nothing'}"
            others = [n for n in trainable if not n.startswith("head.")]
            every = [n for n, _ in model.named_parameters()]
            if trainable == sorted(every):
                hint = ("nothing was frozen: set p.requires_grad = False for every parameter "
                        "outside the head (model.eval() only changes dropout and BatchNorm)")
            elif not trainable:
                hint = "the head must keep training: leave requires_grad=True on head.weight and head.bias"
            elif not set(head) & set(trainable):
                hint = "it is the other way round: train the head, freeze the rest"
            elif set(others) <= {"cls_token", "pos_embed"}:
                hint = ("cls_token and pos_embed are parameters of the model itself, not of a "
                        "layer: loop over model.named_parameters(), not over the modules")
            else:
                hint = ("loop over model.named_parameters() and set p.requires_grad = "
                        "name.startswith('head.')")
            raise Mismatch(f"{where}: {hint}")
        return "only head.weight and head.bias train, in the ViT and in the CNN"

    return run_check("freeze the backbone for a linear probe", body)
