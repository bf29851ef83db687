"""Tests for adaptedflow.paper.setting: the identities of §1, the rate (2.6) and the stopping time (2.18)."""

import jax
import numpy as np

import adaptedflow as af
from adaptedflow.paper.setting import rate_errors, setting_identities, stopping_time_errors

KEY = jax.random.PRNGKey(0)
X, _, Y = af.gaussian_clusters(KEY, 3, 2, 1)
WIDTHS = (2, 5, 1)
NET = af.mlp(WIDTHS)


def test_setting_identities_hold_to_rounding():
    thetas = [af.init_params(jax.random.fold_in(KEY, i), WIDTHS) for i in range(2)]
    si = setting_identities(NET, thetas, X, Y)
    assert len(si.chain) == len(si.adapted) == len(si.horizontal) == 2
    assert max(si.chain) < 1e-14 and max(si.adapted) < 1e-13 and max(si.horizontal) < 1e-13
    D = af.jacobian(NET, thetas[0], X)
    sv = np.linalg.svd(np.asarray(D), compute_uv=False)
    np.testing.assert_allclose(si.spectra[0], sv ** 2, rtol=1e-12)
    np.testing.assert_allclose(si.conds[0], sv[0] / sv[-1], rtol=1e-12)


def test_rate_errors_small_on_adapted_orbit():
    o = af.integrate_flow("adapted", NET, af.init_params(KEY, WIDTHS), X, Y, s1=3.0, rtol=1e-10, atol=1e-12)
    rate_err, out_err, budget = rate_errors([o], Y, 3)
    assert len(rate_err) == len(out_err) == len(budget) == 1
    assert rate_err[0] < 1e-7 and out_err[0] < 1e-7 and budget[0] > 0
    assert out_err[0] <= budget[0]                      # (2.7) within the integrator's budget τ


def test_stopping_time_errors_match_2_18():
    ratios = np.array([1e-1, 1e-2])
    st = stopping_time_errors(NET, [af.init_params(KEY, WIDTHS)], X, Y, ratios, rtol=1e-12, atol=1e-14,
                              rank_rtol=1e-7)
    assert st.measured.shape == st.predicted.shape == st.budget.shape == (1, 2)
    np.testing.assert_allclose(st.predicted[0], 1.5 * np.log(1 / ratios), rtol=1e-14)   # s_* = (N/2) log(C0/ε)
    assert np.all(st.rel_err <= st.budget) and np.all(st.rel_err < 1e-6)
    np.testing.assert_allclose(st.C0[0], float(af.cost(NET(af.init_params(KEY, WIDTHS), X), Y)), rtol=1e-15)
