"""Writing files safely: atomically (a crash never leaves half a file) and checked early (a
folder that cannot be written is refused before an hour of work, not after)."""
from __future__ import annotations

import json
import os
import tempfile
from contextlib import suppress
from pathlib import Path
from typing import Any, Callable

from vit_lib.machinery.errors import OutputError


def write_atomically(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call write(tmp) on a new temporary file beside `path` (same suffix, so tools that pick a
    format from the name still work), flush it to disk, then rename it over `path`. An OS
    error raises OutputError naming `path` and leaves whatever `path` held before; the
    temporary file is removed whatever happens."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}",
                                    dir=path.parent)
        os.close(fd)
        tmp = Path(name)
        write(tmp)
        with open(tmp, "rb+") as f:       # on disk before the rename: a crash keeps old or new
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with suppress(OSError):
                tmp.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(f"could not write {path} ({exc.strerror or exc})") from exc
        raise
    return path


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write `data` as indented JSON, atomically."""
    return write_atomically(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2) + "\n"))


def check_writable_folder(folder: str | os.PathLike, what: str = "the output folder") -> Path:
    """Create `folder` if needed and prove a file can be written in it. OutputError names the
    problem: a file where the folder should be, a path under a regular file, a read-only or
    full location."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{what} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as f:
            f.write(b"vit_lib write test")
            f.flush()
    except OSError as exc:
        raise OutputError(f"cannot write into {what} {folder} ({exc.strerror or exc})") from None
    return folder
