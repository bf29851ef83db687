"""The chapters read as pages for a reader: checks on the notebooks and on the built book.

Fast (read `book/*.ipynb` only):

* every code cell carries exactly one of the tags ``hide-input``, ``remove-input``,
  ``remove-cell`` (the code sits behind a toggle or is removed; results come first);
* every ``{glue:figure}`` has ``:name:`` and ``:alt:``, the alt text one plain sentence
  (not a file name, no ``$`` math);
* no bold "**Figure (…)**" captions (captions live in the figure directive, numbered);
* no wording about how the book was made (issue, prototype, our/this machine, two-core,
  "we did not expect", "the team") and no hardware facts (a "shared machine", "the
  machine's 24 GiB"): those belong on the Reproducibility page;
* no run-dependent count typed into the text (``3/6``, ``5 of 5``) outside math, code
  and roles: a count that depends on the run is quoted from its record
  (``{glue:text}`<id>.<part>.k` ``), see `adaptedflow.book.claims.quote`.

On the built book (`built_book`, marked ``book``):

* every glued record number (``<id>.<part>.<field>``) in an executed chapter equals the
  record in `_build/claims.json`, and every such key names a record;
* executed outputs show no raw dict (``{'…``) and no Markdown pipe table;
* every ``<img>`` of the HTML has alt text that is not a file name;
* the index shows the results at a glance and the headline figure; the cite page gives
  the book's BibTeX with url, version and commit, and the bibliography renders L².

Each checker is a function returning its problems, so the negative tests at the end
show that each one catches what it is meant to catch.
"""

from __future__ import annotations

import ast
import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
TOGGLE_TAGS = ("hide-input", "remove-input", "remove-cell")

#: Sentences about how the book was made, not about the mathematics.
TEAM_WORDING = re.compile(
    r"\bissues?\b|\bprototypes?\b|\bour machine\b|\bthis (?:shared )?(?:\S+ )?machine\b|\btwo-core\b"
    r"|\bshared machine\b|\bmachine's [\d.]+\s*[GMT]i?B\b|\bwe did not expect\b|\bthe team\b", re.I)
#: Counts typed into the text: "3/6", "3 / 6", "5 of 5".
COUNT = re.compile(r"\b\d+\s*/\s*\d+\b|\b\d+ of \d+\b")
#: Literal counts that are not run-dependent, allowed by exact match of the sentence
#: fragment: (chapter file name, matched text) -> why.
ALLOWED_COUNTS: dict[tuple[str, str], str] = {}
#: Parts of Markdown where a count or a word is not prose: display and inline math, code
#: fences and spans, roles and directives' arguments, link targets, HTML comments.
_NOT_PROSE = [
    re.compile(r"```.*?```", re.S),
    re.compile(r"\$\$.*?\$\$", re.S),
    re.compile(r"(?<![\\$])\$[^$\n]+?\$"),
    re.compile(r"\{[a-z:\-]+\}`[^`]*`"),
    re.compile(r"`[^`\n]*`"),
    re.compile(r"\]\([^)]*\)"),
    re.compile(r"<!--.*?-->", re.S),
    re.compile(r"https?://\S+"),
]
_FIGURE = re.compile(r"```\{glue:figure\}[^\n]*\n(?P<body>.*?)```", re.S)
_FILE_NAME = re.compile(r"(?:^|[/\\])[\w\-.]+\.(?:png|jpe?g|svg|gif|pdf)\s*$|^\S+/\S+$", re.I)


def _nb(path: Path) -> dict:
    return json.loads(path.read_text())


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def prose(markdown: str) -> str:
    """`markdown` with math, code, roles, link targets and comments blanked out."""
    for pat in _NOT_PROSE:
        markdown = pat.sub(" ", markdown)
    return markdown


def tag_problems(nb: dict, name: str) -> list[str]:
    out = []
    index = 0
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        index += 1
        tags = cell.get("metadata", {}).get("tags", [])
        chosen = [t for t in TOGGLE_TAGS if t in tags]
        if len(chosen) != 1:
            first = _source(cell).strip().splitlines()[:1]
            out.append(f"{name}: code cell {index} ({first}) has {chosen or 'none'} of {TOGGLE_TAGS}: "
                       "give it exactly one")
    return out


def figure_problems(nb: dict, name: str) -> list[str]:
    out = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = _source(cell)
        for m in _FIGURE.finditer(text):
            body = m.group("body")
            head = text[m.start():m.start() + 60].splitlines()[0]
            opts = dict(re.findall(r"^:(\w+):\s*(.*)$", body, flags=re.M))
            if not opts.get("name"):
                out.append(f"{name}: {head} has no :name:")
            alt = opts.get("alt", "").strip()
            if not alt:
                out.append(f"{name}: {head} has no :alt:")
            elif _FILE_NAME.search(alt) or "$" in alt:
                out.append(f"{name}: {head} alt text is a file name or has $ math: {alt!r}")
        if re.search(r"\*\*Figure\s*\(", text):
            out.append(f"{name}: a bold '**Figure (…)**' caption; put the caption in the {{glue:figure}} directive")
    return out


def wording_problems(nb: dict, name: str) -> list[str]:
    out = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        for m in TEAM_WORDING.finditer(prose(_source(cell))):
            out.append(f"{name}: wording about how the book was made: {m.group(0)!r}")
    return out


def count_problems(nb: dict, name: str) -> list[str]:
    out = []
    for cell in nb["cells"]:
        if cell["cell_type"] != "markdown":
            continue
        text = prose(_source(cell))
        for m in COUNT.finditer(text):
            if (name, m.group(0)) in ALLOWED_COUNTS:
                continue
            around = text[max(0, m.start() - 40):m.end() + 20].replace("\n", " ")
            out.append(f"{name}: a count typed into the text: {m.group(0)!r} in '…{around}…'; quote the record "
                       "({glue:text}`<id>.<part>.<field>`) or allow it in ALLOWED_COUNTS with a reason")
    return out


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_every_code_cell_has_one_toggle_tag(path):
    problems = tag_problems(_nb(path), path.stem)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_figures_have_names_alt_text_and_numbered_captions(path):
    problems = figure_problems(_nb(path), path.stem)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_wording_about_how_the_book_was_made(path):
    problems = wording_problems(_nb(path), path.stem)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_no_run_dependent_count_typed_into_the_text(path):
    problems = count_problems(_nb(path), path.stem)
    assert not problems, "\n".join(problems)


def test_browser_lookup(monkeypatch, tmp_path):
    """The browser test's executable: the environment variable first, then PATH."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_browser import BROWSER_ENV, find_browser

    exe = tmp_path / "my-chrome"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv(BROWSER_ENV, str(exe))
    assert find_browser() == str(exe)
    monkeypatch.setenv(BROWSER_ENV, str(tmp_path / "absent"))
    assert find_browser() is None                    # named but missing: not silently replaced
    monkeypatch.delenv(BROWSER_ENV)
    monkeypatch.setenv("PATH", str(tmp_path))
    (tmp_path / "google-chrome").write_text("#!/bin/sh\n")
    (tmp_path / "google-chrome").chmod(0o755)
    assert find_browser() == str(tmp_path / "google-chrome")


# ---------------------------------------------------------------- the built book


def _glued(nb: dict) -> dict[str, str]:
    """Glue key → its text/plain, for every glued output of an executed notebook."""
    out = {}
    for cell in nb.get("cells", []):
        for o in cell.get("outputs", []):
            scrap = o.get("metadata", {}).get("scrapbook", {})
            if "name" in scrap:
                data = o.get("data", {})
                text = data.get(scrap.get("mime_prefix", "") + "text/plain", data.get("text/plain"))
                out[scrap["name"]] = "".join(text) if isinstance(text, list) else text
    return out


def quote_problems(nb: dict, name: str, records: list[dict]) -> list[str]:
    """Glued keys of the form <id>.<part>.<field> against the records."""
    from adaptedflow.book.claims import quote_key, quoted_value

    keys = {}
    for r in records:
        keys[f"{r['id']}.{r['part']}."] = r
    out = []
    for key, text in _glued(nb).items():
        if "." not in key:
            continue                                  # a figure or another glued value
        rec = next((r for prefix, r in keys.items() if key.startswith(prefix)), None)
        if rec is None:
            out.append(f"{name}: glued {key!r} names no record in claims.json")
            continue
        field = key[len(f"{rec['id']}.{rec['part']}."):]
        try:
            expected = quoted_value(rec, field)
        except KeyError as exc:
            out.append(f"{name}: {exc}")
            continue
        try:
            value = ast.literal_eval(text) if text is not None else None
        except (ValueError, SyntaxError):
            value = text.strip("'\"") if text else text
        if value != expected and not (isinstance(expected, str) and str(value) == expected):
            out.append(f"{name}: {quote_key(rec, field)} shows {text!r}; the record has {expected!r}")
    return out


def output_problems(nb: dict, name: str) -> list[str]:
    out = []
    for i, cell in enumerate(nb.get("cells", [])):
        for o in cell.get("outputs", []):
            texts = []
            if o.get("output_type") == "stream":
                texts.append(o.get("text", ""))
            for mime in ("text/plain", "text/markdown"):
                if mime in o.get("data", {}) and not o.get("metadata", {}).get("scrapbook"):
                    texts.append(o["data"][mime])
            for t in texts:
                t = "".join(t) if isinstance(t, list) else t
                if re.search(r"^\s*\{'", t, flags=re.M):
                    out.append(f"{name}: cell {i} prints a raw dict: {t.strip()[:80]!r}")
                if "|---" in t or "|—" in t or "|:--" in t:
                    out.append(f"{name}: cell {i} prints a Markdown pipe table; use tables.table(...)")
    return out


def img_problems(html: Path) -> list[str]:
    out = []
    for page in sorted(html.rglob("*.html")):
        if {"_static", "mathjax", "_sources"} & set(page.relative_to(html).parts):
            continue
        for tag in re.findall(r"<img\b[^>]*>", page.read_text(errors="replace")):
            m = re.search(r'\balt="([^"]*)"', tag)
            alt = (m.group(1) if m else "").strip()
            if not alt or _FILE_NAME.search(alt) or re.search(r"\.(png|jpe?g|svg|gif)\b", alt, flags=re.I):
                out.append(f"{page.relative_to(html)}: <img> without real alt text: {tag[:160]}")
    return out


def _staged_chapters() -> list[Path]:
    return sorted((ROOT / "_build" / "stage" / "book").glob("[0-9][0-9]_*.ipynb"))


@pytest.mark.book
def test_quoted_numbers_equal_their_records(built_book):
    records = json.loads((ROOT / "_build" / "claims.json").read_text())
    problems = [p for path in _staged_chapters() for p in quote_problems(_nb(path), path.stem, records)]
    assert not problems, "\n".join(problems)


@pytest.mark.book
def test_outputs_have_no_raw_dicts_or_pipe_tables(built_book):
    problems = [p for path in _staged_chapters() for p in output_problems(_nb(path), path.stem)]
    assert not problems, "\n".join(problems)


@pytest.mark.book
def test_every_image_has_alt_text(built_book):
    problems = img_problems(ROOT / "_build" / "html")
    assert not problems, "\n".join(problems[:20])


@pytest.mark.book
def test_index_and_cite_pages(built_book):
    import importlib.metadata

    book = ROOT / "_build" / "html" / "book"
    index = (book / "index.html").read_text()
    assert "<!--" not in index.split("Results at a glance", 1)[1][:200]       # markers replaced
    for verdict in ("reproduced", "fails as written", "open question answered"):
        assert verdict in index, verdict
    assert 'id="fig-headline"' in index and re.search(r'<img alt="Log-scale plot[^"]+"', index)
    assert "Reading map" in index
    from html import unescape

    cite = unescape(re.sub(r"<[^>]+>", "", (book / "cite.html").read_text()))   # text, highlighting removed
    assert f"version = {{{importlib.metadata.version('adaptedflow')}}}" in cite
    manifest = json.loads((ROOT / "_build" / "html" / "_static" / "manifest.json").read_text())
    if manifest["git_commit"]:
        assert f"commit  = {{{manifest['git_commit']}}}" in cite
    assert re.search(r"url     = \{https?://", cite)
    assert "<!--" not in cite and "book-bibtex" not in cite
    assert "L²" in cite and "L^2" not in cite and "$L" not in cite


# ---------------------------------------------------------------- the checkers can fail


def _bad_notebook() -> dict:
    md = ("Every orbit converged: 5/5 orbits, and 3 of 4 seeds; (2.6) and $k/n = 3/4$ are fine.\n\n"
          "On this shared two-core machine the prototype ran.\n\n**Figure (fig-02-rate).** old caption\n\n"
          "```{glue:figure} fig-02-rate\n:alt: fig-02-rate.png\n\ncaption\n```\n")
    return {"cells": [
        {"cell_type": "markdown", "metadata": {}, "source": md},
        {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": "seed = 0", "outputs": []},
        {"cell_type": "code", "metadata": {"tags": ["hide-input", "remove-cell"]}, "source": "x", "outputs": [
            {"output_type": "execute_result", "data": {"text/plain": "{'id': 'thm-2.1', 'passed': True}"},
             "metadata": {}},
            {"output_type": "stream", "name": "stdout", "text": "| a | b |\n|---|---|\n| 1 | 2 |\n"},
            {"output_type": "display_data", "metadata": {"scrapbook": {"name": "thm-2.1.rate.k",
                                                                        "mime_prefix": "application/x/"}},
             "data": {"application/x/text/plain": "4"}},
            {"output_type": "display_data", "metadata": {"scrapbook": {"name": "thm-9.9.main.k"}},
             "data": {"text/plain": "1"}},
        ]},
    ]}


def test_the_checkers_catch_a_bad_chapter():
    nb = _bad_notebook()
    assert len(tag_problems(nb, "bad")) == 2                  # no tag; two tags
    figs = figure_problems(nb, "bad")
    assert any("no :name:" in p for p in figs) and any("file name" in p for p in figs)
    assert any("bold" in p for p in figs)
    words = wording_problems(nb, "bad")
    assert {m.split(": ")[-1] for m in words} >= {"'this shared two-core machine'", "'prototype'"}
    counts = count_problems(nb, "bad")
    assert [c.split("'")[1] for c in counts] == ["5/5", "3 of 4"]     # not (2.6), not the math
    outs = output_problems(nb, "bad")
    assert any("raw dict" in p for p in outs) and any("pipe table" in p for p in outs)
    records = [{"id": "thm-2.1", "part": "rate", "measured": 1.0, "tolerance": 2.0, "data": {"k": 5, "n": 6}}]
    quotes = quote_problems(nb, "bad", records)
    assert any("shows '4'; the record has 5" in p for p in quotes)
    assert any("thm-9.9.main.k" in p and "names no record" in p for p in quotes)


def test_the_checkers_pass_a_good_chapter():
    md = ("{glue:text}`thm-2.1.rate.k` of {glue:text}`thm-2.1.rate.n` orbits, eq. (2.6), $k/n$, "
          "[link](https://arxiv.org/abs/2311.15487), `a 3/4 in code`.\n\n"
          "```{glue:figure} fig-02-rate\n:name: fig-02-rate\n:alt: Log-scale plot of the cost against time.\n\n"
          "Caption with {numref}`fig-02-rate`.\n```\n")
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": md},
                    {"cell_type": "code", "metadata": {"tags": ["parameters", "hide-input"]}, "source": "seed = 0",
                     "outputs": [{"output_type": "display_data", "data": {"text/plain": "5"},
                                  "metadata": {"scrapbook": {"name": "thm-2.1.rate.k"}}}]}]}
    records = [{"id": "thm-2.1", "part": "rate", "measured": 1.0, "tolerance": 2.0, "data": {"k": 5, "n": 6}}]
    for problems in (tag_problems(nb, "good"), figure_problems(nb, "good"), wording_problems(nb, "good"),
                     count_problems(nb, "good"), output_problems(nb, "good"), quote_problems(nb, "good", records)):
        assert not problems, problems


def test_img_checker_catches_a_file_name_alt(tmp_path):
    (tmp_path / "a.html").write_text('<img alt="../_images/abc123.png" src="../_images/abc123.png" />'
                                     '<img src="x.png"><img alt="A plot of the cost." src="y.png">')
    problems = img_problems(tmp_path)
    assert len(problems) == 2


def test_book_bibtex_names_url_version_and_commit():
    import importlib.metadata

    from adaptedflow.book.pipeline import book_bibtex

    text = book_bibtex(ROOT, "0123456789abcdef0123456789abcdef01234567")
    assert f"version = {{{importlib.metadata.version('adaptedflow')}}}" in text
    assert "commit  = {0123456789abcdef0123456789abcdef01234567}" in text
    assert re.search(r"url     = \{https?://\S+\}", text)
    assert "$" not in text and "L²" in text
    assert "commit" not in book_bibtex(ROOT, None)


def _records():
    base = {"chapter": "07_rank_loss", "mode": "fast", "relation": "<=", "tolerance": 1.0, "passed": True,
            "note": "", "data": {}, "equations": [], "statement": "s"}
    return [dict(base, id="sec-4.2", part="negative-curvature", kind="counterexample", measured=-0.297,
                 outcome="counterexample confirmed", verdict="fails as written", findings=[],
                 quantity="least eigenvalue of the Hessian, against −K·eps·‖H‖"),
            dict(base, id="thm-2.1", part="rate", kind="identity", measured=1e-12, outcome="holds",
                 verdict="reproduced", findings=["rate e^{-2s/N} on 5 orbits"], quantity="q", chapter="02_x"),
            dict(base, id="sec-2.4-integrability", part="main", kind="bound", measured=0.656, outcome="holds",
                 verdict="open question answered", findings=[], quantity="min ratio", chapter="05_x")]


def test_claims_page_summary_then_collapsed_details():
    from adaptedflow.book.report import claims_page

    page = claims_page(_records(), chapter_pages={})
    summary = page.index("## Summary")
    assert summary < page.index("## Every check") and summary < page.index("| verdict | meaning |")
    assert page.count('<table class="af-claims af-summary">') == 1
    assert page.count("<details") == 3 and "<details open" not in page          # one per statement, collapsed
    assert 'data-label="Verdict"' in page and "af-badge" in page
    flat = " ".join(page.split())
    assert "counterexample confirmed" in page and "a pass reads *counterexample confirmed*" in flat
    assert "^{" not in page.split("## Summary")[1]                     # TeX-like scripts become <sup>
    assert "e<sup>-2s/N</sup>" in page
    assert "not yet reproduced" in page                                # the registry's other statements


def test_results_at_a_glance_counts_and_numbers():
    from adaptedflow.book.report import results_at_a_glance

    text = results_at_a_glance(_records(), chapter_pages={})
    first = text.splitlines()[0]
    assert "**3 statements checked by 3 checks**" in first
    for part in ("**1 reproduced**", "**1 fails as written**", "**1 open question answered**"):
        assert part in first
    assert "Counterexample: least eigenvalue of the Hessian = -0.297" in text
    assert "Evidence: min ratio = 0.656" in text


def test_cite_page_and_citation_cff_name_the_arxiv_version_checked():
    version = re.compile(r"2311\.15487\**\s*\**v\d+")
    for name in ("book/cite.md", "CITATION.cff"):
        text = (ROOT / name).read_text()
        assert version.search(text.replace("**", "")), f"{name} does not name the arXiv version checked"
