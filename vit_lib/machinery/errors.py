"""Every error class of vit_lib, in one place.

A `UserError` is something the user can fix: a bad value, a missing file, an unwritable folder.
Its message says what was wrong and how to fix it, in Python terms (argument names such as
`lr=` or `data_dir=`). Where the fix is an argument that the command line spells as a flag, the
message names it with `arg("lr=", "--lr")`: Python callers read `lr=`, and the command-line
tools (`vit_lib.cli.common.run_cli`) print the same message with `--lr` in its place, as one
`error:` line with exit code 2. Any other exception is a bug and keeps its traceback.
"""
from __future__ import annotations

import re

_ARG = re.compile("\x00(.*?)\x01(.*?)\x02", re.S)


def arg(python: str, flag: str) -> str:
    """Name the argument that fixes an error: `python` for Python callers (e.g. "lr="),
    `flag` for the command line (e.g. "--lr"); see `UserError.for_cli`."""
    return f"\x00{python}\x01{flag}\x02"


class UserError(Exception):
    """Something the user can fix; the message says what was wrong and how to fix it."""

    def __str__(self) -> str:
        return _ARG.sub(r"\1", super().__str__())

    def for_cli(self) -> str:
        """The message with command-line flags in place of Python argument names."""
        return _ARG.sub(r"\2", super().__str__())


class ConfigError(UserError, ValueError):
    """A configuration value is impossible; the message says how to fix it."""


class DataNotFoundError(UserError, RuntimeError):
    """A dataset is neither on disk nor downloadable; the message says where to put it."""


class DamagedDataError(DataNotFoundError):
    """A dataset file is present but empty, cut short or not in its format; the message names it."""


class ImageFolderError(DataNotFoundError):
    """A folder of images (`--dataset folder:PATH`) cannot be used: it does not exist, has no
    class subfolders, an empty class, unreadable images, or classes that differ between its
    train/ and test/ splits; the message names the folder (and the files) and the fix."""


class ImageError(UserError, ValueError):
    """An image file cannot be used (missing, not an image, truncated, blank); the message names
    the file and what is wrong with it."""


class DeviceError(UserError, RuntimeError):
    """The requested device does not exist on this machine."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, unreadable or from an incompatible run."""


class TrainingDivergedError(UserError, RuntimeError):
    """The loss became NaN or infinite."""


class CudaGraphError(UserError, RuntimeError):
    """CUDA graphs were asked for where they cannot be used."""


class DistributedError(UserError, RuntimeError):
    """A distributed run is set up wrongly (environment, device, backend, batch size)."""


class RankFailedError(UserError, RuntimeError):
    """Another rank stopped with an error the user can fix; its message is repeated here."""


class RankCrashedError(RuntimeError):
    """Another rank stopped with an unexpected exception (a bug); see that rank's traceback."""


class OutputError(UserError, OSError):
    """A file or folder that a run writes cannot be created or written (read-only, full disk,
    a path under a regular file). An OSError too, so `except OSError` keeps working."""


class RunInUseError(UserError):
    """Another process is training into the same output folder."""


class RunExistsError(UserError):
    """The output folder already holds a run and neither resume nor overwrite was asked for."""


class UsageError(UserError):
    """A classroom command names something that cannot be graded at all (exit status 2)."""


class StudentEditionError(ValueError):
    """The full edition cannot be turned into a student edition; the message says what to fix."""
