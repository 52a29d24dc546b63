"""The built book (``_build/ci-book/_build/html``, from ``test_book.py``) in headless Chromium.

Every page listed in _toc.yml loads from file:// with no request leaving the machine, its math is
typeset by the bundled MathJax (no raw TeX left in the text), no progress-bar frame, clipped code
line or cut table shows, chapter pages show theorem boxes and figures and offer their executed
notebook as .ipynb, the scorecard's summary table fits in the first 1,300 px with a badge a row,
the status page shows its tables, and the console stays free of errors beyond two known
harmless ones. A screenshot of each
page is saved to ``_build/ci-book/_build/screenshots``. Needs /usr/bin/chromium (``.ci/run``
installs it).
"""

from pathlib import Path

import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from playwright.sync_api import sync_playwright

from dufm.run import toc_chapters, toc_documents

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Jupyter Book 1 pages always log these two; nothing else is allowed.
HARMLESS_CONSOLE = ("Identifier 'THEBE_JS_URL' has already been declared", "invalid theme mode")
TEX_LEFT = ("$", "\\(", "\\)", "\\[", "\\]", "\\begin{", "\\frac")
MATH_TIMEOUT_MS = 30_000
NOT_PROSE = "pre, code, .highlight, .cell_output, mjx-container, script, style"
LOCAL = ("file:", "data:", "blob:")  # URL schemes that stay on this machine


PAGES = ["index", *toc_documents(ROOT)]  # index.html redirects to the root page
# Pages of a result (theorem box and figure); the scorecard and status pages are about the others.
CHAPTER_PAGES = {
    str(c.relative_to(ROOT).with_suffix(""))
    for c in toc_chapters(ROOT)
    if c.stem not in ("scorecard", "status")
}


@pytest.fixture(scope="module")
def html_dir(ci_book_dir) -> Path:
    html = ci_book_dir / "_build" / "html"
    if not (html / "index.html").is_file():
        pytest.fail(f"no built book in {html}: test_book.py failed or did not run", pytrace=False)
    return html


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.is_file():
        pytest.fail(
            f"{CHROMIUM} is missing: install it with `apt-get install -y chromium` (.ci/run does)",
            pytrace=False,
        )
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


def visible_text(page) -> str:
    """Text a reader sees (navigation included), without code, code literals and typeset math."""
    return page.evaluate(
        """(skip) => {
            const copy = document.body.cloneNode(true);
            copy.querySelectorAll(skip).forEach(e => e.remove());
            document.body.appendChild(copy);
            const text = copy.innerText;
            copy.remove();
            return text;
        }""",
        NOT_PROSE,
    )


def raw_tex(text: str, tokens) -> list[str]:
    """Each TeX token left in the text, with some context."""
    found = []
    for token in tokens:
        at = text.find(token)
        if at >= 0:
            context = " ".join(text[max(0, at - 40) : at + 40].split())
            found.append(f"raw TeX {token!r} left in the text: ...{context}...")
    return found


def math_problems(page) -> list[str]:
    """Math typeset by MathJax: containers present, no MathJax error, no raw TeX in the text."""
    maths = page.locator(".math")
    if maths.count() == 0:
        return raw_tex(visible_text(page), TEX_LEFT[1:])
    try:
        page.wait_for_function(
            "() => window.MathJax && MathJax.startup && MathJax.startup.promise",
            timeout=MATH_TIMEOUT_MS,
        )
    except PlaywrightTimeout:
        first = maths.first.text_content()
        return [f"{maths.count()} math elements (first: {first!r}) but MathJax did not load"]
    page.evaluate("() => MathJax.startup.promise.then(() => true)")
    problems = []
    if page.locator("mjx-container").count() == 0:
        problems.append("math on the page but no MathJax output (mjx-container)")
    errors = page.evaluate(
        "() => [...document.querySelectorAll('mjx-merror')]"
        ".map(e => e.getAttribute('data-mjx-error') || e.textContent)"
    )
    problems += [f"MathJax TeX error: {error}" for error in errors]
    return problems + raw_tex(visible_text(page), TEX_LEFT)


def layout_problems(page) -> list[str]:
    """No progress-bar frames in the text, no code line clipped behind a scrollbar, and no
    table cut at the column's edge (a wide table scrolls inside its own box)."""
    problems = []
    text = page.evaluate("() => document.body.innerText")
    if "it/s]" in text:
        at = text.find("it/s]")
        frame = " ".join(text[max(0, at - 60) : at].split())
        problems.append(f"progress-bar frame in the page: ...{frame}")
    # Every chapter passes dufm.style (88 columns, enforced by make lint), so no code line may
    # need a scrollbar; collapsed cells (hide-input, hide-cell) are opened first: theirs too.
    page.evaluate("() => document.querySelectorAll('details').forEach(d => { d.open = true; })")
    clipped = page.evaluate(
        "() => [...document.querySelectorAll('article div.cell div.highlight pre')]"
        ".filter(p => p.scrollWidth > p.clientWidth + 1).map(p => p.innerText.slice(0, 60))"
    )
    problems += [f"code line clipped behind a scrollbar: {c!r}" for c in clipped]
    cut = page.evaluate(
        """() => {
            const main = document.querySelector('article');
            if (!main) return [];
            const edge = main.getBoundingClientRect().right + 1;
            const scrolls = (e) => {
                for (let x = e; x && x !== main; x = x.parentElement) {
                    const o = getComputedStyle(x).overflowX;
                    if (o === 'auto' || o === 'scroll') return true;
                }
                return false;
            };
            return [...main.querySelectorAll('table')]
                .filter(t => t.getBoundingClientRect().right > edge && !scrolls(t))
                .map(t => t.innerText.slice(0, 60));
        }"""
    )
    problems += [f"table cut at the column's edge: {c!r}" for c in cut]
    return problems


def scorecard_problems(page) -> list[str]:
    """The summary table (first table of the page) ends within the first 1,300 px, with a
    coloured badge in every row."""
    box = page.evaluate(
        "() => { const t = document.querySelector('article table');"
        " if (!t) return null; const r = t.getBoundingClientRect();"
        " return {bottom: r.bottom + window.scrollY, rows: t.tBodies[0].rows.length,"
        " badges: t.querySelectorAll('.sd-badge').length}; }"
    )
    if box is None:
        return ["no summary table on the scorecard page"]
    problems = []
    if box["bottom"] > 1300:
        problems.append(f"the summary table ends {box['bottom']:.0f} px down (at most 1,300)")
    if box["badges"] < box["rows"]:
        problems.append(f"{box['badges']} verdict badges for {box['rows']} rows")
    return problems


def status_problems(page) -> list[str]:
    """The build page shows the machine table and the execution table of the chapters."""
    heads = page.evaluate(
        "() => [...document.querySelectorAll('article table thead')].map(h => h.innerText)"
    )
    problems = []
    if not any("version" in h for h in heads):
        problems.append("no table of versions and machine")
    if not any("Run Time" in h for h in heads):
        problems.append("no execution table (nb-exec-table)")
    return problems


def download_problems(page, path: Path) -> list[str]:
    """The download button offers the executed chapter as .ipynb, and the link resolves."""
    hrefs = page.evaluate(
        "() => [...document.querySelectorAll('.dropdown-download-buttons a')]"
        ".map(a => a.getAttribute('href'))"
    )
    ipynb = [h for h in hrefs if h and h.split("?")[0].endswith(".ipynb")]
    if not ipynb:
        return [f"no .ipynb in the download button (links: {hrefs})"]
    target = (path.parent / ipynb[0].split("?")[0]).resolve()
    return [] if target.is_file() else [f"the .ipynb download {ipynb[0]} does not resolve"]


def chapter_problems(page) -> list[str]:
    """A chapter shows at least one theorem-like box and one figure, all images loaded."""
    problems = []
    if page.locator("div.proof.admonition").count() == 0:
        problems.append("no theorem box (sphinx-proof div.proof.admonition)")
    images = page.locator("article img")
    if images.count() == 0:
        problems.append("no figure (img) on the chapter page")
    broken = page.evaluate(
        "() => [...document.querySelectorAll('article img')]"
        ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
    )
    problems += [f"image failed to load: {src}" for src in broken]
    return problems


@pytest.mark.browser
@pytest.mark.parametrize("doc", PAGES)
def test_page_renders_offline(doc, html_dir, browser):
    path = html_dir / f"{doc}.html"
    assert path.is_file(), f"page {path} was not built"
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    outside, failed, console = [], [], []
    page.on("request", lambda r: r.url.startswith(LOCAL) or outside.append(r.url))
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
    page.on("console", lambda m: m.type == "error" and console.append(m.text))
    page.on("pageerror", lambda e: console.append(f"uncaught: {e}"))
    try:
        page.goto(path.as_uri(), wait_until="load")
        if doc == "index":
            page.wait_for_url(f"**/{PAGES[1]}.html")
            page.wait_for_load_state("load")
        problems = math_problems(page) + layout_problems(page)
        if doc in CHAPTER_PAGES:
            problems += chapter_problems(page) + download_problems(page, path)
        if doc == "chapters/scorecard":
            problems += scorecard_problems(page)
        if doc == "chapters/status":
            problems += status_problems(page)
        shots = html_dir.parent / "screenshots"
        shots.mkdir(exist_ok=True)
        page.screenshot(path=shots / f"{doc.replace('/', '__')}.png", full_page=True)
    finally:
        page.close()
    problems += [f"request left file://: {url}" for url in outside]
    problems += [f"request failed: {f}" for f in failed]
    problems += [
        f"console error: {text}"
        for text in console
        if not any(known in text for known in HARMLESS_CONSOLE)
    ]
    assert not problems, f"{doc}.html:\n" + "\n".join(problems)
