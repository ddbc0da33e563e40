"""Exercise verdicts the grader decides itself: a probe in the submission's kernel, a judge in the grader.

A check run in the student's kernel can be forged (print "✓", write a results file, replace the
check), so `python -m vit_lib grade` never takes a verdict from the kernel. After the student's
last cell it appends a cell of its own (`probe_cell`) that, for each exercise of the lesson:

1. reloads vit_lib.classroom.exercises.lessonNN (undoing any monkeypatch), evaluates the check's
   arguments as the lesson notebook writes them (`Exercise.args`, e.g. `count_patches`), and runs
   the real check on them with a secret seed added to every seed of its inputs, and a few cases
   drawn from it added to its fixed tables of sizes (`common.grading`, `common.grading_cases`);
2. records, as plain data, everything the learner's objects did in that run: the value each call
   and attribute access returned (or the exception it raised), what it changed in the check's own
   arguments (a model's parameters, gradients, requires_grad), and the global RNG state after it;
3. writes that transcript with torch.save to a file whose name only that cell knows.

The grader then reads the file (a regular file, at most PROBE_LIMIT bytes, `torch.load(...,
weights_only=True)`: data only, no code) and runs the SAME check in its own process
(`judge`), with the same secret: the check draws its inputs itself, computes the expected answers
with vit_lib's reference code, and wherever it calls the learner's function it gets the next value
of the transcript. The verdict and the feedback line are that check's, decided in the grader. A
transcript that does not answer what the check asks (missing, cut short, garbled, from another
run) gives "failed: the grader could not read what your code computed", never a pass.

What a kernel can still do: compute the right answer by any means while the probe runs (e.g. call
vit_lib's own reference implementation), or hand over made-up data for the checks that take the
notebook's own data rather than drawing inputs themselves (lesson 00's three and lesson 01's first,
whose answer is a value; lesson 06's second, given the notebook's model and images).
"""
from __future__ import annotations

import builtins
import importlib
import os
import stat
import threading
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import torch

PROBE_LIMIT = 256 * 1024**2          # bytes of transcript the grader reads per notebook
FORMAT = 1
UNREADABLE = "the grader could not read what your code computed"
_JUDGE_LOCK = threading.Lock()       # checks seed torch's global RNG: one judge at a time per process
_MAX_DEPTH = 32


class Unreadable(BaseException):
    """The transcript does not answer what the judge asks (a BaseException: no check catches it)."""


class _NotPlain(Exception):
    pass


# ----------------------------------------------------------------------------------------------
# Plain data: what may cross from the kernel to the grader

def encode(value: Any, models: bool = False, depth: int = 0) -> Any:
    """value as tensors, numbers, strings, None, lists and tagged dicts (what weights_only loads).

    Raises _NotPlain for anything else (a module, a function, an object of the learner's class);
    with models=True a vit_lib VisionTransformer is sent as its config and weights.
    """
    if depth > _MAX_DEPTH:
        raise _NotPlain("nested too deep")
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    if isinstance(value, torch.Tensor):
        if value.layout != torch.strided:
            raise _NotPlain("not a dense tensor")
        return {"__t": "tensor", "v": value.detach().cpu().clone(), "rg": bool(value.requires_grad)}
    if kind is torch.Size:
        return {"__t": "size", "v": [int(d) for d in value]}
    if kind in (tuple, list):
        return {"__t": kind.__name__, "v": [encode(v, models, depth + 1) for v in value]}
    if kind is dict:
        return {"__t": "dict", "k": [encode(k, models, depth + 1) for k in value],
                "v": [encode(v, models, depth + 1) for v in value.values()]}
    if kind is torch.dtype:
        return {"__t": "dtype", "v": str(value).removeprefix("torch.")}
    module = getattr(kind, "__module__", "")
    if module == "numpy":
        import numpy as np

        if isinstance(value, np.ndarray) and value.dtype != object:
            return {"__t": "ndarray", "v": torch.from_numpy(value.copy())}
        if isinstance(value, np.generic) and value.dtype != object:
            return {"__t": "npscalar", "dtype": str(value.dtype), "v": value.item()}
    if models:
        from vit_lib.model import VisionTransformer

        if kind is VisionTransformer:
            return {"__t": "vit", "config": encode(asdict(value.config), depth=depth + 1),
                    "state": {k: v.detach().cpu().clone() for k, v in value.state_dict().items()},
                    "training": bool(value.training)}
    raise _NotPlain(kind.__name__)


def _opaque(type_name: str, text: str) -> Any:
    """A stand-in for a value that could not be sent: same type name and repr, nothing else."""
    cls = type(type_name if type_name.isidentifier() else "object", (), {"__repr__": lambda self: text})
    return cls()


def decode(data: Any, depth: int = 0) -> Any:
    """The inverse of encode (Unreadable for anything encode does not write)."""
    if depth > _MAX_DEPTH + 2:
        raise Unreadable("nested too deep")
    if data is None or type(data) in (bool, int, float, str):
        return data
    if not isinstance(data, dict) or not isinstance(data.get("__t"), str):
        raise Unreadable(f"an unexpected {type(data).__name__}")
    tag, v = data["__t"], data.get("v")
    try:
        if tag == "tensor":
            tensor = v.clone()
            if data.get("rg") and (tensor.is_floating_point() or tensor.is_complex()):
                tensor.requires_grad_(True)
            return tensor
        if tag == "size":
            return torch.Size([int(d) for d in v])
        if tag in ("tuple", "list"):
            items = [decode(item, depth + 1) for item in v]
            return tuple(items) if tag == "tuple" else items
        if tag == "dict":
            return dict(zip((decode(k, depth + 1) for k in data["k"]), (decode(x, depth + 1) for x in v),
                            strict=True))
        if tag == "dtype":
            dtype = getattr(torch, str(v))
            if not isinstance(dtype, torch.dtype):
                raise Unreadable(f"no dtype {v}")
            return dtype
        if tag == "ndarray":
            return v.numpy().copy()
        if tag == "npscalar":
            import numpy as np

            return np.dtype(str(data["dtype"])).type(v)
        if tag == "opaque":
            return _opaque(str(data.get("type", "object")), str(data.get("repr", "")))
        if tag == "vit":
            from vit_lib.config import ViTConfig
            from vit_lib.model import VisionTransformer

            model = VisionTransformer(ViTConfig(**decode(data["config"], depth + 1)))
            model.load_state_dict(data["state"])
            return model.train(bool(data.get("training")))
    except Unreadable:
        raise
    except Exception as exc:
        raise Unreadable(f"a garbled {tag}: {type(exc).__name__}") from None
    raise Unreadable(f"an unknown tag {tag!r}")


# ----------------------------------------------------------------------------------------------
# What a call changed in the check's own arguments

def _tensor_state(t: torch.Tensor) -> dict[str, Any]:
    return {"data": t.detach().cpu().clone(), "rg": bool(t.requires_grad),
            "grad": None if t.grad is None else t.grad.detach().cpu().clone()}


def _state(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return _tensor_state(obj)
    if isinstance(obj, torch.nn.Module):
        return {"params": {n: _tensor_state(p) for n, p in obj.named_parameters()},
                "buffers": {n: b.detach().cpu().clone() for n, b in obj.named_buffers()},
                "training": {n: bool(m.training) for n, m in obj.named_modules()}}
    return None


def _same_state(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and bool(torch.equal(a, b)))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_state(a[k], b[k]) for k in a)
    return a == b


def _mutables(args: tuple, kwargs: dict) -> list[tuple[list[int], Any]]:
    """The tensors and modules among a call's arguments (and inside list/tuple arguments)."""
    found = []
    for i, arg in enumerate([*args, *kwargs.values()]):
        if isinstance(arg, (torch.Tensor, torch.nn.Module)):
            found.append(([i], arg))
        elif isinstance(arg, (list, tuple)):
            found += [([i, j], x) for j, x in enumerate(arg) if isinstance(x, (torch.Tensor, torch.nn.Module))]
    return found


def _apply_tensor(t: torch.Tensor, s: dict[str, Any]) -> None:
    with torch.no_grad():
        if t.shape == s["data"].shape and t.dtype == s["data"].dtype:
            t.copy_(s["data"])
        else:
            t.data = s["data"].clone()
    if t.is_leaf and (t.is_floating_point() or t.is_complex()):
        t.requires_grad_(bool(s["rg"]))
    t.grad = None if s["grad"] is None else s["grad"].clone()


def _apply(obj: Any, s: Any) -> None:
    if isinstance(obj, torch.Tensor):
        _apply_tensor(obj, s)
    elif isinstance(obj, torch.nn.Module):
        params = dict(obj.named_parameters())
        for name, ts in s["params"].items():
            if name in params:
                _apply_tensor(params[name], ts)
        buffers = dict(obj.named_buffers())
        for name, b in s["buffers"].items():
            if name in buffers:
                _apply_tensor(buffers[name], {"data": b, "rg": False, "grad": None})
        modules = dict(obj.named_modules())
        for name, flag in s["training"].items():
            if name in modules:
                modules[name].training = bool(flag)


# ----------------------------------------------------------------------------------------------
# Stand-ins for the learner's objects: _Live records (kernel), _Ghost replays (grader)

class _Stand:
    __slots__ = ("_vit_side", "_vit_id")

    def __init__(self, side: Any, ident: int) -> None:
        object.__setattr__(self, "_vit_side", side)
        object.__setattr__(self, "_vit_id", ident)

    def __getattr__(self, name: str) -> Any:
        return self._vit_side.getattr(self._vit_id, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._vit_side.call(self._vit_id, args, kwargs)

    def __repr__(self) -> str:
        return "<your object>"


class Recorder:
    """Runs the learner's objects for real and writes down what each use of them gave."""

    def __init__(self) -> None:
        self.objects: list[Any] = []
        self.events: list[dict[str, Any]] = []

    def wrap(self, obj: Any) -> _Stand:
        self.objects.append(obj)
        return _Stand(self, len(self.objects) - 1)

    def _event(self, op: str, ident: int, name: str | None, act: Callable[[], Any],
               mutables: list[tuple[list[int], Any]]) -> Any:
        before = [_state(obj) for _, obj in mutables]
        rng = torch.get_rng_state()
        event: dict[str, Any] = {"op": op, "target": ident, "name": name}
        try:
            result = act()
        except Exception as exc:
            base = next((c for c in type(exc).__mro__ if getattr(builtins, c.__name__, None) is c), Exception)
            event["raise"] = {"type": type(exc).__name__, "base": base.__name__, "msg": str(exc)[:2000]}
            error: Exception | None = exc
        else:
            error = None
            try:
                event["result"] = encode(result)
                given = result
            except _NotPlain:
                given = self.wrap(result)
                event["result"] = {"__t": "proxy", "id": given._vit_id}
        changed = []
        for (path, obj), old in zip(mutables, before, strict=True):
            new = _state(obj)
            if not _same_state(old, new):
                changed.append({"path": path, "state": new})
        event["effects"] = changed
        after = torch.get_rng_state()
        event["rng"] = None if torch.equal(after, rng) else after
        self.events.append(event)
        if error is not None:
            raise error
        return given

    def getattr(self, ident: int, name: str) -> Any:
        return self._event("getattr", ident, name, lambda: getattr(self.objects[ident], name), [])

    def call(self, ident: int, args: tuple, kwargs: dict) -> Any:
        real_args = tuple(self.objects[a._vit_id] if isinstance(a, _Stand) else a for a in args)
        real_kwargs = {k: self.objects[v._vit_id] if isinstance(v, _Stand) else v for k, v in kwargs.items()}
        return self._event("call", ident, None, lambda: self.objects[ident](*real_args, **real_kwargs),
                           _mutables(real_args, real_kwargs))


def _exception(spec: Any) -> BaseException:
    if not isinstance(spec, dict):
        raise Unreadable("a garbled exception")
    base = getattr(builtins, str(spec.get("base")), Exception)
    if not (isinstance(base, type) and issubclass(base, Exception)):
        base = Exception
    name, msg = str(spec.get("type", "Exception")), str(spec.get("msg", ""))
    cls = type(name if name.isidentifier() else "Exception", (base,), {"__str__": lambda self: msg})
    return cls(msg)


class Replay:
    """Answers the judge's uses of the learner's objects from a transcript, in order."""

    def __init__(self, events: Any) -> None:
        if not isinstance(events, list):
            raise Unreadable("no list of events")
        self.events = events
        self.position = 0

    def _next(self, op: str, ident: int, name: str | None) -> dict[str, Any]:
        if self.position >= len(self.events):
            raise Unreadable("your code's answers end before the check's questions do")
        event = self.events[self.position]
        self.position += 1
        asked = (op, ident, name)
        if not isinstance(event, dict) or (event.get("op"), event.get("target"), event.get("name")) != asked:
            raise Unreadable(f"answer {self.position} does not match the check's question")
        return event

    def _outcome(self, event: dict[str, Any]) -> Any:
        rng = event.get("rng")
        if rng is not None:
            try:
                torch.set_rng_state(rng)
            except Exception:
                raise Unreadable("a garbled RNG state") from None
        if "raise" in event:
            raise _exception(event["raise"])
        result = event.get("result")
        if isinstance(result, dict) and result.get("__t") == "proxy":
            ident = result.get("id")
            if type(ident) is not int or ident < 0:
                raise Unreadable("an object without an id")
            return _Stand(self, ident)
        return decode(result)

    def getattr(self, ident: int, name: str) -> Any:
        return self._outcome(self._next("getattr", ident, name))

    def call(self, ident: int, args: tuple, kwargs: dict) -> Any:
        event = self._next("call", ident, None)
        flat = [*args, *kwargs.values()]
        for effect in event.get("effects") or []:
            try:
                path = effect["path"]
                obj = flat[path[0]] if len(path) == 1 else flat[path[0]][path[1]]
                _apply(obj, effect["state"])
            except Unreadable:
                raise
            except Exception:
                raise Unreadable("a garbled change to the check's arguments") from None
        return self._outcome(event)


# ----------------------------------------------------------------------------------------------
# In the kernel

def probe_cell(lesson: str, secret: int, path: str) -> str:
    """The source of the cell the grader appends after the student's last cell."""
    return ("# Added by the grader (python -m vit_lib grade): the exercise checks on fresh inputs.\n"
            "import importlib as _vit_importlib\n"
            "_vit_importlib.reload(_vit_importlib.import_module('vit_lib.classroom.probe'))"
            f".run_probes(globals(), {lesson!r}, {secret!r}, {path!r})\n")


def _lesson_module(lesson: str) -> Any:
    common = importlib.reload(importlib.import_module("vit_lib.classroom.exercises.common"))
    module = importlib.reload(importlib.import_module(f"vit_lib.classroom.exercises.lesson{lesson}"))
    return common, module


def probe_one(common: Any, module: Any, exercise: Any, namespace: dict[str, Any], secret: int) -> dict[str, Any]:
    """Run one exercise's check on the notebook's objects, recording what they computed."""
    record: dict[str, Any] = {"exercise": exercise.number}
    values = []
    for expression in exercise.args:
        try:
            values.append(eval(expression, namespace))   # noqa: S307 - the teacher's expression, in the student's kernel
        except Exception as exc:
            why = expression if isinstance(exc, NameError) else f"{expression} ({type(exc).__name__}: {exc})"
            record.update(state="undefined", why=why[:300])
            return record
    check = getattr(module, exercise.check)
    answers = getattr(check, "exercise_answers", 1)
    recorder = Recorder()
    sent, given = [], []
    for index, value in enumerate(values):
        if index < answers and callable(value) and not isinstance(value, torch.Tensor):
            stand = recorder.wrap(value)
            sent.append({"__t": "proxy", "id": stand._vit_id})
            given.append(stand)
            continue
        try:
            sent.append(encode(value, models=True))
        except _NotPlain:
            sent.append({"__t": "opaque", "type": type(value).__name__, "repr": repr(value)[:200]})
        given.append(value)
    with common.grading(secret):
        try:
            check(*given)
        except BaseException as exc:   # the check's own error, or the learner's SystemExit: the judge sees it
            record["error"] = f"{type(exc).__name__}: {exc}"[:300]
    record.update(state="ran", args=sent, events=recorder.events)
    return record


def run_probes(namespace: dict[str, Any], lesson: str, secret: int, path: str) -> None:
    """Probe every exercise of the lesson; rewrite the transcript file after each one."""
    common, module = _lesson_module(lesson)
    records: list[dict[str, Any]] = []
    for exercise in module.EXERCISES:
        records.append(probe_one(common, module, exercise, namespace, secret))
        tmp = f"{path}.tmp"
        torch.save({"format": FORMAT, "lesson": lesson, "secret": secret, "records": records}, tmp)
        os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------
# In the grader

def read_transcript(path: Path, limit: int = PROBE_LIMIT) -> tuple[dict[str, Any] | None, str]:
    """(the transcript, "") or (None, why not): only a regular file of at most `limit` bytes,
    never following a link, loaded as data only."""
    import io

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None, "the grader's checks wrote nothing"
    except OSError as exc:
        return None, f"cannot open it ({exc.strerror})"
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None, "it is not a regular file"
        if info.st_size > limit:
            return None, f"it is larger than {limit // 1024**2} MB"
        data = f.read(limit + 1)
    if len(data) > limit:
        return None, f"it is larger than {limit // 1024**2} MB"
    try:
        transcript = torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:
        return None, f"it is garbled ({type(exc).__name__})"
    if not isinstance(transcript, dict) or transcript.get("format") != FORMAT:
        return None, "it is garbled"
    if not _tensors_own_their_values(transcript):
        return None, "it holds a tensor larger than its storage"
    return transcript, ""


def _tensors_own_their_values(data: Any, depth: int = 0) -> bool:
    """False when a tensor is a view bigger than its storage (stride 0): cloning it could take
    far more memory than the file, so such a transcript is refused before anything is cloned."""
    if depth > 64:
        return False
    if isinstance(data, torch.Tensor):
        return data.numel() * data.element_size() <= data.untyped_storage().nbytes()
    if isinstance(data, dict):
        return all(_tensors_own_their_values(v, depth + 1) for v in data.values())
    if isinstance(data, (list, tuple)):
        return all(_tensors_own_their_values(v, depth + 1) for v in data)
    return True


def judge(lesson: str, exercise: Any, record: Any, secret: int) -> dict[str, Any]:
    """Decide one exercise in this process: the check itself, fed with the transcript's answers.

    Returns {"lesson", "exercise", "title", "status", "feedback"}; status "undefined" (with the
    reason as feedback) when the notebook does not define what the check takes.
    """
    common = importlib.import_module("vit_lib.classroom.exercises.common")
    module = importlib.import_module(f"vit_lib.classroom.exercises.lesson{lesson}")
    out = {"lesson": lesson, "exercise": exercise.number, "title": exercise.title}
    if not isinstance(record, dict):
        return {**out, "status": "failed", "feedback": f"{UNREADABLE} (no record)"}
    if record.get("state") == "undefined":
        return {**out, "status": "undefined", "feedback": str(record.get("why", ""))[:300]}
    check = getattr(module, exercise.check)
    with _JUDGE_LOCK, torch.random.fork_rng(devices=[]), common.grading(secret):
        try:
            replay = Replay(record.get("events"))
            sent = record.get("args")
            if not isinstance(sent, list) or len(sent) != len(exercise.args):
                raise Unreadable("the check's arguments are missing")
            given = [_Stand(replay, int(a.get("id", -1))) if isinstance(a, dict) and a.get("__t") == "proxy"
                     else decode(a) for a in sent]
            result = check(*given)
        except Unreadable as exc:
            return {**out, "status": "failed", "feedback": f"{UNREADABLE} ({exc})"}
        except Exception as exc:  # the check could not even start on what was sent (e.g. an opaque model)
            return {**out, "status": "failed",
                    "feedback": f"the grader could not check it: {type(exc).__name__}: {exc}"[:300]}
    return {**out, "status": result.status, "feedback": result.feedback}
