"""The README is a newcomer's page: short, its lessons table is vit_lib.LESSONS, its results
headline is copied from the generated table in docs/results.md (generated sections live in docs/,
never in the README), and every relative link of README, CONTRIBUTING, TEACHING and docs/
resolves (files and #anchors)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import vit_lib

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, ROOT / "CONTRIBUTING.md", ROOT / "TEACHING.md",
         *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)(?!`).+?(?<!`)\1(?!`)")
GENERATED = re.compile(r"<!-- ([\w-]+):start -->")


def section(text: str, heading: str) -> str:
    """The body of the `## heading` section of a Markdown text ('' when there is none)."""
    parts = re.split(rf"^## {re.escape(heading)}[ \t]*$", text, maxsplit=1, flags=re.M)
    return parts[1].split("\n## ", 1)[0] if len(parts) == 2 else ""


def table(text: str) -> list[str]:
    """The lines of the first Markdown table in `text`."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), len(lines))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return lines[start:end]


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown page."""
    out = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        if re.match(r"#{1,6} ", line):
            title = line.lstrip("#").strip().lower()
            slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
            out.add(slug)
    return out


def links(page: Path) -> list[str]:
    """Link and image targets outside code blocks and code spans."""
    return LINK.findall(CODE_SPAN.sub("", FENCE.sub("", page.read_text())))


def test_the_readme_is_short():
    lines = README.read_text().splitlines()
    assert len(lines) < 200, f"README.md has {len(lines)} lines; move the detail to a docs/ page"


def test_the_lessons_table_is_vit_lib_lessons():
    rows = table(section(README.read_text(), "The lessons"))[2:]      # after header and |---|
    expected = [f"[{lesson.number} · {lesson.title}](notebooks/{lesson.notebook})"
                for lesson in vit_lib.LESSONS]
    shown = [row.split("|")[1].strip() if row.count("|") > 1 else row for row in rows]
    missing = [e for e in expected if e not in shown]
    assert shown == expected, (
        "README.md's lessons table must list vit_lib.LESSONS in order, one row each, first cell "
        f"'[NN · title](notebooks/NN_name.ipynb)'; missing or changed: {missing or shown}")
    for row, lesson in zip(rows, vit_lib.LESSONS, strict=True):
        modules = row.rstrip().rstrip("|").rsplit("|", 1)[1]
        assert re.findall(r"`(\w+)`", modules) == list(lesson.modules), (
            f"lesson {lesson.number}'s last cell should name its modules "
            f"{', '.join(f'`{m}`' for m in lesson.modules)}: {row}")
        assert (ROOT / "notebooks" / lesson.notebook).is_file(), lesson.notebook


def test_the_headline_table_is_copied_from_the_generated_results():
    headline = table(section(README.read_text(), "Results"))
    assert len(headline) > 2, "the README's Results section has no table"
    results = (ROOT / "docs" / "results.md").read_text()
    generated = results.split("<!-- results:start -->", 1)[1].split("<!-- results:end -->", 1)[0]
    assert "\n".join(headline) + "\n" in generated, (
        "README.md's results table is not a table of docs/results.md's generated section: copy "
        "the preset table that `make bench` wrote there (header, every row, as it is)")


def test_the_readme_has_no_generated_section():
    found = GENERATED.findall(README.read_text())
    assert not found, f"generated sections {found} belong in a docs/ page, not in README.md"


def test_every_generated_section_has_its_end():
    for page in sorted((ROOT / "docs").glob("*.md")):
        text = page.read_text()
        for name in GENERATED.findall(text):
            assert text.count(f"<!-- {name}:start -->") == 1 == text.count(f"<!-- {name}:end -->"), \
                (page.name, name)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):      # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in anchors(file):
            broken.append(target)
    assert not broken, f"{page.name}: broken links {broken}"


def test_the_link_checker_sees_a_broken_link(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# Title\n\n## Your own images: `--dataset folder:PATH`\n\n"
                    "[a](missing.md) [b](#title) [c](#nope) `[d](in-code.md)`\n"
                    "[e](#your-own-images---dataset-folderpath)\n\n```\n# not a heading\n```\n")
    assert links(page) == ["missing.md", "#title", "#nope", "#your-own-images---dataset-folderpath"]
    assert anchors(page) == {"title", "your-own-images---dataset-folderpath"}


def test_the_table_readers():
    text = "# T\n\n## Results\n\nprose\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\nmore\n\n## Next\n\n| x |\n"
    assert table(section(text, "Results")) == ["| a | b |", "|---|---|", "| 1 | 2 |"]
    assert section(text, "Missing") == ""
