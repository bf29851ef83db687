r"""Pages the build generates from what it measured: Claims and Reproducibility.

Nothing here is hand-written: the Claims page is made from the chapters' claim records
(`adaptedflow.book.claims`) and the statement registry (`adaptedflow.book.statements`); the
Reproducibility page and `manifest.json` from the execution rows of the build, git and
the installed packages.
"""

from __future__ import annotations

import datetime as _dt
import html
import importlib.metadata
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

from .claims import TEX_SCRIPT
from .statements import EXTRA_STATEMENTS, STATEMENTS

#: Packages whose exact versions the Reproducibility page reports.
PACKAGES = ("jax", "jaxlib", "diffrax", "optimistix", "equinox", "numpy", "matplotlib", "papermill",
            "ipykernel", "jupyter-book", "sphinx", "myst-nb")


def _git(root: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def manifest(root: Path, rows: list[dict]) -> dict:
    """The build's environment and execution record (the data of `manifest.json`).

    Per chapter: its status, seconds, mode and parameters, whether this build executed it
    (``run``: "ran now") or restored its last run from the execution cache ("from cache"),
    its cache key (sha256, `pipeline.chapter_key`) and when it ran (``date_utc``)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    status = _git(root, "status", "--porcelain", "--untracked-files=no")
    return {
        "git_commit": _git(root, "rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "packages": versions,
        "chapters": [{**{k: r[k] for k in ("chapter", "ok", "seconds", "mode", "parameters")},
                      "run": "from cache" if r.get("cached") else "ran now",
                      "key": r.get("key"), "date_utc": r.get("date_utc")} for r in rows],
    }


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else html.escape(str(v))


#: Badge colours of the statement verdicts (white text on each has contrast >= 4.5:1).
_VERDICT_COLOURS = {
    "reproduced": "#1a7f37",
    "fails as written": "#cf222e",
    "vacuous as written": "#8a5a00",
    "open question answered": "#0969da",
    "beyond the paper": "#57606a",
}


def _badge(verdict: str) -> str:
    colour = _VERDICT_COLOURS.get(verdict, "#57606a")
    return (f'<span class="af-badge" style="background:{colour}">{html.escape(verdict)}</span>')


def _scripts(text: str, escape, script) -> str:
    """`text` with `escape` applied to the plain runs and `script(sign, body)` to each
    TeX-like ``^{…}`` / ``_{…}``."""
    out, last = [], 0
    for m in TEX_SCRIPT.finditer(text):
        out.append(escape(text[last:m.start()]))
        out.append(script(m.group(1), m.group(2)))
        last = m.end()
    out.append(escape(text[last:]))
    return "".join(out)


def plain_html(text: str) -> str:
    """`text` HTML-escaped, with TeX-like ``^{…}`` / ``_{…}`` written as <sup>/<sub>
    (the registry's one-line statements use them; raw TeX must never reach the page)."""
    def tag(sign, body):
        name = "sup" if sign == "^" else "sub"
        return f"<{name}>{html.escape(body)}</{name}>"

    return _scripts(text, html.escape, tag)


def plain_md(text: str) -> str:
    """`text` for MyST markdown: special characters escaped, ``^{…}`` / ``_{…}`` as the
    {sup} / {sub} roles."""
    from .claims import md_escape

    return _scripts(text, md_escape, lambda sign, body: f"{{{'sup' if sign == '^' else 'sub'}}}`{body}`")


def _short_quantity(q: str) -> str:
    """A record's quantity without its ", against <tolerance>" tail."""
    return re.split(r",\s*against\b", q, maxsplit=1)[0].strip()


def key_number(recs: list[dict]) -> str:
    """One number that carries a statement's verdict (plain text): the finding that makes
    it vacuous, else its counterexample's measured values, else its first finding, else
    its first check's measured value."""
    vac = [f for r in recs for f in r.get("findings", []) if "vacuous" in f.lower()]
    if vac:
        return vac[0]
    cx = [r for r in recs if r.get("kind") == "counterexample"]
    if cx:
        return "; ".join(f"{_short_quantity(r['quantity'])} = {r['measured']:.3g}"
                         if isinstance(r["measured"], float) else _short_quantity(r["quantity"])
                         for r in sorted(cx, key=lambda r: r["part"], reverse=True))
    findings = [f for r in recs for f in r.get("findings", [])]
    if findings:
        return findings[0]
    r = recs[0]
    value = f"{r['measured']:.3g}" if isinstance(r["measured"], float) else str(r["measured"])
    return f"{_short_quantity(r['quantity'])} = {value} ({r['relation']} {r['tolerance']:.3g})"


def claims_page(records: list[dict], *, chapter_pages: dict[str, str]) -> str:
    """The Claims page (MyST markdown with raw HTML): a summary with one row per statement
    (the statement in one line, its verdict as a badge, the key number, the findings and
    a link to its chapter), what the verdicts, outcomes and kinds mean, then every check,
    collapsed per statement.  The summary stacks into one block per statement on a phone
    (the stylesheet `static/adaptedflow.css`).

    Args:
        records: the claim records of every chapter (from `claims.collect`).
        chapter_pages: chapter name → page path relative to the Claims page (no suffix).
    """
    from .claims import KINDS, VERDICTS

    by_id: dict[str, list[dict]] = {}
    for r in records:
        by_id.setdefault(r["id"], []).append(r)
    known = [s[0] for s in STATEMENTS]
    beyond = [s for s in EXTRA_STATEMENTS if s[0] in by_id]
    extra = sorted(set(by_id) - set(known) - {s[0] for s in beyond})
    n_checked = sum(1 for s in known if s in by_id)
    n_failed = sum(1 for r in records if not r["passed"])
    n_cx = sum(1 for r in records if r.get("kind") == "counterexample")
    counts: dict[str, int] = {}
    for sid in by_id:
        v = by_id[sid][0]["verdict"]
        counts[v] = counts.get(v, 0) + 1
    summary, details = [], []
    for sid, label, section, statement in [*STATEMENTS, *beyond, *[(e, e, "", "") for e in extra]]:
        recs = by_id.get(sid, [])
        if not recs:
            summary.append(f'<tr class="af-none"><td data-label="Statement">{html.escape(label)} '
                           f'<small>{html.escape(section)}</small><br>{plain_html(statement)}</td>'
                           f'<td data-label="Verdict"><em>not yet reproduced</em></td>'
                           '<td data-label="Key number and findings"></td></tr>')
            continue
        verdict = recs[0]["verdict"]
        page = chapter_pages.get(recs[0]["chapter"], recs[0]["chapter"])
        outcomes: dict[str, int] = {}
        for r in recs:
            key = f"{r.get('kind', '?')}: {r.get('outcome', 'holds' if r['passed'] else 'FAILED')}"
            outcomes[key] = outcomes.get(key, 0) + 1
        checks = "; ".join(f"{n}× {html.escape(k)}" for k, n in sorted(outcomes.items()))
        number = key_number(recs)
        findings = [f for r in recs for f in r.get("findings", []) if f != number]
        flist = ("<ul>" + "".join(f"<li>{plain_html(f)}</li>" for f in findings) + "</ul>") if findings else ""
        bad = ' class="af-fail"' if any(not r["passed"] for r in recs) else ""
        summary.append(
            f'<tr{bad}><td data-label="Statement"><a href="{html.escape(page)}.html">{html.escape(label)}</a> '
            f'<small>{html.escape(section)}</small><br>{plain_html(statement or recs[0]["statement"])}</td>'
            f'<td data-label="Verdict">{_badge(verdict)}<br><small>{len(recs)} check(s)</small></td>'
            f'<td data-label="Key number and findings">{plain_html(number)}{flist}</td></tr>')
        rows = []
        for r in recs:
            pg = chapter_pages.get(r["chapter"], r["chapter"])
            anchor = f"claim-{r['id']}-{r['part']}"
            result = r.get("outcome", "holds" if r["passed"] else "FAILED")
            note = f'<br><small>{plain_html(r["note"])}</small>' if r.get("note") else ""
            rows.append(
                f'<tr class="af-{"pass" if r["passed"] else "fail"}">'
                f'<td data-label="Check"><a href="{html.escape(pg)}.html#{html.escape(anchor)}">'
                f'{html.escape(r["part"])}</a><br><small>{html.escape(r.get("kind", "?"))}, '
                f'{html.escape(r["mode"])}</small></td>'
                f'<td data-label="Measured quantity">{plain_html(r["quantity"])}{note}</td>'
                f'<td data-label="Measured vs tolerance">{_fmt(r["measured"])} {html.escape(r["relation"])} '
                f'{_fmt(r["tolerance"])}</td>'
                f'<td data-label="Result">{html.escape(result)}</td></tr>')
        details.append(
            f'<details class="af-details"><summary>{html.escape(label)}: {len(recs)} check(s), {checks}</summary>\n'
            '<table class="af-claims af-checks"><thead><tr><th>Check</th><th>Measured quantity</th>'
            '<th>Measured vs tolerance</th><th>Result</th></tr></thead><tbody>\n'
            + "\n".join(rows) + "\n</tbody></table></details>")
    verdict_defs = "\n".join(f"| {_badge(v)} | {html.escape(m)} |" for v, m in VERDICTS.items())
    kind_defs = "\n".join(f"| {k} | {html.escape(m)} |" for k, m in KINDS.items())
    tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    table = ("<table class=\"af-claims af-summary\">\n<thead><tr><th>Statement</th><th>Verdict</th>"
             "<th>Key number and findings</th></tr></thead>\n<tbody>\n" + "\n".join(summary) + "\n</tbody></table>")
    return f"""# Claims

Every statement of the paper this book checks, generated at build time from the records
the chapters write when they run (`_static/claims.json` holds the same data):
**{n_checked} of the paper's {len(known)} statements checked**, plus {len(beyond)} beyond the
paper, by {len(records)} checks ({n_failed} failed). Statement verdicts: {tally}.

## Summary

One row per statement: the statement in one line, its verdict, the number that carries
the verdict, the findings that qualify it, and a link to the chapter that checks it.

```{{raw}} html
<div class="af-claims-scroll">
{table}
</div>
```

## How to read a verdict

Each statement has one **verdict**:

| verdict | meaning |
|---|---|
{verdict_defs}

Each check compares a measured quantity with a tolerance derived from the numerics, and a
failing check stops the build. A check *passes* when its measured fact holds. For a
**counterexample** ({n_cx} of the checks), the measured fact is the violation itself: a
pass reads *counterexample confirmed* and means that the fixed instance does violate the
statement as written, exactly as the chapter says. So a statement whose verdict is
*fails as written* still has every check passing.

Each check says what **kind** of claim it is, and is checked as that kind:

| kind | how it is checked |
|---|---|
{kind_defs}

## Every check

The checks of each statement, collapsed: open a statement to see them. The link in each
row opens the cell of the chapter that made the check.

```{{raw}} html
{chr(10).join(details)}
```
"""


def _value(v) -> str:
    """A parameter value as written in Python (lists as ``[16, 16]``)."""
    return repr(v) if not isinstance(v, str) else v


def result_box(records: list[dict], *, mode: str, parameters: dict, sizes: list[str] | None = None) -> str:
    """The "Result" box a chapter opens with (MyST markdown), generated from the records
    its run wrote: the parameter set it ran at (the mode, then the parameters named by
    `sizes` in that order, default every parameter but ``mode``), and per statement the
    verdict, how its checks came out and the findings."""
    from .claims import verdicts_markdown

    if not records:
        return ""
    names = list(dict.fromkeys(sizes if sizes is not None else parameters))
    shown = [f"`{n} = {_value(parameters[n])}`" for n in names if n in parameters and n != "mode"]
    sizes_text = "publication parameters" if mode == "full" else "fast parameters"
    head = f"Ran at the {sizes_text}" + (": " + ", ".join(shown) if shown else "") + "."
    body = verdicts_markdown(records)
    failed = [r for r in records if not r["passed"]]
    if failed:
        head += f" **{len(failed)} check(s) failed.**"
    return f":::{{admonition}} Result\n:class: tip\n{head}\n\n{body}\n:::\n"


def results_at_a_glance(records: list[dict], *, chapter_pages: dict[str, str]) -> str:
    """The index page's summary (MyST markdown), from the same records as the Claims page:
    how many statements and checks, then one line per verdict with its count: the
    statements reproduced, those that fail as written or are vacuous in a named setting,
    the open questions answered (each of these with its key number) and those beyond
    the paper."""
    by_id: dict[str, list[dict]] = {}
    for r in records:
        by_id.setdefault(r["id"], []).append(r)
    if not by_id:
        return "*No chapter has been executed yet: run `make book`.*\n"
    registry = {sid: (label, statement) for sid, label, _, statement in (*STATEMENTS, *EXTRA_STATEMENTS)}
    order = {sid: i for i, sid in enumerate(registry)}
    ids = sorted(by_id, key=lambda s: (order.get(s, len(order)), s))
    n_checks = len(records)
    modes = sorted({r["mode"] for r in records})
    sizes = " and ".join("publication" if m == "full" else "fast" for m in modes)
    failed = [r for r in records if not r["passed"]]
    head = (f"**{len(by_id)} statements checked by {n_checks} checks** at the {sizes} parameters; "
            + ("every check holds or confirms its counterexample." if not failed
               else f"**{len(failed)} check(s) failed**: "
               + ", ".join(f"{r['id']} ({r['part']})" for r in failed) + "."))

    def link(sid: str) -> str:
        page = chapter_pages.get(by_id[sid][0]["chapter"], by_id[sid][0]["chapter"])
        return f"[{plain_md(registry.get(sid, (sid, ''))[0])}]({page}.ipynb)"

    def with_number(sid: str, number: str, lead: str) -> str:
        statement = registry.get(sid, ("", by_id[sid][0]["statement"]))[1] or by_id[sid][0]["statement"]
        return f"{link(sid)}: {plain_md(statement)} {lead}: {plain_md(number)}."

    verdict_of = {sid: by_id[sid][0]["verdict"] for sid in ids}
    vacuous = [sid for sid in ids if any("vacuous" in f.lower() for r in by_id[sid] for f in r.get("findings", []))]
    # (verdict, mark, what the key number is; "" lists the statements without one), in reading order
    groups = [("fails as written", "✘", "Counterexample"), ("open question answered", "?", "Evidence"),
              ("vacuous as written", "∅", "Finding"), ("reproduced", "✔", ""), ("beyond the paper", "+", "")]
    blocks, tally = [], []
    for verdict, mark, lead in groups:
        members = [sid for sid in ids if verdict_of[sid] == verdict]
        if verdict == "vacuous as written":
            members += [sid for sid in vacuous if sid not in members]
        if not members:
            continue
        name = verdict if verdict != "vacuous as written" or all(verdict_of[s] == verdict for s in members) \
            else "vacuous in a setting the paper names"
        qualified = name != verdict            # reproduced statements, vacuous in one setting
        tally.append((verdict, f"{len(members)} of them {name}" if qualified else f"**{len(members)} {name}**"))
        if lead:
            blocks.append(f"- {mark} *{name.capitalize()}*:")
            blocks += [f"  - {with_number(sid, key_number(by_id[sid]), lead)}" for sid in members]
        else:
            blocks.append(f"- {mark} *{name.capitalize()}*: " + ", ".join(link(sid) for sid in members) + ".")
    order = ["reproduced", "vacuous as written", "fails as written", "open question answered", "beyond the paper"]
    tally.sort(key=lambda vt: order.index(vt[0]))
    lines = [head + " " + "; ".join(text for _, text in tally) + ".", "", *blocks]
    lines += ["", "The [Claims](claims.md) page has one row per statement with its key number and findings, "
              "and every check."]
    return "\n".join(lines) + "\n"


def reproducibility_page(data: dict) -> str:
    """The Reproducibility page (MyST markdown) for a `manifest` dict."""
    pk = "\n".join(f"| {name} | {v or 'not installed'} |" for name, v in data["packages"].items())
    # Two tables, not one of eight columns: one wide table overflowed the main column.
    ch = "\n".join(
        f"| {c['chapter']} | {'ok' if c['ok'] else 'FAILED'} | {c.get('run', 'ran now')} | "
        f"{(c.get('date_utc') or 'unknown').replace('T', ' ').rstrip('Z')} | {c['seconds']:.1f} | {c['mode']} |"
        for c in data["chapters"]
    )
    keys = "\n".join(
        f"| {c['chapter']} | {'`' + c['key'][:12] + '`' if c.get('key') else '-'} | "
        f"{', '.join(f'{k}={v}' for k, v in c['parameters'].items()) or 'notebook defaults'} |"
        for c in data["chapters"]
    )
    n_cached = sum(1 for c in data["chapters"] if c.get("run") == "from cache")
    n_total = len(data["chapters"])
    dirty = {True: " (working tree had uncommitted changes)", False: "", None: ""}[data["git_dirty"]]
    return f"""# Reproducibility

This page is generated by the build that produced this HTML; `_static/manifest.json`
holds the same data.

| | |
|---|---|
| git commit | `{data['git_commit'] or 'unknown'}`{dirty} |
| built (UTC) | {data['date_utc']} |
| platform | {data['platform']} ({data['machine']}) |
| CPUs | {data['cpu_count']} |
| Python | {data['python']} |

## Packages

| package | version |
|---|---|
{pk}

## Chapters as executed

Each chapter was executed by papermill before the HTML was built; parameters other than
the notebook's defaults are listed. A chapter whose notebook, package sources
(`src/adaptedflow`), `requirements-lock.txt`, parameters and mode are unchanged since its
last successful run is not executed again: that run's executed notebook and claim records
are reused ("from cache"; {n_cached} of {n_total} chapters in this build). The key is
the first 12 hex digits of the sha256 over those inputs; "ran" is the date (UTC) the chapter
was executed.

| chapter | status | this build | ran (UTC) | seconds | mode |
|---|---|---|---|---|---|
{ch}

| chapter | key | parameters |
|---|---|---|
{keys}

## Rerun

`make book` builds the book at the fast parameters, executing the chapters whose key
changed; `make book-full` at the publication parameters; `.venv/bin/python -m
adaptedflow.book --force` executes every chapter again; `--only NAME` one chapter.
The environment is pinned in `requirements-lock.txt`.
"""
