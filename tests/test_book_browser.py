"""The book, built from the stored outputs with warnings as errors, looked at in a real headless Chromium.

The module builds the book once (scripts/build_book.py, as `make book` does, into a temporary folder), serves
it on localhost, and opens every page of its TOC. On each page: the title renders; every image loaded; the
math is typeset by the book's own MathJax (no raw TeX left in the text); every internal link, prev/next and
the sidebar's included, answers 200 and its #anchor exists; nothing is fetched from outside localhost and
nothing fails to load. On each chapter: the solutions are there and folded away, and widgets and progress
bars are static HTML. Screenshots of the introduction and of chapter 01 go to book/_build/screenshots/.

Needs Chromium (Debian's `chromium`) and the `playwright` Python package (its own browser download is not
used). Without them the test is skipped, except in CI (CI set), where it fails.
"""

from __future__ import annotations

import functools
import http.server
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urldefrag, urljoin, urlparse

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOTS = ROOT / "book" / "_build" / "screenshots"
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]
# pydata-sphinx-theme logs this once on a browser profile with no stored colour mode; harmless.
KNOWN_CONSOLE = re.compile(r"invalid theme mode")


def _unavailable(why: str):
    if IN_CI:
        pytest.fail(f"{why} (CI must run the browser check)")
    pytest.skip(why)


def _chromium() -> str:
    for candidate in (os.environ.get("CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium",
                      shutil.which("chromium-browser")):
        if candidate and Path(candidate).exists():
            return candidate
    _unavailable("no Chromium: `apt-get install chromium` to run the book's browser check")


@pytest.fixture(scope="module")
def sync_playwright():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("the playwright package is missing: pip install -e '.[test]'")
    return sync_playwright


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Build the book into a temporary folder and serve it on 127.0.0.1; yields (base URL, html folder, seconds)."""
    try:
        import jupyter_book  # noqa: F401
    except ImportError:
        _unavailable("jupyter-book is missing: pip install -e '.[book]'")
    out = tmp_path_factory.mktemp("book")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "build_book.py"), "--out", str(out), "--quiet"],
                          cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    assert proc.returncode == 0, f"the book build failed:\n{proc.stdout[-8000:]}\n{proc.stderr[-8000:]}"
    html = out / "_build" / "html"

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(html)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", html, seconds
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser(sync_playwright):
    executable = _chromium()
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_FLAGS)
        yield chromium
        chromium.close()


def _toc_pages() -> list[str]:
    """The book's pages in TOC order (intro first), as scripts/build_book.py reads book/_toc.yml."""
    spec = importlib.util.spec_from_file_location("build_book", ROOT / "scripts" / "build_book.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.toc_files()


PAGES = _toc_pages()
CHAPTERS = [p for p in PAGES if p.startswith("chapters/")]


def _notebook(page: str):
    return nbformat.read(ROOT / "notebooks" / f"{page.removeprefix('chapters/')}.ipynb", as_version=4)


def _fetch(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            body = response.read()
            return response.status, body.decode("utf-8", "replace") if url.endswith((".html", "/")) else ""
    except urllib.error.HTTPError as err:
        return err.code, ""


class Visit:
    """One page opened in a fresh tab, with everything the network and the console said."""

    def __init__(self, browser, url: str):
        self.requests: list[str] = []
        self.failures: list[str] = []
        self.console_errors: list[str] = []
        self.page = browser.new_page(viewport={"width": 1400, "height": 900})
        page = self.page
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("requestfailed", lambda r: self.failures.append(f"{r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and self.failures.append(f"{r.url} (HTTP {r.status})"))
        page.on("pageerror", lambda e: self.console_errors.append(f"uncaught: {e}"))
        page.on("console", lambda m: m.type == "error" and not KNOWN_CONSOLE.search(m.text)
                and self.console_errors.append(m.text))
        response = page.goto(url, wait_until="load")
        assert response is not None and response.status == 200, url
        # wait for MathJax, where the page loads it, to finish typesetting
        self.has_mathjax = page.evaluate("""async () => {
            if (!window.MathJax || !MathJax.startup) return false;
            await MathJax.startup.promise; return true; }""")
        page.wait_for_load_state("networkidle")

    def close(self):
        self.page.close()


# What the checks read from a page, in one evaluation.
PAGE_FACTS = """() => {
  const article = document.querySelector('article.bd-article') || document.body;
  const h1 = article.querySelector('h1');
  let title = null;
  if (h1) { const c = h1.cloneNode(true); c.querySelectorAll('.headerlink').forEach(e => e.remove());
            title = c.textContent.trim(); }
  const images = Array.from(document.images).map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0}));
  // visible prose outside code and typeset math: raw TeX here means MathJax did not run
  const prose = [];
  const walker = document.createTreeWalker(article, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const n = walker.currentNode, p = n.parentElement;
    if (!p || p.closest('pre, code, kbd, samp, script, style, mjx-container, .cell_output, .highlight')) continue;
    prose.push(n.textContent);
  }
  const math = Array.from(article.querySelectorAll('.math'));
  return {
    title, images, prose: prose.join(' '),
    visibleTitle: h1 ? h1.checkVisibility() : false,
    math: math.length,
    mathUntypeset: math.filter(m => !m.querySelector('mjx-container')).map(m => m.textContent.slice(0, 80)),
    mjx: document.querySelectorAll('mjx-container').length,
    mjxErrors: Array.from(document.querySelectorAll('mjx-merror')).map(e => e.textContent.slice(0, 80)),
    mathjaxSrc: Array.from(document.scripts).map(s => s.src).filter(s => /mathjax|tex-mml/i.test(s)),
    links: Array.from(document.querySelectorAll('a[href]')).map(a => a.href),
    prev: (document.querySelector('a.left-prev') || {}).href || null,
    next: (document.querySelector('a.right-next') || {}).href || null,
    sidebar: Array.from(document.querySelectorAll('.bd-sidebar-primary nav a[href]')).map(a => a.href),
    widgetScripts: document.querySelectorAll('script[type*="jupyter.widget"]').length,
  };
}"""

RAW_TEX = re.compile(r"\\\(|\\\)|\\\[|\\\]|\$\$|\\(frac|sum|log|mathrm|left|right|sqrt|cdot|mid|lVert|theta)\b")


@pytest.mark.parametrize("page", PAGES)
def test_page_renders(page, site, browser):
    base, html_dir, _ = site
    url = urljoin(base, f"{page}.html")
    visit = Visit(browser, url)
    try:
        facts = visit.page.evaluate(PAGE_FACTS)
    finally:
        visit.close()

    # the title renders, and a chapter's is the notebook's own
    assert facts["title"] and facts["visibleTitle"], f"{page}: no visible <h1>"
    if page.startswith("chapters/"):
        heading = next(c.source for c in _notebook(page).cells if c.cell_type == "markdown")
        assert facts["title"] == heading.splitlines()[0].lstrip("# ").strip()

    # every image loaded
    broken = [i["src"] for i in facts["images"] if not i["ok"]]
    assert not broken, f"{page}: images that did not load: {broken}"

    # math: typeset by the book's own MathJax, nothing raw left
    if facts["math"]:
        assert visit.has_mathjax, f"{page}: has math but MathJax did not load"
        assert facts["mathjaxSrc"] and all(urlparse(s).hostname == "127.0.0.1" for s in facts["mathjaxSrc"])
        assert facts["mjx"] >= facts["math"] and not facts["mathUntypeset"], facts["mathUntypeset"][:5]
        assert not facts["mjxErrors"], f"{page}: TeX errors {facts['mjxErrors'][:5]}"
    raw = RAW_TEX.findall(facts["prose"])
    assert not raw, f"{page}: raw TeX in the text: {raw[:10]}"
    if page.startswith("chapters/"):
        assert facts["math"] > 0 and facts["mjx"] > 0, f"{page}: a chapter with no typeset math?"

    # nothing from outside localhost, nothing broken, no script errors
    outside = sorted({u for u in visit.requests if urlparse(u).hostname not in ("127.0.0.1", None)
                      and not u.startswith("data:")})
    assert not outside, f"{page}: fetched from outside the book: {outside}"
    assert not visit.failures, f"{page}: failed requests: {visit.failures}"
    assert not visit.console_errors, f"{page}: console errors: {visit.console_errors}"
    assert facts["widgetScripts"] == 0, f"{page}: a widget view left for a widget manager that is not there"

    # navigation: the sidebar lists every page; prev/next exist; every internal link answers, anchors too
    sidebar = {urldefrag(h)[0] for h in facts["sidebar"]}
    for other in PAGES:
        if other != PAGES[0]:
            assert urljoin(base, f"{other}.html") in sidebar, f"{page}: the sidebar has no link to {other}"
    index = PAGES.index(page)
    if index > 0:
        assert facts["prev"], f"{page}: no link to the previous page"
    if index < len(PAGES) - 1:
        assert facts["next"] == urljoin(base, f"{PAGES[index + 1]}.html"), f"{page}: next is {facts['next']}"
    pages_html: dict[str, str] = {}
    bad = []
    for href in sorted(set(facts["links"])):
        if urlparse(href).hostname != "127.0.0.1":
            continue
        target, fragment = urldefrag(href)
        if target not in pages_html:
            status, body = _fetch(target)
            if status != 200:
                bad.append(f"{href} (HTTP {status})")
                continue
            pages_html[target] = body
        body = pages_html[target]
        if fragment and body and f'id="{fragment}"' not in body:
            bad.append(f"{href} (no #{fragment} there)")
    assert not bad, f"{page}: broken links: {bad}"


CHAPTER_FACTS = """() => {
  const solutions = Array.from(document.querySelectorAll('details.tlteach-solution'));
  const hidden = Array.from(document.querySelectorAll('.cell.tag_solution details.hide'));
  const widgets = Array.from(document.querySelectorAll('.tlteach-widget'));
  return {
    solutions: solutions.length,
    solutionsOpen: solutions.filter(d => d.open).length,
    solutionBodiesVisible: solutions.filter(d => {
      const body = d.querySelector('.sd-summary-content'); return body && body.checkVisibility(); }).length,
    solutionCode: hidden.length,
    solutionCodeOpen: hidden.filter(d => d.open).length,
    solutionCodeVisible: hidden.filter(d => {
      const code = d.querySelector('.cell_input'); return code && code.checkVisibility(); }).length,
    progress: document.querySelectorAll('.tlteach-progress progress').length,
    widgets: widgets.length,
    widgetsWithoutFigure: widgets.filter(w => {
      if (w.querySelector('img')) return false;  // its static rendering draws its own figure (the run explorers)
      const output = w.closest('.cell_output'); if (!output) return true;
      const img = output.querySelector('img');
      return !img || !(img.compareDocumentPosition(w) & Node.DOCUMENT_POSITION_FOLLOWING); }).length,
    text: document.querySelector('article.bd-article').innerText,
  };
}"""


@pytest.mark.parametrize("page", CHAPTERS)
def test_chapter_solutions_folded_and_widgets_static(page, site, browser):
    base = site[0]
    nb = _notebook(page)
    tagged = [c for c in nb.cells if "solution" in c.metadata.get("tags", [])]
    assert tagged, f"{page}: a chapter ends with exercises and their solutions"
    visit = Visit(browser, urljoin(base, f"{page}.html"))
    try:
        facts = visit.page.evaluate(CHAPTER_FACTS)
    finally:
        visit.close()
    assert facts["solutions"] == sum(c.cell_type == "markdown" for c in tagged)
    assert facts["solutionCode"] == sum(c.cell_type == "code" for c in tagged)
    folded = ("solutionsOpen", "solutionBodiesVisible", "solutionCodeOpen", "solutionCodeVisible")
    assert all(facts[k] == 0 for k in folded), {k: facts[k] for k in folded}
    # progress bars: finished bars, never tqdm's "0%" start text
    assert not re.search(r"\b0%\|", facts["text"]), "a progress bar shows its 0% start"
    # an interactive widget comes after its static figure
    assert facts["widgetsWithoutFigure"] == 0, f"{page}: a widget with no static figure before it"


@pytest.mark.parametrize("page", CHAPTERS)
def test_a_chapter_offers_the_notebook_itself_for_download(page, site):
    base = site[0]
    name = page.removeprefix("chapters/")
    with urllib.request.urlopen(urljoin(base, f"_sources/chapters/{name}.ipynb"), timeout=10) as response:
        assert response.read() == (ROOT / "notebooks" / f"{name}.ipynb").read_bytes()


def test_screenshots_of_the_introduction_and_a_chapter(site, browser):
    base, _, seconds = site
    assert seconds < 120, f"the book took {seconds:.0f} s to build; it should take seconds"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    shots = {"intro.png": ("intro.html", None)}
    if CHAPTERS:
        first = f"{CHAPTERS[0]}.html"
        shots["chapter.png"] = (first, None)
        shots["chapter-math.png"] = (first, "div.math")
        shots["chapter-widget.png"] = (first, ".tlteach-widget")
    for name, (path, selector) in shots.items():
        visit = Visit(browser, urljoin(base, path))
        try:
            if selector and visit.page.locator(selector).count():
                visit.page.evaluate(f"""() => {{ const e = document.querySelector({selector!r});
                    window.scrollTo(0, e.getBoundingClientRect().top + window.scrollY - 450); }}""")
                visit.page.wait_for_timeout(200)
            visit.page.screenshot(path=str(SCREENSHOTS / name))
        finally:
            visit.close()
        assert (SCREENSHOTS / name).stat().st_size > 10_000, f"{name} looks empty"
    print(f"book built in {seconds:.1f} s; screenshots in {SCREENSHOTS}")
