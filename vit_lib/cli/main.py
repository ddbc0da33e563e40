"""`python -m vit_lib COMMAND [ARGS]`: one entry point for every command-line tool.

    python -m vit_lib train --preset seed --out runs/seed
    python -m vit_lib evaluate --checkpoint runs/seed
    python -m vit_lib grade submissions/ --out gradebook.csv

Each command is also a console script (`vit-train`, `vit-evaluate`, ...) and keeps its own
`--help`.
"""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

# command -> (module with a main(argv) function, one line of help)
COMMANDS: dict[str, tuple[str, str]] = {
    "train": ("vit_lib.cli.train", "train a preset on a dataset, resume or fine-tune a run"),
    "evaluate": ("vit_lib.cli.evaluate", "test accuracy and confusion matrix of a checkpoint"),
    "predict": ("vit_lib.cli.predict", "classify image files (your own digits), top-3 classes"),
    "grade": ("vit_lib.classroom.grade", "run a folder of submitted notebooks, write a gradebook"),
    "student": ("vit_lib.classroom.student", "write the student edition of the lessons"),
    "mirror": ("vit_lib.classroom.mirror", "check that lessons and vit_lib show the same code"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in COMMANDS.items()]
    return ("usage: python -m vit_lib COMMAND [ARGS]   (python -m vit_lib COMMAND --help)\n\n"
            "commands:\n" + "\n".join(lines))


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        print(f"error: unknown command {command!r}; choose one of {', '.join(COMMANDS)}\n\n"
              f"{usage()}", file=sys.stderr)
        return 2
    return run(command, rest)


def run(command: str, argv: Sequence[str]) -> int:
    """Run one command's main(argv): a UserError becomes one `error:` line (exit 2), Ctrl-C
    exit 130, SIGTERM 143 (vit_lib.cli.common.run_cli)."""
    from vit_lib.cli.common import run_cli
    module = importlib.import_module(COMMANDS[command][0])
    interrupted = getattr(module, "INTERRUPTED", "interrupted before the end; nothing was written")
    return run_cli(module.main, list(argv), interrupted=interrupted)


def _script(command: str):
    def script() -> int:
        return run(command, sys.argv[1:])
    script.__name__ = f"{command}_script"
    return script


# console scripts (pyproject's [project.scripts]): vit-train = "vit_lib.cli.main:train_script"
train_script, evaluate_script, predict_script, grade_script, student_script, mirror_script = (
    _script(c) for c in ("train", "evaluate", "predict", "grade", "student", "mirror"))
