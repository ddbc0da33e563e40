"""Checks for the exercises of notebook 05 (training): a training epoch, schedule, accuracy, one
step, confusion matrix, gradient clipping.

Every check takes the learner's function, runs it on inputs of its own, prints one line of
feedback ('✓ ...' or '✗ ...' with a hint) and returns a CheckResult (truthy when passed); none
raises on a wrong answer.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from vit_lib.classroom.exercises.common import (
    CheckResult,
    Exercise,
    Mismatch,
    exercise_check,
    expect_close,
    expect_shape,
    expect_tensor,
    grading_cases,
    run_check,
    seeded,
)
from vit_lib.config import ViTConfig
from vit_lib.engine import lr_factor, train_one_epoch
from vit_lib.machinery.plots import confusion_matrix
from vit_lib.model import VisionTransformer
from vit_lib.presets import Recipe

__all__ = ["check_train_one_epoch", "check_warmup_cosine", "check_accuracy", "check_training_step",
           "check_confusion_matrix", "check_clip_gradients"]

# The lesson's exercises, in notebook order: what the grader expects to find.
EXERCISES = (
    Exercise("05", 1, "one training epoch", "check_train_one_epoch", ("train_one_epoch_by_hand",)),
    Exercise("05", 2, "warmup + cosine schedule", "check_warmup_cosine", ("warmup_cosine",)),
    Exercise("05", 3, "accuracy from logits", "check_accuracy", ("accuracy",)),
    Exercise("05", 4, "one training step", "check_training_step", ("training_step",)),
    Exercise("05", 5, "confusion matrix", "check_confusion_matrix", ("confusion",)),
    Exercise("05", 6, "gradient clipping", "check_clip_gradients", ("clip_gradients",)),
)


def _as_float(value: object, what: str) -> float:
    """A Python number or a one-element tensor as a float; anything else is a Mismatch."""
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise Mismatch(f"{what} should be one number, got a tensor of shape {list(value.shape)}")
        return float(value.detach().item())
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise Mismatch(f"{what} should be a number, got {type(value).__name__}")
    return float(value)


# ---------------------------------------------------------------------------------------------
# Exercise 1: one training epoch (compared bit for bit with vit_lib.engine.train_one_epoch)
# ---------------------------------------------------------------------------------------------

def _epoch_batches(g: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Five batches of 8x8 images: four of 6 and a last one of 3, as a loader's last batch can be."""
    return [(torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g))
            for n in (6, 6, 6, 6, 3)]


def _reference_epoch(model: nn.Module, optimizer: torch.optim.Optimizer,
                     batches: list[tuple[torch.Tensor, torch.Tensor]], order: str = "right") -> list[float]:
    """The batch losses of an epoch done right, or with one of the typical mistakes of the order."""
    losses = []
    for x, y in batches:
        if order == "step_first":                  # step with the previous batch's gradients
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        losses.append(loss.item())
        if order == "stale":                       # zero_grad forgotten
            loss.backward()
            optimizer.step()
        elif order == "step_first":
            loss.backward()
        else:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return losses


@exercise_check()
def check_train_one_epoch(fn: Callable[[nn.Module, Any, torch.optim.Optimizer], dict[str, float]]) -> CheckResult:
    """fn(model, loader, optimizer) -> {"loss": mean loss per image, "accuracy": % correct}.

    Run on a small ViT with Adam over five batches (the last one smaller), starting from the
    gradients a previous batch left behind and in evaluation mode (as evaluate leaves a model);
    the weights afterwards must equal, bit for bit (torch.equal), those after
    vit_lib.engine.train_one_epoch on the same model, batches and optimiser.
    """
    def setup() -> tuple[nn.Module, torch.optim.Optimizer, list[tuple[torch.Tensor, torch.Tensor]]]:
        model = _tiny_model()
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        g = torch.Generator().manual_seed(seeded(11))
        x_old, y_old = torch.randn(6, 1, 8, 8, generator=g), torch.randint(0, 10, (6,), generator=g)
        F.cross_entropy(model(x_old), y_old).backward()    # stale gradients from "the last batch"
        model.eval()                                       # as evaluate() leaves it
        return model, optimizer, _epoch_batches(g)

    def params(model: nn.Module) -> list[torch.Tensor]:
        return [p.detach().clone() for p in model.parameters()]

    def equal(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
        return all(torch.equal(p, q) for p, q in zip(a, b, strict=True))

    def body() -> str:
        model, optimizer, batches = setup()
        before = params(model)
        order = _record_calls(model, optimizer)
        try:
            returned = fn(model, batches, optimizer)
        except RuntimeError as exc:
            calls = order()
            if ("inplace operation" in str(exc) and "step" in calls
                    and ("backward" not in calls or calls.index("step") < calls.index("backward"))):
                raise Mismatch("optimizer.step() changed the weights in place after the forward "
                               "pass and before loss.backward(), which still needed them "
                               "(PyTorch's RuntimeError 'modified by an inplace operation'): per "
                               "batch forward -> loss -> zero_grad -> backward -> step") from None
            raise
        after, calls, training = params(model), order(), model.training

        ref_model, ref_optimizer, ref_batches = setup()
        expected = train_one_epoch(ref_model, ref_batches, ref_optimizer)
        ref_params = params(ref_model)
        if not equal(after, ref_params):
            step_first = "step" in calls and ("backward" not in calls
                                              or calls.index("step") < calls.index("backward"))
            if equal(before, after):
                if step_first:
                    raise Mismatch("the weights did not change: optimizer.step() came before "
                                   "loss.backward(), when there were no gradients to step with; "
                                   "per batch: zero_grad -> backward -> step")
                if "backward" in calls and "zero_grad" in calls[calls.index("backward"):]:
                    raise Mismatch("the weights did not change: optimizer.zero_grad() came between "
                                   "loss.backward() and optimizer.step(), so it cleared the gradients "
                                   "the step needed; per batch: zero_grad -> backward -> step")
                raise Mismatch("the weights did not change: for every batch call loss.backward() "
                               "and then optimizer.step()")
            if step_first:
                raise Mismatch("optimizer.step() came before loss.backward(), so each step used "
                               "the gradients of the batch before (the first one stale gradients "
                               "left on the model): per batch zero_grad -> backward -> step")
            variants = {}
            for name in ("stale", "step_first"):
                m, opt, b = setup()
                _reference_epoch(m, opt, b, order=name)
                variants[name] = params(m)
            if equal(after, variants["stale"]):
                raise Mismatch("the gradients accumulated from batch to batch (backward() adds to "
                               ".grad): call optimizer.zero_grad() before every loss.backward()")
            if equal(after, variants["step_first"]):
                raise Mismatch("each step used the gradients of the batch before: per batch "
                               "zero_grad -> backward -> step")
            worst = max((p - q).abs().max().item() for p, q in zip(after, ref_params, strict=True))
            if worst < 1e-4:
                raise Mismatch(f"your weights differ from the library's by up to {worst:.1e}, close "
                               "but not bit for bit: compute the loss with F.cross_entropy(logits, "
                               "labels) on the raw logits, once per batch, and update with "
                               "zero_grad -> backward -> step, nothing else")
            raise Mismatch(f"your weights differ from the library's by up to {worst:.2g}: per batch "
                           "forward -> F.cross_entropy(logits, labels) -> zero_grad -> backward "
                           "-> step, one step per batch, every batch once")
        if not training:
            raise Mismatch("the weights are right, but the model is still in evaluation mode: call "
                           "model.train() first. Here it changes no number, because this model has "
                           "no dropout (and no drop path), which is the only thing the mode switches; "
                           "but evaluate() leaves a model in evaluation mode, and a model with dropout "
                           "would then train without it")
        if not isinstance(returned, dict) or not {"loss", "accuracy"} <= set(returned):
            raise Mismatch("the weights are right; now return a dict with the keys \"loss\" and "
                           "\"accuracy\", e.g. {\"loss\": loss_sum / seen, \"accuracy\": 100 * correct / seen}")
        loss = _as_float(returned["loss"], 'your "loss"')
        acc = _as_float(returned["accuracy"], 'your "accuracy"')
        losses = _reference_epoch(*setup())
        sizes = [len(y) for _, y in batches]
        if not math.isclose(loss, expected["loss"], rel_tol=1e-6, abs_tol=1e-9):
            if math.isclose(loss, losses[-1], rel_tol=1e-6):
                hint = ("that is the last batch's loss: sum loss.item() * len(y) over the batches "
                        "and divide by the number of images at the end")
            elif math.isclose(loss, sum(losses) / len(losses), rel_tol=1e-6):
                hint = ("that is the mean of the batch losses, which counts the last, smaller "
                        f"batch ({sizes[-1]} images) as much as a full one: weight each batch's "
                        "loss by its size, sum(loss.item() * len(y)) / images seen")
            elif math.isclose(loss, sum(loss * n for loss, n in zip(losses, sizes, strict=True)),
                              rel_tol=1e-6):
                hint = "that is the sum over the images: divide by the number of images seen"
            else:
                hint = "the mean loss per image over the epoch: sum(loss.item() * len(y)) / images seen"
            raise Mismatch(f'the weights are right, but your "loss" is {loss:.6g}, expected '
                           f'{expected["loss"]:.6g}: {hint}')
        if not math.isclose(acc, expected["accuracy"], abs_tol=1e-6):
            if math.isclose(acc * 100, expected["accuracy"], abs_tol=1e-6):
                hint = "you returned a fraction; multiply by 100 for percent"
            else:
                hint = ("count the correct predictions of each batch with the logits of its "
                        "forward pass, (logits.argmax(dim=1) == y).sum(), and return "
                        "100 * correct / images seen")
            raise Mismatch(f'the weights and the loss are right, but your "accuracy" is {acc:.6g}, '
                           f'expected {expected["accuracy"]:.6g}: {hint}')
        return (f"the weights equal vit_lib's bit for bit after {len(batches)} batches, and the "
                "returned mean loss and accuracy are right")

    return run_check("one training epoch", body)


# ---------------------------------------------------------------------------------------------
# Exercise 2: linear warmup, then cosine decay to 0
# ---------------------------------------------------------------------------------------------

@exercise_check()
def check_warmup_cosine(fn: Callable[[int, int, float], float]) -> CheckResult:
    """fn(step, total_steps, warmup) -> lr multiplier; compared with vit_lib.engine.lr_factor.

    warmup is a fraction of all steps (e.g. 0.05); the checks cover warmup 0 as well.
    """
    cases = grading_cases([(100, 0.05), (2350, 0.05), (40, 0.25), (30, 0.0)],
                          lambda rng: (rng.randint(5, 300), rng.choice((0.0, 0.05, 0.1, 0.2, 0.3))))

    def body() -> str:
        for total, warmup in cases:
            recipe = Recipe(schedule="cosine", warmup=warmup)
            warmup_steps = int(warmup * total)
            for step in range(total):
                expected = lr_factor(step, total, recipe)
                try:
                    got = _as_float(fn(step, total, warmup), f"your factor at step {step}")
                except ZeroDivisionError:
                    if warmup_steps == 0:
                        raise Mismatch(f"with warmup {warmup} there are no warmup steps "
                                       f"(int({warmup} * {total}) = 0) and your code divides by "
                                       "zero: skip the ramp when warmup_steps is 0 and start the "
                                       "cosine at step 0") from None
                    raise
                if math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9):
                    continue
                where = (f"at step {step} of {total} with warmup {warmup} "
                         f"(= {warmup_steps} warmup steps) you return {got:.6g}, expected "
                         f"{expected:.6g}")
                if got < 0:
                    hint = ("a negative factor means a negative learning rate: cos() runs from 1 "
                            "to -1, rescale it with 0.5 * (1 + cos(pi * progress))")
                elif step == 0 and warmup_steps > 0 and got == 0:
                    hint = ("the very first step would not learn at all: ramp with "
                            "(step + 1) / warmup_steps so the factor reaches 1 on the last "
                            "warmup step")
                elif step < warmup_steps and math.isclose(got, step / warmup_steps, abs_tol=1e-9):
                    hint = "ramp with (step + 1) / warmup_steps, not step / warmup_steps"
                elif step < warmup_steps:
                    hint = ("during warmup the factor grows linearly, (step + 1) / warmup_steps, "
                            "with warmup_steps = int(warmup * total_steps)")
                elif step == warmup_steps:
                    hint = ("right after warmup the factor should be exactly 1: measure the "
                            "cosine's progress from the end of warmup, "
                            "(step - warmup_steps) / (total_steps - warmup_steps)")
                elif math.isclose(got, 0.5 * (1 + math.cos(math.pi * step / total)), abs_tol=1e-9):
                    hint = ("your cosine starts at step 0: start it at the end of warmup, "
                            "progress = (step - warmup_steps) / (total_steps - warmup_steps)")
                else:
                    hint = "after warmup: 0.5 * (1 + cos(pi * progress)) with progress in [0, 1)"
                raise Mismatch(f"{where}: {hint}")
        return "matches vit_lib.engine.lr_factor on every step of 4 schedules"

    return run_check("warmup + cosine schedule", body)


# ---------------------------------------------------------------------------------------------
# Exercise 3: accuracy from logits
# ---------------------------------------------------------------------------------------------

@exercise_check()
def check_accuracy(fn: Callable[[torch.Tensor, torch.Tensor], float]) -> CheckResult:
    """fn(logits [B, C], labels [B]) -> accuracy in percent (0-100)."""
    g = torch.Generator().manual_seed(seeded(5))

    def body() -> str:
        for batch, classes in ((8, 10), (10, 10), (37, 3)):
            logits = torch.randn(batch, classes, generator=g)
            labels = logits.argmax(1).clone()
            labels[: batch // 2] = torch.randint(0, classes, (batch // 2,), generator=g)
            expected = 100.0 * (logits.argmax(1) == labels).float().mean().item()
            try:
                raw = fn(logits.clone(), labels.clone())
            except RuntimeError as exc:
                if "size of tensor" in str(exc) or "must match" in str(exc):
                    raise Mismatch(f"your code raised RuntimeError for logits {[batch, classes]}: "
                                   "did you take argmax over dim 0 (the batch) instead of "
                                   "dim 1 (the classes)?") from None
                raise
            got = _as_float(raw, "your accuracy")
            if math.isclose(got, expected, abs_tol=1e-4):
                continue
            wrong_dim = None
            if batch == classes:
                wrong_dim = 100.0 * (logits.argmax(0) == labels).float().mean().item()
            if math.isclose(got * 100, expected, abs_tol=1e-4):
                hint = "you returned a fraction; multiply by 100 for percent"
            elif wrong_dim is not None and math.isclose(got, wrong_dim, abs_tol=1e-4):
                hint = "take argmax over dim 1 (the classes), not dim 0 (the batch)"
            elif got == 0.0:
                hint = ("integer division rounds the fraction down to 0: divide as floats, "
                        "e.g. (predictions == labels).float().mean()")
            else:
                hint = "predicted class = logits.argmax(dim=1); accuracy = 100 * mean(pred == label)"
            raise Mismatch(f"for logits {[batch, classes]} you return {got:.4g}, expected "
                           f"{expected:.4g}: {hint}")
        return "correct on 3 batches"

    return run_check("accuracy from logits", body)


# ---------------------------------------------------------------------------------------------
# Exercise 4: one training step
# ---------------------------------------------------------------------------------------------

def _tiny_model() -> VisionTransformer:
    """A 1-block ViT for 8x8 images, always with the same weights; leaves the global RNG alone."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeded(0))
        return VisionTransformer(ViTConfig(image_size=8, patch_size=4, dim=8, depth=1, heads=2,
                                           mlp_dim=16))


def _reference_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor,
                    y: torch.Tensor, zero_grad: bool = True, softmax: bool = False) -> float:
    logits = model(x)
    if softmax:
        logits = logits.softmax(dim=1)
    loss = F.cross_entropy(logits, y)
    if zero_grad:
        optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


_CALLS = ("backward", "zero_grad", "step")


def _record_calls(model: nn.Module, optimizer: torch.optim.Optimizer) -> Callable[[], list[str]]:
    """A function giving 'backward', 'zero_grad' and 'step' in the order they happened since.

    The order is kept in a buffer of the model, so that it travels with what the learner's step
    did to the model (python -m vit_lib grade replays that in its own process).
    """
    model.register_buffer("_step_calls", torch.zeros(0, dtype=torch.long), persistent=False)

    def note(name: str) -> None:
        model._step_calls = torch.cat([model._step_calls, torch.tensor([_CALLS.index(name)])])

    first = next(model.parameters())
    first.register_post_accumulate_grad_hook(lambda _p: note("backward"))
    def recorded(name: str) -> Callable[..., Any]:
        method = getattr(optimizer, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            note(name)
            return method(*args, **kwargs)
        return call

    optimizer.zero_grad = recorded("zero_grad")       # type: ignore[method-assign]
    optimizer.step = recorded("step")                 # type: ignore[method-assign]
    return lambda: [_CALLS[i] for i in model._step_calls.tolist()]


@exercise_check()
def check_training_step(fn: Callable[[nn.Module, torch.optim.Optimizer, torch.Tensor,
                                      torch.Tensor], float]) -> CheckResult:
    """fn(model, optimizer, images [B, C, H, W], labels [B]) -> the batch's loss (a float).

    One step: forward, cross-entropy on the logits, clear old gradients, backward, optimiser
    step. Checked on a small ViT with plain SGD, starting from gradients left by a previous step.
    """
    def setup():
        model = _tiny_model()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        g = torch.Generator().manual_seed(seeded(1))
        x_old = torch.randn(6, 1, 8, 8, generator=g)
        y_old = torch.randint(0, 10, (6,), generator=g)
        F.cross_entropy(model(x_old), y_old).backward()   # stale gradients from "the last batch"
        x = torch.randn(6, 1, 8, 8, generator=g)
        y = torch.randint(0, 10, (6,), generator=g)
        return model, optimizer, x, y

    def params(model: nn.Module) -> list[torch.Tensor]:
        return [p.detach().clone() for p in model.parameters()]

    def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
        return all(torch.allclose(p, q, atol=1e-6) for p, q in zip(a, b, strict=True))

    def body() -> str:
        model, optimizer, x, y = setup()
        before = params(model)
        order = _record_calls(model, optimizer)        # the order of backward, zero_grad and step
        loss = _as_float(fn(model, optimizer, x, y), "the value your step returns (the loss)")
        after = params(model)
        calls = order()
        if same(before, after):
            if "backward" in calls and "zero_grad" in calls[calls.index("backward"):]:
                raise Mismatch("optimizer.zero_grad() came after loss.backward(), so it cleared the "
                               "gradients the step needed: clear them first (zero_grad -> backward "
                               "-> step)")
            raise Mismatch("the parameters did not change: call loss.backward() and then "
                           "optimizer.step()")
        variants = {}
        for name, kwargs in (("right", {}), ("stale", {"zero_grad": False}),
                             ("softmax", {"softmax": True})):
            m, opt, xr, yr = setup()
            variants[name] = (_reference_step(m, opt, xr, yr, **kwargs), params(m))
        ref_loss, ref_params = variants["right"]
        if not same(after, ref_params):
            if same(after, variants["stale"][1]):
                raise Mismatch("the gradients of the previous batch were added to this one: "
                               "call optimizer.zero_grad() before loss.backward()")
            if same(after, variants["softmax"][1]):
                raise Mismatch("F.cross_entropy takes raw logits (it applies log-softmax "
                               "itself): do not apply softmax first")
            raise Mismatch("the parameters after your step differ from forward -> "
                           "cross_entropy -> zero_grad -> backward -> step")
        if not math.isclose(loss, ref_loss, rel_tol=1e-5):
            raise Mismatch(f"the parameters are right but you return {loss:.5g}, expected the "
                           f"batch's loss {ref_loss:.5g} (computed before the step): "
                           "return loss.item()")
        return "the parameters and the returned loss are right"

    return run_check("one training step", body)


# ---------------------------------------------------------------------------------------------
# Exercise 5: confusion matrix by hand
# ---------------------------------------------------------------------------------------------

@exercise_check()
def check_confusion_matrix(fn: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor]) -> CheckResult:
    """fn(predictions [N], labels [N], num_classes) -> counts [num_classes, num_classes],
    row = true class, column = predicted class."""
    g = torch.Generator().manual_seed(seeded(3))
    classes = 5
    labels = torch.randint(0, classes - 1, (60,), generator=g)           # class 4 never appears
    predictions = torch.where(torch.rand(60, generator=g) < 0.7, labels,
                              torch.randint(0, classes - 1, (60,), generator=g))
    expected = confusion_matrix(predictions, labels, classes)

    def body() -> str:
        got = expect_tensor(fn(predictions.clone(), labels.clone(), classes), "your matrix")
        expect_shape(got, [classes, classes], "your matrix",
                     hint="it needs one row and one column per class (num_classes), even for "
                          "classes that never occur")
        if got.is_floating_point() and not torch.equal(got, got.round()):
            raise Mismatch("your matrix holds fractions: it should count examples")
        if got.sum().item() != len(labels):
            raise Mismatch(f"your counts add up to {int(got.sum().item())}, expected "
                           f"{len(labels)} (one count per example)")
        if torch.equal(got.long(), expected.T) and not torch.equal(got.long(), expected):
            raise Mismatch("your matrix is transposed: rows are the true classes, columns the "
                           "predicted ones")
        expect_close(got.long(), expected, "your matrix", atol=0,
                     hint="add 1 at [label, prediction] for every example")
        return f"{int(expected.trace())} of {len(labels)} on the diagonal, as expected"

    return run_check("confusion matrix", body)


# ---------------------------------------------------------------------------------------------
# Exercise 6: gradient clipping by the global norm
# ---------------------------------------------------------------------------------------------

def _gradients(scale: float) -> list[torch.Tensor]:
    """Three parameters [4, 3], [3], [2, 2] whose gradients have global norm 5 * scale."""
    g = torch.Generator().manual_seed(seeded(7))
    params = []
    for shape in ((4, 3), (3,), (2, 2)):
        p = torch.zeros(shape, requires_grad=True)
        p.grad = torch.randn(shape, generator=g)
        params.append(p)
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params))
    for p in params:
        p.grad.mul_(5.0 * scale / norm)
    return params


@exercise_check()
def check_clip_gradients(fn: Callable[[list[torch.Tensor], float], float]) -> CheckResult:
    """fn(parameters, max_norm) -> the global gradient norm before clipping (a float).

    Rescales every p.grad in place, all by the same factor, when the L2 norm of all gradients
    together exceeds max_norm; leaves them alone otherwise (as torch.nn.utils.clip_grad_norm_).
    """
    def body() -> str:
        for scale, max_norm in ((2.0, 1.0), (0.1, 1.0), (1.0, 2.5)):
            params = _gradients(scale)
            before = [p.grad.clone() for p in params]
            reference = _gradients(scale)
            expected_norm = float(nn.utils.clip_grad_norm_(reference, max_norm))
            expected = [p.grad for p in reference]
            got_norm = _as_float(fn(params, max_norm), "the value you return")
            got = [p.grad for p in params]
            case = f"gradients of global norm {expected_norm:.3g} and max_norm {max_norm:g}"
            if all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(got, expected, strict=True)):
                if math.isclose(got_norm, expected_norm, rel_tol=1e-4):
                    continue
                total_after = math.sqrt(sum(float((e ** 2).sum()) for e in expected))
                if math.isclose(got_norm, total_after, rel_tol=1e-4):
                    raise Mismatch(f"{case}: the gradients are right, but you return the norm "
                                   "after clipping; return the norm measured before, as "
                                   "clip_grad_norm_ does (it tells how large the gradient was)")
                raise Mismatch(f"{case}: the gradients are right, but you return {got_norm:.4g}, "
                               f"expected the global norm before clipping, {expected_norm:.4g}")
            if all(torch.equal(a, b) for a, b in zip(got, before, strict=True)):
                raise Mismatch(f"{case}: the gradients did not change: multiply every p.grad in "
                               "place (p.grad.mul_(factor)) when the norm exceeds max_norm")
            if expected_norm <= max_norm:
                raise Mismatch(f"{case}: the gradients were already small enough and must stay "
                               "as they are: only scale down when the norm exceeds max_norm")
            per_tensor = [b * min(1.0, max_norm / (float(b.norm()) + 1e-6)) for b in before]
            if all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(got, per_tensor, strict=True)):
                raise Mismatch(f"{case}: you clipped each tensor by its own norm; clip by the "
                               "global norm, sqrt of the sum of the squares of all gradients, so "
                               "every gradient is scaled by the same factor and the direction "
                               "is kept")
            raise Mismatch(f"{case}: after clipping the gradients should be the originals times "
                           "max_norm / global_norm (global_norm = sqrt of the sum of squares of "
                           "all gradients)")
        return "the gradients and the returned norm match clip_grad_norm_ in 3 cases"

    return run_check("gradient clipping", body)
