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
import subprocess
import sys
from pathlib import Path

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
    """The build's environment and execution record (the data of `manifest.json`)."""
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
        "chapters": [{k: r[k] for k in ("chapter", "ok", "seconds", "mode", "parameters")} for r in rows],
    }


def _fmt(v) -> str:
    return f"{v:.3g}" if isinstance(v, float) else html.escape(str(v))


#: Badge colours of the statement verdicts.
_VERDICT_COLOURS = {
    "reproduced": "#1a7f37",
    "fails as written": "#cf222e",
    "vacuous as written": "#9a6700",
    "open question answered": "#0969da",
    "beyond the paper": "#6e7781",
}


def _badge(verdict: str) -> str:
    colour = _VERDICT_COLOURS.get(verdict, "#6e7781")
    return (f'<span class="af-badge" style="background:{colour}">{html.escape(verdict)}</span>')


def claims_page(records: list[dict], *, chapter_pages: dict[str, str]) -> str:
    """The Claims page (MyST markdown with raw HTML): definitions of the verdicts and the
    kinds of claim, a summary with one row per statement (its verdict, its findings, how
    its checks came out), then every check, collapsed per statement.

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
    counts: dict[str, int] = {}
    for sid in by_id:
        v = by_id[sid][0]["verdict"]
        counts[v] = counts.get(v, 0) + 1
    summary, details = [], []
    for sid, label, section, statement in [*STATEMENTS, *beyond, *[(e, e, "", "") for e in extra]]:
        recs = by_id.get(sid, [])
        if not recs:
            summary.append(f'<tr class="af-none"><td>{html.escape(label)}<br><small>{html.escape(section)}</small></td>'
                           f'<td>{html.escape(statement)}</td><td colspan="2"><em>not yet reproduced</em></td></tr>')
            continue
        verdict = recs[0]["verdict"]
        page = chapter_pages.get(recs[0]["chapter"], recs[0]["chapter"])
        outcomes: dict[str, int] = {}
        for r in recs:
            key = f"{r.get('kind', '?')}: {r.get('outcome', 'holds' if r['passed'] else 'FAILED')}"
            outcomes[key] = outcomes.get(key, 0) + 1
        checks = "; ".join(f"{n}× {html.escape(k)}" for k, n in sorted(outcomes.items()))
        findings = [f for r in recs for f in r.get("findings", [])]
        flist = ("<ul>" + "".join(f"<li>{html.escape(f)}</li>" for f in findings) + "</ul>") if findings else ""
        bad = ' class="af-fail"' if any(not r["passed"] for r in recs) else ""
        summary.append(
            f'<tr{bad}><td><a href="{html.escape(page)}.html">{html.escape(label)}</a><br>'
            f'<small>{html.escape(section)}</small></td>'
            f'<td>{html.escape(statement or recs[0]["statement"])}{flist}</td>'
            f'<td>{_badge(verdict)}</td><td><small>{checks}</small></td></tr>')
        rows = []
        for r in recs:
            pg = chapter_pages.get(r["chapter"], r["chapter"])
            anchor = f"claim-{r['id']}-{r['part']}"
            result = r.get("outcome", "holds" if r["passed"] else "FAILED")
            note = f'<br><small>{html.escape(r["note"])}</small>' if r.get("note") else ""
            rows.append(
                f'<tr class="af-{"pass" if r["passed"] else "fail"}">'
                f'<td><a href="{html.escape(pg)}.html#{html.escape(anchor)}">{html.escape(r["part"])}</a>'
                f'<br><small>{html.escape(r.get("kind", "?"))}, {html.escape(r["mode"])}</small></td>'
                f'<td>{html.escape(r["quantity"])}{note}</td>'
                f'<td>{_fmt(r["measured"])} {html.escape(r["relation"])} {_fmt(r["tolerance"])}</td>'
                f'<td>{html.escape(result)}</td></tr>')
        details.append(
            f'<details><summary>{html.escape(label)}: {len(recs)} check(s), {checks}</summary>\n'
            '<div class="af-claims-scroll"><table class="af-claims"><thead><tr><th>Check</th><th>Measured quantity</th>'
            '<th>Measured vs tolerance</th><th>Result</th></tr></thead><tbody>\n'
            + "\n".join(rows) + "\n</tbody></table></div></details>")
    verdict_defs = "\n".join(f"| {_badge(v)} | {html.escape(m)} |" for v, m in VERDICTS.items())
    kind_defs = "\n".join(f"| {k} | {html.escape(m)} |" for k, m in KINDS.items())
    tally = ", ".join(f"{n} {v}" for v, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    table = ("<table class=\"af-claims af-summary\">\n<thead><tr><th>Statement</th><th>In one line, and findings</th>"
             "<th>Verdict</th><th>Checks</th></tr></thead>\n<tbody>\n" + "\n".join(summary) + "\n</tbody></table>")
    return f"""# Claims

Every statement of the paper this book checks, generated at build time from the records
the chapters write when they run (`_static/claims.json` holds the same data). Each check
compares a measured quantity with a tolerance derived from the numerics, and a failing
check stops the build.

**{n_checked} of the paper's {len(known)} statements checked**, plus {len(beyond)} beyond the
paper, by {len(records)} checks ({n_failed} failed). Statement verdicts: {tally}.

Each statement has one **verdict**:

| verdict | meaning |
|---|---|
{verdict_defs}

Each check says what **kind** of claim it is, and is checked as that kind. A check that
confirms a counterexample reads *counterexample confirmed*: the measured instance
violates the statement as written, as the chapter says it does.

| kind | how it is checked |
|---|---|
{kind_defs}

## Summary

```{{raw}} html
<style>
table.af-claims {{ font-size: 0.85em; border-collapse: collapse; width: 100%; }}
table.af-claims td, table.af-claims th {{ border: 1px solid #ccc; padding: 0.3em 0.5em; vertical-align: top; }}
table.af-claims ul {{ margin: 0.3em 0 0 1em; padding: 0; }}
table.af-claims tr.af-none td {{ color: #777; }}
table.af-claims tr.af-fail td {{ background: #fdd; }}
span.af-badge {{ color: #fff; border-radius: 0.8em; padding: 0.1em 0.6em; white-space: nowrap; font-size: 0.9em; }}
div.af-claims-scroll {{ overflow-x: auto; }}
details {{ margin: 0.4em 0; }}
/* on a phone the summary keeps statement, findings and verdict; the check counts are in the details below */
@media (max-width: 600px) {{ table.af-summary td:nth-child(4), table.af-summary th:nth-child(4) {{ display: none; }} }}
</style>
<div class="af-claims-scroll">
{table}
</div>
```

## Every check

The link in each row opens the cell that made the check.

```{{raw}} html
{chr(10).join(details)}
```
"""


def result_box(records: list[dict], *, mode: str, parameters: dict) -> str:
    """The "Result" box a chapter opens with (MyST markdown), generated from the records
    its run wrote: the parameter set it ran at, and per statement the verdict, how its
    checks came out and the findings."""
    from .claims import verdicts_markdown

    if not records:
        return ""
    sizes = "publication parameters" if mode == "full" else "fast parameters"
    seed = parameters.get("seed")
    head = f"This run: {sizes}" + (f", seed {seed}" if seed is not None else "") + "."
    body = verdicts_markdown(records)
    failed = [r for r in records if not r["passed"]]
    if failed:
        head += f" **{len(failed)} check(s) failed.**"
    return f":::{{admonition}} Result\n:class: tip\n{head}\n\n{body}\n:::\n"


def results_at_a_glance(records: list[dict], *, chapter_pages: dict[str, str]) -> str:
    """The index page's summary (MyST markdown): statements by verdict, the ones that fail
    or are vacuous as written and the open questions answered, each with a finding."""
    from .claims import md_escape

    by_id: dict[str, list[dict]] = {}
    for r in records:
        by_id.setdefault(r["id"], []).append(r)
    labels = {sid: label for sid, label, *_ in (*STATEMENTS, *EXTRA_STATEMENTS)}
    counts: dict[str, int] = {}
    for recs in by_id.values():
        counts[recs[0]["verdict"]] = counts.get(recs[0]["verdict"], 0) + 1
    n_checks = len(records)
    n_ok = sum(r["passed"] for r in records)
    lines = [f"**{len(by_id)} statements, {n_checks} checks ({n_ok} hold or confirm their counterexample).** "
             "By verdict: " + ", ".join(f"{n} *{v}*" for v, n in sorted(counts.items(), key=lambda kv: -kv[1])) + "."]
    for verdict in ("fails as written", "vacuous as written", "open question answered"):
        for sid, recs in by_id.items():
            vac = [f for r in recs for f in r.get("findings", []) if "vacuous" in f.lower()]
            if recs[0]["verdict"] != verdict and not (verdict == "vacuous as written" and vac):
                continue
            cx = [r for r in recs if r.get("kind") == "counterexample"]
            if vac:
                finding = vac[0]
            elif cx:        # the fixed instance is the evidence: its measured numbers
                finding = "; ".join(f"{r['quantity']} = {r['measured']:.3g}" if isinstance(r["measured"], float)
                                    else r["quantity"] for r in sorted(cx, key=lambda r: r["part"], reverse=True))
            else:
                finding = ([f for r in recs for f in r.get("findings", [])] or [recs[0]["quantity"]])[0]
            page = chapter_pages.get(recs[0]["chapter"], recs[0]["chapter"])
            lines.append(f"- *{verdict}*: [{labels.get(sid, sid)}]({page}.ipynb): {md_escape(finding)}")
    return "\n".join(lines) + "\n"


def reproducibility_page(data: dict) -> str:
    """The Reproducibility page (MyST markdown) for a `manifest` dict."""
    pk = "\n".join(f"| {name} | {v or 'not installed'} |" for name, v in data["packages"].items())
    ch = "\n".join(
        f"| {c['chapter']} | {'ok' if c['ok'] else 'FAILED'} | {c['seconds']:.1f} | {c['mode']} | "
        f"{', '.join(f'{k}={v}' for k, v in c['parameters'].items()) or 'notebook defaults'} |"
        for c in data["chapters"]
    )
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
the notebook's defaults are listed.

| chapter | status | seconds | mode | parameters |
|---|---|---|---|---|
{ch}

## Rerun

`make book` rebuilds everything at the fast parameters; `make book-full` at the
publication parameters; `.venv/bin/python -m adaptedflow.book --only NAME` one chapter.
The environment is pinned in `requirements-lock.txt`.
"""
