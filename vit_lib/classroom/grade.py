"""Grade a folder of submitted lesson notebooks: run each one, collect its exercise checks.

    python -m vit_lib grade submissions/                       # every *.ipynb below the folder
    python -m vit_lib grade alice.ipynb bob.ipynb --timeout 300 --out gradebook.csv

Each notebook runs top to bottom in its own fresh Python kernel (nbclient), from a copy in a new
temporary folder that is also the kernel's working directory, with a time limit for the whole
notebook (`--timeout`, default 600 s; the kernel is killed when it is reached). The lesson's
exercise checks (vit_lib.classroom.exercises.lessonNN) record their results in the file named by the
environment variable VIT_LIB_RESULTS, which the grader sets for the kernel; the grader itself
only reads JSON and never imports a submission's code.

A cell that raises does not stop the run (nbclient's allow_errors): the exercises after it are
still graded, and an exercise whose check never ran is reported as "not run" with the first error
as the reason. The lesson comes from the notebook metadata `vit_lib.lesson`, else from the file
name `NN_*.ipynb`. For each (file, exercise) the LAST result its check recorded counts.

Output: a table on stdout with a total per file, and a CSV gradebook (`--out`, default
gradebook.csv) with the columns file, lesson, exercise, title, passed, status, feedback.
status is one of: passed, failed, not attempted, not run, timed out (exercise rows), and
invalid notebook, unknown lesson (one row for a file that could not be graded at all).
Exit status 0 when the gradebook was written (whatever the students scored), 2 on a usage error,
130 on Ctrl-C (after writing the gradebook of the notebooks graded until then).

Isolation (vit_lib.classroom.sandbox, off with --no-sandbox): each kernel runs without network
(unshare -n; the grader talks to it over Unix sockets), under --memory/--cpu-time/--file-size and,
when the grader is root, as its own uid (200000 + n) with --procs, in a 0700 folder; the
protections in force are printed to stderr. NOT yet prevented: a forged result (the checks run in
the student's kernel and write VIT_LIB_RESULTS, a file it can write) and unbounded output.
--jobs N grades N notebooks at once (threads, each driving one kernel with max(1, cores // N)
OpenMP/MKL threads); rows are printed and written in the order the notebooks were found.
"""
from __future__ import annotations

import argparse
import asyncio
import csv
import importlib
import json
import os
import re
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from vit_lib.classroom import sandbox
from vit_lib.classroom.exercises.common import RESULTS_ENV, Exercise
from vit_lib.classroom.notebooks import lesson_number
from vit_lib.cli.common import Interrupted, positive_float, run_cli
from vit_lib.machinery.errors import OutputError, UsageError
from vit_lib.machinery.files import check_writable_folder, write_atomically

DEFAULT_TIMEOUT = 600.0
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
    """What running one notebook gave: the recorded check results and what went wrong."""

    results: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)     # "cell 12: NameError: ..." per failing cell
    stopped: str = ""          # why the run ended early ("" when it ran to the end)
    timed_out: bool = False
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


def _cell_errors(nb: Any) -> list[str]:
    errors = []
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "error":
                value = _ANSI.sub("", str(output.get("evalue", ""))).strip().splitlines()
                errors.append(f"cell {index}: {output.get('ename', 'Error')}"
                              + (f": {value[0][:200]}" if value else ""))
    return errors


async def _run(nb: Any, workdir: Path, env: dict[str, str], limit: float,
               log: Any = None, km: Any = None) -> tuple[str, bool]:
    """Execute nb in a new kernel; ('' or why it stopped early, whether it hit the limit).

    The limit covers the whole notebook: when it is reached the kernel is killed, then the
    client stopped (nbclient's own `timeout` is per cell, so it is only a backstop here).
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import DeadKernelError

    km = km if km is not None else _kernel_manager()
    client = NotebookClient(nb, km=km, timeout=int(limit) + 60, allow_errors=True,
                            kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(workdir)}})
    task = asyncio.ensure_future(client.async_execute(env=env, cwd=str(workdir), stdout=log,
                                                      stderr=log))
    try:
        done, _ = await asyncio.wait({task}, timeout=limit)
        if not done:
            await km.shutdown_kernel(now=True)      # SIGKILL: a busy loop cannot ignore it
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return f"the notebook was stopped at the time limit of {limit:g} s", True
        exc = task.exception()
        if exc is None:
            return "", False
        if isinstance(exc, DeadKernelError):
            return "the kernel died (the notebook crashed Python or ran out of memory)" + _bound_hit(km), False
        message = _ANSI.sub("", str(exc)).strip().splitlines()
        return f"the run failed: {type(exc).__name__}" + (f": {message[0][:200]}" if message else ""), False
    finally:
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


def run_notebook(nb: Any, name: str, limit: float = DEFAULT_TIMEOUT,
                 executed_dir: Path | None = None, saved_as: str | None = None,
                 limits: sandbox.Limits | None = None, uid: int | None = None, threads: int | None = None) -> Run:
    """Run a copy of nb in a fresh kernel inside a new temporary folder; collect what it recorded.

    Whatever kernel the notebook's metadata names, it runs in this interpreter's ipykernel.
    With limits, the kernel starts under vit_lib.classroom.sandbox (no network, resource limits,
    and as `uid` when the grader is root), in a folder only that uid can open.
    With executed_dir, the executed notebook is saved there as `saved_as` (default: name).
    """
    import nbformat

    run = Run()
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="vit-grade-") as tmp:
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        nbformat.write(nb, workdir / name)           # the copy the submission runs from
        results_file = workdir / ".vit-results.jsonl" if limits is not None else Path(tmp) / "results.jsonl"
        env = dict(os.environ, **{RESULTS_ENV: str(results_file)})
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
                run.stopped, run.timed_out = asyncio.run(_run(nb, workdir, env, limit, log, km))
            except Exception as exc:                 # e.g. no python3 kernel (ipykernel missing)
                run.stopped = f"the kernel could not start: {type(exc).__name__}: {exc}"[:300]
        run.seconds = time.perf_counter() - start
        run.errors = _cell_errors(nb)
        if results_file.is_file():
            for line in results_file.read_text(encoding="utf-8", errors="replace").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue                         # a line cut short when the kernel was killed
                if isinstance(record, dict):
                    run.results.append(record)
    if executed_dir is not None:
        executed_dir.mkdir(parents=True, exist_ok=True)
        nbformat.write(nb, executed_dir / (saved_as or name))
    return run


# ----------------------------------------------------------------------------------------------
# From a run to gradebook rows

def rows_for_run(file: str, lesson: str, exercises: Sequence[Exercise], run: Run) -> list[Row]:
    """One row per exercise: the last result its check recorded, else why it never ran."""
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
        if run.timed_out:
            rows.append(Row(file, lesson, ex.number, ex.title, "timed out",
                            f"{run.stopped} before its check ran"))
            continue
        reasons = [run.stopped] if run.stopped else []
        if run.errors:
            reasons.append(f"first error: {run.errors[0]}")
        reason = "; ".join(reasons) or f"the notebook never called {ex.check}()"
        rows.append(Row(file, lesson, ex.number, ex.title, "not run",
                        f"its check {ex.check}() never ran: {reason}"))
    return rows


def grade_file(path: Path, limit: float = DEFAULT_TIMEOUT, executed_dir: Path | None = None,
               label: str | None = None, limits: sandbox.Limits | None = None,
               uid: int | None = None, threads: int | None = None) -> tuple[list[Row], Run | None]:
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
    run = run_notebook(nb, path.name, limit, executed_dir, saved_as, limits, uid, threads)
    return rows_for_run(file, lesson, exercises, run), run


# ----------------------------------------------------------------------------------------------
# Output

MARKS = {"passed": "✓", "failed": "✗", "not attempted": "·", "not run": "!", "timed out": "⏱"}


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
    rows: list[Row] = []
    start = time.perf_counter()
    from concurrent.futures import ThreadPoolExecutor

    from tqdm import tqdm

    bar = tqdm(total=len(paths), unit="notebook", file=sys.stderr,
               disable=args.no_progress or not sys.stderr.isatty())
    pool = ThreadPoolExecutor(max_workers=args.jobs)
    futures = [pool.submit(grade_file, path, args.timeout, args.executed, None, limits,
                           sandbox.submission_uid(index), threads) for index, path in enumerate(paths)]
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
