import json
import math

import pytest

import adaptedflow as af
from adaptedflow import claims


@pytest.fixture
def claims_env(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTEDFLOW_CLAIMS_DIR", str(tmp_path))
    monkeypatch.setenv("ADAPTEDFLOW_CHAPTER", "99_test")
    return tmp_path


def _check(measured, bound, **kw):
    return af.check("thm-9.9", measured, bound, statement="A statement.", quantity="q", **kw)


def test_passing_claim_is_recorded(claims_env):
    rec = _check(1e-9, 1e-7, params={"seed": 3}, equations=("2.6",))
    on_disk = json.loads((claims_env / "99_test" / "thm-9.9--main.json").read_text())
    assert on_disk == rec
    for key in ("id", "chapter", "statement", "measured", "tolerance", "passed", "verdict", "mode"):
        assert key in rec
    assert rec["passed"] and rec["chapter"] == "99_test" and rec["params"] == {"seed": 3}


def test_failing_claim_raises_and_is_recorded(claims_env):
    with pytest.raises(af.ClaimFailed, match=r"thm-9\.9.*99_test.*not <= 1e-07"):
        _check(1e-3, 1e-7)
    assert json.loads((claims_env / "99_test" / "thm-9.9--main.json").read_text())["passed"] is False


def test_nan_never_passes(claims_env):
    with pytest.raises(af.ClaimFailed):
        _check(math.nan, 1.0)
    with pytest.raises(af.ClaimFailed):
        _check(math.nan, 1.0, relation=">=")


def test_lower_bounds_and_verdicts(claims_env):
    rec = _check(5.0, 1.0, relation=">=", verdict="needs an added hypothesis", part="counterexample")
    assert rec["passed"] and rec["verdict"] == "needs an added hypothesis"
    with pytest.raises(af.ClaimFailed):
        _check(0.5, 1.0, relation=">=")


@pytest.mark.parametrize("kw", [dict(verdict="true"), dict(relation="<"), dict(mode="slow"), dict(part="Main")])
def test_malformed_claims_are_refused(claims_env, kw):
    with pytest.raises(ValueError):
        _check(0.0, 1.0, **kw)


def test_collect_and_clear(claims_env):
    _check(0.0, 1.0)
    _check(0.0, 1.0, part="second")
    recs = claims.collect(claims_env)
    assert [(r["id"], r["part"]) for r in recs] == [("thm-9.9", "main"), ("thm-9.9", "second")]
    claims.clear_chapter("99_test", claims_env)
    assert claims.collect(claims_env) == []


def test_checker_fills_in_chapter_and_mode(claims_env):
    check = af.checker("42_other", mode="full", params={"n": 1})
    rec = check("lem-3.2", 0.0, 1.0, statement="s", quantity="q")
    assert rec["chapter"] == "42_other" and rec["mode"] == "full" and rec["params"] == {"n": 1}
