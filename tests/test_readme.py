"""The README is a newcomer's page: short, its lessons table is vit_lib.LESSONS, its headline
figures are the generated ones, and every relative link of README, CONTRIBUTING and docs/
resolves (files and #anchors)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

import vit_lib

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", ROOT / "TEACHING.md",
         *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown page."""
    out = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            slug = re.sub(r"[^\w\- ]", "", title).replace(" ", "-")
            out.add(slug)
    return out


def links(page: Path) -> list[str]:
    return LINK.findall(FENCE.sub("", page.read_text()))


def test_the_readme_is_short():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) < 200, len(lines)


def test_the_lessons_table_is_vit_lib_lessons():
    rows = [line for line in (ROOT / "README.md").read_text().splitlines()
            if re.match(r"\| \[\d\d", line)]
    assert len(rows) == len(vit_lib.LESSONS)
    for row, lesson in zip(rows, vit_lib.LESSONS, strict=True):
        assert row.startswith(f"| [{lesson.number} · {lesson.title}](notebooks/{lesson.notebook}) |"), row
        assert all(f"`{m}`" in row for m in lesson.modules), (row, lesson.modules)


def test_the_headline_figures_are_the_generated_ones():
    readme = (ROOT / "README.md").read_text()
    results = (ROOT / "docs" / "results.md").read_text()
    section = readme.split("## Results", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows, "the README's results headline has no table rows"
    for row in rows:
        assert row in results, f"README row not in docs/results.md (run make bench): {row}"


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
    page.write_text("# Title\n\n[a](missing.md) [b](#title) [c](#nope)\n")
    assert links(page) == ["missing.md", "#title", "#nope"]
    assert anchors(page) == {"title"}
