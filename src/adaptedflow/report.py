r"""Pages the build generates from what it measured: Claims and Reproducibility.

Nothing here is hand-written: the Claims page is made from the chapters' claim records
(`adaptedflow.claims`) and the statement registry (`adaptedflow.statements`); the
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


def claims_page(records: list[dict], *, chapter_pages: dict[str, str]) -> str:
    """The Claims page (MyST markdown with one raw-HTML table), one row per statement.

    Args:
        records: the claim records of every chapter (from `claims.collect`).
        chapter_pages: chapter name → page path relative to the Claims page (no suffix).
    """
    by_id: dict[str, list[dict]] = {}
    for r in records:
        by_id.setdefault(r["id"], []).append(r)
    known = [s[0] for s in STATEMENTS]
    beyond = [s for s in EXTRA_STATEMENTS if s[0] in by_id]
    extra = sorted(set(by_id) - set(known) - {s[0] for s in beyond})
    n_checked = sum(1 for s in known if s in by_id)
    n_failed = sum(1 for r in records if not r["passed"])
    n_hyp = sum(1 for s in known if any(r["verdict"] != "reproduced" for r in by_id.get(s, [])))
    rows = []
    for sid, label, section, statement in [*STATEMENTS, *beyond, *[(e, e, "", "") for e in extra]]:
        recs = by_id.get(sid, [])
        if not recs:
            rows.append(f'<tr class="af-none"><td>{html.escape(label)}<br><small>{html.escape(section)}</small></td>'
                        f'<td>{html.escape(statement)}</td><td colspan="5"><em>not yet reproduced</em></td></tr>')
            continue
        verdicts = sorted({r["verdict"] for r in recs})
        verdict = "needs an added hypothesis" if "needs an added hypothesis" in verdicts else "reproduced"
        for i, r in enumerate(recs):
            page = chapter_pages.get(r["chapter"], r["chapter"])
            anchor = f"claim-{r['id']}-{r['part']}"
            ok = "pass" if r["passed"] else "FAIL"
            lead = ""
            if i == 0:
                span = f' rowspan="{len(recs)}"'
                lead = (f'<td{span}>{html.escape(label)}<br><small>{html.escape(section)}</small></td>'
                        f'<td{span}>{html.escape(statement or r["statement"])}'
                        f'<br><strong>verdict: {html.escape(verdict)}</strong></td>')
            note = f'<br><small>{html.escape(r["note"])}</small>' if r.get("note") else ""
            rows.append(
                f'<tr class="af-{ok.lower()}">{lead}'
                f'<td><a href="{html.escape(page)}.html#{html.escape(anchor)}">{html.escape(r["chapter"])}</a>'
                f'<br><small>{html.escape(r["part"])}</small></td>'
                f'<td>{html.escape(r["quantity"])}{note}</td>'
                f'<td>{_fmt(r["measured"])} {html.escape(r["relation"])} {_fmt(r["tolerance"])}</td>'
                f'<td>{ok}</td><td>{html.escape(r["mode"])}</td></tr>'
            )
    table = ("<table class=\"af-claims\">\n<thead><tr><th>Statement</th><th>In one line</th><th>Chapter / check</th>"
             "<th>Measured quantity</th><th>Measured vs tolerance</th><th>Result</th><th>Mode</th></tr></thead>\n<tbody>\n"
             + "\n".join(rows) + "\n</tbody></table>")
    return f"""# Claims

Every statement of the paper this book checks, generated at build time from the records
the chapters write when they run (`_static/claims.json` holds the same data). Each check
compares a measured quantity with a tolerance derived from the numerics; a failing check
stops the build. The verdict says what the measurement means for the paper's statement:
*reproduced*, or *needs an added hypothesis* where the statement fails as written and the
chapter measures the counterexample.

**{n_checked} of the paper's {len(known)} statements checked**, plus {len(beyond)} beyond the
paper (discrete time, implementation), by {len(records)} checks
({n_failed} failed); {n_hyp} statement(s) need an added hypothesis; statements no chapter
has checked yet are listed as *not yet reproduced*. The link in each row opens the cell
that made the check.

```{{raw}} html
<style>
table.af-claims {{ font-size: 0.85em; border-collapse: collapse; }}
table.af-claims td, table.af-claims th {{ border: 1px solid #ccc; padding: 0.3em 0.5em; vertical-align: top; }}
table.af-claims tr.af-none td {{ color: #777; }}
table.af-claims tr.af-fail td {{ background: #fdd; }}
/* seven columns: this page alone takes the full window width, and scrolls sideways if narrower */
.bd-page-width {{ max-width: 100% !important; }}
.bd-article-container {{ max-width: 100% !important; }}
div.af-claims-scroll {{ overflow-x: auto; }}
</style>
<div class="af-claims-scroll">
{table}
</div>
```
"""


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
