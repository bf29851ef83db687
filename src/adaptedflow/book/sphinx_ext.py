"""A small Sphinx extension for the book's HTML (loaded through `_config.yml`).

jupyter-book 1.0.4 with sphinx-thebe 0.3.1 registers sphinx-thebe's inline script
twice (once with filename None, once with ''), so every page declared
``const THEBE_JS_URL`` twice and the browser logged a SyntaxError on each page (found by
tests/test_browser.py). This drops duplicates from a page's script list, and makes every
page load MathJax (titles with math appear in every page's navigation).
"""

from __future__ import annotations


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


def setup(app):
    # Chapter titles with math appear in every page's navigation: load MathJax on every
    # page, not only on pages with equations of their own (the browser test found raw
    # \( … \) in the sidebar of the Claims page).
    app.set_html_assets_policy("always")
    app.connect("html-page-context", dedupe_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

