"""A small Sphinx extension for the book's HTML (loaded through `_config.yml`).

* It ships the book's stylesheet (`static/adaptedflow.css`, package data): tables made by
  `adaptedflow.book.tables` (cells wrap, full width, thin borders), the Claims page (badges;
  on a phone the summary stacks into one block per statement, with no sideways scrolling)
  and figures no wider than their column.
* jupyter-book 1.0.4 with sphinx-thebe 0.3.1 registers sphinx-thebe's inline script
  twice (once with filename None, once with ''), so every page declared
  ``const THEBE_JS_URL`` twice and the browser logged a SyntaxError on each page (found by
  tests/test_browser.py). This drops duplicates from a page's script list.
* Bibliography entries are list items for assistive technology (axe-core found the
  bibliography's list without items on the How to cite page).
* Every page loads MathJax (titles with math appear in every page's navigation).
"""

from __future__ import annotations

from pathlib import Path

STATIC = Path(__file__).resolve().parent / "static"
CSS = "adaptedflow.css"


def _script_key(js) -> tuple:
    attributes = getattr(js, "attributes", {}) or {}
    # an inline script is registered with filename None by one extension and '' by another
    return (getattr(js, "filename", None) or "", tuple(sorted((k, str(v)) for k, v in attributes.items())))


def dedupe_scripts(app, pagename, templatename, context, doctree) -> None:
    """Keep the first of identical `<script>` entries (same source, same attributes and body)."""
    scripts = context.get("script_files")
    if not scripts:
        return
    seen, unique = set(), []
    for js in scripts:
        key = _script_key(js)
        if key not in seen:
            seen.add(key)
            unique.append(js)
    scripts[:] = unique


def fix_aria(app, pagename, templatename, context, doctree) -> None:
    """Bibliography entries: docutils writes ``<div role="list" class="citation-list">``
    whose children carry the deprecated ``role="doc-biblioentry"``, which is not a list
    item, so axe-core reports the list as critical (aria-required-children).  The
    entries become ``role="listitem"``."""
    body = context.get("body")
    if body and 'role="doc-biblioentry"' in body:
        context["body"] = body.replace('role="doc-biblioentry"', 'role="listitem"')


def add_static(app) -> None:
    """Serve the package's `static/` folder (the stylesheet) with the book's own."""
    if str(STATIC) not in [str(p) for p in app.config.html_static_path]:
        app.config.html_static_path.append(str(STATIC))


def setup(app):
    # Chapter titles with math appear in every page's navigation: load MathJax on every
    # page, not only on pages with equations of their own (the browser test found raw
    # \( … \) in the sidebar of the Claims page).
    app.set_html_assets_policy("always")
    app.connect("builder-inited", add_static)
    app.add_css_file(CSS)
    app.connect("html-page-context", dedupe_scripts, priority=900)
    app.connect("html-page-context", fix_aria, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
