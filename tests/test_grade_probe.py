"""The grader's own verdicts (vit_lib.classroom.probe): probe in "the kernel", judge in the grader.

Every exercise of every lesson is probed on the worked solutions and on one typical mistake, the
transcript goes through torch.save / torch.load(weights_only=True) as it does between the kernel
and the grader, and the judge's verdict is compared with what the check says when run directly:
with the secret 0 they agree word for word (the same check decides), and with any other secret the
solutions still pass and the mistakes still fail. A transcript that does not answer the check
(missing, cut short, garbled, from a check the kernel replaced) is a failure, never a pass.
"""
from __future__ import annotations

import importlib
import io
import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from vit_lib.classroom import probe
from vit_lib.classroom.exercises import common

sys.path.insert(0, str(Path(__file__).resolve().parent))
t01, t02, t03, t04, t05, t06, t07, t08 = (importlib.import_module(f"test_exercises_lesson0{i}")
                                          for i in range(1, 9))
SECRET = 987_654_321


def _lesson00() -> dict[str, Any]:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (60, 1, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.arange(60) % 10
    mnist = SimpleNamespace(mean=(0.1307,), std=(0.3081,))
    x = images.float() / 255
    return {"test_counts": torch.bincount(labels, minlength=10), "y_test": labels,
            "batch_normalised": (x - 0.1307) / 0.3081, "images": images, "mnist": mnist,
            "class_means": torch.stack([x[labels == k].mean(0) for k in range(10)]),
            "x_train": images, "y_train": labels}


def _patches(x: torch.Tensor) -> torch.Tensor:
    return t01._by_hand(x, 4)


def _no_zero_grad(model, optimizer, images, labels) -> float:  # noqa: ANN001
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.step()
    return loss.item()


def _clip_each(parameters, max_norm):  # noqa: ANN001, ANN202
    for p in parameters:
        t05.clip_gradients([p], max_norm)
    return t05.clip_gradients(parameters, math.inf)


def _model_and_images() -> tuple[Any, torch.Tensor]:
    model, images = t06.small_model_and_images()
    return model, images


BATCH = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
MODEL, IMAGES = _model_and_images()
SOLUTIONS: dict[str, dict[str, Any]] = {
    "00": _lesson00(),
    "01": {"patches4": _patches(BATCH), "batch": BATCH, "count_patches": lambda h, w, p: (h // p) * (w // p),
           "patches_to_image": t01._unpatchify},
    "02": {"masked_attention": t02.masked_attention, "attention_params": t02.attention_params,
           "split_heads": t02.split_heads, "merge_heads": t02.merge_heads},
    "03": {"layer_norm": t03.layer_norm, "PostNormBlock": t03.PostNormBlock,
           "block_parameters": t03.block_parameters, "drop_path": t03.drop_path, "RMSNorm": t03.RMSNorm,
           "LayerScaleBlock": t03.LayerScaleBlock, "ParallelBlock": t03.ParallelBlock},
    "04": {"vit_parameters": t04.vit_parameters, "mean_pool_logits": t04.mean_pool_logits,
           "output_shapes": t04.output_shapes, "position_similarity": t04.position_similarity},
    "05": {"train_one_epoch_by_hand": t05.train_one_epoch_by_hand,
           "warmup_cosine": t05.warmup_cosine, "accuracy": t05.accuracy, "training_step": t05.training_step,
           "confusion": t05.confusion, "clip_gradients": t05.clip_gradients},
    "06": {"plain_rollout": t06.plain_rollout, "most_attended_patch": t06.most_attended_patch,
           "model": MODEL, "x": IMAGES, "head_distance": t06.head_distance},
    "07": {"conv_parameters": t07.conv_parameters, "receptive_field": t07.receptive_field,
           "token_cost": t07.token_cost, "freeze_backbone": t07.freeze_backbone},
    "08": {"centre_of_mass": t08.centre_of_mass, "scale_into_box": t08.scale_into_box,
           "paste_centred": t08.paste_centred, "model_input": t08.model_input},
}
# One typical mistake per exercise: (lesson, exercise) -> the notebook names it replaces.
MISTAKES: dict[tuple[str, int], dict[str, Any]] = {
    ("00", 1): {"test_counts": SOLUTIONS["00"]["test_counts"].float() / 60},
    ("00", 2): {"batch_normalised": SOLUTIONS["00"]["images"].float() / 255},
    ("00", 3): {"class_means": SOLUTIONS["00"]["class_means"] * 255},
    ("01", 1): {"patches4": BATCH.reshape(3, 49, 16)},
    ("01", 2): {"count_patches": lambda h, w, p: h * w // p},
    ("01", 3): {"patches_to_image": lambda p, size, h, w: p.reshape(p.shape[0], -1, h, w)},
    ("02", 1): {"masked_attention": lambda q, k, v, mask: t02.masked_attention(q * k.shape[-1] ** 0.5, k, v, mask)},
    ("02", 2): {"attention_params": lambda d, h, b=True: t02.attention_params(d, h, b) + 1},
    ("02", 3): {"split_heads": lambda x, h: x.reshape(x.shape[0], h, x.shape[1], -1)},
    ("03", 1): {"layer_norm": lambda x, gamma, beta, eps=1e-5: t03.layer_norm(x, gamma, beta, eps) * 1.5},
    ("03", 2): {"PostNormBlock": t03.PreNormBlock},
    ("03", 3): {"block_parameters": lambda dim, mlp: t03.block_parameters(dim, mlp) + 1},
    ("03", 4): {"drop_path": t03._no_rescale},
    ("03", 5): {"RMSNorm": t03._rms_variant(lambda x, eps: x / (x.pow(2).mean(-1, keepdim=True).sqrt() + eps))},
    ("03", 6): {"LayerScaleBlock": t03.ScaleAfterResidual},
    ("03", 7): {"ParallelBlock": t03.SequentialShared},
    ("04", 1): {"vit_parameters": t04._always_cls},
    ("04", 2): {"mean_pool_logits": lambda model, images: model.head(model.forward_features(images)[:, 0])},
    ("04", 3): {"output_shapes": t04._forgot_cls},
    ("04", 4): {"position_similarity": lambda table: table @ table.T},
    ("05", 1): {"train_one_epoch_by_hand": t05._epoch("no_zero_grad")},
    ("05", 2): {"warmup_cosine": lambda step, total, warmup: 1.0},
    ("05", 3): {"accuracy": lambda logits, labels: (logits.argmax(1) == labels).float().mean().item()},
    ("05", 4): {"training_step": _no_zero_grad},
    ("05", 5): {"confusion": lambda p, t, n: t05.confusion(p, t, n).T},
    ("05", 6): {"clip_gradients": _clip_each},
    ("06", 1): {"plain_rollout": lambda maps: maps[-1].mean(dim=1)},
    ("06", 2): {"most_attended_patch": lambda model, image: (0, 0)},
    ("06", 3): {"head_distance": lambda w, g, p: t06.head_distance(w, g, 1)},
    ("07", 1): {"conv_parameters": lambda c_in, c_out, k, bias: c_in * c_out * k * k},
    ("07", 2): {"receptive_field": lambda layers: sum(k for k, _ in layers)},
    ("07", 3): {"token_cost": lambda size, patch: ((size // patch) ** 2, (size // patch) ** 4)},
    ("07", 4): {"freeze_backbone": lambda model: model.eval()},
    ("08", 1): {"centre_of_mass": lambda image: t08.centre_of_mass(image)[::-1]},
    ("08", 2): {"scale_into_box": lambda c, box: F.interpolate(c[None, None].float(), size=(box, box))[0, 0]},
    ("08", 3): {"paste_centred": lambda scaled: torch.zeros(28, 28)},
    ("08", 4): {"model_input": lambda prepared, mean, std: prepared},
}
ALL = sorted(MISTAKES)


def _exercise(lesson: str, number: int) -> tuple[Any, Any]:
    module = importlib.import_module(f"vit_lib.classroom.exercises.lesson{lesson}")
    return module, module.EXERCISES[number - 1]


def _through_the_wire(record: dict[str, Any]) -> Any:
    buffer = io.BytesIO()
    torch.save(record, buffer)
    return torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)


def _graded(lesson: str, number: int, namespace: dict[str, Any], secret: int) -> dict[str, Any]:
    module, ex = _exercise(lesson, number)
    record = probe.probe_one(common, module, ex, dict(namespace), secret)
    return probe.judge(lesson, ex, _through_the_wire(record), secret)


def _direct(lesson: str, number: int, namespace: dict[str, Any]) -> tuple[str, str]:
    module, ex = _exercise(lesson, number)
    args = [eval(expression, dict(namespace)) for expression in ex.args]   # noqa: S307
    result = getattr(module, ex.check)(*args)
    return result.status, result.feedback


def test_every_exercise_has_a_solution_and_a_mistake() -> None:
    lessons = [f"{i:02d}" for i in range(9)]
    assert ALL == [(lesson, ex.number) for lesson in lessons for ex in _exercise(lesson, 1)[0].EXERCISES]


@pytest.mark.parametrize("lesson,number", ALL)
def test_solution_passes_and_mistake_fails_with_the_checks_own_words(lesson: str, number: int, capsys) -> None:
    solution = SOLUTIONS[lesson]
    wrong = {**solution, **MISTAKES[(lesson, number)]}
    for namespace, status in ((solution, "passed"), (wrong, "failed")):
        direct = _direct(lesson, number, namespace)
        assert direct[0] == status, direct
        verdict = _graded(lesson, number, namespace, 0)          # the notebook's own inputs
        assert (verdict["status"], verdict["feedback"]) == direct
        verdict = _graded(lesson, number, namespace, SECRET)     # the grader's fresh inputs
        assert verdict["status"] == status, verdict
    capsys.readouterr()


@pytest.mark.parametrize("lesson,number", [("01", 3), ("03", 2), ("03", 6), ("05", 1), ("05", 4), ("07", 4)])
def test_stubs_none_and_missing_names(lesson: str, number: int) -> None:
    module, ex = _exercise(lesson, number)
    name = ex.args[0]

    def stub(*args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError()

    for answer in (stub, None):
        verdict = _graded(lesson, number, {**SOLUTIONS[lesson], name: answer}, SECRET)
        assert (verdict["status"], verdict["feedback"]) == ("not attempted", common.NOT_ATTEMPTED)
    missing = {k: v for k, v in SOLUTIONS[lesson].items() if k != name}
    verdict = _graded(lesson, number, missing, SECRET)
    assert verdict["status"] == "undefined" and name in verdict["feedback"]


def test_hard_coded_answers_pass_only_on_the_notebooks_inputs() -> None:
    """Answers remembered for the check's usual inputs (images from seed 0, its table of sizes)."""
    g = torch.Generator().manual_seed(0)
    remembered = {(h, w): torch.rand(shape, generator=g)
                  for shape, (h, w) in (((2, 1, 28, 28), (28, 28)), ((2, 1, 12, 20), (12, 20)), ((2, 3, 8, 8), (8, 8)))}
    cheat = {**SOLUTIONS["01"], "patches_to_image": lambda patches, p, h, w: remembered[(h, w)]}
    assert _graded("01", 3, cheat, 0)["status"] == "passed"
    assert _graded("01", 3, cheat, SECRET)["status"] == "failed"
    from vit_lib.classroom.exercises.lesson01 import _PATCH_CASES  # a table of the check's own sizes

    table = {case: (case[0] // case[2]) * (case[1] // case[2]) for case in _PATCH_CASES}
    lookup = {**SOLUTIONS["01"], "count_patches": lambda h, w, p: table.get((h, w, p), 0)}
    assert _graded("01", 2, lookup, 0)["status"] == "passed"
    assert _graded("01", 2, lookup, SECRET)["status"] == "failed"


def _record(lesson: str, number: int, secret: int = SECRET) -> dict[str, Any]:
    module, ex = _exercise(lesson, number)
    return _through_the_wire(probe.probe_one(common, module, ex, dict(SOLUTIONS[lesson]), secret))


@pytest.mark.parametrize("spoil", ["no events", "cut short", "another secret", "garbled result", "no record",
                                   "wrong args", "pickled object"])
def test_a_transcript_that_does_not_answer_fails(spoil: str) -> None:
    module, ex = _exercise("02", 1)
    record = _record("02", 1, 1 if spoil == "another secret" else SECRET)
    if spoil == "no events":                  # the kernel replaced the check: it never called the answer
        record["events"] = []
    elif spoil == "cut short":
        record["events"] = record["events"][:1]
    elif spoil == "garbled result":
        record["events"][0]["result"] = {"__t": "tensor", "v": "not a tensor"}
    elif spoil == "no record":
        record = None
    elif spoil == "wrong args":
        record["args"] = []
    elif spoil == "pickled object":
        record["events"][0]["result"] = {"__t": "proxy"}
    verdict = probe.judge("02", ex, record, SECRET)
    assert verdict["status"] == "failed", verdict          # answers for other inputs fail as wrong answers
    if spoil != "another secret":
        assert verdict["feedback"].startswith(probe.UNREADABLE), verdict


def test_read_transcript_refuses_links_fifos_big_and_foreign_files(tmp_path: Path) -> None:
    import os

    good = tmp_path / "t.pt"
    torch.save({"format": probe.FORMAT, "lesson": "02", "secret": 1, "records": []}, good)
    assert probe.read_transcript(good)[0] is not None
    (tmp_path / "link.pt").symlink_to(good)
    assert probe.read_transcript(tmp_path / "link.pt") == (None, "cannot open it (Too many levels of symbolic links)")
    os.mkfifo(tmp_path / "fifo.pt")
    assert probe.read_transcript(tmp_path / "fifo.pt") == (None, "it is not a regular file")
    assert probe.read_transcript(good, limit=10) == (None, "it is larger than 0 MB")
    assert probe.read_transcript(tmp_path / "absent.pt")[0] is None

    class Evil:
        def __reduce__(self) -> tuple:
            return (print, ("pwned",))

    torch.save({"format": probe.FORMAT, "x": torch.zeros(1).expand(10**9)}, tmp_path / "expanded.pt")
    assert probe.read_transcript(tmp_path / "expanded.pt") == (None, "it holds a tensor larger than its storage")
    torch.save({"format": probe.FORMAT, "x": Evil()}, tmp_path / "evil.pt")
    transcript, why = probe.read_transcript(tmp_path / "evil.pt")
    assert transcript is None and why.startswith("it is garbled")


def _zero_grad_between(model, optimizer, images, labels) -> float:  # noqa: ANN001
    loss = F.cross_entropy(model(images), labels)
    loss.backward()
    optimizer.zero_grad()                    # clears what backward just computed
    optimizer.step()
    return loss.item()


def _raises_key_error(*args: Any) -> Any:
    return {}["missing"]


def _numpy_count(c_in: int, c_out: int, k: int, bias: bool) -> Any:
    import numpy as np

    return np.int64(c_in * c_out * k * k + c_out * bias)


TRICKY = [  # answers whose verdict depends on more than a returned tensor
    (("05", 4), {"training_step": _zero_grad_between}),           # the order of calls on the optimizer
    (("05", 1), {"train_one_epoch_by_hand": t05._epoch("zero_grad_between")}),  # the same, over an epoch
    (("05", 1), {"train_one_epoch_by_hand": t05._epoch("step_then_zero_grad")}),  # the learner's RuntimeError
    (("05", 1), {"train_one_epoch_by_hand": t05._epoch(train=False)}),  # the model's mode, changed in place
    (("05", 1), {"train_one_epoch_by_hand": t05._epoch(returns="mean_of_batches")}),  # a returned dict
    (("03", 2), {"PostNormBlock": t03.BadNames}),                  # hasattr on the learner's block
    (("03", 2), {"PostNormBlock": t03.SwappedNorms}),              # the check sets the block's LayerNorms
    (("03", 2), {"PostNormBlock": t03._StubBlock}),                # a stub class: not attempted
    (("03", 5), {"RMSNorm": t03.RMSNormPlainWeight}),              # requires_grad of a state_dict entry
    (("03", 5), {"RMSNorm": t03.RMSNormWithBias}),                 # the learner's parameter names
    (("03", 6), {"LayerScaleBlock": t03.ScalesNotParameters}),     # a plain tensor attribute, not a parameter
    (("03", 6), {"LayerScaleBlock": t03.OwnMLP}),                  # load_state_dict's missing/unexpected keys
    (("03", 7), {"ParallelBlock": t03.TwoNormsParallel}),          # parameters counted from the state_dict
    (("02", 2), {"attention_params": _raises_key_error}),          # the learner's exception, named
    (("07", 1), {"conv_parameters": _numpy_count}),                # a numpy integer is not an int
    (("07", 4), {"freeze_backbone": t07.freeze_backbone}),         # requires_grad changed in place
    (("05", 6), {"clip_gradients": t05.clip_gradients}),           # gradients scaled in place
]


@pytest.mark.parametrize("exercise,answer", TRICKY, ids=[f"{lesson}.{n}-{next(iter(a.values())).__name__}"
                                                         for (lesson, n), a in TRICKY])
def test_the_judge_says_what_the_check_says(exercise: tuple[str, int], answer: dict[str, Any], capsys) -> None:
    lesson, number = exercise
    namespace = {**SOLUTIONS[lesson], **answer}
    direct = _direct(lesson, number, namespace)
    verdict = _graded(lesson, number, namespace, 0)
    assert (verdict["status"], verdict["feedback"]) == direct
    assert _graded(lesson, number, namespace, SECRET)["status"] == direct[0]
    capsys.readouterr()


def test_the_table_names_the_arguments_of_the_lesson_notebooks_check_calls() -> None:
    """Exercise.args is what the grader evaluates in the kernel: it must be what the lesson passes."""
    import ast
    import json

    root = Path(__file__).resolve().parent.parent / "notebooks"
    for lesson in (f"{i:02d}" for i in range(9)):
        module, _ = _exercise(lesson, 1)
        path, = root.glob(f"{lesson}_*.ipynb")
        calls: dict[str, set[tuple[str, ...]]] = {}
        for cell in json.loads(path.read_text(encoding="utf-8"))["cells"]:
            if cell["cell_type"] != "code":
                continue
            try:
                tree = ast.parse("".join(cell["source"]))
            except SyntaxError:
                continue
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id.startswith("check_"):
                    calls.setdefault(node.func.id, set()).add(tuple(ast.unparse(a) for a in node.args))
        for ex in module.EXERCISES:
            assert calls.get(ex.check) == {ex.args}, (lesson, ex.check, calls.get(ex.check), ex.args)
