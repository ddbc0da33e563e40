"""python -m vit_lib grade against hostile submissions: each ends as a row, the others stay graded.

Needs root (a uid per submission), `unshare -n` and prlimit; skipped otherwise, with the reason
that `sandbox.detect().describe()` gives. Forging a result is NOT yet prevented (see the xfail).
"""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from vit_lib.classroom import sandbox

PROTECTIONS = sandbox.detect()
pytestmark = pytest.mark.skipif(
    not (PROTECTIONS.separate_user and PROTECTIONS.no_network and PROTECTIONS.limits),
    reason=PROTECTIONS.describe())

CORRECT = ("from vit_lib.classroom.exercises.lesson02 import check_attention_params\n"
           "result = check_attention_params(lambda d, h, b=True: 4 * d * d + 3 * d * b + d)")
HOSTILE = {
    "a_reads_other": "try:\n    open({other!r}).read()\n    print('read it')\nexcept PermissionError:\n"
                     "    pass\nelse:\n    raise AssertionError('read another submission')",
    "b_writes_outside": "open({out!r}, 'w').write('overwritten')",
    "c_socket": "import socket\ns = socket.socket(); s.settimeout(2)\nassert s.connect_ex(('1.1.1.1', 80)) != 0",
    "d_10gb": "import torch\nx = torch.empty(10 * 1024**3, dtype=torch.uint8).fill_(1)",
    "e_fork_bomb": "import os\nkids = 0\ntry:\n    while kids < 5000:\n        if os.fork() == 0:\n"
                   "            import time; time.sleep(30); os._exit(0)\n        kids += 1\nexcept OSError:\n"
                   "    print('fork refused after', kids)\nassert kids < 5000",
    "f_kills_parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)",
}


def _nb(*sources: str) -> dict:
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
              "source": s} for i, s in enumerate(sources)]
    return {"cells": cells, "metadata": {"vit_lib": {"lesson": "02"}}, "nbformat": 4, "nbformat_minor": 5}


def test_hostile_submissions_each_end_as_rows(tmp_path: Path) -> None:
    folder = tmp_path / "subs"
    folder.mkdir()
    out = tmp_path / "book.csv"
    for name, code in HOSTILE.items():
        filled = code.format(out=str(out), other=str(folder / "z_honest.ipynb"))
        (folder / f"{name}.ipynb").write_text(json.dumps(_nb(filled, CORRECT)))
    (folder / "z_honest.ipynb").write_text(json.dumps(_nb(CORRECT)))
    proc = subprocess.run([sys.executable, "-m", "vit_lib.classroom.grade", str(folder), "--timeout", "60",
                           "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "protections on: a separate uid per submission" in proc.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    status = {(Path(r["file"]).stem, r["exercise"]): r for r in rows}
    assert len(rows) == 3 * (len(HOSTILE) + 1)
    for name in [*HOSTILE, "z_honest"]:       # every notebook got its rows; exercise 2 ran after the attack
        assert status[(name, "2")]["status"] == "passed", (name, status[(name, "2")])
    cell0 = {name: status[(name, "1")]["feedback"] for name in HOSTILE}
    for name in ("a_reads_other", "c_socket"):
        assert "first error" not in cell0[name], (name, cell0[name])   # its assert held: attack refused
    assert "PermissionError" in cell0["b_writes_outside"]
    assert "RuntimeError" in cell0["d_10gb"] or "MemoryError" in cell0["d_10gb"]
    assert "first error" not in cell0["e_fork_bomb"], cell0["e_fork_bomb"]
    assert "PermissionError" in cell0["f_kills_parent"]


@pytest.mark.xfail(strict=True, reason="issue #23: results still come through a file the kernel can write; "
                   "the checks must run where the submission cannot reach")
def test_a_forged_result_file_does_not_pass(tmp_path: Path) -> None:
    forge = ("import json, os\nwith open(os.environ['VIT_LIB_RESULTS'], 'a') as f:\n"
             "    f.write(json.dumps({'lesson': '02', 'exercise': 1, 'title': 't', 'status': 'passed',"
             " 'feedback': 'forged'}) + '\\n')")
    (tmp_path / "forger.ipynb").write_text(json.dumps(_nb(forge)))
    out = tmp_path / "book.csv"
    proc = subprocess.run([sys.executable, "-m", "vit_lib.classroom.grade", str(tmp_path / "forger.ipynb"),
                           "--timeout", "60", "--out", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert rows[0]["status"] != "passed", rows[0]
