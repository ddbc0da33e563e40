"""Write the student edition of the lessons: the same notebooks with every solution taken out.

    python -m vit_lib student            # or: make student  (writes notebooks/student/NN_*.ipynb)
    python -m vit_lib student --check    # exit 1 if notebooks/student/ is not current (writes nothing)

The lessons `notebooks/NN_*.ipynb` are the full edition. Each exercise there has an attempt cell
(`# YOUR CODE HERE` and a stub) followed by a worked-solution block whose cells carry the tag
`solution`; the answer itself sits between nbgrader's markers `### BEGIN SOLUTION` and
`### END SOLUTION`. For every lesson the student edition

- drops every cell tagged `solution` (nbconvert's TagRemovePreprocessor);
- replaces any other `### BEGIN SOLUTION` ... `### END SOLUTION` region with `# YOUR CODE HERE`
  and a stub that keeps "Run all" working: `raise NotImplementedError()` inside a function body
  (what nbgrader's ClearSolutions writes), `NAME = None` for each name the region assigned at top
  level (nbgrader would raise there and stop the notebook);
- replaces each `<details>...</details>` answer block of the markdown with a short note;
- points links at the right files from one folder deeper (links to other lessons go to their
  student copies, "Open in Colab" badges open the student copy) and fails on a broken one;
- clears outputs and execution counts (nbconvert's ClearOutputPreprocessor);
- fails loudly if any marker or any line found only in solutions is left in the result.

The output is the same bytes on every run (written the way nbformat writes notebooks). The same
command also gives every solution cell of the full edition nbgrader's cell metadata (only cell
metadata is touched, and only when it differs), so a course running nbgrader can use the full
edition as its source notebooks as it is: see TEACHING.md. Last, it rewrites the lessons table
of TEACHING.md (title, prerequisites, time and exercises of each lesson, read from the notebooks).
"""
from __future__ import annotations

import argparse
import ast
import copy
import json
import os
import re
import sys
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

from vit_lib.classroom.notebooks import cell_source, dumps_notebook, lesson_of, read_notebook, set_source
from vit_lib.machinery.errors import StudentEditionError

SOLUTION_TAG = "solution"
BEGIN = "### BEGIN SOLUTION"
END = "### END SOLUTION"
CODE_STUB = "# YOUR CODE HERE"
TEXT_STUB = "YOUR ANSWER HERE"
DETAILS_STUB = "*(The answer is in the full edition of this lesson.)*"
LESSON_GLOB = "[0-9][0-9]_*.ipynb"
STUDENT_FOLDER = "student"
ROOT = Path(__file__).resolve().parents[2]

_EXERCISE_HEADING = re.compile(r"^#{2,4}\s*Exercise\s+(\d+)\b", re.MULTILINE)
_DETAILS = re.compile(r"<details\b.*?</details\s*>", re.IGNORECASE | re.DOTALL)
_MD_LINK = re.compile(r"(\]\()([^)\s]+)((?:\s+\"[^\"]*\")?\))")
_HTML_LINK = re.compile(r"(\b(?:src|href)=\")([^\"]+)(\")", re.IGNORECASE)
_COLAB = re.compile(r"(colab\.research\.google\.com/github/[^\s)\"']*?/notebooks/)"
                    r"([0-9]{2}_[^/\s)\"']+\.ipynb)")
_MAGIC = re.compile(r"^(\s*)[%!]")
# Phrases that point to a worked solution, which the student edition does not have.
SOLUTION_TALK = re.compile(r"\b(worked solution|the solution|solution (above|below)|reference solution|"
                           r"as the solution|see the solution)\b", re.IGNORECASE)
BANNER_TAG = "student-edition-banner"
BANNER = ("**Student edition** - every exercise is yours to write: put your answer where it says\n"
          "`# YOUR CODE HERE`, then run the check below it, which says whether it is right and,\n"
          "if not, what is wrong. The full edition of this lesson, with every cell run, is\n"
          "[`{full}`](../{full}).\n")


# ----------------------------------------------------------------------------------------------
# Solution regions

def solution_regions(lines: list[str], where: str) -> list[tuple[int, int]]:
    """(begin, end) line indices of each BEGIN/END SOLUTION pair; errors on a malformed marker."""
    regions: list[tuple[int, int]] = []
    begin: int | None = None
    for i, line in enumerate(lines):
        text = line.strip()
        if "BEGIN SOLUTION" in text or "END SOLUTION" in text:
            if text not in (BEGIN, END):
                raise StudentEditionError(
                    f"{where}, line {i + 1}: {text!r}: a marker must be alone on its line, written "
                    f"exactly {BEGIN!r} or {END!r} (what nbgrader recognises)")
            if text == BEGIN:
                if begin is not None:
                    raise StudentEditionError(f"{where}, line {i + 1}: {BEGIN} inside another solution")
                begin = i
            else:
                if begin is None:
                    raise StudentEditionError(f"{where}, line {i + 1}: {END} without a {BEGIN} "
                                              "before it")
                regions.append((begin, i))
                begin = None
    if begin is not None:
        raise StudentEditionError(f"{where}, line {begin + 1}: {BEGIN} without an {END} after it")
    return regions


def _parse(source: str, where: str) -> ast.Module:
    """Parse a code cell, IPython magics (`%x`, `!x`) read as `pass` so line numbers stay."""
    lines = [_MAGIC.sub(r"\1pass #", line) for line in source.split("\n")]
    try:
        return ast.parse("\n".join(lines))
    except SyntaxError as exc:
        raise StudentEditionError(f"{where}: not valid Python (line {exc.lineno}: {exc.msg})") from None


def _assigned_names(statements: Iterable[ast.stmt]) -> list[str]:
    """Names the statements bind at their own level, in order of first binding."""
    names: list[str] = []

    def add(name: str) -> None:
        if name not in names:
            names.append(name)

    def visit(node: ast.AST) -> None:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            add(node.name)
            return                      # their bodies bind names of their own scope
        if isinstance(node, (ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                add(alias.asname or alias.name.split(".")[0])
            return
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            add(node.id)
        for child in ast.iter_child_nodes(node):
            visit(child)

    for statement in statements:
        visit(statement)
    return [n for n in names if n != "_"]


def _stub_lines(tree: ast.Module, lines: list[str], begin: int, end: int) -> list[str]:
    """What replaces lines[begin..end]: the comment and a stub, at the marker's indentation."""
    indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
    first, last = begin + 2, end          # 1-based numbers of the region's own lines
    parents: dict[int, ast.AST] = {}
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            parents[id(child)] = node
    inside = [n for n in ast.walk(tree) if isinstance(n, ast.stmt) and first <= n.lineno <= last]
    # the region's own statements: those whose parent statement starts outside the region
    own = [n for n in inside if not (isinstance(parents.get(id(n)), ast.stmt)
                                     and first <= parents[id(n)].lineno <= last)]

    def in_function(node: ast.AST) -> bool:
        while id(node) in parents:
            node = parents[id(node)]
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                return True
        return False

    if own:
        function_body = in_function(own[0])
    else:   # no code in the region: a function body if it follows a `def ...:` line
        prev = next((lines[i] for i in range(begin - 1, -1, -1) if lines[i].strip()), "")
        function_body = bool(indent) and prev.lstrip().startswith(("def ", "async def "))
    stub = [indent + CODE_STUB]
    if function_body:
        return stub + [indent + "raise NotImplementedError()"]
    names = _assigned_names(own)
    stub += [f"{indent}{name} = None" for name in names]
    if indent and not names:
        stub.append(indent + "pass")
    return stub


def clear_solution_regions(source: str, cell_type: str, where: str) -> tuple[str, bool]:
    """The source with every solution region replaced by its stub; and whether one was found."""
    lines = source.split("\n")
    regions = solution_regions(lines, where)
    if not regions:
        return source, False
    tree = _parse(source, where) if cell_type == "code" else None
    out: list[str] = []
    start = 0
    for begin, end in regions:
        out += lines[start:begin]
        if tree is not None:
            out += _stub_lines(tree, lines, begin, end)
        else:
            indent = lines[begin][: len(lines[begin]) - len(lines[begin].lstrip())]
            out.append(indent + TEXT_STUB)
        start = end + 1
    out += lines[start:]
    result = "\n".join(out)
    if cell_type == "code":
        try:
            _parse(result, where)
        except StudentEditionError as exc:
            raise StudentEditionError(f"{exc} after replacing its solution by a stub") from None
    return result, True


# ----------------------------------------------------------------------------------------------
# Markdown: answers and links

def strip_details(markdown: str) -> str:
    """Each `<details>...</details>` block (a hidden answer) replaced by a one-line note."""
    return _DETAILS.sub(DETAILS_STUB, markdown)


def _is_relative(target: str) -> bool:
    return not (target.startswith(("#", "/")) or re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target))


def rewrite_links(markdown: str, source_dir: Path, student_names: set[str], where: str) -> str:
    """Links as they must read from `source_dir/student/`; errors on a link to no file.

    Links to another lesson stay as they are (its student copy sits beside), other relative links
    get one `../` more, Colab badges open the student copy.
    """

    def fix(target: str) -> str:
        if not _is_relative(target):
            return _COLAB.sub(lambda m: m.group(1) + STUDENT_FOLDER + "/" + m.group(2), target)
        path, hash_, fragment = target.partition("#")
        if path in student_names:
            return target
        if not (source_dir / path).exists():
            raise StudentEditionError(f"{where}: the link {target!r} points to no file "
                                      f"(looked for {source_dir / path})")
        moved = PurePosixPath(os.path.relpath(source_dir / path, source_dir / STUDENT_FOLDER))
        return moved.as_posix() + hash_ + fragment

    markdown = _MD_LINK.sub(lambda m: m.group(1) + fix(m.group(2)) + m.group(3), markdown)
    return _HTML_LINK.sub(lambda m: m.group(1) + fix(m.group(2)) + m.group(3), markdown)


# ----------------------------------------------------------------------------------------------
# nbgrader metadata on the full edition

def nbgrader_solution_metadata(grade_id: str) -> dict[str, Any]:
    """nbgrader's cell metadata (schema 3) for an autograded-answer ("solution") cell."""
    return {"grade": False, "grade_id": grade_id, "locked": False, "schema_version": 3,
            "solution": True, "task": False}


def mark_nbgrader_cells(nb: dict[str, Any], lesson: str, where: str = "notebook") -> bool:
    """Give each code cell holding a solution region nbgrader's solution metadata, in place.

    grade_id is `lessonNN-exK` (K from the `### Exercise K` heading above it; `-2`, `-3` for a
    second and third cell of the same exercise). Metadata this function wrote earlier on a cell
    that no longer holds a region is removed. Touches nothing else; returns whether it changed nb.
    """
    changed = False
    exercise = 0
    used: dict[str, int] = {}
    prefix = f"lesson{lesson}-"
    for index, cell in enumerate(nb.get("cells", [])):
        source = cell_source(cell)
        if cell.get("cell_type") == "markdown":
            headings = _EXERCISE_HEADING.findall(source)
            if headings:
                exercise = int(headings[-1])
            continue
        if cell.get("cell_type") != "code":
            continue
        metadata = cell.setdefault("metadata", {})
        has_region = bool(solution_regions(source.split("\n"), f"{where}, cell {index}"))
        if has_region:
            base = f"{prefix}ex{exercise}" if exercise else f"{prefix}solution"
            used[base] = used.get(base, 0) + 1
            grade_id = base if used[base] == 1 else f"{base}-{used[base]}"
            wanted = nbgrader_solution_metadata(grade_id)
            if metadata.get("nbgrader") != wanted:
                metadata["nbgrader"] = wanted
                changed = True
        else:
            old = metadata.get("nbgrader")
            if isinstance(old, dict) and str(old.get("grade_id", "")).startswith(prefix) \
                    and old.get("solution") and not old.get("grade"):
                del metadata["nbgrader"]
                changed = True
    return changed


# ----------------------------------------------------------------------------------------------
# The student edition of one notebook

def _solution_only_lines(nb: dict[str, Any], where: str) -> set[str]:
    """Lines found in solutions (tagged cells, regions, <details>) and nowhere else in the lesson."""
    secret: set[str] = set()
    public: set[str] = set()
    for index, cell in enumerate(nb.get("cells", [])):
        source = cell_source(cell)
        if SOLUTION_TAG in cell.get("metadata", {}).get("tags", []):
            secret.update(line.strip() for line in source.split("\n"))
            continue
        lines = source.split("\n")
        hidden = set()
        for begin, end in solution_regions(lines, f"{where}, cell {index}"):
            hidden.update(range(begin, end + 1))
        secret.update(lines[i].strip() for i in hidden)
        rest = "\n".join(line for i, line in enumerate(lines) if i not in hidden)
        for block in _DETAILS.findall(rest):
            secret.update(line.strip() for line in block.split("\n"))
        public.update(line.strip() for line in _DETAILS.sub("", rest).split("\n"))
    stubs = {"", CODE_STUB, "raise NotImplementedError()", "pass", TEXT_STUB, DETAILS_STUB}
    return {line for line in secret - public - stubs if not re.fullmatch(r"\w+ = None", line)}


def student_notebook(nb: dict[str, Any], source_dir: Path, student_names: set[str],
                     where: str) -> dict[str, Any]:
    """The student edition of the full-edition notebook `nb` (which is left unchanged)."""
    import nbformat
    from nbconvert.preprocessors import ClearOutputPreprocessor, TagRemovePreprocessor

    nb = copy.deepcopy(nb)
    if nb.get("nbformat", 4) == 4 and nb.get("nbformat_minor", 0) >= 5:
        for index, cell in enumerate(nb.get("cells", [])):
            cell.setdefault("id", f"cell-{index}")    # nbformat 4.5 requires ids; keep them stable
    node = nbformat.from_dict(nb)
    resources: dict[str, Any] = {}
    node, _ = TagRemovePreprocessor(remove_cell_tags={SOLUTION_TAG}).preprocess(node, resources)
    node, _ = ClearOutputPreprocessor().preprocess(node, resources)
    out = json.loads(json.dumps(node))           # back to plain JSON types
    for index, cell in enumerate(out["cells"]):
        cell_where = f"{where}, cell {index} (id {cell.get('id', '?')})"
        source, _ = clear_solution_regions(cell_source(cell), cell["cell_type"], cell_where)
        if cell["cell_type"] == "markdown":
            source = rewrite_links(strip_details(source), source_dir, student_names, cell_where)
        set_source(cell, source)
        cell.get("metadata", {}).pop("execution", None)
    out.setdefault("metadata", {}).setdefault("vit_lib", {})["edition"] = "student"
    full_name = Path(where).name
    out["cells"].insert(0, {"cell_type": "markdown", "id": "student-edition-banner",
                            "metadata": {"tags": [BANNER_TAG]},
                            "source": BANNER.format(full=full_name).splitlines(keepends=True)})
    verify_student_notebook(nb, out, where)
    return out


def verify_student_notebook(full: dict[str, Any], student: dict[str, Any], where: str) -> None:
    """Fail if a marker, a hidden answer or any solution-only line is left in the student copy."""
    secret = _solution_only_lines(full, where)
    for index, cell in enumerate(student["cells"]):
        source = cell_source(cell)
        for number, line in enumerate(source.split("\n"), 1):
            text = line.strip()
            if "BEGIN SOLUTION" in text or "END SOLUTION" in text or "<details" in text.lower():
                raise StudentEditionError(f"{where}, student cell {index}, line {number}: "
                                          f"solution marker left: {text!r}")
            if text in secret:
                raise StudentEditionError(f"{where}, student cell {index}, line {number}: a line "
                                          f"of a solution is left: {text!r}")
        if cell.get("cell_type") == "code" and (cell.get("outputs") or cell.get("execution_count")):
            raise StudentEditionError(f"{where}, student cell {index}: outputs were not cleared")
        banner = BANNER_TAG in cell.get("metadata", {}).get("tags", [])
        if cell.get("cell_type") == "markdown" and not banner:
            found = SOLUTION_TALK.search(source)
            if found:
                raise StudentEditionError(
                    f"{where}, student cell {index}: the student edition has no worked solutions, "
                    f"but this cell refers to one ({found.group(0)!r}); rephrase it in the full "
                    "edition, or put it in the solution's own markdown cell")


# ----------------------------------------------------------------------------------------------
# The whole edition

def lesson_paths(source_dir: Path) -> list[Path]:
    return sorted(source_dir.glob(LESSON_GLOB))


def build_student_edition(source_dir: Path) -> dict[str, str]:
    """{file name: notebook text} of the student edition of every lesson in `source_dir`."""
    paths = lesson_paths(source_dir)
    if not paths:
        raise StudentEditionError(f"no lessons {LESSON_GLOB} in {source_dir}")
    names = {p.name for p in paths}
    edition: dict[str, str] = {}
    for path in paths:
        nb = read_notebook(path)
        marked = copy.deepcopy(nb)
        mark_nbgrader_cells(marked, lesson_of(path, nb), path.name)
        edition[path.name] = dumps_notebook(student_notebook(marked, source_dir, names, path.name))
    return edition


def mark_full_edition(source_dir: Path, write: bool = True) -> list[Path]:
    """Add nbgrader metadata to the full edition's solution cells; the notebooks that changed."""
    changed = []
    for path in lesson_paths(source_dir):
        nb = read_notebook(path)
        if mark_nbgrader_cells(nb, lesson_of(path, nb), path.name):
            changed.append(path)
            if write:
                path.write_text(dumps_notebook(nb), encoding="utf-8")
    return changed


def write_student_edition(source_dir: Path, out_dir: Path) -> list[Path]:
    """Write the student edition into out_dir (removing stale lesson files); the files written."""
    edition = build_student_edition(source_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(LESSON_GLOB):
        if stale.name not in edition:
            stale.unlink()
    written = []
    for name, text in edition.items():
        target = out_dir / name
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            written.append(target)
    return written


def check_student_edition(source_dir: Path, out_dir: Path) -> list[str]:
    """What is out of date: one line per lesson whose committed copy differs or is missing."""
    problems = [f"{p} is missing the nbgrader metadata (run `make student`)"
                for p in mark_full_edition(source_dir, write=False)]
    edition = build_student_edition(source_dir)
    for name, text in edition.items():
        target = out_dir / name
        if not target.is_file():
            problems.append(f"{target} is missing (run `make student`)")
        elif target.read_text(encoding="utf-8") != text:
            problems.append(f"{target} is out of date (run `make student`)")
    for extra in sorted(out_dir.glob(LESSON_GLOB)):
        if extra.name not in edition:
            problems.append(f"{extra} has no lesson any more (run `make student`)")
    return problems


# ----------------------------------------------------------------------------------------------
# The lessons table of TEACHING.md, read from the notebooks

TABLE_BEGIN = "<!-- lessons table: written by `make student` from the notebooks; edit them, not this -->"
TABLE_END = "<!-- end of the lessons table -->"


def _one_line(text: str) -> str:
    return " ".join(text.split())


def lesson_row(path: Path) -> str:
    """One markdown table row: lesson and title, prerequisites, time, the exercises' titles."""
    import importlib

    nb = read_notebook(path)
    lesson = lesson_of(path, nb)
    title, prerequisites, time = path.stem, "(not stated)", "(not stated)"
    for cell in nb.get("cells", []):
        text = cell_source(cell) if cell.get("cell_type") == "markdown" else ""
        m = re.search(r"^#\s+(?:Lesson\s+)?\d\d\s*·\s*(.+)$", text, re.MULTILINE)
        if m and title == path.stem:
            title = m.group(1).strip()
        m = re.search(r"\*\*Prerequisites:\*\*(.+?)·\s*\*\*Time:\*\*(.+?)(?:\n\n|$)", text, re.DOTALL)
        if m:
            prerequisites, time = _one_line(m.group(1)), _one_line(m.group(2))
    try:
        table = importlib.import_module(f"vit_lib.classroom.exercises.lesson{lesson}").EXERCISES
    except ModuleNotFoundError:
        table = ()
    exercises = "; ".join(f"{ex.number}. {ex.title}" for ex in table) or "none"
    link = f"[{lesson} · {title}](notebooks/{path.name})"
    return f"| {link} | {prerequisites} | {time} | {exercises} |"


def lessons_table(source_dir: Path) -> str:
    rows = [lesson_row(p) for p in lesson_paths(source_dir)]
    header = ("| lesson | prerequisites | time | exercises (check functions in "
              "`vit_lib.classroom.exercises.lessonNN`) |")
    return "\n".join([TABLE_BEGIN, header, "|---|---|---|---|", *rows, TABLE_END])


def teaching_text(teaching: Path, source_dir: Path) -> str | None:
    """TEACHING.md with its lessons table rewritten (None when the file has no table markers)."""
    text = teaching.read_text(encoding="utf-8")
    if TABLE_BEGIN not in text or TABLE_END not in text:
        return None
    head, rest = text.split(TABLE_BEGIN, 1)
    return head + lessons_table(source_dir) + rest.split(TABLE_END, 1)[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vit_lib student",
        description="Write the student edition notebooks/student/NN_*.ipynb from the lessons "
                    "(solutions removed, outputs cleared), mark the lessons' solution cells "
                    "for nbgrader and rewrite the lessons table of TEACHING.md.")
    parser.add_argument("--source", type=Path, default=ROOT / "notebooks",
                        help="folder of the full edition NN_*.ipynb (default: notebooks/)")
    parser.add_argument("--out", type=Path, default=None,
                        help="where to write the student edition (default: SOURCE/student)")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 if the student edition or the metadata is stale")
    parser.add_argument("--no-mark", action="store_true",
                        help="do not add nbgrader metadata to the full edition")
    args = parser.parse_args(argv)
    out_dir = args.out or args.source / STUDENT_FOLDER
    teaching = args.source.resolve().parent / "TEACHING.md"
    if not args.source.is_dir():
        parser.error(f"--source {args.source} is not a folder")
    try:
        if args.check:
            problems = check_student_edition(args.source, out_dir)
            if teaching.is_file() and teaching_text(teaching, args.source) not in (
                    None, teaching.read_text(encoding="utf-8")):
                problems.append(f"{teaching}: the lessons table is out of date (run `make student`)")
            for line in problems:
                print(line, file=sys.stderr)
            if not problems:
                print(f"{out_dir}: the student edition is current")
            return 1 if problems else 0
        marked = [] if args.no_mark else mark_full_edition(args.source)
        written = write_student_edition(args.source, out_dir)
        table = teaching_text(teaching, args.source) if teaching.is_file() else None
        if table is not None and table != teaching.read_text(encoding="utf-8"):
            teaching.write_text(table, encoding="utf-8")
            print(f"lessons table updated: {teaching}")
    except StudentEditionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for path in marked:
        print(f"nbgrader metadata added: {path}")
    print(f"student edition: {len(lesson_paths(args.source))} lessons in {out_dir} "
          f"({len(written)} written, the rest already current)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
