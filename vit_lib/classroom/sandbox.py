"""Run a grading kernel as another user, without network, under resource limits (Linux).

Used by grade.py (issue #23). Nothing here is a sandbox of our own: it only builds the
command prefix of util-linux tools the OS already has, put in front of the kernel's argv:

    unshare -n  prlimit --data=... --cpu=... --nproc=... --fsize=...  setpriv --reuid=U --regid=U --clear-groups

- `unshare -n`: a new, empty network namespace (only a loopback that is down). The kernel then
  cannot reach the grader over TCP either, so the kernel manager must use transport="ipc"
  (Unix sockets in the submission's folder); see tests/test_sandbox.py for a kernel started so.
- `prlimit --data`: the memory bound. RLIMIT_AS cannot be used: `import torch` (CUDA build)
  fails under `--as=2G` ("failed to map segment"), while RLIMIT_DATA 2G imports torch and refuses
  a 10 GB tensor (measured: prlimit --as / --data ... python -c "import torch").
- `setpriv`: the kernel's uid; one uid per submission (SUBMISSION_UID_BASE + index) so that
  RLIMIT_NPROC counts that submission's processes only and a 0700 folder keeps the others out.
  Only root can change uid; without root the kernel runs as the grader's user and
  `detect().describe()` says so.
"""
from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from vit_lib.machinery.errors import UsageError

SUBMISSION_UID_BASE = 200_000
_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str, what: str = "--memory") -> int:
    """'2G' -> 2147483648 bytes (K, M, G, T are powers of 1024; a plain number is bytes)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", text.upper())
    if not match or float(match.group(1)) <= 0:
        raise UsageError(f"{what} {text!r} is not a size: write a positive number with K, M or G, e.g. 2G")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True)
class Limits:
    """Bounds for one kernel; None leaves that bound off."""

    memory: int | None = None          # bytes of data segment + anonymous mappings (RLIMIT_DATA)
    cpu_seconds: int | None = None     # RLIMIT_CPU: the kernel gets SIGXCPU, then SIGKILL
    procs: int | None = None           # RLIMIT_NPROC, per uid
    file_size: int | None = None       # RLIMIT_FSIZE: largest file the kernel may write (bytes)


@dataclass(frozen=True)
class Protections:
    """Which isolation this machine allows, and why a missing one is missing."""

    separate_user: bool
    no_network: bool
    limits: bool
    missing: tuple[str, ...] = ()

    def describe(self) -> str:
        on = [name for name, ok in (("a separate uid per submission", self.separate_user),
                                    ("no network (unshare -n)", self.no_network),
                                    ("resource limits (prlimit)", self.limits)) if ok]
        text = "protections on: " + (", ".join(on) or "none")
        return text + ("; off: " + "; ".join(self.missing) if self.missing else "")


def _works(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.lru_cache(maxsize=1)
def detect() -> Protections:
    """Try each tool once (a few ms) and report what works here."""
    missing = []
    root = os.geteuid() == 0
    separate_user = root and shutil.which("setpriv") is not None and _works(
        ["setpriv", f"--reuid={SUBMISSION_UID_BASE}", f"--regid={SUBMISSION_UID_BASE}", "--clear-groups", "true"])
    if not separate_user:
        missing.append("separate uid (needs root and setpriv)" if not root else "separate uid (setpriv failed)")
    no_network = shutil.which("unshare") is not None and _works(["unshare", "-n", "true"])
    if not no_network:
        missing.append("no network (unshare -n not allowed here: needs root or user namespaces)")
    limits = shutil.which("prlimit") is not None and _works(["prlimit", "--cpu=60", "true"])
    if not limits:
        missing.append("resource limits (prlimit missing)")
    return Protections(separate_user, no_network, limits, tuple(missing))


def submission_uid(index: int) -> int:
    """The uid that the index-th submission of a grading run runs as (no passwd entry needed)."""
    return SUBMISSION_UID_BASE + index


def kernel_prefix(limits: Limits, uid: int | None, protections: Protections | None = None) -> list[str]:
    """argv to put before the kernel's command; uid None (or no root) keeps the grader's user."""
    p = protections or detect()
    prefix: list[str] = ["unshare", "-n"] if p.no_network else []
    if p.limits:
        procs = limits.procs if uid is not None and p.separate_user else None   # per uid: not the grader's own
        bounds = [(limits.memory, "--data"), (limits.cpu_seconds, "--cpu"), (procs, "--nproc"),
                  (limits.file_size, "--fsize")]
        flags = [f"{flag}={value}" for value, flag in bounds if value is not None]
        prefix += ["prlimit", *flags] if flags else []
    if uid is not None and p.separate_user:
        prefix += ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    return prefix


def give_folder(folder: Path, uid: int | None) -> None:
    """Make folder (and what is in it) the submission's alone: owned by uid, mode 0700."""
    if uid is None or os.geteuid() != 0:
        return
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, uid, uid, follow_symlinks=False)
    folder.chmod(0o700)


def kernel_manager(folder: Path, limits: Limits, uid: int | None, asynchronous: bool = True):  # noqa: ANN201
    """A jupyter_client kernel manager whose kernel starts under kernel_prefix() in folder.

    It talks to the kernel over Unix sockets in folder (transport "ipc"), which work across the
    network namespace; the connection file is written now and given to uid, so the kernel can read it.
    """
    import sys

    from jupyter_client.manager import AsyncKernelManager, KernelManager

    cls = AsyncKernelManager if asynchronous else KernelManager
    km = cls(kernel_name="python3", transport="ipc", ip=str(folder / "kernel"),
             connection_file=str(folder / "kernel.json"))
    argv = km.kernel_spec.argv
    if argv and "ipykernel" in " ".join(argv[1:3]):
        argv[0] = sys.executable
    argv[:0] = kernel_prefix(limits, uid)
    km.write_connection_file()
    give_folder(folder, uid)
    return km
