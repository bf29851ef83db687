"""`adaptedflow.paper.scale`: the decade-by-decade sweep and its pieces (cheap checks only;
the chapter on the rate at scale runs it at size)."""

import jax
import numpy as np
import pytest

import adaptedflow as af
from adaptedflow.paper import scale


def _toy():
    widths = (2, 8, 2)
    X = jax.random.normal(jax.random.PRNGKey(0), (3, 2))
    Y = af.one_hot_labels(2)[np.array([0, 1, 0])]
    return af.mlp(widths), af.init_params(jax.random.PRNGKey(1), widths), X, Y


@pytest.mark.parametrize("ratios", [[0.1, 0.5], [1.0, 0.1], [0.1, 0.0], [], [[0.1]]])
def test_cut_orbit_refuses_ratios_not_decreasing_in_0_1(ratios):
    net, theta0, X, Y = _toy()
    with pytest.raises(ValueError, match="ratios"):
        scale.cut_orbit(net, theta0, X, Y, ratios, n_save=2)


def test_cut_orbit_stopping_times_follow_2_18():
    net, theta0, X, Y = _toy()
    ratios = np.array([1e-1, 1e-2])
    cut = scale.cut_orbit(net, theta0, X, Y, ratios, n_save=3, rtol=1e-10, atol=1e-12, rank_rtol=1e-6,
                          on_rank_loss="stop")
    assert np.all(np.isnan(cut.seconds))
    np.testing.assert_allclose(cut.times, 0.5 * X.shape[0] * np.log(1 / ratios), rtol=1e-6)
    assert cut.orbit.s.shape == cut.orbit.cost.shape and np.all(np.diff(cut.orbit.s) >= 0)


def test_piece_tolerances_taper_towards_the_last_piece():
    ratios = 10.0 ** -np.arange(1, 11)
    tol = scale.piece_tolerances(ratios, 1e-15, 1e-17, 0.25)
    np.testing.assert_allclose(tol[-1], [1e-15, 1e-17])
    np.testing.assert_allclose(tol[0], [1e-15 * 10**2.25, 1e-17 * 10**2.25])
    assert np.all(np.diff(tol[:, 0]) < 0)
    np.testing.assert_array_equal(scale.piece_tolerances(ratios, 1e-12, 1e-14), [[1e-12, 1e-14]] * 10)
    for bad in (-0.1, np.nan):
        with pytest.raises(ValueError, match="taper"):
            scale.piece_tolerances(ratios, 1e-12, 1e-14, bad)
    with pytest.raises(ValueError, match="rtol"):
        scale.piece_tolerances(ratios, 0.0, 1e-14)


def test_warm_tapered_cut_orbit_is_the_same_orbit_in_fewer_steps():
    net, theta0, X, Y = _toy()
    ratios = 10.0 ** -np.arange(1, 7)
    kw = dict(n_save=3, rank_rtol=1e-6, on_rank_loss="stop")
    cold = scale.cut_orbit(net, theta0, X, Y, ratios, rtol=1e-12, atol=1e-14, **kw)
    warm = scale.cut_orbit(net, theta0, X, Y, ratios, rtol=1e-12, atol=1e-14, taper=0.25, warm=True, **kw)
    assert warm.orbit.n_steps < cold.orbit.n_steps
    np.testing.assert_allclose(warm.times, cold.times, rtol=1e-8)
    np.testing.assert_allclose(warm.times, 0.5 * X.shape[0] * np.log(1 / ratios), rtol=1e-8)
    np.testing.assert_allclose([warm.orbit.rtol, warm.orbit.atol], [1e-12 * 1e5**0.25, 1e-14 * 1e5**0.25])
