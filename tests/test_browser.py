"""The built HTML, opened in a real browser with the network blocked.

Headless Chromium (Debian's `chromium`, never a downloaded browser) driven by Playwright
opens every page from `file://` with every other request aborted, and checks that
MathJax typeset every formula, every image loaded, nothing logged an error and every
internal link resolves. Skipped, saying why, where no Chromium is installed.
"""

import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.book,
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium); "
                                                ".ci/run installs it"),
]
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SKIP_DIRS = {"_static", "_sources", "_images", "mathjax", ".doctrees"}


def _pages(html: Path) -> list[Path]:
    return sorted(p for p in html.rglob("*.html") if not SKIP_DIRS & set(p.relative_to(html).parts))


def test_every_page_renders_offline(built_book):
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    html = ROOT / "_build" / "html"
    pages = _pages(html)
    assert len(pages) >= 5
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        context = browser.new_context()
        blocked: list[str] = []

        def route(r):
            if r.request.url.startswith(("file://", "data:", "blob:", "about:")):
                r.continue_()
            else:
                blocked.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        for path in pages:
            name = str(path.relative_to(html))
            text = path.read_text(errors="replace")
            redirect = re.search(r'http-equiv="refresh"[^>]*url=([^"\s>]+)', text, flags=re.I)
            if redirect:                       # e.g. the root index.html → book/index.html
                if not (path.parent / redirect.group(1)).exists():
                    problems.append(f"{name}: redirects to missing {redirect.group(1)}")
                continue
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m, errors=errors: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e, errors=errors: errors.append(str(e)))
            page.goto(path.as_uri(), wait_until="load")
            n_math = page.evaluate("document.querySelectorAll('.math').length")
            if n_math:
                try:
                    page.wait_for_function("() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                                           timeout=60_000)
                    page.evaluate("() => MathJax.startup.promise")
                except PlaywrightError as exc:
                    problems.append(f"{name}: MathJax did not start ({n_math} math elements): {exc}"[:300])
                    page.close()
                    continue
                raw = page.evaluate("Array.from(document.querySelectorAll('.math'))"
                                    ".filter(e => !e.querySelector('mjx-container')).length")
                merr = page.evaluate("document.querySelectorAll('mjx-merror').length")
                if raw:
                    problems.append(f"{name}: {raw} of {n_math} math elements not typeset")
                if merr:
                    problems.append(f"{name}: {merr} MathJax errors (mjx-merror)")
            broken = page.evaluate("Array.from(document.images).filter(i => !i.complete || i.naturalWidth === 0)"
                                   ".map(i => i.getAttribute('src'))")
            if broken:
                problems.append(f"{name}: images that did not load: {broken}")
            for href in page.evaluate("Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"):
                url = urlparse(href)
                if url.scheme == "file" and not Path(unquote(url.path)).exists():
                    problems.append(f"{name}: broken internal link {href}")
            if errors:
                problems.append(f"{name}: console errors {errors[:3]}")
            page.close()
        browser.close()
    assert not problems, "\n".join(problems)
    assert not blocked, f"pages tried to reach the network: {sorted(set(blocked))[:10]}"
