"""Tests for adaptedflow.paper.regimes: the identities of Theorem 5.1 / Proposition 5.3 and the borderline §6."""

import jax.numpy as jnp
import numpy as np
import pytest

import adaptedflow as af
from adaptedflow.paper.regimes import (
    BORDERLINE_FORMULAS,
    borderline_directions,
    borderline_size,
    borderline_sizes,
    condition_number,
    critical_residuals,
    crossing_time,
    gauss_newton_projector,
    metric_gradient_residual,
    newton_critical_point,
    orbit_outcome,
    projector_defects,
    range_projector,
    relative_spread,
    under_identities,
)

EPS = np.finfo(np.float64).eps


@pytest.mark.parametrize("shape", [(8, 3), (12, 5), (6, 6)])
def test_range_projector_is_orthoprojector_onto_range(rng, shape):
    D = rng.normal(size=shape)
    P = range_projector(D)
    idem, sym = projector_defects(P)
    assert idem < 1e-13 and sym < 1e-13
    np.testing.assert_allclose(P @ D, D, atol=1e-12)
    assert np.isclose(np.trace(P), shape[1])
    np.testing.assert_allclose(gauss_newton_projector(D), P, atol=1e-10)


def test_range_projector_refuses_over_parametrized(rng):
    with pytest.raises(ValueError, match="K ≤ QN"):
        range_projector(rng.normal(size=(3, 5)))


def test_float32_is_refused(rng):
    with pytest.raises(TypeError, match="float64"):
        range_projector(rng.normal(size=(5, 2)).astype(np.float32))


def test_under_identities_hold_to_rounding(rng):
    D = rng.normal(size=(10, 4))
    g = rng.normal(size=10)
    ids = under_identities(D, g)
    bound = 10 * ids.cond**2 * EPS
    for v in (ids.gn_vs_pinv, ids.output_velocity, ids.cost_rate, ids.idempotent, ids.symmetric):
        assert v <= bound
    P = range_projector(D)
    assert np.isclose(ids.tangential, np.linalg.norm(P @ g) / np.linalg.norm(g))


def test_under_identities_zero_gradient_is_refused(rng):
    with pytest.raises(ValueError, match="zero"):
        under_identities(rng.normal(size=(6, 2)), np.zeros(6))


def test_metric_gradient_is_dC(rng):
    D = rng.normal(size=(9, 4))
    g = rng.normal(size=9)
    assert metric_gradient_residual(D, g, rng.normal(size=(4, 6))) < 1e-12
    with pytest.raises(ValueError, match="shape \\(K, n\\)"):
        metric_gradient_residual(D, g, rng.normal(size=(5, 6)))


def test_critical_residuals_split_is_tangential_squared(rng):
    D = rng.normal(size=(8, 3))
    x, y = rng.normal(size=8), rng.normal(size=8)
    tang, split = critical_residuals(D, x, y)
    assert np.isclose(split, tang**2, rtol=1e-10)
    # at a critical point (x − y ⊥ range D) both vanish
    P = range_projector(D)
    x_crit = y + (np.eye(8) - P) @ (x - y)
    tang0, split0 = critical_residuals(D, x_crit, y)
    assert tang0 < 1e-14 and split0 < 1e-14


def test_borderline_size_and_sizes():
    assert borderline_size((3, 2, 2)) == 7
    with pytest.raises(ValueError, match="not a multiple"):
        borderline_size((2, 3, 2, 3))   # K = 9 + 8 + 9 = 26, not a multiple of Q = 3
    for widths, N in borderline_sizes(2, max_N=12):
        assert af.num_params(widths) == 2 * N


def test_borderline_directions_agree(rng):
    D = rng.normal(size=(7, 7))
    g = rng.normal(size=7)
    dirs = borderline_directions(D, g)
    assert set(dirs) == set(BORDERLINE_FORMULAS)
    spread = relative_spread(dirs)
    c = condition_number(D)
    assert max(spread.values()) <= 7 * c**2 * EPS
    with pytest.raises(ValueError, match="square"):
        borderline_directions(rng.normal(size=(6, 7)), rng.normal(size=6))


def test_crossing_time_is_exact_for_exponential():
    s = np.linspace(0, 10, 11)
    v = np.exp(-s)
    assert np.isclose(crossing_time(s, v, np.exp(-3.5)), 3.5)
    assert crossing_time(s, v, 1e-9) == np.inf


def test_orbit_outcome_counts_rank_loss_at_start():
    # identity map with K = QN: D = 1, never loses rank -> reaches s1
    X = jnp.zeros((3, 1))
    Y = jnp.ones((3, 2))
    orbit, outcome = orbit_outcome("adapted", af.identity_map, jnp.zeros(6), X, Y, s1=1.0, n_save=3)
    assert outcome == "s1" and orbit is not None
    np.testing.assert_allclose(orbit.cost, af.comparison_cost(orbit.cost[0], orbit.s, 3), rtol=1e-9)
    with pytest.raises(ValueError, match="on_rank_loss"):
        orbit_outcome("adapted", af.identity_map, jnp.zeros(6), X, Y, s1=1.0, on_rank_loss="raise")


def _linear_map(theta, X):
    """x[θ] = X θ (Q = 1): C is quadratic, its critical point is the least-squares solution."""
    return X @ theta


def test_newton_critical_point_finds_least_squares_solution(rng):
    X = jnp.asarray(rng.normal(size=(9, 3)))
    Y = jnp.asarray(rng.normal(size=(9, 1)))
    theta_star, hist = newton_critical_point(_linear_map, jnp.zeros(3), X, Y, n_iter=2)
    np.testing.assert_allclose(theta_star, np.linalg.lstsq(np.asarray(X), np.asarray(Y[:, 0]), rcond=None)[0],
                               rtol=1e-10)
    assert hist[0] > 0.1 and hist[-1] < 1e-12
    with pytest.raises(ValueError, match="n_iter"):
        newton_critical_point(_linear_map, jnp.zeros(3), X, Y, n_iter=0)


def test_reference_critical_point_is_critical_with_positive_cost():
    import jax.numpy as jnp

    from adaptedflow.paper.regimes import reference_critical_point, tangential_residual
    widths, X, Y, theta = reference_critical_point()
    net = af.mlp(widths)
    assert theta.shape == (af.num_params(widths),) and X.shape == (20, 2) and Y.shape == (20, 2)
    tang, floor = tangential_residual(net, theta, X, Y)
    assert tang <= floor
    assert abs(float(af.cost(net(jnp.asarray(theta), X), Y)) - 7.4078e-3) < 1e-6
    again = reference_critical_point()[3]
    np.testing.assert_array_equal(theta, again)


def test_orbit_until_outcome_converges_and_rejects_on_rank_loss():
    import jax

    from adaptedflow.paper.regimes import orbit_until_outcome, reference_critical_point, tangential_residual
    widths, X, Y, theta = reference_critical_point()
    net = af.mlp(widths)
    start = theta + 1e-4 * np.asarray(jax.random.normal(jax.random.PRNGKey(1), theta.shape))
    o, out = orbit_until_outcome("adapted-under", net, start, X, Y, s_first=5.0, s_max=5000.0, n_save=5,
                                 converged=lambda th: tangential_residual(net, th, X, Y)[0] <= 1e-6)
    assert out == "converged" and o.stop == "converged"
    assert tangential_residual(net, o.theta_end, X, Y)[0] <= 1e-6
    with pytest.raises(ValueError, match="on_rank_loss"):
        orbit_until_outcome("adapted-under", net, start, X, Y, converged=lambda th: True, s_first=1.0, s_max=2.0,
                            on_rank_loss="raise")
