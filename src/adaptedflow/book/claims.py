r"""The claims API: every statement of the paper a chapter checks becomes a record.

A chapter calls `check(claim_id, measured, bound, kind=..., ...)` for each measured
fact, or `check_frequency(claim_id, k, n, ...)` for a count.  The record (the statement in
one line, the kind of claim, the measured value, the tolerance, pass/fail, the verdict on
the statement, its findings, the run's mode and parameters) is written as JSON under the
claims folder, and a check raises `ClaimFailed` when the measurement breaks the
tolerance, so a papermill run of the chapter fails loudly.

Every record says what *kind* of claim it is, and is checked as that kind (`KINDS`):

* ``identity`` / ``bound``: holds on every instance, within a tolerance derived from the
  numerics (integrator error, a backward-error bound with its dimension factor);
* ``counterexample``: one fixed, constructed instance (in `adaptedflow`, independent of
  the chapter's seed) whose numbers violate the statement as written; a passing check is
  shown as *counterexample confirmed*;
* ``frequency``: k of n random draws, reported with a Clopper–Pearson interval; what is
  asserted is a bound on the probability that the one-sided interval supports;
* ``convergence``: an orbit integrated until a stated stopping test holds.

Three things are recorded separately:

* `passed`: whether the *measured fact* holds within the tolerance;
* `verdict`: the verdict on the paper's *statement*, one per statement, from the
  registry `adaptedflow.book.statements.VERDICT` (`VERDICTS` defines the vocabulary);
* `findings`: sentences, each with its number, that qualify the verdict (a hypothesis
  often violated in practice, a loose bound, a setting where the statement is vacuous).

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

#: The statement verdicts, and what each means (shown on the Claims page).
VERDICTS: dict[str, str] = {
    "reproduced": "wherever its hypotheses were measured to hold, the conclusion held",
    "fails as written": "a fixed instance satisfying every stated hypothesis (measured) violates the conclusion",
    "vacuous as written": "in a named setting of the paper the hypotheses cannot hold",
    "open question answered": "the paper asks; the book answers, with the evidence",
    "beyond the paper": "a question the paper does not ask",
}
#: The kinds of claim, and how each is checked.
KINDS: dict[str, str] = {
    "identity": "an equation that holds on every instance, to a tolerance from an error analysis",
    "bound": "an inequality that holds on every instance, to a tolerance from an error analysis",
    "counterexample": ("one fixed, constructed instance, the same for every seed, that violates the statement "
                       "as written"),
    "frequency": "k of n random draws, with a Clopper–Pearson interval; a bound on the probability is asserted",
    "convergence": "an orbit integrated until a stated stopping test holds",
}
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


class Record(dict):
    """A claim record: a plain dict of the fields `check` writes, shown in a notebook as its
    one-line verdict rather than as a raw dict."""

    line: str = ""

    def __repr__(self) -> str:
        return self.line or dict.__repr__(self)

    def _repr_pretty_(self, p, cycle) -> None:
        p.text(repr(self))


#: Glue keys of quoted record values: ``<id>.<part>.<field>``.
_QUOTE_KEY = "{id}.{part}.{field}"


def quote_key(record: dict, field: str) -> str:
    """The glue key under which `quote` stores `field` of `record`."""
    return _QUOTE_KEY.format(id=record["id"], part=record["part"], field=field)


def quoted_value(record: dict, field: str):
    """`field` of `record`: ``"measured"`` or ``"tolerance"``, else a key of its ``data``."""
    if field in ("measured", "tolerance"):
        return record[field]
    data = record.get("data", {})
    if field not in data:
        raise KeyError(f"record {record['id']} ({record['part']}) has no field {field!r}; "
                       f"its data has {sorted(data)}.")
    return data[field]


def quote(record: dict, *fields: str) -> None:
    """Make numbers of a record quotable in the chapter's text.

    Each field (``"measured"``, ``"tolerance"`` or a key of the record's ``data``) is glued
    under ``<id>.<part>.<field>`` (`quote_key`); the text writes ``{glue:text}`thm-2.1.rate.n_orbits` ``
    (with a format, ``{glue:text}`thm-2.1.rate.measured:.1e` ``). A sentence that quotes a
    count therefore quotes the record, and the book's tests compare every glued value with
    the record in ``claims.json``.
    """
    try:
        from IPython import get_ipython
    except ImportError:
        get_ipython = None
    values = {quote_key(record, f): quoted_value(record, f) for f in fields}
    if get_ipython is None or get_ipython() is None:
        return
    from myst_nb import glue

    for key, value in values.items():
        glue(key, value, display=False)


def check(claim_id: str, measured: float, bound: float, *, statement: str, quantity: str, kind: str,
          chapter: str | None = None, mode: str = "fast", params: dict | None = None,
          relation: str = "<=", part: str = "main", equations: tuple[str, ...] = (), note: str = "",
          findings: tuple[str, ...] | list[str] = (), data: dict | None = None) -> dict:
    r"""Record one measured claim and raise `ClaimFailed` if it does not hold.

    Args:
        claim_id: stable id of the paper's statement, e.g. ``"thm-2.1"``.
        measured: the measured value (a float; NaN fails).
        bound: the tolerance: the claim holds iff ``measured <= bound`` (or ``>=`` with
            `relation=">="`).
        statement: the paper's statement in one line.
        quantity: what `measured` is, in words and symbols.
        kind: one of `KINDS`: how the claim is checked.
        chapter: the chapter's name (default ``$ADAPTEDFLOW_CHAPTER``).
        mode: ``"fast"`` or ``"full"`` (the run's parameter set).
        params: the chapter's parameters (seed, sizes, tolerances).
        relation: ``"<="`` or ``">="``.
        part: which check of the statement this is, when one statement has several
            (e.g. ``"rate"`` and ``"outputs"``); (`claim_id`, `part`) is unique.
        equations: the paper's equation numbers involved, e.g. ``("2.6", "2.7")``.
        note: one more sentence for the reader (how the tolerance was derived, a caveat).
        findings: sentences, each with its number, that qualify the statement's verdict.
        data: further numbers worth keeping with the record (JSON-able).

    Returns:
        The record (a `Record`: a dict that displays as its one-line verdict, never as a
        raw dict), also written to `claims_dir()`.

    Raises:
        ClaimFailed: the measurement breaks the bound (the record is still written).
        ValueError: malformed id, part, relation, kind or mode, or an id with no statement
            in the registry (`adaptedflow.book.statements`).
    """
    if not _ID.match(claim_id):
        raise ValueError(f"`claim_id` must look like 'thm-2.1' (lower case, digits, '.', '-'); got {claim_id!r}.")
    if not _ID.match(part):
        raise ValueError(f"`part` must be lower case letters, digits, '.', '-'; got {part!r}.")
    if relation not in RELATIONS:
        raise ValueError(f"`relation` must be one of {RELATIONS}; got {relation!r}.")
    if kind not in KINDS:
        raise ValueError(f"`kind` must be one of {tuple(KINDS)}; got {kind!r}.")
    verdict = statement_verdict(claim_id)
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
        "kind": kind,
        "outcome": outcome(kind, passed),
        "verdict": verdict,
        "findings": [str(f) for f in findings],
        "note": note,
        "data": _jsonable(data or {}),
        "mode": mode,
        "params": _jsonable(params or {}),
    }
    out = claims_dir() / chapter
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{claim_id}--{part}.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    status = "PASS" if passed else "FAIL"
    line = (f"[{status}] {claim_id} ({part}, {kind}): {detex(quantity)} = {measured_f:.3e} {relation} {bound_f:.1e}"
            f"  [{record['outcome']}; statement: {verdict}]")
    _show(record, line)
    record = Record(record)
    record.line = line
    if not passed:
        raise ClaimFailed(
            f"claim {claim_id!r} ({part}) failed in chapter {chapter!r}: {quantity} = {measured_f!r} is not "
            f"{relation} {bound_f!r}. Statement: {statement}"
        )
    return record


def statement_verdict(claim_id: str) -> str:
    """The verdict on the statement `claim_id` from the registry; a clear error if the id
    is not registered (a chapter never invents a verdict)."""
    from .statements import VERDICT

    if claim_id not in VERDICT:
        raise ValueError(f"claim id {claim_id!r} has no statement in adaptedflow.book.statements; register it there "
                         f"(with its verdict) before checking it.")
    return VERDICT[claim_id]


def outcome(kind: str, passed: bool) -> str:
    """How a record reads: a confirmed counterexample is never a bare "holds"."""
    if not passed:
        return "FAILED"
    return "counterexample confirmed" if kind == "counterexample" else "holds"


def clopper_pearson(k: int, n: int, level: float = 0.95, *, side: str = "two-sided") -> tuple[float, float]:
    r"""Exact (Clopper–Pearson) confidence interval for a binomial probability from k of n.

    Args:
        k, n: successes and trials, 0 ≤ k ≤ n, n ≥ 1.
        level: confidence level in (0, 1).
        side: ``"two-sided"``, ``"upper"`` (returns (0, upper bound)) or ``"lower"``
            (returns (lower bound, 1)).

    Returns:
        (low, high) with P(low ≤ p ≤ high) ≥ `level` for every p.
    """
    from scipy.stats import beta

    k, n = int(k), int(n)
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"need 0 ≤ k ≤ n and n ≥ 1; got k = {k}, n = {n}.")
    if not 0.0 < level < 1.0:
        raise ValueError(f"`level` must lie in (0, 1); got {level!r}.")
    if side not in ("two-sided", "upper", "lower"):
        raise ValueError(f"`side` must be 'two-sided', 'upper' or 'lower'; got {side!r}.")
    alpha = (1.0 - level) / (2.0 if side == "two-sided" else 1.0)
    low = 0.0 if k == 0 or side == "upper" else float(beta.ppf(alpha, k, n - k + 1))
    high = 1.0 if k == n or side == "lower" else float(beta.ppf(1.0 - alpha, k + 1, n - k))
    return low, high


def describe_frequency(k: int, n: int, level: float = 0.95) -> str:
    """"k/n (95 % CI a–b)": a frequency as the book writes it."""
    low, high = clopper_pearson(k, n, level)
    return f"{int(k)}/{int(n)} ({100 * level:g} % CI {low:.2f}–{high:.2f})"


def check_frequency(claim_id: str, k: int, n: int, *, at_most: float | None = None,
                    at_least: float | None = None, level: float = 0.999, statement: str, quantity: str,
                    **kw) -> dict:
    r"""Record a frequency k/n and check a bound on the probability p it estimates.

    With `at_most` = b the check is that the one-sided Clopper–Pearson upper bound on p at
    `level` is ≤ b ("p ≤ b is supported at that level"); with `at_least` = b that the lower
    bound is ≥ b.  Exactly one of the two is given.  The record keeps k, n, the two-sided
    95 % interval and the one-sided bound (`data`); its kind is ``"frequency"``.

    Other keyword arguments go to `check` (part, equations, note, findings, ...).
    """
    if (at_most is None) == (at_least is None):
        raise ValueError("give exactly one of `at_most` and `at_least`.")
    side = "upper" if at_most is not None else "lower"
    low, high = clopper_pearson(k, n, level, side=side)
    ci_low, ci_high = clopper_pearson(k, n, 0.95)
    data = dict(kw.pop("data", None) or {}, k=int(k), n=int(n), ci95=[ci_low, ci_high], level=level,
                one_sided_bound=high if side == "upper" else low)
    measured, bound, relation = (high, at_most, "<=") if side == "upper" else (low, at_least, ">=")
    return check(claim_id, measured, bound, statement=statement, kind="frequency", relation=relation,
                 quantity=f"{quantity}: {int(k)}/{int(n)}; one-sided {100 * level:g} % Clopper–Pearson "
                          f"{'upper' if side == 'upper' else 'lower'} bound on the probability",
                 data=data, **kw)


def margin(record: dict) -> float:
    r"""How much of its tolerance a record used: measured/tolerance for ``<=``,
    tolerance/measured for ``>=`` (so > 1 means failed, 1 means exactly on the bound).

    A zero tolerance gives 0 when the claim holds strictly, 1 on the bound and ∞ beyond.
    """
    m, t = record["measured"], record["tolerance"]
    if not isinstance(m, (int, float)) or not math.isfinite(m):
        return math.inf
    if record["relation"] == ">=":
        m, t = -m, -t                                   # measured ≥ t  ⇔  −measured ≤ −t
        if t < 0 and m < 0:
            return t / m if m != 0 else math.inf        # tolerance/measured, both positive
    if t > 0:
        return max(m, 0.0) / t if m >= 0 else 0.0
    if t == 0:
        return 0.0 if m < 0 else (1.0 if m == 0 else math.inf)
    # negative tolerance on "<=": measured ≤ t < 0
    return t / m if m < 0 else math.inf


def checker(chapter: str, *, mode: str = "fast", params: dict | None = None):
    """`check` with the chapter, mode and parameters filled in, for use inside a chapter;
    its attribute `.frequency` is `check_frequency` with the same filled in."""
    bound = functools.partial(check, chapter=chapter, mode=mode, params=params)
    bound.frequency = functools.partial(check_frequency, chapter=chapter, mode=mode, params=params)
    return bound


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


_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]<>|$#])")


#: A TeX-like superscript or subscript, ``^{…}`` or ``_{…}`` (group 1: the sign, group 2: the body).
TEX_SCRIPT = re.compile(r"([\^_])\{([^{}]*)\}")


def detex(text: str) -> str:
    """``e^{−2s/N}`` → ``e^(−2s/N)``, ``x_{k+1}`` → ``x_(k+1)``: what a page shows as text never
    contains TeX braces (the records keep their text as written)."""
    return TEX_SCRIPT.sub(r"\1(\2)", text)


def md_escape(text: str) -> str:
    """Backslash-escape Markdown's (and MyST's math) special characters, so a finding
    such as "s_*(ε)" or "|P_r∇C|" renders as written."""
    return _MD_SPECIAL.sub(r"\\\1", text)


def verdicts_markdown(records: list[dict]) -> str:
    """The statements behind `records`, one paragraph each: the statement's label, its
    verdict, how its checks came out (by kind) and its findings.  Chapters show this as
    their verdict, so their text always agrees with what they measured."""
    from .statements import EXTRA_STATEMENTS, STATEMENTS

    labels = {sid: label for sid, label, *_ in (*STATEMENTS, *EXTRA_STATEMENTS)}
    order = {sid: i for i, (sid, *_) in enumerate((*STATEMENTS, *EXTRA_STATEMENTS))}
    by_id: dict[str, list[dict]] = {}
    for r in records:
        by_id.setdefault(r["id"], []).append(r)
    out = []
    for sid in sorted(by_id, key=lambda s: order.get(s, len(order))):
        recs = by_id[sid]
        counts: dict[str, int] = {}
        for r in recs:
            key = f"{r['kind']}: {r['outcome']}"
            counts[key] = counts.get(key, 0) + 1
        checks = "; ".join(f"{n} {k}" for k, n in counts.items())
        findings = [f for r in recs for f in r.get("findings", [])]
        text = f"**{labels.get(sid, sid)}: {recs[0]['verdict']}.** Checks: {checks}."
        if findings:
            text += "\n" + "\n".join(f"- {md_escape(detex(f))}" for f in findings)
        out.append(text)
    return "\n\n".join(out)


def show_verdicts(chapter: str | None = None, directory: Path | None = None) -> str:
    """Display (in IPython) and return `verdicts_markdown` of the records a chapter wrote
    in this run (default: ``$ADAPTEDFLOW_CHAPTER``)."""
    chapter = chapter or os.environ.get("ADAPTEDFLOW_CHAPTER", "interactive")
    records = [r for r in collect(directory) if r["chapter"] == chapter]
    text = verdicts_markdown(records)
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display
    except ImportError:
        get_ipython = None
    if get_ipython is not None and get_ipython() is not None:
        display(Markdown(text))
    else:
        print(text)
    return text
