"""Build the lesson series as a static HTML book (Jupyter Book 1.x) from the saved notebooks.

    python tools/build_site.py            # what `make site` runs; output in site/_build/html
    python tools/build_site.py --quiet    # only warnings, errors and the summary line

Nothing is executed: every lesson page shows the outputs saved in `notebooks/NN_*.ipynb`.
The script stages a book source in `site/_build/src` and builds it with Sphinx warnings as errors:

- the table of contents is generated from `notebooks/[0-9][0-9]_*.ipynb`, in number order, so a
  new lesson is in the book as soon as it is saved; any other notebook directly in `notebooks/`
  is an error (it would silently be missing from the book);
- images attached to markdown cells (`![..](attachment:x.png)`, which MyST-NB cannot show) are
  written out as files and the cells point at those;
- every relative link and image in the lessons, `TEACHING.md`, README.md, CONTRIBUTING.md, docs/ and
  `site/*.md` is resolved against the repository: lesson/page links become links between pages,
  other files in the repository become downloads, anything that does not exist is an error;
- after Sphinx, every `href`/`src` in the generated HTML is checked again (raw HTML included),
  and each lesson page's "download .ipynb" button is pointed at the original notebook.

Pages: the site/index.md introduction, the lessons, "Results" (docs/results.md), TEACHING.md,
"Student edition" (downloads of `notebooks/student/NN_*.ipynb`, one by one and as a zip),
README.md with CONTRIBUTING.md and the other docs/*.md pages under it.
"""
from __future__ import annotations

import argparse
import base64
import html.parser
import json
import posixpath
import re
import shutil
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
SITE = ROOT / "site"
LESSON_GLOB = "[0-9][0-9]_*.ipynb"
LESSON_NAME = re.compile(r"^(\d\d)_[A-Za-z0-9_]+\.ipynb$")
# Files the pages link to are staged under _files/ (Sphinx copies what markdown links and
# images use into _downloads/ and _images/ itself); those that raw HTML (<img src=...>) uses are
# also put in _extra/files/, which html_extra_path copies to files/ at the root of the site.
FILES = "_files"
SERVED = "_extra/files"
RESULTS_START, RESULTS_END = "<!-- results:start -->", "<!-- results:end -->"

# Pages of the book that have no file of their own in the repository, by the path a link in
# site/*.md uses for them (relative to the repository root) -> staged document path.
VIRTUAL_PAGES = {"site/results.md": "docs/results.md", "site/downloads.md": "downloads.md"}

# Markdown inline links/images: [text](target "title") and ![alt](target); the target may be
# written <in angle brackets>. Reference definitions: [label]: target. Raw HTML: href=/src=.
MD_LINK = re.compile(r"(?P<bang>!?)\[(?P<text>(?:[^\[\]]|\[[^\[\]]*\])*)\]\(\s*"
                     r"(?P<target><[^>\n]*>|[^\s()]*(?:\([^\s()]*\)[^\s()]*)*)"
                     r"(?P<title>\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
MD_REFDEF = re.compile(r"^(?P<lead> {0,3}\[[^\]]+\]:[ \t]*)(?P<target><[^>\n]*>|\S+)", re.M)
HTML_ATTR = re.compile(r"(?P<lead>\b(?:href|src)\s*=\s*)(?P<q>[\"'])(?P<target>.*?)(?P=q)",
                       re.I | re.S)
FENCE = re.compile(r"^( {0,3})(```+|~~~+)[^\n]*\n.*?^\1\2[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)", re.S)


class SiteError(Exception):
    """A problem the author of a page must fix; the message says what and where."""


@dataclass
class Stage:
    """Where the book source is staged, and what the staged pages may link to."""

    src: Path                                           # site/_build/src
    pages: dict[str, str] = field(default_factory=dict)  # repo path -> staged document path
    errors: list[str] = field(default_factory=list)
    copied: dict[str, str] = field(default_factory=dict)  # repo path -> staged file path

    def copy_repo_file(self, repo_path: str) -> str:
        """Copy a repository file into `_files/repo/` once; return its staged path."""
        staged = self.copied.get(repo_path)
        if staged is None:
            staged = f"{FILES}/repo/{repo_path}"
            (self.src / staged).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(ROOT / repo_path, self.src / staged)
            self.copied[repo_path] = staged
        return staged

    def serve(self, staged: str) -> str:
        """Also publish a file staged under _files/ as is; return its path in the built site."""
        rel = posixpath.relpath(staged, FILES)
        target = self.src / SERVED / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(self.src / staged, target)
        return posixpath.join(posixpath.relpath(SERVED, "_extra"), rel)


def is_external(target: str) -> bool:
    """True for URLs with a scheme (http:, mailto:, data:, ...) and for pure anchors."""
    return target.startswith("#") or bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:", target)) \
        and not target.startswith(("attachment:", "path:", "project:"))


def outside_code(text: str, rewrite) -> str:
    """Apply `rewrite` to the parts of markdown `text` that are not fenced code or code spans."""
    out, pos = [], 0
    for fence in FENCE.finditer(text):
        out.append(_outside_spans(text[pos:fence.start()], rewrite))
        out.append(fence.group(0))
        pos = fence.end()
    out.append(_outside_spans(text[pos:], rewrite))
    return "".join(out)


def _outside_spans(text: str, rewrite) -> str:
    out, pos = [], 0
    for span in CODE_SPAN.finditer(text):
        out.append(rewrite(text[pos:span.start()]))
        out.append(span.group(0))
        pos = span.end()
    out.append(rewrite(text[pos:]))
    return "".join(out)


def rewrite_links(text: str, repo_file: str, staged_file: str, stage: Stage,
                  attachments: dict[str, str] | None = None) -> str:
    """Point every relative link/image of one markdown text at its place in the staged book.

    repo_file: the text's source, relative to the repository root (links are relative to it);
    staged_file: where the text is staged, relative to stage.src; attachments: attachment name
    -> staged file of this cell. Unresolvable targets are recorded in stage.errors.
    """
    def resolve(target: str, kind: str) -> str | None:
        """kind: 'image' / 'link' (markdown) or 'html' (a raw href/src). None: drop the link."""
        if target.startswith("<") and target.endswith(">"):
            target = target[1:-1]
        if not target or is_external(target):
            return target
        here = posixpath.dirname(staged_file)
        if target.startswith("attachment:"):
            name = unquote(target[len("attachment:"):])
            if attachments is None or name not in attachments:
                stage.errors.append(f"{repo_file}: image 'attachment:{name}' is not attached to "
                                    f"its cell (attach the file to that markdown cell)")
                return target
            return posixpath.relpath(stage.serve(attachments[name]) if kind == "html"
                                     else attachments[name], here)
        for prefix in ("path:", "project:"):
            if target.startswith(prefix):
                target = target[len(prefix):]
        path, _, frag = target.partition("#")
        path = unquote(path.split("?", 1)[0])
        repo_path = posixpath.normpath(posixpath.join(posixpath.dirname(repo_file), path)) \
            if path else repo_file
        anchor = f"#{frag}" if frag else ""
        if repo_path.startswith("../"):
            stage.errors.append(f"{repo_file}: link '{target}' leaves the repository")
            return target
        page = stage.pages.get(repo_path)
        if page is not None:
            rel = posixpath.relpath(page, here)
            if kind == "html":
                rel = posixpath.splitext(rel)[0] + ".html"
            return rel + anchor
        full = ROOT / repo_path
        if repo_path.rstrip("/") == "notebooks/student" and full.is_dir():
            rel = posixpath.relpath("downloads.md", here)
            return posixpath.splitext(rel)[0] + ".html" if kind == "html" else rel
        if full.is_dir():
            print(f"note: {repo_file}: '{target}' is a folder of the repository, not a page of "
                  f"the book; kept as text without a link")
            return None
        if not full.is_file():
            stage.errors.append(f"{repo_file}: {'image' if kind == 'image' else 'link'} "
                                f"'{target}' points to {repo_path}, which does not exist")
            return target
        staged = stage.copy_repo_file(repo_path)
        rel = posixpath.relpath(staged, here)
        if kind == "link":
            return "path:" + rel       # MyST: a download of the file itself, never a page
        if kind == "html":
            rel = posixpath.relpath(stage.serve(staged), here)
        return rel + anchor

    def rewrite(chunk: str) -> str:
        def md(m: re.Match) -> str:
            new = resolve(m["target"], "image" if m["bang"] else "link")
            if new is None:
                return m["text"]
            if " " in new:
                new = f"<{new}>"
            return f"{m['bang']}[{m['text']}]({new}{m['title'] or ''})"

        def refdef(m: re.Match) -> str:
            new = resolve(m["target"], "link")
            return m["lead"] + (new if new is not None else "#")

        def raw(m: re.Match) -> str:
            new = resolve(m["target"], "html")
            return f"{m['lead']}{m['q']}{new if new is not None else '#'}{m['q']}"

        chunk = MD_LINK.sub(md, chunk)
        chunk = MD_REFDEF.sub(refdef, chunk)
        return HTML_ATTR.sub(raw, chunk)

    return outside_code(text, rewrite)


def safe_name(name: str) -> str:
    """A file name made of [A-Za-z0-9._-] only."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", name) or "attachment"


MIME_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "image/gif": ".gif",
            "image/svg+xml": ".svg", "image/webp": ".webp"}


def write_attachments(cell: dict, index: int, stem: str, stage: Stage) -> dict[str, str]:
    """Write one markdown cell's attachments to files; return name -> staged path."""
    paths: dict[str, str] = {}
    for name, bundle in (cell.get("attachments") or {}).items():
        mime = next((m for m in MIME_EXT if m in bundle), None)
        if mime is None:
            stage.errors.append(f"notebooks/{stem}.ipynb: cell {index} attachment '{name}' has "
                                f"no image type ({', '.join(bundle)})")
            continue
        data = bundle[mime]
        data = "".join(data) if isinstance(data, list) else data
        raw = data.encode() if mime == "image/svg+xml" and data.lstrip().startswith("<") \
            else base64.b64decode(data)
        base = safe_name(name)
        if not base.lower().endswith(MIME_EXT[mime]) and not (
                mime == "image/jpeg" and base.lower().endswith(".jpeg")):
            base += MIME_EXT[mime]
        staged = f"{FILES}/attachments/{stem}/cell{index}-{base}"
        (stage.src / staged).parent.mkdir(parents=True, exist_ok=True)
        (stage.src / staged).write_bytes(raw)
        paths[name] = staged
    return paths


def find_lessons() -> list[Path]:
    """The numbered lessons in order; anything else directly in notebooks/ is an error."""
    folder = ROOT / "notebooks"
    lessons, strays = [], []
    for path in sorted(folder.glob("*.ipynb")):
        (lessons if LESSON_NAME.match(path.name) else strays).append(path)
    if strays:
        raise SiteError(f"notebooks/ holds {', '.join(p.name for p in strays)}, which the book "
                        f"cannot place: name lessons NN_title.ipynb (two digits, then a title of "
                        f"letters, digits and underscores) or move other notebooks elsewhere")
    if not lessons:
        raise SiteError(f"no lesson notebooks ({LESSON_GLOB}) in {folder}")
    numbers = [p.name[:2] for p in lessons]
    twice = sorted({n for n in numbers if numbers.count(n) > 1})
    if twice:
        raise SiteError(f"two lessons share the number {', '.join(twice)} in notebooks/: "
                        f"renumber one of them")
    return lessons


def stage_lesson(path: Path, stage: Stage) -> None:
    """Copy one executed lesson into the stage with attachments as files and links resolved."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    repo_file = f"notebooks/{path.name}"
    staged_file = f"notebooks/{path.name}"
    if not any(c.get("cell_type") == "code" and c.get("outputs") for c in nb.get("cells", [])):
        stage.errors.append(f"{repo_file}: no code cell has an output; the book shows saved "
                            f"outputs, so execute it first (tools/execute_notebooks.py)")
    for index, cell in enumerate(nb.get("cells", [])):
        if cell.get("cell_type") != "markdown":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        attachments = write_attachments(cell, index, path.stem, stage)
        cell["source"] = rewrite_links(source, repo_file, staged_file, stage, attachments)
        cell.pop("attachments", None)
    out = stage.src / staged_file
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(nb, ensure_ascii=False, indent=1), encoding="utf-8")


def doc_pages() -> list[str]:
    """The repository's Markdown pages the book shows besides the lessons: the README,
    CONTRIBUTING.md and docs/*.md (TEACHING.md has its own check)."""
    docs = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))
    if "docs/results.md" not in docs:
        raise SiteError("docs/results.md is missing: the book's results page is that file "
                        "(benchmarks/run_all.py writes its results section)")
    results = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    if RESULTS_START not in results or RESULTS_END not in results:
        raise SiteError(f"docs/results.md lacks the markers {RESULTS_START} ... {RESULTS_END} "
                        f"around its results section (benchmarks/run_all.py writes them)")
    return ["README.md", "CONTRIBUTING.md", *docs]


def markdown_pages(stage: Stage) -> None:
    """README.md, CONTRIBUTING.md and docs/*.md as pages of their own, links resolved."""
    for page in doc_pages():
        text = (ROOT / page).read_text(encoding="utf-8")
        out = stage.src / page
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(rewrite_links(text, page, page, stage), encoding="utf-8")


def teaching_page(stage: Stage) -> None:
    """TEACHING.md, links resolved; it must exist."""
    path = ROOT / "TEACHING.md"
    if not path.is_file():
        raise SiteError("TEACHING.md is missing: the book has a page for the teacher's guide; "
                        "restore TEACHING.md at the repository root")
    text = path.read_text(encoding="utf-8")
    (stage.src / "TEACHING.md").write_text(
        rewrite_links(text, "TEACHING.md", "TEACHING.md", stage), encoding="utf-8")


def lesson_title(path: Path) -> str:
    """The first markdown heading of a notebook, or its file name."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb.get("cells", []):
        if cell.get("cell_type") == "markdown":
            src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            m = re.search(r"^#\s+(.+?)\s*#*\s*$", src, re.M)
            if m:
                return m.group(1)
    return path.stem


def downloads_page(lessons: list[Path], stage: Stage) -> None:
    """The student edition (notebooks/student/NN_*.ipynb) and the full lessons as downloads."""
    folder = ROOT / "notebooks" / "student"
    students = sorted(folder.glob(LESSON_GLOB)) if folder.is_dir() else []
    if not students:
        raise SiteError(f"the student edition is missing: no {LESSON_GLOB} in {folder} "
                        f"(generate it with `make student`)")
    names = {p.name for p in students}
    zip_path = stage.src / FILES / "student_edition.zip"
    zip_path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(zip_path, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in students:
            info = zipfile.ZipInfo(f"vit-from-scratch-student/{p.name}", (2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, p.read_bytes())
    rows = []
    for lesson in lessons:
        full = stage.copy_repo_file(f"notebooks/{lesson.name}")
        student = "(no student version)"
        if lesson.name in names:
            copy = stage.copy_repo_file(f"notebooks/student/{lesson.name}")
            student = f"{{download}}`{lesson.name} <{copy}>`"
        page = f"[{lesson_title(lesson)}](notebooks/{lesson.name})"
        rows.append(f"| {page} | {student} | {{download}}`{lesson.name} <{full}>` |")
    extra = sorted(names - {p.name for p in lessons})
    if extra:
        stage.errors.append(f"notebooks/student/ holds {', '.join(extra)} without a lesson of the "
                            f"same name in notebooks/ (regenerate the student edition)")
    text = "\n".join([
        "# Student edition",
        "",
        "The student edition is the same series with every worked solution replaced by",
        "`# YOUR CODE HERE` and all outputs cleared: run it top to bottom, fill in the exercises,",
        "and each exercise's check function tells you whether your answer is right and, if not,",
        "what is wrong. It is generated from the lessons by `make student`.",
        "",
        "The notebooks import the repository's `vit_lib` package: install it first (in a",
        "checkout, `pip install -e .`, or `make lab`, which also opens JupyterLab); then they run",
        "from any folder.",
        "",
        f"{{download}}`All student notebooks as one zip <{FILES}/student_edition.zip>`",
        "",
        "| lesson | student edition (no solutions) | full lesson (with solutions and outputs) |",
        "|---|---|---|",
        *rows,
        "",
    ])
    (stage.src / "downloads.md").write_text(text, encoding="utf-8")


def write_toc(lessons: list[Path], stage: Stage) -> None:
    """_toc.yml: the introduction, the lessons in number order, then the other pages."""
    lines = ["# Generated by tools/build_site.py from notebooks/ (do not edit).",
             "format: jb-book", "root: index", "parts:", "  - caption: Lessons", "    chapters:"]
    lines += [f"      - file: notebooks/{p.stem}" for p in lessons]
    lines += ["  - caption: More", "    chapters:", "      - file: docs/results",
              "      - file: TEACHING", "      - file: downloads", "      - file: README",
              "        title: The repository's README", "        sections:"]
    lines += [f"          - file: {page[:-3]}" for page in doc_pages()
              if page not in ("README.md", "docs/results.md")]
    lines.append("")
    (stage.src / "_toc.yml").write_text("\n".join(lines), encoding="utf-8")


class _Refs(html.parser.HTMLParser):
    """Collects ids and local href/src of one HTML page."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.refs: list[tuple[str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if name in ("id", "name") and value:
                self.ids.add(value)
            if name in ("href", "src") and value and tag in ("a", "img", "script", "link",
                                                             "source", "iframe"):
                self.refs.append((tag, value))


def check_html(html_dir: Path, lessons: list[Path]) -> list[str]:
    """Every local href/src in the built pages names a file (and an id) that exists."""
    errors = []
    for lesson in lessons:
        if not (html_dir / "notebooks" / f"{lesson.stem}.html").is_file():
            errors.append(f"notebooks/{lesson.name} has no page in the built book")
    pages = [p for p in html_dir.rglob("*.html")
             if not p.relative_to(html_dir).parts[0].startswith("_")]
    parsed: dict[Path, _Refs] = {}

    def parse(page: Path) -> _Refs:
        if page not in parsed:
            parser = _Refs()
            parser.feed(page.read_text(encoding="utf-8", errors="replace"))
            parsed[page] = parser
        return parsed[page]

    for page in pages:
        for tag, ref in parse(page).refs:
            if is_external(ref) and not ref.startswith("#") or ref.startswith("javascript:"):
                continue
            parts = urlsplit(ref)
            target = (page.parent / unquote(parts.path)).resolve() if parts.path else page
            where = page.relative_to(html_dir)
            if not target.exists():
                errors.append(f"{where}: <{tag}> '{ref}' points to a file the book does not have")
            elif parts.fragment and target.suffix == ".html" and tag == "a" \
                    and parts.fragment not in parse(target).ids:
                errors.append(f"{where}: link '{ref}' names an anchor that "
                              f"{target.relative_to(html_dir)} does not have")
    return errors


def jupyter_book() -> list[str]:
    """The jupyter-book command of this interpreter's environment."""
    exe = Path(sys.executable).parent / "jupyter-book"
    if exe.exists():
        return [str(exe)]
    found = shutil.which("jupyter-book")
    if found:
        return [found]
    raise SiteError("jupyter-book is not installed: run `pip install -e \".[site]\"` "
                    "(or `make site`, which does it)")


def build(build_dir: Path, quiet: bool = False) -> Path:
    """Stage and build the book; return the folder holding index.html."""
    lessons = find_lessons()
    src = build_dir / "src"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(SITE, src, ignore=shutil.ignore_patterns("_build", "*.ipynb_checkpoints"))
    stage = Stage(src=src)
    stage.pages = {f"notebooks/{p.name}": f"notebooks/{p.name}" for p in lessons}
    stage.pages.update({"TEACHING.md": "TEACHING.md", "site/index.md": "index.md",
                        **{page: page for page in doc_pages()}, **VIRTUAL_PAGES})
    for lesson in lessons:
        stage_lesson(lesson, stage)
    index = (SITE / "index.md").read_text(encoding="utf-8")
    (src / "index.md").write_text(rewrite_links(index, "site/index.md", "index.md", stage),
                                  encoding="utf-8")
    markdown_pages(stage)
    teaching_page(stage)
    downloads_page(lessons, stage)
    write_toc(lessons, stage)
    if stage.errors:
        raise SiteError("broken links or images:\n  " + "\n  ".join(stage.errors))

    html_dir = build_dir / "html"
    if html_dir.exists():
        shutil.rmtree(html_dir)     # a page removed from the book must not linger
    cmd = jupyter_book() + ["build", str(src), "--path-output", str(build_dir.parent),
                            "--warningiserror", "--keep-going", "--quiet"]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=quiet, text=True)
    if result.returncode:
        if quiet:
            sys.stdout.write(result.stdout[-8000:])
            sys.stderr.write(result.stderr[-8000:])
        raise SiteError("Sphinx reported the warnings above (a broken link or image, a missing "
                        "page, bad markup); the book was not built")
    if not (html_dir / "index.html").is_file():
        raise SiteError(f"jupyter-book finished but wrote no {html_dir / 'index.html'}")
    (html_dir / ".nojekyll").touch()    # hosts that run Jekyll (gh-pages branches) keep _static/
    # The page's download button offers _sources/...; give it the original notebook.
    for lesson in lessons:
        shutil.copyfile(lesson, html_dir / "_sources" / "notebooks" / lesson.name)
    errors = check_html(html_dir, lessons)
    if errors:
        raise SiteError("the built pages have broken links or images:\n  " + "\n  ".join(errors))
    return html_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build-dir", type=Path, default=SITE / "_build",
                        help="where to stage (BUILD_DIR/src) and build (BUILD_DIR/html); its "
                             "name must be _build (default: site/_build)")
    parser.add_argument("--quiet", action="store_true", help="show Sphinx output only on failure")
    args = parser.parse_args(argv)
    build_dir = args.build_dir.resolve()
    if build_dir.name != "_build":
        print(f"error: --build-dir must be a folder named _build (jupyter-book writes there), "
              f"got {build_dir}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        html_dir = build(build_dir, args.quiet)
    except SiteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    shown = html_dir.relative_to(ROOT) if html_dir.is_relative_to(ROOT) else html_dir
    print(f"site: built {shown}/index.html in {time.perf_counter() - start:.0f}s "
          f"(open it, or serve it: python -m http.server -d {shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
