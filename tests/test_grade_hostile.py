"""python -m vit_lib grade against hostile submissions: each ends as a row, the others stay graded.

Needs root (a uid per submission), `unshare -n` and prlimit; skipped otherwise, with the reason
that `sandbox.detect().describe()` gives. Forged results are graded on what the code computed: the
grader decides every verdict itself (vit_lib.classroom.probe), so writing the results file,
printing "✓", defining or patching the checks, or hard-coding the notebook's inputs gains nothing.
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
           "attention_params = lambda d, h, b=True: 4 * d * d + 3 * d * b + d\n"
           "result = check_attention_params(attention_params)")
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


WRONG = "attention_params = lambda d, h, b=True: 4 * d * d + 4 * d + d\n"   # counts the output bias 4 times
STUB = "def attention_params(d, h, b=True):\n    # YOUR CODE HERE\n    raise NotImplementedError()\n"
FORGERS = {   # each tries to pass exercise 2 (attention parameters) without a right answer
    "a_results_file": WRONG + "import json, os\nfor path in (os.environ.get('VIT_LIB_RESULTS', ''), "
                      "'.vit-results.jsonl', 'results.jsonl'):\n    if path:\n        open(path, 'a').write(json.dumps("
                      "{'lesson': '02', 'exercise': 2, 'title': 't', 'status': 'passed', "
                      "'feedback': 'forged'}) + '\\n')",
    "b_prints_tick": STUB + "print('✓ parameters of the attention layer: right for 4 layer sizes')",
    "c_own_check": WRONG + "def check_attention_params(fn):\n    print('✓ parameters of the attention layer')\n"
                   "    return True\nresult = check_attention_params(attention_params)",
    "d_monkeypatch": WRONG + "import vit_lib.classroom.exercises.lesson02 as L\n"
                     "from vit_lib.classroom.exercises import common\n"
                     "L.check_attention_params = lambda fn: True\n"
                     "common.Mismatch = type('Mismatch', (BaseException,), {})\n"
                     "common.run_check = lambda title, body: print('✓', title)\n"
                     "result = L.check_attention_params(attention_params)",
}
HARD_CODED = ("import torch\ng = torch.Generator().manual_seed(0)\n"   # lesson 01 exercise 3: the check's own inputs
              "remembered = {(h, w): torch.rand(s, generator=g) for s, (h, w) in (((2, 1, 28, 28), (28, 28)), "
              "((2, 1, 12, 20), (12, 20)), ((2, 3, 8, 8), (8, 8)))}\n"
              "def patches_to_image(patches, p, h, w):\n    return remembered[(h, w)]\n"
              "from vit_lib.classroom.exercises.lesson01 import check_unpatchify\n"
              "assert check_unpatchify(patches_to_image)   # passes in the student's own kernel")


def _lesson_nb(lesson: str, *sources: str) -> dict:
    nb = _nb(*sources)
    nb["metadata"]["vit_lib"]["lesson"] = lesson
    return nb


def test_forged_results_are_graded_on_what_the_code_computed(tmp_path: Path) -> None:
    from vit_lib.classroom.exercises.lesson02 import check_attention_params

    folder = tmp_path / "subs"
    folder.mkdir()
    for name, code in FORGERS.items():
        (folder / f"{name}.ipynb").write_text(json.dumps(_nb(code)))
    (folder / "e_hard_coded.ipynb").write_text(json.dumps(_lesson_nb("01", HARD_CODED)))
    (folder / "f_sleeps_forever.ipynb").write_text(json.dumps(_nb(CORRECT, "import time\ntime.sleep(10**6)")))
    printer = "for _ in range(10**6):\n    print('x' * 1000)"       # 1 GB, were it not stopped
    (folder / "g_prints_a_lot.ipynb").write_text(json.dumps(_nb(CORRECT, printer)))
    breaker = "import importlib\nimportlib.reload = None"
    (folder / "h_breaks_the_probe.ipynb").write_text(json.dumps(_nb(CORRECT, breaker)))
    (folder / "y_honest_wrong.ipynb").write_text(json.dumps(_nb(WRONG)))
    (folder / "z_honest.ipynb").write_text(json.dumps(_nb(CORRECT)))
    out = tmp_path / "book.csv"
    proc = subprocess.run([sys.executable, "-m", "vit_lib.classroom.grade", str(folder), "--timeout", "40",
                           "--max-output", "1M", "--jobs", "3", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stderr
    rows = {(Path(r["file"]).stem, r["exercise"]): r for r in csv.DictReader(out.open(encoding="utf-8"))}
    usual = check_attention_params(eval(WRONG.split("=", 1)[1]))   # noqa: S307 - what the check says in class
    for name in ("a_results_file", "c_own_check", "d_monkeypatch", "y_honest_wrong"):
        assert (rows[(name, "2")]["status"], rows[(name, "2")]["feedback"]) == ("failed", usual.feedback), name
    assert rows[("b_prints_tick", "2")]["status"] == "not attempted"
    assert rows[("e_hard_coded", "3")]["status"] == "failed"
    assert rows[("e_hard_coded", "3")]["feedback"].startswith("on a 28x28 grey image, 7x7 patches, your image differs")
    assert [rows[("f_sleeps_forever", n)]["status"] for n in "123"] == ["timed out"] * 3
    assert [rows[("g_prints_a_lot", n)]["status"] for n in "123"] == ["output limit"] * 3
    assert rows[("g_prints_a_lot", "2")]["feedback"].startswith("output limit (1 MB) exceeded")
    for n in "123":      # a right answer the grader could not see computed does not pass
        row = rows[("h_breaks_the_probe", n)]
        assert row["status"] == "failed" and row["feedback"].startswith(
            "the grader could not read what your code computed: the grader's checks wrote nothing (TypeError"), row
    assert rows[("z_honest", "2")]["status"] == "passed"
    assert rows[("z_honest", "1")]["status"] == "not run"
    assert "the notebook does not define masked_attention" in rows[("z_honest", "1")]["feedback"]
