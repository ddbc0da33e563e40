"""vit_lib.classroom.sandbox: a kernel as another uid, without network, under limits."""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from vit_lib.classroom import sandbox
from vit_lib.machinery.errors import UsageError

PROTECTIONS = sandbox.detect()


def test_parse_size() -> None:
    assert sandbox.parse_size("2G") == 2 * 1024**3
    assert sandbox.parse_size("512m") == 512 * 1024**2
    assert sandbox.parse_size("100") == 100
    for bad in ("", "two", "-1G", "0", "2X"):
        with pytest.raises(UsageError, match="is not a size"):
            sandbox.parse_size(bad)


def test_prefix_lists_each_bound() -> None:
    on = sandbox.Protections(True, True, True)
    prefix = sandbox.kernel_prefix(sandbox.Limits(memory=10, cpu_seconds=5, procs=7, file_size=9), 200_001, on)
    assert prefix == ["unshare", "-n", "prlimit", "--data=10", "--cpu=5", "--nproc=7", "--fsize=9",
                      "setpriv", "--reuid=200001", "--regid=200001", "--clear-groups"]
    off = sandbox.Protections(False, False, False, ("x",))
    assert sandbox.kernel_prefix(sandbox.Limits(memory=10), 200_001, off) == []
    assert "off: x" in off.describe()


def _run(km, code: str) -> str:  # noqa: ANN001
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        out: list[str] = []

        def hook(msg: dict) -> None:
            content = msg["content"]
            out.append(content.get("text", "") + (content.get("ename", "") + ": " + content.get("evalue", "")
                                                  if msg["msg_type"] == "error" else ""))

        kc.execute_interactive(code, output_hook=hook, timeout=60)
        return "".join(out)
    finally:
        kc.stop_channels()


@pytest.mark.skipif(not (PROTECTIONS.separate_user and PROTECTIONS.no_network and PROTECTIONS.limits),
                    reason=PROTECTIONS.describe())
def test_kernel_runs_as_another_uid_without_network_under_a_memory_bound() -> None:
    mine = Path(tempfile.mkdtemp(prefix="vit-sandbox-"))
    other = Path(tempfile.mkdtemp(prefix="vit-sandbox-other-"))
    (other / "secret.txt").write_text("another student's answer")
    sandbox.give_folder(other, sandbox.submission_uid(2))
    uid = sandbox.submission_uid(1)
    km = sandbox.kernel_manager(mine, sandbox.Limits(memory=2 * 1024**3, procs=256), uid, asynchronous=False)
    km.start_kernel(cwd=str(mine), env=dict(os.environ, HOME=str(mine)))
    try:
        said = _run(km, f"""
import os, socket, torch
print("uid", os.getuid())
s = socket.socket(); s.settimeout(2); print("connect", s.connect_ex(("1.1.1.1", 80)))
try:
    open({str(other / 'secret.txt')!r}).read(); print("read other: yes")
except PermissionError:
    print("read other: refused")
try:
    torch.empty(10 * 1024**3, dtype=torch.uint8).fill_(1); print("10 GB: allocated")
except RuntimeError:
    print("10 GB: refused")
""")
    finally:
        km.shutdown_kernel(now=True)
        shutil.rmtree(mine, ignore_errors=True)
        shutil.rmtree(other, ignore_errors=True)
    assert f"uid {uid}" in said
    assert "connect 0" not in said and "connect " in said
    assert "read other: refused" in said
    assert "10 GB: refused" in said


@pytest.mark.parametrize("flags, message", [
    (["--jobs", "0"], "--jobs 0"), (["--memory", "lots"], "--memory 'lots'"),
    (["--file-size", "-1"], "--file-size '-1'"), (["--procs", "0"], "--procs 0")])
def test_grade_refuses_bad_bounds(tmp_path: Path, flags: list[str], message: str) -> None:
    from vit_lib.classroom import grade

    (tmp_path / "02_x.ipynb").write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    with pytest.raises(UsageError, match=message):
        grade.main([str(tmp_path / "02_x.ipynb"), "--out", str(tmp_path / "book.csv"), *flags])
