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
