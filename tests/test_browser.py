"""The built HTML, opened in a real browser with the network blocked.

Headless Chromium (or Chrome) driven by Playwright opens every page from `file://` with
every other request aborted, and checks on every page that

* MathJax typeset every formula, every image loaded, nothing logged an error and every
  internal link resolves;
* axe-core (bundled by the PyPI package `axe-playwright-python`, so it runs offline)
  finds no accessibility violation of impact "serious" or "critical"; the result per page
  is printed (`pytest -s`) and written to `_build/axe.json`;
* the rendered text contains no raw TeX (``\\(``, ``$$``, ``^{``) outside math elements
  (`mjx-container`, `.math`) and code (`pre`, `code`);
* at a 1400-px-wide window, no element of the page's main column (`article.bd-article`)
  is wider than the column.  Elements that scroll on purpose are allowed when they are
  inside a collapsed toggle (hidden code: a reader who opens it scrolls the code
  sideways, as code should) or are code blocks (a `pre` of code scrolls, never wraps);
  everything else, tables and printed outputs (`pre` inside `.cell_output`) included,
  must fit;
* the Claims page does not scroll sideways on a 412-px-wide phone, and the index shows
  the results at a glance (the counts by verdict) on its first 1400x900 screen.

The browser: the executable named by the environment variable ``ADAPTEDFLOW_CHROMIUM``
(e.g. ``ADAPTEDFLOW_CHROMIUM=$(which google-chrome)``), else the first of `chromium`,
`chromium-browser`, `google-chrome` on PATH (never a browser downloaded by Playwright).
Skipped, saying why, where none is found.
"""

import json
import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

ROOT = Path(__file__).resolve().parents[1]
BROWSER_ENV = "ADAPTEDFLOW_CHROMIUM"
BROWSER_NAMES = ("chromium", "chromium-browser", "google-chrome")


def find_browser() -> str | None:
    """The browser executable: ``$ADAPTEDFLOW_CHROMIUM``, else chromium / chromium-browser /
    google-chrome on PATH."""
    named = os.environ.get(BROWSER_ENV)
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    for name in BROWSER_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = find_browser()
pytestmark = [
    pytest.mark.book,
    pytest.mark.skipif(CHROMIUM is None, reason=f"no browser: set {BROWSER_ENV} to a Chromium or Chrome executable, "
                                                f"or put one of {', '.join(BROWSER_NAMES)} on PATH (.ci/run installs "
                                                "Debian's chromium)"),
]
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SKIP_DIRS = {"_static", "_sources", "_images", "mathjax", ".doctrees"}
#: axe-core impacts that fail the test.
BLOCKING_IMPACTS = {"serious", "critical"}
#: axe rule ids allowed to report serious/critical violations, each with the reason it
#: cannot be fixed in the book (empty: every violation found is fixed).
AXE_ALLOWED: dict[str, str] = {}

#: Text nodes outside math and code whose text looks like raw TeX.
RAW_TEX_JS = r"""() => {
  const skip = 'mjx-container, .math, pre, code, script, style, textarea, .MathJax, mjx-assistive-mml';
  const bad = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const el = node.parentElement;
    if (!el || el.closest(skip)) continue;
    const t = node.textContent;
    if (t.includes('\\(') || t.includes('$$') || t.includes('^{')) bad.push(t.trim().slice(0, 80));
  }
  return bad;
}"""

#: Elements of the main column wider than the column (see the module docstring).
OVERFLOW_JS = r"""() => {
  const article = document.querySelector('article.bd-article');
  if (!article) return [];
  const limit = article.getBoundingClientRect().right + 1;
  const bad = [];
  for (const el of article.querySelectorAll('*')) {
    if (el.closest('details:not([open])') || el.closest('mjx-container')) continue;   // hidden toggles, math
    if (el.closest('pre') && !el.closest('.cell_output')) continue;   // code scrolls; printed output must fit
    const style = getComputedStyle(el);
    if (style.display === 'none' || style.visibility === 'hidden' || el.offsetParent === null) continue;
    const r = el.getBoundingClientRect();
    const wide = r.right > limit || (el.scrollWidth > el.clientWidth + 1 && el.clientWidth > 0
                                      && ['auto', 'scroll'].includes(style.overflowX));
    if (wide) {
      const cls = (el.className && el.className.baseVal === undefined) ? el.className : '';
      bad.push(`${el.tagName.toLowerCase()}.${String(cls).split(' ').join('.')}`
               + ` (${Math.round(r.width)} px, scroll ${el.scrollWidth}/${el.clientWidth})`);
    }
  }
  return bad.slice(0, 8);
}"""

#: Code cells of a chapter whose input is hidden behind a toggle: their code may scroll.
HIDDEN_INPUT_JS = r"""() => Array.from(document.querySelectorAll('article.bd-article .cell .cell_input'))
  .filter(e => e.closest('details:not([open])')).length"""


def _pages(html: Path) -> list[Path]:
    return sorted(p for p in html.rglob("*.html") if not SKIP_DIRS & set(p.relative_to(html).parts))


def axe_blocking(results: dict) -> list[str]:
    """The serious or critical axe violations of `results` not in `AXE_ALLOWED`, as lines."""
    out = []
    for v in results.get("violations", []):
        if v.get("impact") in BLOCKING_IMPACTS and v["id"] not in AXE_ALLOWED:
            targets = [", ".join(n.get("target", [])) for n in v.get("nodes", [])][:3]
            out.append(f"{v['id']} ({v['impact']}, {len(v.get('nodes', []))} node(s)): {v.get('help')} {targets}")
    return out


def check_site(html: Path, browser_path: str, *, axe: bool = True,
               only: list[str] | None = None) -> tuple[list[str], list[str], dict]:
    """Open every page of the built book `html` (or those named in `only`, relative to
    `html`); return (problems, blocked urls, axe results per page:
    {page: {"blocking": [...], "other": [...]}})."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    auditor = None
    if axe:
        from axe_playwright_python.sync_playwright import Axe

        auditor = Axe()
    problems: list[str] = []
    blocked: list[str] = []
    audit: dict[str, dict] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=browser_path, args=ARGS)
        context = browser.new_context(viewport={"width": 1400, "height": 900})

        def route(r):
            if r.request.url.startswith(("file://", "data:", "blob:", "about:")):
                r.continue_()
            else:
                blocked.append(r.request.url)
                r.abort()

        context.route("**/*", route)
        for path in _pages(html):
            name = str(path.relative_to(html))
            if only is not None and name not in only:
                continue
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
            if name == "book/index.html":      # the results at a glance on the first screen
                bottom = page.evaluate("(() => { const p = document.querySelector('section#results-at-a-glance p');"
                                       " return p ? p.getBoundingClientRect().bottom : null; })()")
                if bottom is None or bottom > 900:
                    problems.append(f"{name}: the results at a glance are not on the first 1400x900 screen "
                                    f"(bottom of their first paragraph: {bottom})")
            tex = page.evaluate(RAW_TEX_JS)
            if tex:
                problems.append(f"{name}: raw TeX in the rendered text: {tex[:4]}")
            wide = page.evaluate(OVERFLOW_JS)
            if wide:
                problems.append(f"{name}: wider than the main column at 1400 px: {wide}")
            console = list(errors)             # axe's own requests are not the page's
            if auditor is not None:
                # preload off: axe would fetch the stylesheets, which file:// refuses
                results = auditor.run(page, options={"resultTypes": ["violations"], "preload": False}).response
                blocking = axe_blocking(results)
                other = [f"{v['id']} ({v.get('impact')})" for v in results.get("violations", [])
                         if v.get("impact") not in BLOCKING_IMPACTS or v["id"] in AXE_ALLOWED]
                audit[name] = {"blocking": blocking, "other": other}
                problems += [f"{name}: axe {b}" for b in blocking]
            if console:
                problems.append(f"{name}: console errors {console[:3]}")
            page.close()
        # the Claims page on a 412-px phone: no sideways scrolling
        claims = html / "book" / "claims.html"
        if claims.exists() and (only is None or "book/claims.html" in only):
            phone = browser.new_context(viewport={"width": 412, "height": 900})
            phone.route("**/*", route)
            page = phone.new_page()
            page.goto(claims.as_uri(), wait_until="load")
            widths = page.evaluate("[document.documentElement.scrollWidth, window.innerWidth, "
                                   "Math.max(0, ...Array.from(document.querySelectorAll('table.af-summary'))"
                                   ".map(t => t.scrollWidth - t.clientWidth))]")
            if widths[0] > widths[1] or widths[2] > 1:
                problems.append(f"book/claims.html at 412 px scrolls sideways: page {widths[0]} px in a "
                                f"{widths[1]} px window, summary overflow {widths[2]} px")
            phone.close()
        browser.close()
    return problems, blocked, audit


def test_every_page_renders_offline(built_book):
    html = ROOT / "_build" / "html"
    assert len(_pages(html)) >= 5
    problems, blocked, audit = check_site(html, CHROMIUM)
    (ROOT / "_build" / "axe.json").write_text(json.dumps(audit, indent=1) + "\n")
    print("\naxe-core per page (serious/critical; other impacts):")
    for name, res in audit.items():
        print(f"  {name:<45} {len(res['blocking'])} serious/critical; other: {', '.join(res['other']) or 'none'}")
    assert not problems, "\n".join(problems)
    assert not blocked, f"pages tried to reach the network: {sorted(set(blocked))[:10]}"

