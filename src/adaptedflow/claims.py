r"""The claims API: every statement of the paper a chapter checks becomes a record.

A chapter calls `check(claim_id, measured, bound, ...)` for each measured statement.
The record (the statement in one line, the measured value, the tolerance, pass/fail,
the verdict on the statement, the run's mode and parameters) is written as JSON under
the claims folder, and `check` raises `ClaimFailed` when the measurement breaks the
tolerance, so a papermill run of the chapter fails loudly.

Two things are recorded separately:

* `passed`: whether the *measured fact* holds within the tolerance;
* `verdict`: what that fact says about the paper's statement — ``"reproduced"``, or
  ``"needs an added hypothesis"`` when the chapter measures a counterexample to the
  statement as written (the counterexample's numbers are then the checked fact).

The build (`python -m adaptedflow.book`) sets ``ADAPTEDFLOW_CLAIMS_DIR`` and
``ADAPTEDFLOW_CHAPTER``; a notebook run by hand writes to `_build/claims-interactive/`
of the project it lives in, apart from the build's records.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

VERDICTS = ("reproduced", "needs an added hypothesis")
RELATIONS = ("<=", ">=")
_ID = re.compile(r"^[a-z][a-z0-9.\-]*$")


class ClaimFailed(AssertionError):
    """A measured quantity broke the tolerance of its claim."""


def project_root(start: Path | None = None) -> Path:
    """The folder holding this project's `_toc.yml`, searched upwards from `start` (cwd)."""
    here = (start or Path.cwd()).resolve()
    for p in (here, *here.parents):
        if (p / "_toc.yml").exists() and (p / "src" / "adaptedflow").is_dir():
            return p
    return here


def claims_dir() -> Path:
    """Where records go: ``$ADAPTEDFLOW_CLAIMS_DIR`` (set by the build), else
    `<project>/_build/claims-interactive`, so a chapter run by hand in Jupyter never
    mixes its records with the build's."""
    env = os.environ.get("ADAPTEDFLOW_CLAIMS_DIR")
    return Path(env) if env else project_root() / "_build" / "claims-interactive"


def _show(record: dict, line: str) -> None:
    """Print the verdict line; inside IPython also display it with an HTML anchor that
    the Claims page links to (``#claim-<id>-<part>``)."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        get_ipython = None
    if get_ipython is None or get_ipython() is None:
        print(line)
        return
    import html as _html

    colour = "#1a7f37" if record["passed"] else "#cf222e"
    badge = (f'<div id="claim-{record["id"]}-{record["part"]}" class="af-claim" '
             f'style="border-left:4px solid {colour};padding:2px 8px;font-family:monospace;font-size:0.9em">'
             f'{_html.escape(line)}</div>')
    display({"text/html": badge, "text/plain": line}, raw=True)


def _jsonable(v: Any) -> Any:
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if hasattr(v, "shape") and getattr(v, "shape", None) == ():
        v = v.item()
    if isinstance(v, np.ndarray) or hasattr(v, "__array__"):
        return _jsonable(np.asarray(v).tolist())
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else str(f)
    if isinstance(v, (str, int, bool)) or v is None:
        return v
    return repr(v)


def check(claim_id: str, measured: float, bound: float, *, statement: str, quantity: str,
          chapter: str | None = None, mode: str = "fast", params: dict | None = None,
          relation: str = "<=", verdict: str = "reproduced", part: str = "main",
          equations: tuple[str, ...] = (), note: str = "") -> dict:
    r"""Record one measured claim and raise `ClaimFailed` if it does not hold.

    Args:
        claim_id: stable id of the paper's statement, e.g. ``"thm-2.1"``.
        measured: the measured value (a float; NaN fails).
        bound: the tolerance: the claim holds iff ``measured <= bound`` (or ``>=`` with
            `relation=">="`).
        statement: the paper's statement in one line.
        quantity: what `measured` is, in words and symbols.
        chapter: the chapter's name (default ``$ADAPTEDFLOW_CHAPTER``).
        mode: ``"fast"`` or ``"full"`` (the run's parameter set).
        params: the chapter's parameters (seed, sizes, tolerances).
        relation: ``"<="`` or ``">="``.
        verdict: one of `VERDICTS`: what the measured fact says about the statement.
        part: which check of the statement this is, when one statement has several
            (e.g. ``"rate"`` and ``"outputs"``); (`claim_id`, `part`) is unique.
        equations: the paper's equation numbers involved, e.g. ``("2.6", "2.7")``.
        note: one more sentence for the reader (a missing hypothesis, a caveat).

    Returns:
        The record (a dict), also written to `claims_dir()`.

    Raises:
        ClaimFailed: the measurement breaks the bound (the record is still written).
        ValueError: malformed id, relation, verdict or mode.
    """
    if not _ID.match(claim_id):
        raise ValueError(f"`claim_id` must look like 'thm-2.1' (lower case, digits, '.', '-'); got {claim_id!r}.")
    if not _ID.match(part):
        raise ValueError(f"`part` must be lower case letters, digits, '.', '-'; got {part!r}.")
    if relation not in RELATIONS:
        raise ValueError(f"`relation` must be one of {RELATIONS}; got {relation!r}.")
    if verdict not in VERDICTS:
        raise ValueError(f"`verdict` must be one of {VERDICTS}; got {verdict!r}.")
    if mode not in ("fast", "full"):
        raise ValueError(f"`mode` must be 'fast' or 'full'; got {mode!r}.")
    chapter = chapter or os.environ.get("ADAPTEDFLOW_CHAPTER", "interactive")
    measured_f, bound_f = float(measured), float(bound)
    if not math.isfinite(bound_f):
        raise ValueError(f"`bound` must be finite; got {bound!r}.")
    holds = measured_f <= bound_f if relation == "<=" else measured_f >= bound_f
    passed = bool(math.isfinite(measured_f) and holds)
    record = {
        "id": claim_id,
        "part": part,
        "chapter": chapter,
        "statement": statement,
        "quantity": quantity,
        "equations": list(equations),
        "measured": _jsonable(measured_f),
        "relation": relation,
        "tolerance": bound_f,
        "passed": passed,
        "verdict": verdict,
        "note": note,
        "mode": mode,
        "params": _jsonable(params or {}),
    }
    out = claims_dir() / chapter
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{claim_id}--{part}.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    status = "PASS" if passed else "FAIL"
    _show(record, f"[{status}] {claim_id} ({part}): {quantity} = {measured_f:.3e} {relation} {bound_f:.1e}  [{verdict}]")
    if not passed:
        raise ClaimFailed(
            f"claim {claim_id!r} ({part}) failed in chapter {chapter!r}: {quantity} = {measured_f!r} is not "
            f"{relation} {bound_f!r}. Statement: {statement}"
        )
    return record


def checker(chapter: str, *, mode: str = "fast", params: dict | None = None):
    """`check` with the chapter, mode and parameters filled in, for use inside a chapter."""
    return functools.partial(check, chapter=chapter, mode=mode, params=params)


def collect(directory: Path | None = None) -> list[dict]:
    """Every record under `directory` (default `claims_dir()`), sorted by chapter, id, part."""
    directory = Path(directory) if directory else claims_dir()
    records = [json.loads(p.read_text()) for p in sorted(directory.glob("*/*.json"))]
    return sorted(records, key=lambda r: (r["chapter"], r["id"], r["part"]))


def clear_chapter(chapter: str, directory: Path | None = None) -> None:
    """Delete a chapter's records before it runs again (stale records never survive)."""
    d = (Path(directory) if directory else claims_dir()) / chapter
    if d.is_dir():
        for p in d.glob("*.json"):
            p.unlink()
