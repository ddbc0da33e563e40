"""The lesson series as a website, checked in a real browser (headless Chromium via Playwright).

    python -m pytest tests/test_site.py          # or: -m site

Builds the book with `tools/build_site.py` (about 5-20 s, nothing is executed), serves
site/_build/html from 127.0.0.1 (search needs http, not file://) and opens every page in Debian's
`chromium` (set CHROMIUM=/path/to/chrome for another one). Needs the `site` extra
(`pip install -e ".[site]"`, included in `.[test]`) and chromium (`apt-get install chromium`);
without chromium the tests are skipped, unless VIT_SITE_REQUIRED=1 (as in CI), then they fail.
Screenshots of every page are left in site/_build/screenshots/ for a human to look at.
"""
from __future__ import annotations

import functools
import http.server
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlsplit

import pytest

pytestmark = pytest.mark.site

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "site" / "_build"
HTML = BUILD / "html"
LESSONS = sorted(p.stem for p in (ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
DOCS = sorted(f"docs/{p.stem}" for p in (ROOT / "docs").glob("*.md"))   # every docs/ page
OTHER_PAGES = ["index", "TEACHING", "downloads", "README", "CONTRIBUTING", *DOCS]
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync"]


def unavailable(message: str) -> None:
    """Skip, or fail where the site must be checked (VIT_SITE_REQUIRED=1, as in CI)."""
    if os.environ.get("VIT_SITE_REQUIRED") == "1":
        pytest.fail(message)
    pytest.skip(message)


def chromium_path() -> str | None:
    """Debian's chromium, or $CHROMIUM."""
    for candidate in (os.environ.get("CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium"),
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def site() -> Path:
    """A fresh build of the book; its html folder."""
    try:
        import jupyter_book  # noqa: F401  (only whether it is installed)
    except ImportError:
        unavailable('jupyter-book is not installed: pip install -e ".[site]"')
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "build_site.py"), "--quiet"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, \
        f"make site failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    return HTML


@pytest.fixture(scope="module")
def base_url(site: Path):
    """http://127.0.0.1:PORT/ serving the built book."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Quiet, directory=str(site)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A Chromium context with a fresh profile."""
    exe = chromium_path()
    if exe is None:
        unavailable("no chromium: apt-get install chromium (or set CHROMIUM=/path/to/chrome)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable('playwright is not installed: pip install -e ".[site]"')
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=exe,
            headless=True, args=CHROMIUM_FLAGS, viewport={"width": 1280, "height": 900})
        yield context
        context.close()


@dataclass
class Visit:
    """What one page showed: errors, broken images, its links, its math."""

    url: str
    errors: list[str] = field(default_factory=list)
    broken_images: list[str] = field(default_factory=list)
    images: int = 0
    links: list[str] = field(default_factory=list)
    math_elements: int = 0
    typeset: int = 0
    raw_math: list[str] = field(default_factory=list)
    code_cells: int = 0
    copy_buttons: int = 0


WAIT_FOR_IMAGES = """async () => {
  const imgs = Array.from(document.images);
  for (const img of imgs) { img.loading = 'eager'; }
  await Promise.all(imgs.map(img => img.complete ? null :
      new Promise(done => { img.addEventListener('load', done);
                            img.addEventListener('error', done); })));
  return imgs.map(img => [img.currentSrc || img.src, img.naturalWidth]);
}"""

MATH_STATE = """async () => {
  const math = document.querySelectorAll('.math');
  if (math.length && window.MathJax && MathJax.startup) { await MathJax.startup.promise; }
  const untypeset = Array.from(math).filter(el => !el.querySelector('mjx-container'));
  // Text a reader sees outside code that still looks like TeX source.
  const article = document.querySelector('article') || document.body;
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  const raw = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    const skip = 'pre, code, script, style, mjx-container, .highlight, .output';
    if (n.parentElement.closest(skip)) continue;
    const m = n.textContent.match(/\\$[^$\\s][^$]*\\$|\\\\\\(|\\\\\\[|\\\\frac|\\\\mathrm/);
    if (m) raw.push(m[0]);
  }
  return [math.length, document.querySelectorAll('mjx-container').length - 0,
          untypeset.map(el => el.textContent.slice(0, 60)), raw];
}"""


@pytest.fixture(scope="module")
def visits(browser, base_url: str) -> dict[str, Visit]:
    """Every page of the book opened once (lessons and the other pages), by page name."""
    shots = BUILD / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    result: dict[str, Visit] = {}
    for name in [f"notebooks/{stem}" for stem in LESSONS] + OTHER_PAGES:
        visit = Visit(url=urljoin(base_url, f"{name}.html"))
        page = browser.new_page()
        page.on("console", lambda msg, v=visit: msg.type == "error" and v.errors.append(
            f"console: {msg.text}"))
        page.on("pageerror", lambda exc, v=visit: v.errors.append(f"exception: {exc}"))
        page.on("requestfailed", lambda req, v=visit: v.errors.append(
            f"request failed: {req.url} ({req.failure})"))
        page.on("response", lambda resp, v=visit: resp.status >= 400 and v.errors.append(
            f"HTTP {resp.status}: {resp.url}"))
        response = page.goto(visit.url, wait_until="load")
        if response is None or response.status != 200:
            visit.errors.append(f"page answered {response.status if response else 'nothing'}")
        images = page.evaluate(WAIT_FOR_IMAGES)
        visit.images = len(images)
        visit.broken_images = [src for src, width in images if not width]
        visit.math_elements, visit.typeset, untypeset, visit.raw_math = page.evaluate(MATH_STATE)
        visit.raw_math += [f"untypeset: {t}" for t in untypeset]
        visit.links = page.eval_on_selector_all("a[href]", "els => els.map(a => a.href)")
        visit.code_cells = page.locator("div.cell_input div.highlight").count()
        visit.copy_buttons = page.locator("div.cell_input button.copybtn").count()
        page.screenshot(path=str(shots / f"{Path(name).name}.png"), full_page=False)
        page.close()
        result[name] = visit
    return result


def test_every_lesson_is_a_page_in_order(site: Path) -> None:
    assert LESSONS, "no lessons in notebooks/"
    index = (site / "index.html").read_text(encoding="utf-8")
    positions = [index.find(f"notebooks/{stem}.html") for stem in LESSONS]
    assert all(p >= 0 for p in positions), f"lessons missing from the sidebar: {LESSONS}"
    assert positions == sorted(positions), "the sidebar does not list the lessons in order"


def test_pages_load_without_console_errors(visits: dict[str, Visit]) -> None:
    errors = {name: v.errors for name, v in visits.items() if v.errors}
    assert not errors, f"pages with console errors or failed requests: {errors}"


def test_every_image_loaded(visits: dict[str, Visit]) -> None:
    broken = {name: v.broken_images for name, v in visits.items() if v.broken_images}
    assert not broken, f"images that did not load (naturalWidth 0): {broken}"
    assert visits["index"].images >= 1, "the architecture diagram is missing from the intro page"
    for stem in LESSONS:
        assert visits[f"notebooks/{stem}"].images >= 1, f"lesson {stem} shows no figure at all"


def test_links_between_lessons_resolve(visits: dict[str, Visit], browser, base_url: str) -> None:
    lesson_urls = {urljoin(base_url, f"notebooks/{stem}.html") for stem in LESSONS}
    targets: dict[str, set[str]] = {}
    for _name, visit in visits.items():
        for href in visit.links:
            url, frag = urldefrag(href)
            if urlsplit(url).netloc != urlsplit(base_url).netloc or not url.endswith(".html"):
                continue
            targets.setdefault(url, set()).add(frag)
    page = browser.new_page()
    broken = []
    for url, frags in sorted(targets.items()):
        response = page.goto(url, wait_until="domcontentloaded")
        if response is None or response.status != 200:
            broken.append(f"{url}: HTTP {response.status if response else 'nothing'}")
            continue
        for frag in sorted(f for f in frags if f):
            if not page.evaluate("id => !!document.getElementById(decodeURIComponent(id))", frag):
                broken.append(f"{url}#{frag}: no such anchor")
    page.close()
    assert not broken, f"internal links that do not resolve: {broken}"
    # Each lesson links to the next one (the page footer), so the series reads in order.
    for stem, nxt in zip(LESSONS, LESSONS[1:], strict=False):
        links = {urldefrag(h)[0] for h in visits[f"notebooks/{stem}"].links}
        assert urljoin(base_url, f"notebooks/{nxt}.html") in links, f"{stem} has no link to {nxt}"
    assert lesson_urls <= set(targets), "some lesson is not linked from any page"


def test_search_finds_attention_rollout_in_lesson_06(browser, base_url: str, site: Path) -> None:
    lesson = next((s for s in LESSONS if s.startswith("06_")), None)
    assert lesson is not None, "there is no lesson 06"
    page = browser.new_page()
    page.goto(urljoin(base_url, "search.html?q=attention+rollout"), wait_until="load")
    page.wait_for_function(
        "() => /found|did not match/i.test("
        "document.querySelector('#search-results')?.textContent || '')",
        timeout=20_000)
    hits = page.eval_on_selector_all("#search-results ul.search li a",
                                     "els => els.map(a => a.getAttribute('href'))")
    page.close()
    assert any(lesson in h for h in hits), \
        f"search for 'attention rollout' found {hits}, not {lesson}"


def test_formulas_render_as_math(visits: dict[str, Visit]) -> None:
    with_math = {name: v for name, v in visits.items() if v.math_elements}
    assert with_math, "no page of the book has a formula ($...$) to render"
    for name, visit in with_math.items():
        assert visit.typeset >= visit.math_elements, \
            f"{name}: {visit.math_elements} formulas but only {visit.typeset} typeset by MathJax"
    raw = {name: v.raw_math for name, v in visits.items() if v.raw_math}
    assert not raw, f"TeX source shown as text instead of math: {raw}"


def test_code_cells_have_a_copy_button(visits: dict[str, Visit]) -> None:
    for stem in LESSONS:
        visit = visits[f"notebooks/{stem}"]
        assert visit.code_cells > 0, f"{stem}: no code cells on the page"
        assert visit.copy_buttons == visit.code_cells, \
            f"{stem}: {visit.copy_buttons} copy buttons for {visit.code_cells} code cells"


def test_details_answers_stay_closed_until_clicked(browser, base_url: str, site: Path) -> None:
    lessons_with_details = [s for s in LESSONS if "<details" in
                            (site / "notebooks" / f"{s}.html").read_text(encoding="utf-8")]
    assert lessons_with_details, "no lesson has a <details> answer"
    page = browser.new_page()
    for stem in lessons_with_details:
        page.goto(urljoin(base_url, f"notebooks/{stem}.html"), wait_until="load")
        details = page.locator("article details")
        count = details.count()
        assert count > 0, f"{stem}: <details> in the HTML but not inside the page's article"
        opened = [i for i in range(count) if details.nth(i).evaluate("d => d.open")]
        assert not opened, f"{stem}: answers {opened} are open before any click"
    first = page.locator("article details").first
    answer = first.locator(":scope > :not(summary)").first
    assert not answer.is_visible(), "the answer text is visible while its <details> is closed"
    first.locator("summary").click()
    assert first.evaluate("d => d.open"), "clicking the summary did not open the answer"
    assert answer.is_visible(), "the answer text stays hidden after the click"
    page.close()


def test_student_edition_downloads(visits: dict[str, Visit], browser, site: Path) -> None:
    students = sorted(p.name for p in (ROOT / "notebooks" / "student").glob("[0-9][0-9]_*.ipynb"))
    assert students, "no student edition in notebooks/student/"
    links = [h for h in visits["downloads"].links if "/_downloads/" in h]
    for name in students + ["student_edition.zip"]:
        assert any(h.endswith("/" + name) for h in links), f"the Student edition page has no {name}"
    for href in links:
        response = browser.request.get(href)
        assert response.ok, f"download {href}: HTTP {response.status}"
        if href.endswith("student_edition.zip"):
            with zipfile.ZipFile(io.BytesIO(response.body())) as zf:
                inside = sorted(Path(n).name for n in zf.namelist())
            assert inside == students, f"the zip holds {inside}, not {students}"


# The build's own checks, on a scratch copy of the repository (no browser needed).

def load_build_site():
    """tools/build_site.py as a module."""
    if "build_site" not in sys.modules:
        path = ROOT / "tools" / "build_site.py"
        spec = importlib.util.spec_from_file_location("build_site", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules["build_site"] = module       # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules["build_site"]


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch):
    """build_site pointed at tmp_path, holding a copy of the lessons."""
    bs = load_build_site()
    (tmp_path / "notebooks").mkdir()
    for lesson in LESSONS:
        shutil.copy(ROOT / "notebooks" / f"{lesson}.ipynb", tmp_path / "notebooks")
    shutil.copy(ROOT / "CONTRIBUTING.md", tmp_path / "CONTRIBUTING.md")
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    monkeypatch.setattr(bs, "ROOT", tmp_path)
    monkeypatch.setattr(bs, "SITE", tmp_path / "site")
    return bs, tmp_path


def test_a_stray_notebook_in_notebooks_fails_the_build(scratch) -> None:
    bs, root = scratch
    shutil.copy(root / "notebooks" / f"{LESSONS[0]}.ipynb", root / "notebooks" / "7-extra.ipynb")
    with pytest.raises(bs.SiteError, match="7-extra.ipynb"):
        bs.find_lessons()


def test_a_new_lesson_is_in_the_table_of_contents(scratch) -> None:
    bs, root = scratch
    new = f"{int(LESSONS[-1][:2]) + 1:02d}_new"          # the number after the last lesson
    shutil.copy(root / "notebooks" / f"{LESSONS[0]}.ipynb", root / "notebooks" / f"{new}.ipynb")
    stage = bs.Stage(src=root / "src")
    stage.src.mkdir()
    bs.write_toc(bs.find_lessons(), stage)
    toc = (stage.src / "_toc.yml").read_text()
    assert toc.index(f"notebooks/{LESSONS[-1]}") < toc.index(f"notebooks/{new}")


def test_broken_links_and_missing_images_are_errors(scratch) -> None:
    bs, root = scratch
    (root / "real.py").write_text("x = 1\n")
    first = f"notebooks/{LESSONS[0]}.ipynb"
    stage = bs.Stage(src=root / "src", pages={first: first})
    text = (f"[ok]({LESSONS[0]}.ipynb#a) [gone](09_future.ipynb) ![none](missing.png) "
            f"![att](attachment:pic.png) [file](../real.py) <img src=\"nothere.png\"> "
            f"`[code](not-a-link.md)` <a href=\"../real.py\">raw</a>")
    out = bs.rewrite_links(text, f"notebooks/{LESSONS[1]}.ipynb", f"notebooks/{LESSONS[1]}.ipynb",
                           stage, attachments={})
    joined = "\n".join(stage.errors)
    for bad in ("09_future.ipynb", "missing.png", "attachment:pic.png", "nothere.png"):
        assert bad in joined, f"no error for {bad}: {stage.errors}"
    assert len(stage.errors) == 4, stage.errors
    assert f"[ok]({LESSONS[0]}.ipynb#a)" in out
    assert "[file](path:../_files/repo/real.py)" in out
    assert "`[code](not-a-link.md)`" in out
    # Raw HTML is not seen by Sphinx: its targets are published as files/... next to the pages.
    assert '<a href="../files/repo/real.py">' in out
    assert (stage.src / "_extra" / "files" / "repo" / "real.py").is_file()


def test_a_broken_link_in_readme_contributing_or_docs_fails_the_build(scratch) -> None:
    bs, root = scratch
    shutil.copy(ROOT / "README.md", root / "README.md")
    (root / "TEACHING.md").write_text("# Teaching\n")
    shutil.copytree(ROOT / "vit_architecture", root / "vit_architecture")
    shutil.copytree(ROOT / "benchmarks", root / "benchmarks")
    setup = root / "docs" / "setup.md"
    setup.write_text(setup.read_text() + "\n[gone](no-such-page.md)\n")
    contributing = root / "CONTRIBUTING.md"
    contributing.write_text(contributing.read_text() + "\n![gone](docs/missing.png)\n")
    stage = bs.Stage(src=root / "src")
    stage.pages = {"TEACHING.md": "TEACHING.md", **{p: p for p in bs.doc_pages()},
                   **{f"notebooks/{s}.ipynb": f"notebooks/{s}.ipynb" for s in LESSONS}}
    assert {"README.md", "CONTRIBUTING.md", "docs/results.md", "docs/setup.md"} <= set(bs.doc_pages())
    bs.markdown_pages(stage)
    assert stage.errors == ["CONTRIBUTING.md: image 'docs/missing.png' points to docs/missing.png, "
                            "which does not exist",
                            "docs/setup.md: link 'no-such-page.md' points to docs/no-such-page.md, "
                            "which does not exist"], stage.errors


def test_sphinx_warnings_fail_the_build(scratch, capfd) -> None:
    """A link to a section that does not exist passes the pre-checks; Sphinx must stop it."""
    bs, root = scratch
    shutil.copytree(ROOT / "site", root / "site", ignore=shutil.ignore_patterns("_build"))
    shutil.copy(ROOT / "README.md", root / "README.md")
    (root / "TEACHING.md").write_text("# Teaching\n\nStart with [lesson 00](notebooks/"
                                      f"{LESSONS[0]}.ipynb).\n")
    shutil.copytree(ROOT / "vit_architecture", root / "vit_architecture")
    shutil.copytree(ROOT / "benchmarks", root / "benchmarks")
    (root / "notebooks" / "student").mkdir()
    for lesson in LESSONS:
        shutil.copy(root / "notebooks" / f"{lesson}.ipynb", root / "notebooks" / "student")
    nb = json.loads((root / "notebooks" / f"{LESSONS[1]}.ipynb").read_text())
    nb["cells"].append({"cell_type": "markdown", "metadata": {},
                        "source": f"See [there]({LESSONS[0]}.ipynb#no-such-section)."})
    (root / "notebooks" / f"{LESSONS[1]}.ipynb").write_text(json.dumps(nb))
    with pytest.raises(bs.SiteError, match="Sphinx reported"):
        bs.build(root / "site" / "_build", quiet=True)
    out, err = capfd.readouterr()
    warnings = [line for line in (out + err).splitlines() if "WARNING" in line]
    assert len(warnings) == 1 and "no-such-section" in warnings[0], warnings
