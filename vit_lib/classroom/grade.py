"""Grade a folder of submitted lesson notebooks: run each one, then check its exercises in the grader.

    python -m vit_lib grade submissions/                       # every *.ipynb below the folder
    python -m vit_lib grade alice.ipynb bob.ipynb --timeout 300 --out gradebook.csv

Each notebook runs top to bottom in its own fresh Python kernel (nbclient), from a copy in a new
temporary folder that is also the kernel's working directory, with a time limit for the whole
notebook (`--timeout`, default 600 s; the kernel is killed when it is reached).

Verdicts the kernel cannot forge (vit_lib.classroom.probe): after the student's last cell the
grader appends a cell of its own that runs each exercise's check on the objects the lesson notebook
passes to it (Exercise.args: `count_patches`, not whatever the submission's check cell says), with
fresh inputs from a secret seed, and records as plain data what the student's code returned. The
grader reads that transcript (a regular file of bounded size, torch.load(weights_only=True)) and
runs the same check in its own process on it: the check draws the same inputs, computes the
expected answers with vit_lib's reference code and decides. What the notebook printed ("✓ ..."),
wrote to $VIT_LIB_RESULTS, or did to the checks in its kernel counts for nothing; a transcript
that does not answer the check gives "failed: the grader could not read what your code computed".

A cell that raises does not stop the run (nbclient's allow_errors): the exercises are still
checked. An exercise whose objects the notebook never defined is "not run", with the first error
as the reason. The lesson comes from the notebook metadata `vit_lib.lesson`, else from the file
name `NN_*.ipynb`.

Output: a table on stdout with a total per file, and a CSV gradebook (`--out`, default
gradebook.csv) with the columns file, lesson, exercise, title, passed, status, feedback.
status is one of: passed, failed, not attempted, not run, timed out, output limit (exercise rows),
and invalid notebook, unknown lesson (one row for a file that could not be graded at all).
Exit status 0 when the gradebook was written (whatever the students scored), 2 on a usage error,
130 on Ctrl-C (after writing the gradebook of the notebooks graded until then).

Isolation (vit_lib.classroom.sandbox, off with --no-sandbox): each kernel runs without network
(unshare -n; the grader talks to it over Unix sockets), under --memory/--cpu-time/--file-size and,
when the grader is root, as its own uid (200000 + n) with --procs, in a 0700 folder; the
protections in force are printed to stderr. The output a notebook prints is kept up to
--max-output (default 10M) per notebook: past it the kernel is stopped and its exercises get
"output limit (10 MB) exceeded", without the grader holding the rest.
--jobs N grades N notebooks at once (threads, each driving one kernel with max(1, cores // N)
OpenMP/MKL threads); rows are printed and written in the order the notebooks were found.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import importlib
import os
import re
import secrets
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vit_lib.classroom import probe, sandbox
from vit_lib.classroom.exercises.common import RESULTS_ENV, Exercise
from vit_lib.classroom.notebooks import lesson_number
from vit_lib.cli.common import Interrupted, positive_float, run_cli
from vit_lib.machinery.errors import OutputError, UsageError
from vit_lib.machinery.files import check_writable_folder, write_atomically

DEFAULT_TIMEOUT = 600.0
DEFAULT_MAX_OUTPUT = 10 * 1024**2
COLUMNS = ("file", "lesson", "exercise", "title", "passed", "status", "feedback")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


@dataclass(frozen=True)
class Row:
    """One line of the gradebook. `exercise` is None on a row about the whole file."""

    file: str
    lesson: str
    exercise: int | None
    title: str
    status: str
    feedback: str

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def as_csv(self) -> dict[str, str]:
        return {"file": self.file, "lesson": self.lesson,
                "exercise": "" if self.exercise is None else str(self.exercise),
                "title": self.title, "passed": "true" if self.passed else "false",
                "status": self.status, "feedback": self.feedback}


@dataclass
class Run:
    """What running one notebook gave: the grader's verdicts and what went wrong."""

    results: list[dict[str, Any]] = field(default_factory=list)   # judged in the grader (probe.judge)
    errors: list[str] = field(default_factory=list)     # "cell 12: NameError: ..." per failing cell
    stopped: str = ""          # why the run ended early ("" when it ran to the end)
    timed_out: bool = False
    output_limit: int | None = None   # set to --max-output when the notebook printed more than that
    missing: dict[int, str] = field(default_factory=dict)   # exercise -> what the notebook does not define
    unreadable: str = ""       # why the grader's checks gave nothing to read
    seconds: float = 0.0


# ----------------------------------------------------------------------------------------------
# Finding and reading submissions

def find_notebooks(paths: Sequence[str | Path]) -> list[Path]:
    """The notebooks named, folders searched recursively (checkpoint folders skipped), in order."""
    found: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*.ipynb")
                            if ".ipynb_checkpoints" not in p.parts and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise UsageError(f"{given}: no such file or folder")
    if not found:
        raise UsageError("no *.ipynb notebook found in " + ", ".join(str(p) for p in paths))
    unique: list[Path] = []
    for path in found:
        if path not in unique:
            unique.append(path)
    return unique


def exercises_of(lesson: str) -> tuple[Exercise, ...] | None:
    """The EXERCISES table of vit_lib.classroom.exercises.lessonNN (None when there is no such lesson)."""
    if not re.fullmatch(r"\d\d", lesson):
        return None
    try:
        module = importlib.import_module(f"vit_lib.classroom.exercises.lesson{lesson}")
    except ModuleNotFoundError:
        return None
    return tuple(getattr(module, "EXERCISES", ()))


def read_submission(path: Path) -> dict[str, Any]:
    """The notebook as nbformat reads it; ValueError with a one-line reason when it is not one."""
    import nbformat

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the file: {exc}") from None
    try:
        with warnings.catch_warnings():    # e.g. cells without ids, from an older Jupyter
            warnings.simplefilter("ignore")
            nb = nbformat.reads(text, as_version=4)
    except Exception as exc:  # NotJSONError, a missing nbformat key, a future version, ...
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ValueError(f"not a valid notebook ({reason[:200]})") from None
    if not isinstance(nb.get("cells"), list):
        raise ValueError("not a valid notebook (no list of cells)")
    for index, cell in enumerate(nb.cells):
        if not isinstance(cell, dict) or "cell_type" not in cell:
            raise ValueError(f"not a valid notebook (cell {index} has no cell_type)")
        if nb.nbformat_minor >= 5 and "id" not in cell:
            cell["id"] = f"cell-{index}"
    return nb


# ----------------------------------------------------------------------------------------------
# Running one notebook

def _kernel_manager() -> Any:
    """A kernel manager for this interpreter's ipykernel (the kernel sees the same vit_lib)."""
    from jupyter_client.manager import AsyncKernelManager

    km = AsyncKernelManager(kernel_name="python3")
    argv = km.kernel_spec.argv
    if argv and "ipykernel" in " ".join(argv[1:3]):
        argv[0] = sys.executable
    return km


def _cell_errors(nb: Any, cells: int | None = None) -> list[str]:
    errors = []
    for index, cell in enumerate(nb.cells[:cells]):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "error":
                value = _ANSI.sub("", str(output.get("evalue", ""))).strip().splitlines()
                errors.append(f"cell {index}: {output.get('ename', 'Error')}"
                              + (f": {value[0][:200]}" if value else ""))
    return errors


def _content_size(value: Any, depth: int = 0) -> int:
    """Characters in an output message's content (text, data of every MIME type, traceback)."""
    if isinstance(value, (str, bytes)):
        return len(value)
    if depth > 8:
        return 0
    if isinstance(value, dict):
        return sum(_content_size(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_content_size(v, depth + 1) for v in value)
    return 8


def _bounded_client(nb: Any, max_output: int | None, over: asyncio.Event, **kwargs: Any) -> Any:
    """An nbclient NotebookClient that keeps at most max_output characters of output in all,
    and sets `over` (then drops every later output) when the notebook prints more."""
    from nbclient import NotebookClient

    class BoundedClient(NotebookClient):
        def output(self, outs: Any, msg: dict[str, Any], display_id: Any, cell_index: int) -> Any:
            self._kept = getattr(self, "_kept", 0) + _content_size(msg.get("content"))
            if max_output is not None and self._kept > max_output:
                over.set()
                return None
            return super().output(outs, msg, display_id, cell_index)

    return BoundedClient(nb, **kwargs)


async def _run(nb: Any, workdir: Path, env: dict[str, str], limit: float,
               log: Any = None, km: Any = None, max_output: int | None = None) -> tuple[str, str]:
    """Execute nb in a new kernel; ('' or why it stopped early, '' / 'timed out' / 'output limit').

    The limit covers the whole notebook: when it is reached, or when the notebook has printed more
    than max_output characters, the kernel is killed, then the client stopped (nbclient's own
    `timeout` is per cell, so it is only a backstop here).
    """
    from nbclient.exceptions import DeadKernelError

    km = km if km is not None else _kernel_manager()
    over = asyncio.Event()
    client = _bounded_client(nb, max_output, over, km=km, timeout=int(limit) + 60, allow_errors=True,
                             kernel_name="python3", record_timing=False,
                             resources={"metadata": {"path": str(workdir)}})
    task = asyncio.ensure_future(client.async_execute(env=env, cwd=str(workdir), stdout=log,
                                                      stderr=log))
    watch = asyncio.ensure_future(over.wait())
    try:
        done, _ = await asyncio.wait({task, watch}, timeout=limit, return_when=asyncio.FIRST_COMPLETED)
        if task not in done:
            await km.shutdown_kernel(now=True)      # SIGKILL: a busy loop cannot ignore it
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            if over.is_set():
                return f"the notebook printed more than --max-output ({_size(max_output or 0)})", "output limit"
            return f"the notebook was stopped at the time limit of {limit:g} s", "timed out"
        exc = task.exception()
        if exc is None:
            return "", ""
        if isinstance(exc, DeadKernelError):
            return "the kernel died (the notebook crashed Python or ran out of memory)" + _bound_hit(km), ""
        message = _ANSI.sub("", str(exc)).strip().splitlines()
        return f"the run failed: {type(exc).__name__}" + (f": {message[0][:200]}" if message else ""), ""
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if client.kc is not None:
            client.kc.stop_channels()
        try:
            if km.has_kernel:
                await km.shutdown_kernel(now=True)
        except Exception:
            pass


def _bound_hit(km: Any) -> str:
    """' (...bound...)' when the kernel's exit signal says which resource limit killed it."""
    import signal

    process = getattr(getattr(km, "provisioner", None), "process", None)
    code = process.poll() if process is not None else None
    if code == -signal.SIGXCPU:
        return ": it hit the CPU-time bound (--cpu-time)"
    if code == -signal.SIGXFSZ:
        return ": it hit the file-size bound (--file-size)"
    return ""


def _size(n: int) -> str:
    """10485760 -> '10 MB' (powers of 1024, as --max-output reads them)."""
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def run_notebook(nb: Any, name: str, limit: float = DEFAULT_TIMEOUT,
                 executed_dir: Path | None = None, saved_as: str | None = None,
                 limits: sandbox.Limits | None = None, uid: int | None = None, threads: int | None = None,
                 lesson: str | None = None, exercises: Sequence[Exercise] = (),
                 max_output: int | None = DEFAULT_MAX_OUTPUT) -> Run:
    """Run a copy of nb in a fresh kernel inside a new temporary folder, then judge its exercises.

    Whatever kernel the notebook's metadata names, it runs in this interpreter's ipykernel.
    With a lesson, the grader's probe cell (vit_lib.classroom.probe) runs after the notebook's
    cells with a fresh secret, and each exercise is judged here from its transcript.
    With limits, the kernel starts under vit_lib.classroom.sandbox (no network, resource limits,
    and as `uid` when the grader is root), in a folder only that uid can open.
    With executed_dir, the executed notebook is saved there as `saved_as` (default: name).
    """
    import nbformat

    run = Run()
    start = time.perf_counter()
    secret = secrets.randbelow(2**31 - 1) + 1
    student_cells = len(nb.cells)
    with tempfile.TemporaryDirectory(prefix="vit-grade-") as tmp:
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        nbformat.write(nb, workdir / name)           # the copy the submission runs from
        transcript = workdir / f".vit-probe-{secrets.token_hex(8)}.pt"   # a name only the probe cell knows
        if lesson is not None:
            nb.cells.append(nbformat.v4.new_code_cell(probe.probe_cell(lesson, secret, str(transcript)),
                                                      id="vit-grader-probe"))
        env = dict(os.environ)
        env.pop(RESULTS_ENV, None)                   # the grader reads no result the kernel reports
        env.pop("JPY_PARENT_PID", None)
        if threads is not None:                      # torch reads OMP_NUM_THREADS for its intra-op pool
            env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
        km = None
        if limits is not None:
            Path(tmp).chmod(0o711)                   # the kernel's uid may pass through, not list
            env["HOME"] = str(workdir)
            km = sandbox.kernel_manager(workdir, limits, uid)
        with open(Path(tmp) / "kernel.log", "wb") as log:   # the kernel's own stdout/stderr
            try:
                run.stopped, ended = asyncio.run(_run(nb, workdir, env, limit, log, km, max_output))
                run.timed_out = ended == "timed out"
                run.output_limit = max_output if ended == "output limit" else None
            except Exception as exc:                 # e.g. no python3 kernel (ipykernel missing)
                run.stopped = f"the kernel could not start: {type(exc).__name__}: {exc}"[:300]
        run.errors = _cell_errors(nb, student_cells)
        if lesson is not None:
            _judge_run(run, lesson, exercises, transcript, secret, nb.cells[student_cells:])
        run.seconds = time.perf_counter() - start
    if executed_dir is not None:
        executed_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, executed_dir / (saved_as or name))
    return run


def _judge_run(run: Run, lesson: str, exercises: Sequence[Exercise], transcript_path: Path, secret: int,
               probe_cells: Sequence[Any]) -> None:
    """Judge each exercise in this process from the probe's transcript (vit_lib.classroom.probe)."""
    transcript, why = probe.read_transcript(transcript_path)
    records: dict[int, Any] = {}
    if transcript is None or transcript.get("secret") != secret or str(transcript.get("lesson")) != lesson:
        probe_error = _cell_errors(_cells(probe_cells))
        run.unreadable = why or "its checks answered for another run"
        if probe_error:
            run.unreadable += f" ({probe_error[0].split(': ', 1)[-1]})"
    else:
        for record in transcript.get("records") or []:
            if isinstance(record, dict) and isinstance(record.get("exercise"), int):
                records[record["exercise"]] = record
    for ex in exercises:
        if ex.number not in records:
            if transcript is not None and not run.unreadable:
                probe_error = _cell_errors(_cells(probe_cells))
                run.unreadable = "its checks stopped before this exercise" + (
                    f" ({probe_error[0].split(': ', 1)[-1]})" if probe_error else "")
            continue
        verdict = probe.judge(lesson, ex, records[ex.number], secret)
        if verdict["status"] == "undefined":
            run.missing[ex.number] = f"the notebook does not define {verdict['feedback']}"
        else:
            run.results.append(verdict)


def _cells(cells: Sequence[Any]) -> Any:
    """An object with .cells, for _cell_errors on a slice of a notebook."""
    from types import SimpleNamespace

    return SimpleNamespace(cells=list(cells))


# ----------------------------------------------------------------------------------------------
# From a run to gradebook rows

def rows_for_run(file: str, lesson: str, exercises: Sequence[Exercise], run: Run) -> list[Row]:
    """One row per exercise: the grader's verdict on it, else why it could not be checked."""
    last: dict[int, dict[str, Any]] = {}
    for record in run.results:
        if str(record.get("lesson")) == lesson and isinstance(record.get("exercise"), int):
            last[record["exercise"]] = record
    rows = []
    for ex in exercises:
        record = last.get(ex.number)
        if record is not None and record.get("status") in ("passed", "failed", "not attempted"):
            rows.append(Row(file, lesson, ex.number, ex.title, str(record["status"]),
                            str(record.get("feedback", ""))))
            continue
        if run.output_limit is not None:
            rows.append(Row(file, lesson, ex.number, ex.title, "output limit",
                            f"output limit ({_size(run.output_limit)}) exceeded: the notebook was stopped "
                            "before the grader checked this exercise"))
            continue
        if run.timed_out:
            rows.append(Row(file, lesson, ex.number, ex.title, "timed out",
                            f"{run.stopped} before the grader checked this exercise"))
            continue
        if run.unreadable and not run.stopped and ex.number not in run.missing:
            rows.append(Row(file, lesson, ex.number, ex.title, "failed", f"{probe.UNREADABLE}: {run.unreadable}"))
            continue
        reasons = [run.stopped] if run.stopped else []
        if ex.number in run.missing:
            reasons.append(run.missing[ex.number])
        if run.errors:
            reasons.append(f"first error: {run.errors[0]}")
        reason = "; ".join(reasons) or "the grader's check gave no answer"
        rows.append(Row(file, lesson, ex.number, ex.title, "not run",
                        f"the grader could not check it: {reason}"))
    return rows


def grade_file(path: Path, limit: float = DEFAULT_TIMEOUT, executed_dir: Path | None = None,
               label: str | None = None, limits: sandbox.Limits | None = None,
               uid: int | None = None, threads: int | None = None,
               max_output: int | None = DEFAULT_MAX_OUTPUT) -> tuple[list[Row], Run | None]:
    """Grade one submission: its rows (never raises on a bad submission) and the run, if any."""
    file = label or str(path)
    try:
        nb = read_submission(path)
    except ValueError as exc:
        return [Row(file, "", None, "", "invalid notebook", str(exc))], None
    lesson = lesson_number(path, nb) or ""
    exercises = exercises_of(lesson)
    if not exercises:
        what = f"lesson {lesson!r}" if lesson else "no lesson"
        return [Row(file, lesson, None, "", "unknown lesson",
                    f"{what}: vit_lib.classroom.exercises has no such lesson; set the notebook metadata "
                    "vit_lib.lesson or name the file NN_*.ipynb after its lesson")], None
    saved_as = re.sub(r"[^\w.-]+", "_", file).strip("_.") or path.name   # alice/01.ipynb -> alice_01.ipynb
    run = run_notebook(nb, path.name, limit, executed_dir, saved_as, limits, uid, threads, lesson, exercises,
                       max_output)
    return rows_for_run(file, lesson, exercises, run), run


# ----------------------------------------------------------------------------------------------
# Output

MARKS = {"passed": "✓", "failed": "✗", "not attempted": "·", "not run": "!", "timed out": "⏱",
         "output limit": "!"}


def format_file(file: str, rows: Sequence[Row], run: Run | None = None) -> str:
    """A readable block for one file: one line per exercise, the cells that raised, the total."""
    lesson = next((r.lesson for r in rows if r.lesson), "?")
    head = f"{file}  (lesson {lesson}" + (f", ran {run.seconds:.1f} s)" if run is not None else ")")
    lines = [head]
    graded = [r for r in rows if r.exercise is not None]
    width = max((len(r.title) for r in graded), default=0)
    for r in rows:
        if r.exercise is None:
            lines.append(f"  {r.status}: {r.feedback}")
            continue
        said = r.feedback if r.feedback.startswith(r.status) else (
            f"{r.status}: {r.feedback}" if r.feedback else r.status)
        lines.append(f"  {MARKS.get(r.status, '?')} {r.exercise}. {r.title:<{width}}  {said}")
    if run is not None and run.errors:
        lines.append(f"  {len(run.errors)} cell(s) raised; the first: {run.errors[0]}")
    passed = sum(r.passed for r in graded)
    lines.append(f"  total: {passed}/{len(graded)} passed")
    return "\n".join(lines)


def write_gradebook(rows: Sequence[Row], out: Path) -> None:
    """The CSV gradebook, one row per (file, lesson, exercise); UTF-8 with a header, written
    atomically (an interrupted write leaves the previous file)."""
    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            for row in rows:
                writer.writerow(row.as_csv())

    check_writable(out)
    write_atomically(out, write)


def check_writable(out: Path) -> None:
    """Fail early (UsageError) when the gradebook cannot be written where --out says."""
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder: give a file name such as gradebook.csv")
    try:
        check_writable_folder(out.parent, "the gradebook's folder")
    except OutputError as exc:
        raise UsageError(f"--out {out}: {exc}; give a file in a folder you can write to") from None


def _cores() -> int:
    """The cores this process may use (its CPU affinity, which a container may narrow)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:                           # not Linux
        return os.cpu_count() or 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vit_lib grade",
        description="Run submitted lesson notebooks, each in a fresh kernel with a time limit, "
                    "without network and under resource limits (as its own user when run as root), "
                    "and write a gradebook of their exercise checks.")
    parser.add_argument("submissions", nargs="+", metavar="SUBMISSION_OR_FOLDER",
                        help="notebooks, or folders searched for *.ipynb")
    parser.add_argument("--timeout", type=positive_float, default=DEFAULT_TIMEOUT,
                        metavar="SECONDS",
                        help=f"time limit for each whole notebook (default {DEFAULT_TIMEOUT:g})")
    parser.add_argument("--out", type=Path, default=Path("gradebook.csv"),
                        help="the CSV gradebook to write (default gradebook.csv)")
    parser.add_argument("--executed", type=Path, default=None, metavar="FOLDER",
                        help="also save each executed notebook there, to read its errors")
    parser.add_argument("--memory", default="2G", metavar="SIZE",
                        help="memory bound of each kernel (RLIMIT_DATA; default 2G)")
    parser.add_argument("--cpu-time", type=positive_float, default=None, metavar="SECONDS",
                        help="CPU-time bound of each kernel (default: the --timeout)")
    parser.add_argument("--procs", type=int, default=256, metavar="N",
                        help="processes each submission's uid may run (default 256; needs root)")
    parser.add_argument("--file-size", default="1G", metavar="SIZE",
                        help="largest file a kernel may write (default 1G)")
    parser.add_argument("--max-output", default="10M", metavar="SIZE",
                        help="output kept per notebook (default 10M characters); a notebook that prints "
                             "more is stopped and its exercises get 'output limit'")
    parser.add_argument("--jobs", type=int, default=_cores(), metavar="N",
                        help="notebooks graded at once (default: the number of cores); each kernel "
                             "gets max(1, cores // N) threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    parser.add_argument("--no-sandbox", action="store_true",
                        help="run kernels as you, with network and no bounds (trusted notebooks only)")
    args = parser.parse_args(argv)
    paths = find_notebooks(args.submissions)
    check_writable(args.out)                 # before an hour of grading, not after
    limits = None
    if not args.no_sandbox:
        if args.procs < 1:
            raise UsageError(f"--procs {args.procs}: give a positive number of processes, e.g. 256")
        limits = sandbox.Limits(memory=sandbox.parse_size(args.memory, "--memory"),
                                cpu_seconds=int(args.cpu_time or args.timeout) + 1, procs=args.procs,
                                file_size=sandbox.parse_size(args.file_size, "--file-size"))
        protections = sandbox.detect()
        if not protections.limits:
            raise UsageError("prlimit is missing, so --memory/--cpu-time/--file-size cannot be enforced: "
                             "install util-linux, or pass --no-sandbox for trusted notebooks")
        print(protections.describe(), file=sys.stderr, flush=True)

    if args.jobs < 1:
        raise UsageError(f"--jobs {args.jobs}: give a positive number of notebooks to grade at once, e.g. 2")
    threads = max(1, _cores() // args.jobs)
    max_output = sandbox.parse_size(args.max_output, "--max-output")
    import torch

    torch.set_num_threads(threads)           # the judge computes with as many threads as each kernel
    rows: list[Row] = []
    start = time.perf_counter()
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    bar = tqdm(total=len(paths), unit="notebook", file=sys.stderr,
               disable=args.no_progress or not sys.stderr.isatty())
    pool = ThreadPoolExecutor(max_workers=args.jobs)
    futures = [pool.submit(grade_file, path, args.timeout, args.executed, None, limits,
                           sandbox.submission_uid(index), threads, max_output) for index, path in enumerate(paths)]
    try:
        for path, future in zip(paths, futures, strict=True):     # in the order found: a stable gradebook
            file_rows, run = future.result()
            rows += file_rows
            bar.update(1)
            bar.write(format_file(str(path), file_rows, run) + "\n", file=sys.stdout)
    except KeyboardInterrupt:
        for future in futures:
            future.cancel()
        pool.shutdown(wait=False, cancel_futures=True)
        bar.close()
        write_gradebook(rows, args.out)
        raise Interrupted(f"the gradebook of the {len({r.file for r in rows})} notebook(s) graded before was "
                          f"written to {args.out}") from None
    pool.shutdown()
    bar.close()
    write_gradebook(rows, args.out)
    graded = [r for r in rows if r.exercise is not None]
    print(f"{len(paths)} notebook(s) in {time.perf_counter() - start:.0f} s with --jobs {args.jobs}: "
          f"{sum(r.passed for r in graded)}/{len(graded)} exercises passed; "
          f"gradebook written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main, None))
