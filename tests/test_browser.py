"""The built book (``_build/ci-book/_build/html``, from ``test_book.py``) in headless Chromium.

Every page listed in _toc.yml loads from file:// with no request leaving the machine, its math is
typeset by the bundled MathJax (no raw TeX left in the text), chapter pages show theorem boxes and
figures, and the console stays free of errors beyond two known harmless ones. A screenshot of each
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
# Pages of a result (theorem box and figure); the scorecard page is a table of the others.
CHAPTER_PAGES = {
    str(c.relative_to(ROOT).with_suffix("")) for c in toc_chapters(ROOT) if c.stem != "scorecard"
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
        problems = math_problems(page)
        if doc in CHAPTER_PAGES:
            problems += chapter_problems(page)
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
