"""What the command-line tools (`vit_lib.cli.train`, `vit_lib.cli.evaluate`) share: one `error:` line for
a user error, true messages on Ctrl-C and SIGTERM, argument types, safe writes, the run lock.

    sys.exit(run_cli(main, None))

A `UserError` (bad value, missing data, unwritable folder...) prints `error: ...` and exits 2;
argparse prints its own usage errors (exit 2); any other exception is a bug and keeps its
traceback. Ctrl-C exits 130 and SIGTERM (sent by `timeout`, `docker stop`, job schedulers)
exits 143, each with one line saying what was kept.
"""
from __future__ import annotations

import argparse
import math
import os
import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from vit_lib.config import ConfigError
from vit_lib.data import DatasetInfo
from vit_lib.machinery.checkpoint import CheckpointError
from vit_lib.machinery.errors import OutputError, RunInUseError, UserError
from vit_lib.machinery.files import check_writable_folder

try:   # POSIX: Linux, macOS (and so Colab, Docker, clusters)
    import fcntl
except ImportError:   # pragma: no cover - Windows: runs are not locked
    fcntl = None

LOCK_NAME = ".lock"


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so the run unwinds exactly as on Ctrl-C."""


class Interrupted(KeyboardInterrupt):
    """An interrupt (Ctrl-C or SIGTERM) with a sentence saying what was kept and how to go on.
    Raise it from an `except KeyboardInterrupt` block; run_cli reports SIGTERM (exit 143) when
    it interrupts a Terminated or `terminated` is true, else Ctrl-C (exit 130)."""

    def __init__(self, hint: str, terminated: bool = False) -> None:
        super().__init__(hint)
        self.hint = hint
        self.terminated = terminated


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def run_cli(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None,
            interrupted: str = "interrupted before the end; nothing was written") -> int:
    """Run a CLI main and return its exit code: 0, 2 after a UserError (one `error:` line, no
    traceback), 130 after Ctrl-C, 143 after SIGTERM. `interrupted` is what an interrupt prints
    unless `main` raised Interrupted with its own hint."""
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _raise_terminated)
    except ValueError:   # not the main thread: leave SIGTERM alone
        pass
    try:
        return main(argv)
    except UserError as exc:
        print(f"error: {exc.for_cli()}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        terminated = (isinstance(exc, Terminated) or getattr(exc, "terminated", False)
                      or isinstance(exc.__context__, Terminated))   # raised while handling one
        hint = exc.hint if isinstance(exc, Interrupted) else interrupted
        print(f"{'stopped by SIGTERM' if terminated else 'interrupted (Ctrl-C)'}: {hint}",
              file=sys.stderr)
        return 143 if terminated else 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def parse_number(text: str, convert: Callable[[str], Any], what: str) -> Any:
    """`convert(text)` (int or float) for an argparse type; a ValueError becomes argparse's error
    "'TEXT' is not WHAT" (e.g. "a whole number")."""
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not {what}") from None


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1."""
    value = parse_number(text, int, "a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite number > 0."""
    value = parse_number(text, float, "a number")
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a positive finite number, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite number >= 0 (0 usually meaning off)."""
    value = parse_number(text, float, "a number")
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def seed_int(text: str) -> int:
    """argparse type: a random seed, 0 <= seed < 2**32 (what every generator accepts)."""
    value = parse_number(text, int, "a whole number")
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be between 0 and {2**32 - 1}, got {value}")
    return value


def path_arg(text: str) -> Path:
    """argparse type: a non-empty path (an empty one would silently mean the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("is empty; give a file or folder name")
    return Path(text).expanduser()


def check_output_folder(out: Path) -> None:
    """Create `out` if needed and prove a file can be written in it, before any work starts."""
    try:
        check_writable_folder(out)
    except OutputError as exc:
        raise OutputError(f"{exc}; choose another --out, or fix its permissions") from None


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold OUT/.lock (an flock holding our pid) while the body runs; a second process asking
    for the same folder gets RunInUseError. The operating system drops the lock when the holder
    exits in any way, even SIGKILL, so a killed run never blocks the folder. No-op without fcntl."""
    if fcntl is None:   # pragma: no cover
        yield
        return
    path = out / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise OutputError(f"cannot create {path} ({exc.strerror or exc}); choose another --out, "
                          "or fix its permissions") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise RunInUseError(f"{out} is in use by another training (pid {holder}, lock file "
                                f"{path}); wait for it to finish, stop it, or choose another "
                                "--out") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)   # closing the descriptor releases the flock


def check_model_fits_dataset(config: Any, info: DatasetInfo, source: Path) -> None:
    """ConfigError when a checkpoint's model cannot read a dataset's images or classes."""
    if (config.image_size, config.in_channels, config.num_classes) != (
            info.image_size, info.channels, info.num_classes):
        raise ConfigError(
            f"the model in {source} takes {config.image_size}x{config.image_size}x"
            f"{config.in_channels} images and predicts {config.num_classes} classes, but "
            f"{info.name} has {info.image_size}x{info.image_size}x{info.channels} images and "
            f"{info.num_classes} classes; use the dataset it was trained on")


def require_keys(state: dict[str, Any], keys: Sequence[str], source: Path) -> None:
    """CheckpointError naming the entries a checkpoint lacks (one assembled by hand, say)."""
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(f"{source} lacks {', '.join(missing)}: it was not written by "
                              "vit_lib's fit() or train, so it cannot be used here")
