"""The small API chapters call for presentation: tables, flow colours, named figures,
claim records that display as their verdict, and quoted record numbers."""

import math

import numpy as np
import pytest

from adaptedflow.book import claims, plots, tables


def test_table_formats_columns_and_renders_html_and_text():
    t = tables.table([[1, 2.5e-7, "a<b"], [3, np.float64("nan"), "c"]], ["i", "err [rel]", "s"],
                     formats=["d", ".2e", None], caption="Errors")
    assert t.cells == (("1", "2.50e-07", "a<b"), ("3", "–", "c"))
    html = t._repr_html_()
    assert '<table class="af-table">' in html and "<caption>Errors</caption>" in html
    assert "a&lt;b" in html and "a<b" not in html          # cells are escaped
    text = str(t).splitlines()
    assert text[0] == "Errors" and len({len(line) for line in text[1:]}) == 1   # aligned columns


def test_table_default_format_and_numpy_scalars():
    t = tables.table([[np.float64(1 / 3), np.int64(7), None]], ["x", "n", "missing"])
    assert t.cells == (("0.333", "7", ""),)


@pytest.mark.parametrize("rows, formats", [([[1, 2, 3]], None), ([[1, 2]], ["d"])])
def test_table_refuses_ragged_rows_and_formats(rows, formats):
    with pytest.raises(ValueError, match="columns"):
        tables.table(rows, ["a", "b"], formats=formats)


def test_one_colour_per_flow_and_a_clear_error_otherwise():
    assert plots.flow_color("adapted") == plots.FLOW_COLORS["adapted-descent"]
    assert plots.flow_color("standard") == plots.flow_color("gradient-descent")
    assert plots.flow_color("adapted") != plots.flow_color("standard")
    with pytest.raises(KeyError, match="known flows"):
        plots.flow_color("sgd")


def test_show_refuses_a_bad_figure_name_and_closes_the_figure():
    import matplotlib.pyplot as plt

    fig, _ = plots.figure()
    with pytest.raises(ValueError, match="fig-02-rate"):
        plots.show(fig, "Figure 2")
    plots.show(fig, "fig-00-test")                # outside IPython: only closes it
    assert not plt.fignum_exists(fig.number)


def test_check_returns_a_record_shown_as_its_verdict_line(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTEDFLOW_CLAIMS_DIR", str(tmp_path))
    rec = claims.check("thm-2.1", 0.5, 1.0, statement="s", quantity="q", kind="identity", chapter="c",
                       data={"n_orbits": 5})
    assert isinstance(rec, dict) and rec["passed"] is True
    assert repr(rec).startswith("[PASS] thm-2.1 (main, identity)") and "{" not in repr(rec)[:2]


def test_quote_keys_and_values(tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTEDFLOW_CLAIMS_DIR", str(tmp_path))
    rec = claims.check_frequency("prop-2.2", 2, 50, at_most=0.5, statement="s", quantity="q", chapter="c",
                                 part="along-orbits")
    assert claims.quote_key(rec, "k") == "prop-2.2.along-orbits.k"
    assert claims.quoted_value(rec, "k") == 2 and claims.quoted_value(rec, "n") == 50
    assert math.isclose(claims.quoted_value(rec, "measured"), rec["measured"])
    with pytest.raises(KeyError, match="no field 'lost'"):
        claims.quote(rec, "k", "lost")
    claims.quote(rec, "k", "n")                   # outside IPython: checks the fields, glues nothing
