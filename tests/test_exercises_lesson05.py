"""The checks of notebook 05 accept the worked solutions and explain typical mistakes."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from vit_lib.classroom.exercises import lesson05 as ex

# --- worked solutions (the same as in the notebook) ------------------------------------------

def warmup_cosine(step: int, total_steps: int, warmup: float) -> float:
    warmup_steps = int(warmup * total_steps)
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return 100.0 * (logits.argmax(dim=1) == labels).float().mean().item()


def training_step(model, optimizer, images, labels) -> float:
    logits = model(images)
    loss = F.cross_entropy(logits, labels)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def confusion(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    matrix = torch.zeros(num_classes, num_classes, dtype=torch.long)
    for t, p in zip(labels.tolist(), predictions.tolist(), strict=True):
        matrix[t, p] += 1
    return matrix


def train_one_epoch_by_hand(model, loader, optimizer) -> dict[str, float]:
    model.train()
    seen, correct, loss_sum = 0, 0, 0.0
    for x, y in loader:
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        seen += len(y)
        loss_sum += loss.item() * len(y)
        correct += (logits.argmax(dim=1) == y).sum().item()
    return {"loss": loss_sum / seen, "accuracy": 100.0 * correct / seen}


def last_line(capsys) -> str:
    return capsys.readouterr().out.strip().splitlines()[-1]


# --- one training epoch -----------------------------------------------------------------------

def _epoch(order: str = "right", train: bool = True, returns: str = "right"):  # noqa: ANN202
    """An epoch function with one typical mistake: in the order of the calls, the mode or the result."""
    def fn(model, loader, optimizer):  # noqa: ANN001, ANN202
        if train:
            model.train()
        seen, correct, loss_sum, losses = 0, 0, 0.0, []
        for x, y in loader:
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            if order == "right":
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
            elif order == "no_zero_grad":
                loss.backward()
                optimizer.step()
            elif order == "zero_grad_between":
                loss.backward()
                optimizer.zero_grad()
                optimizer.step()
            elif order == "step_first":               # a step without gradients: nothing moves
                optimizer.zero_grad()
                optimizer.step()
                loss.backward()
            elif order == "step_then_zero_grad":      # PyTorch itself refuses this order
                optimizer.step()
                optimizer.zero_grad()
                loss.backward()
            seen += len(y)
            losses.append(loss.item())
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(dim=1) == y).sum().item()
        result = {"loss": loss_sum / seen, "accuracy": 100.0 * correct / seen}
        if returns == "last_loss":
            result["loss"] = losses[-1]
        elif returns == "mean_of_batches":
            result["loss"] = sum(losses) / len(losses)
        elif returns == "fraction":
            result["accuracy"] = correct / seen
        elif returns == "tuple":
            return result["loss"], result["accuracy"]
        return result
    fn.__name__ = "_".join(["epoch", order] + ([] if train else ["no_train"])
                           + ([] if returns == "right" else [returns]))
    return fn


def test_epoch_accepts_solution(capsys):
    assert ex.check_train_one_epoch(train_one_epoch_by_hand)
    line = last_line(capsys)
    assert line.startswith("✓") and "bit for bit" in line


def test_epoch_without_zero_grad(capsys):
    assert not ex.check_train_one_epoch(_epoch("no_zero_grad"))
    assert "accumulated from batch to batch" in last_line(capsys)


def test_epoch_zero_grad_between_backward_and_step(capsys):
    assert not ex.check_train_one_epoch(_epoch("zero_grad_between"))
    assert "came between loss.backward() and optimizer.step()" in last_line(capsys)


def test_epoch_step_before_backward(capsys):
    assert not ex.check_train_one_epoch(_epoch("step_first"))
    assert "optimizer.step() came before loss.backward()" in last_line(capsys)
    assert not ex.check_train_one_epoch(_epoch("step_then_zero_grad"))
    assert "changed the weights in place" in last_line(capsys)


def test_epoch_step_with_the_previous_gradients(capsys):
    def fn(model, loader, optimizer):  # noqa: ANN001, ANN202
        model.train()
        seen, correct, loss_sum = 0, 0, 0.0
        for x, y in loader:
            optimizer.step()                         # the gradients of the batch before
            optimizer.zero_grad()
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            loss.backward()
            seen += len(y)
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(dim=1) == y).sum().item()
        return {"loss": loss_sum / seen, "accuracy": 100.0 * correct / seen}
    assert not ex.check_train_one_epoch(fn)
    assert "optimizer.step() came before loss.backward()" in last_line(capsys)


def test_epoch_without_model_train(capsys):
    assert not ex.check_train_one_epoch(_epoch(train=False))
    line = last_line(capsys)
    assert "call model.train() first" in line and "no dropout" in line


def test_epoch_last_batch_loss(capsys):
    assert not ex.check_train_one_epoch(_epoch(returns="last_loss"))
    assert "last batch's loss" in last_line(capsys)


def test_epoch_mean_of_batch_losses(capsys):
    assert not ex.check_train_one_epoch(_epoch(returns="mean_of_batches"))
    assert "weight each batch's loss by its size" in last_line(capsys)


def test_epoch_accuracy_as_fraction(capsys):
    assert not ex.check_train_one_epoch(_epoch(returns="fraction"))
    assert "multiply by 100" in last_line(capsys)


def test_epoch_returns_a_tuple(capsys):
    assert not ex.check_train_one_epoch(_epoch(returns="tuple"))
    assert 'return a dict with the keys "loss" and "accuracy"' in last_line(capsys)


def test_epoch_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    ex.check_train_one_epoch(train_one_epoch_by_hand)
    assert torch.equal(state, torch.get_rng_state())


# --- warmup + cosine --------------------------------------------------------------------------

def test_warmup_cosine_accepts_solution(capsys):
    assert ex.check_warmup_cosine(warmup_cosine)
    assert last_line(capsys).startswith("✓")


def test_warmup_cosine_zero_at_first_step(capsys):
    def wrong(step, total, warmup):
        w = int(warmup * total)
        return step / w if step < w else warmup_cosine(step, total, warmup)
    assert not ex.check_warmup_cosine(wrong)
    assert "first step would not learn" in last_line(capsys)


def test_warmup_cosine_negative(capsys):
    def wrong(step, total, warmup):
        w = int(warmup * total)
        if step < w:
            return (step + 1) / w
        return math.cos(math.pi * (step - w) / (total - w))
    assert not ex.check_warmup_cosine(wrong)
    assert "0.5 * (1 + cos" in last_line(capsys)


def test_warmup_cosine_progress_from_zero(capsys):
    def wrong(step, total, warmup):
        w = int(warmup * total)
        if step < w:
            return (step + 1) / w
        return 0.5 * (1 + math.cos(math.pi * step / total))
    assert not ex.check_warmup_cosine(wrong)
    assert "end of warmup" in last_line(capsys)


def test_warmup_cosine_crash_is_reported(capsys):
    def crashes(step, total, warmup):
        _ = step / int(warmup * total)          # ZeroDivisionError when warmup is 0
        return warmup_cosine(step, total, warmup)
    assert not ex.check_warmup_cosine(crashes)
    line = last_line(capsys)                     # issue #20: a hint, not a bare ZeroDivisionError
    assert "no warmup steps" in line and "skip the ramp when warmup_steps is 0" in line


def test_warmup_cosine_other_crashes_are_still_named(capsys):
    def crashes(step, total, warmup):
        return 1 / (step - 7) if step == 7 else warmup_cosine(step, total, warmup)
    assert not ex.check_warmup_cosine(crashes)
    assert "ZeroDivisionError" in last_line(capsys)


# --- accuracy ---------------------------------------------------------------------------------

def test_accuracy_accepts_solution_and_tensor(capsys):
    assert ex.check_accuracy(accuracy)
    assert ex.check_accuracy(lambda lo, la: 100 * (lo.argmax(1) == la).float().mean())
    assert last_line(capsys).startswith("✓")


def test_accuracy_fraction(capsys):
    assert not ex.check_accuracy(lambda lo, la: (lo.argmax(1) == la).float().mean().item())
    assert "multiply by 100" in last_line(capsys)


def test_accuracy_wrong_dim(capsys):
    assert not ex.check_accuracy(lambda lo, la: 100.0 * (lo.argmax(0) == la).float().mean().item())
    assert "dim 1 (the classes)" in last_line(capsys)


def test_accuracy_integer_division(capsys):
    assert not ex.check_accuracy(lambda lo, la: 100 * ((lo.argmax(1) == la).sum() // len(la)))
    assert "integer division" in last_line(capsys)


# --- one training step ------------------------------------------------------------------------

def test_training_step_accepts_solution(capsys):
    state = torch.get_rng_state()
    assert ex.check_training_step(training_step)
    assert last_line(capsys).startswith("✓")
    assert torch.equal(state, torch.get_rng_state()), "the check must not move the global RNG"


def test_training_step_without_zero_grad(capsys):
    def wrong(model, optimizer, images, labels):
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.step()
        return loss.item()
    assert not ex.check_training_step(wrong)
    assert "optimizer.zero_grad()" in last_line(capsys)


def test_training_step_zero_grad_between_backward_and_step(capsys):
    def wrong(model, optimizer, images, labels):
        loss = F.cross_entropy(model(images), labels)
        loss.backward()
        optimizer.zero_grad()                    # clears what backward just computed
        optimizer.step()
        return loss.item()
    assert not ex.check_training_step(wrong)
    assert "zero_grad() came after loss.backward()" in last_line(capsys)


def test_training_step_without_backward_keeps_its_hint(capsys):
    def wrong(model, optimizer, images, labels):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        optimizer.step()
        return loss.item()
    assert not ex.check_training_step(wrong)
    assert "call loss.backward() and then optimizer.step()" in last_line(capsys)


def test_training_step_without_step(capsys):
    def wrong(model, optimizer, images, labels):
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        return loss.item()
    assert not ex.check_training_step(wrong)
    assert "did not change" in last_line(capsys)


def test_training_step_softmax_first(capsys):
    def wrong(model, optimizer, images, labels):
        loss = F.cross_entropy(model(images).softmax(1), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.item()
    assert not ex.check_training_step(wrong)
    assert "raw logits" in last_line(capsys)


def test_training_step_returns_loss_after_step(capsys):
    def wrong(model, optimizer, images, labels):
        training_step(model, optimizer, images, labels)
        return F.cross_entropy(model(images), labels).item()
    assert not ex.check_training_step(wrong)
    assert "return loss.item()" in last_line(capsys)


# --- confusion matrix -------------------------------------------------------------------------

def test_confusion_accepts_solution(capsys):
    assert ex.check_confusion_matrix(confusion)
    assert last_line(capsys).startswith("✓")


def test_confusion_transposed(capsys):
    assert not ex.check_confusion_matrix(lambda p, t, n: confusion(p, t, n).T)
    assert "transposed" in last_line(capsys)


def test_confusion_too_small(capsys):
    def wrong(p, t, n):
        k = int(max(p.max(), t.max())) + 1
        return confusion(p, t, k)
    assert not ex.check_confusion_matrix(wrong)
    assert "never occur" in last_line(capsys)


# --- gradient clipping ------------------------------------------------------------------------

def clip_gradients(parameters, max_norm: float) -> float:
    norm = math.sqrt(sum(float((p.grad ** 2).sum()) for p in parameters))
    if norm > max_norm:
        for p in parameters:
            p.grad.mul_(max_norm / norm)
    return norm


def test_clip_accepts_solution_and_torch(capsys):
    assert ex.check_clip_gradients(clip_gradients)
    assert ex.check_clip_gradients(lambda ps, m: torch.nn.utils.clip_grad_norm_(ps, m))
    assert last_line(capsys).startswith("✓")


def test_clip_per_tensor(capsys):
    def wrong(parameters, max_norm):
        for p in parameters:
            clip_gradients([p], max_norm)
        return clip_gradients(parameters, float("inf"))
    assert not ex.check_clip_gradients(wrong)
    assert "each tensor by its own norm" in last_line(capsys)


def test_clip_always_rescales(capsys):
    def wrong(parameters, max_norm):
        norm = clip_gradients(parameters, float("inf"))
        for p in parameters:
            p.grad.mul_(max_norm / norm)
        return norm
    assert not ex.check_clip_gradients(wrong)
    assert "only scale down when the norm exceeds max_norm" in last_line(capsys)


def test_clip_returns_norm_after(capsys):
    def wrong(parameters, max_norm):
        clip_gradients(parameters, max_norm)
        return clip_gradients(parameters, float("inf"))
    assert not ex.check_clip_gradients(wrong)
    assert "norm after clipping" in last_line(capsys)


def test_clip_not_in_place(capsys):
    def wrong(parameters, max_norm):
        norm = clip_gradients(parameters, float("inf"))
        _ = [p.grad * min(1.0, max_norm / norm) for p in parameters]    # computed, never stored
        return norm
    assert not ex.check_clip_gradients(wrong)
    assert "did not change" in last_line(capsys)


# --- the exercise table and the not-attempted status --------------------------------------------

def test_table_lists_every_check_in_order():
    assert [e.check for e in ex.EXERCISES] == ["check_train_one_epoch", "check_warmup_cosine",
                                               "check_accuracy", "check_training_step",
                                               "check_confusion_matrix", "check_clip_gradients"]
    assert [e.number for e in ex.EXERCISES] == [1, 2, 3, 4, 5, 6]
    assert all(hasattr(ex, e.check) for e in ex.EXERCISES)


def test_stubs_are_not_attempted(capsys):
    def stub(*args):
        raise NotImplementedError()
    for check in (ex.check_train_one_epoch, ex.check_warmup_cosine, ex.check_accuracy, ex.check_training_step,
                  ex.check_confusion_matrix, ex.check_clip_gradients):
        result = check(stub)
        assert result.status == "not attempted" and not result
        assert "not attempted yet" in last_line(capsys)
    result = ex.check_clip_gradients(None)
    assert result.status == "not attempted" and result.exercise == 6 and result.lesson == "05"
