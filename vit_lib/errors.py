"""The base class of every error a user can fix: a bad value, a missing file, an unwritable folder.

The command-line tools (`vit_lib.cli.run_cli`) print a `UserError` as one `error:` message and
exit with code 2; any other exception is a bug and keeps its traceback. Each module defines its
own subclasses (ConfigError, DataNotFoundError, DeviceError, CheckpointError,
TrainingDivergedError...); the two that concern no single module live here.
"""
from __future__ import annotations


class UserError(Exception):
    """Something the user can fix; the message says what was wrong and how to fix it."""


class OutputError(UserError, OSError):
    """A file or folder that a run writes cannot be created or written (read-only, full disk,
    a path under a regular file). An OSError too, so `except OSError` keeps working."""


class RunInUseError(UserError):
    """Another process is training into the same output folder."""
