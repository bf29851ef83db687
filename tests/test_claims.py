import json
import math

import pytest

from adaptedflow.book import claims


@pytest.fixture
def claims_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTEDFLOW_CLAIMS_DIR", str(tmp_path))
    monkeypatch.setenv("ADAPTEDFLOW_CHAPTER", "99_test")
    return tmp_path


def _check(measured, bound, **kw):
    kw.setdefault("kind", "bound")
    return claims.check("thm-2.1", measured, bound, statement="A statement.", quantity="q", **kw)


def test_passing_claim_is_recorded(claims_env):
    rec = _check(1e-9, 1e-7, params={"seed": 3}, equations=("2.6",))
    on_disk = json.loads((claims_env / "99_test" / "thm-2.1--main.json").read_text())
    assert on_disk == rec
    for key in ("id", "chapter", "statement", "measured", "tolerance", "passed", "kind", "outcome", "verdict",
                "findings", "mode"):
        assert key in rec
    assert rec["passed"] and rec["chapter"] == "99_test" and rec["params"] == {"seed": 3}


def test_failing_claim_raises_and_is_recorded(claims_env):
    with pytest.raises(claims.ClaimFailed, match=r"thm-2\.1.*99_test.*not <= 1e-07"):
        _check(1e-3, 1e-7)
    assert json.loads((claims_env / "99_test" / "thm-2.1--main.json").read_text())["passed"] is False


def test_nan_never_passes(claims_env):
    with pytest.raises(claims.ClaimFailed):
        _check(math.nan, 1.0)
    with pytest.raises(claims.ClaimFailed):
        _check(math.nan, 1.0, relation=">=")


def test_lower_bounds_and_counterexamples(claims_env):
    rec = _check(5.0, 1.0, relation=">=", kind="counterexample", part="counterexample")
    assert rec["passed"] and rec["outcome"] == "counterexample confirmed"
    assert rec["verdict"] == "reproduced"                    # the statement's verdict, from the registry
    with pytest.raises(claims.ClaimFailed):
        _check(0.5, 1.0, relation=">=")


def test_verdict_comes_from_the_registry(claims_env):
    from adaptedflow.book.statements import VERDICT

    rec = claims.check("sec-4.2", 1.0, 0.0, relation=">=", kind="counterexample", statement="s", quantity="q")
    assert rec["verdict"] == VERDICT["sec-4.2"] == "fails as written"
    with pytest.raises(TypeError):
        _check(0.0, 1.0, verdict="reproduced")               # a chapter never sets a verdict
    with pytest.raises(ValueError, match="no statement"):
        claims.check("thm-9.9", 0.0, 1.0, kind="bound", statement="s", quantity="q")


@pytest.mark.parametrize("kw", [dict(kind="true"), dict(relation="<"), dict(mode="slow"), dict(part="Main")])
def test_malformed_claims_are_refused(claims_env, kw):
    with pytest.raises(ValueError):
        _check(0.0, 1.0, **kw)


def test_clopper_pearson_matches_known_values():
    # k = 0: the upper bound solves (1 − p)^n = α/2 exactly
    low, high = claims.clopper_pearson(0, 20, 0.95)
    assert low == 0.0 and math.isclose(high, 1 - 0.025 ** (1 / 20), rel_tol=1e-12)
    low, high = claims.clopper_pearson(20, 20, 0.95)
    assert high == 1.0 and math.isclose(low, 0.025 ** (1 / 20), rel_tol=1e-12)
    # one-sided: α is not halved
    assert math.isclose(claims.clopper_pearson(0, 20, 0.95, side="upper")[1], 1 - 0.05 ** (1 / 20), rel_tol=1e-12)
    low, high = claims.clopper_pearson(6, 10, 0.95)              # textbook value 0.2624–0.8784
    assert abs(low - 0.2624) < 1e-4 and abs(high - 0.8784) < 1e-4
    with pytest.raises(ValueError):
        claims.clopper_pearson(3, 2)


def test_frequency_checks_the_one_sided_bound(claims_env):
    rec = claims.check_frequency("thm-2.1", 0, 200, at_most=0.05, statement="s", quantity="draws lost")
    assert rec["kind"] == "frequency" and rec["passed"] and rec["data"]["k"] == 0 and rec["data"]["n"] == 200
    assert math.isclose(rec["measured"], 1 - 0.001 ** (1 / 200), rel_tol=1e-12)
    with pytest.raises(claims.ClaimFailed):                      # 0/20 cannot support p ≤ 0.05 at level 0.999
        claims.check_frequency("thm-2.1", 0, 20, at_most=0.05, statement="s", quantity="q", part="small")
    rec = claims.check_frequency("thm-2.1", 9, 10, at_least=0.3, statement="s", quantity="q", part="lower")
    assert rec["relation"] == ">=" and rec["passed"]
    with pytest.raises(ValueError):
        claims.check_frequency("thm-2.1", 1, 10, statement="s", quantity="q")


@pytest.mark.parametrize("measured, tol, relation, expected", [
    (1e-9, 1e-7, "<=", 1e-2), (5.0, 1.0, ">=", 0.2), (0.0, 0.0, "<=", 1.0), (-1.0, 0.0, "<=", 0.0),
    (1.0, 0.0, ">=", 0.0), (0.0, 0.0, ">=", 1.0), (2e-7, 1e-7, "<=", 2.0), (0.5, 1.0, ">=", 2.0),
    (-1.0, 0.0, ">=", math.inf)])
def test_margin(measured, tol, relation, expected):
    m = claims.margin({"measured": measured, "tolerance": tol, "relation": relation})
    assert m == pytest.approx(expected)


def test_collect_and_clear(claims_env):
    _check(0.0, 1.0)
    _check(0.0, 1.0, part="second")
    recs = claims.collect(claims_env)
    assert [(r["id"], r["part"]) for r in recs] == [("thm-2.1", "main"), ("thm-2.1", "second")]
    claims.clear_chapter("99_test", claims_env)
    assert claims.collect(claims_env) == []


def test_checker_fills_in_chapter_and_mode(claims_env):
    check = claims.checker("42_other", mode="full", params={"n": 1})
    rec = check("lem-3.2", 0.0, 1.0, statement="s", quantity="q", kind="bound")
    assert rec["chapter"] == "42_other" and rec["mode"] == "full" and rec["params"] == {"n": 1}


def test_checker_frequency_fills_in_chapter(claims_env):
    check = claims.checker("42_other", mode="full")
    rec = check.frequency("lem-3.2", 3, 100, at_most=0.5, statement="s", quantity="q")
    assert rec["chapter"] == "42_other" and rec["kind"] == "frequency"


def test_verdicts_markdown_follows_the_records(claims_env):
    claims.check("sec-4.2", 1.79, 0.0, relation=">=", kind="counterexample", statement="s", quantity="q",
             findings=("§4.2's rule lowers the cost at 10/42 random equilibria",))
    claims.check("thm-2.1", 1e-9, 1e-7, kind="identity", statement="s", quantity="q")
    text = claims.show_verdicts("99_test", claims_env)
    assert text.index("Theorem 2.1: reproduced") < text.index("§4.2: fails as written")
    assert "counterexample: counterexample confirmed" in text and "- §4.2's rule lowers" in text


def test_statement_verdicts_are_pinned():
    """The verdicts a mathematician reads on the Claims page; a change needs evidence."""
    from adaptedflow.book.statements import VERDICT, statement_ids

    assert set(VERDICT) == set(statement_ids())
    assert set(VERDICT.values()) <= set(claims.VERDICTS)
    pinned = {"sec-4.2": "fails as written", "thm-4.2": "reproduced", "thm-5.1": "reproduced", "sec-6": "reproduced",
              "prop-2.2": "reproduced", "prop-3.1": "reproduced", "sec-2.4-integrability": "open question answered",
              "thm-2.1": "reproduced", "thm-2.3": "reproduced", "discrete-rate": "beyond the paper"}
    assert {k: VERDICT[k] for k in pinned} == pinned
