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
    orbit_outcome,
    projector_defects,
    range_projector,
    relative_spread,
    under_identities,
)

EPS = af.numerics.EPS


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


def test_newton_solve_step_finds_least_squares_solution(rng):
    from adaptedflow.paper.critical import newton_to_critical

    X = jnp.asarray(rng.normal(size=(9, 3)))
    Y = jnp.asarray(rng.normal(size=(9, 1)))
    theta_star, norms = newton_to_critical(_linear_map, jnp.zeros(3), X, Y, step="solve", tol=None, max_iter=2)
    np.testing.assert_allclose(theta_star, np.linalg.lstsq(np.asarray(X), np.asarray(Y[:, 0]), rcond=None)[0],
                               rtol=1e-10)
    assert norms.shape == (3,)                         # tol=None: every step is taken
    assert norms[0] > 0.1 and norms[-1] < 1e-14        # C is quadratic: one step lands on the solution
    with pytest.raises(ValueError, match="max_iter"):
        newton_to_critical(_linear_map, jnp.zeros(3), X, Y, step="solve", tol=None, max_iter=0)


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


# --- the analyses of the under-parametrized and borderline chapters ----------------------------

from adaptedflow.paper.regimes import (  # noqa: E402
    LABEL_KINDS,
    OUTCOMES,
    UNTIL_OUTCOMES,
    borderline_formula_spreads,
    borderline_orbits,
    borderline_problems,
    critical_limit,
    identities_along_orbits,
    largest_cost_rise,
    near_teacher_orbits,
    race_to_critical_cost,
    reference_critical_point,
    teacher_student_problem,
    under_orbits,
)


def test_teacher_student_problem_is_the_reference_data():
    import jax

    X, Y = teacher_student_problem(jax.random.PRNGKey(0), (2, 8, 2), N=20, noise=0.05)
    assert X.shape == (20, 2) and Y.shape == (20, 2)
    _, X_ref, Y_ref, _ = reference_critical_point(n_newton=1)
    np.testing.assert_array_equal(np.asarray(X), X_ref)
    np.testing.assert_array_equal(np.asarray(Y), Y_ref)
    X0, Y0 = teacher_student_problem(jax.random.PRNGKey(0), (2, 8, 2), N=20, noise=0.0)
    np.testing.assert_allclose(np.asarray(Y) - np.asarray(Y0), 0.05 * np.asarray(
        jax.random.normal(jax.random.fold_in(jax.random.PRNGKey(0), 2), (40,))).reshape(20, 2), atol=1e-15)


def test_critical_limit_at_the_reference_point():
    widths, X, Y, theta = reference_critical_point()
    c = critical_limit(af.mlp(widths), theta, X, Y, n_newton=2)
    assert c.tangential <= c.floor and c.tangential_start <= c.floor        # already critical to rounding
    assert c.distance < 1e-12 and c.QN == 40
    assert abs(c.cost - 7.4078e-3) < 1e-6 and c.cost / c.cost_resolution > 1e12
    assert c.split <= c.tangential ** 2 + 3 * (c.QN + c.cond) * EPS         # (5.7) to rounding
    x = np.asarray(af.mlp(widths)(jnp.asarray(c.theta), X))
    assert c.cost == pytest.approx(float(np.sum((x - Y.reshape(-1)) ** 2) / 40), rel=1e-12)


def test_under_orbits_identities_and_cost_rise():
    import jax

    key = jax.random.PRNGKey(0)
    widths, N = (2, 2, 2), 20
    X, Y = teacher_student_problem(key, (2, 8, 2), N=N, noise=0.05)
    orb = under_orbits(widths, X, Y, key, 2, arrive_tol=1e-3, s_first=1.0, s_max=8.0, n_save=5, rtol=1e-10,
                       atol=1e-12, rank_rtol=1e-6, max_steps=5000)
    assert len(orb.runs) == 2 and all(out in UNTIL_OUTCOMES for _, out in orb.runs)
    assert sorted(orb.lost + orb.converged + orb.slow) == [i for i, (_, out) in enumerate(orb.runs)
                                                            if out != "eps"]
    np.testing.assert_array_equal(orb.theta0s[1], af.init_params(jax.random.fold_in(key, 11), widths))
    res = identities_along_orbits(af.mlp(widths), orb.runs, X, Y, key, 3, every=2)
    assert set(res.worst) == {"gn_vs_pinv", "output_velocity", "cost_rate", "projector", "metric"}
    assert 0 < max(res.worst.values()) <= 1.0 and res.max_cond >= 1.0
    assert 0.0 <= largest_cost_rise(orb.runs, 1e-10, N) <= 1.0


def test_largest_cost_rise_is_the_worst_ratio():
    from types import SimpleNamespace

    o = SimpleNamespace(cost=np.array([2.0, 1.0, 1.0 + 1e-9]), n_steps=10, theta=np.array([[0.5, -2.0]]),
                        sigma_max=np.array([3.0]))
    b = 10 * 1e-8 * 2.0 * 3.0 * np.sqrt(2 * 2.0 / 4)
    assert largest_cost_rise([(o, "converged"), (None, "stalled")], 1e-8, 4) == pytest.approx(1e-9 / b, rel=1e-6)
    down = SimpleNamespace(cost=np.array([2.0, 1.0]), n_steps=1, theta=np.ones((2, 1)), sigma_max=np.ones(2))
    assert largest_cost_rise([(down, "s1")], 1e-8, 4) == 0.0


def test_race_to_critical_cost_first_passages():
    from types import SimpleNamespace

    widths, X, Y, theta = reference_critical_point()
    net = af.mlp(widths)
    C = float(af.cost(net(jnp.asarray(theta), X), Y))
    orbit = SimpleNamespace(s=np.array([0.0, 1.0, 2.0]), cost=np.array([4 * C, 2 * C, C / 2]), s_end=0.05)
    race = race_to_critical_cost(net, theta, orbit, X, Y, C * (1 + 1e-9), horizon=2.0)
    assert race.t_standard == 0.0                               # the standard flow starts at the level
    assert race.t_adapted == pytest.approx(1.5, rel=1e-8)       # log-interpolation between C/2 and 2C
    assert race.standard.s_end == pytest.approx(0.1) and race.standard.cost_end <= C * (1 + 1e-12)


def test_borderline_problems_spreads_and_orbits():
    import jax

    widths = (3, 2, 2)                                  # K = 14 = QN with N = 7
    probs = borderline_problems(jax.random.PRNGKey(0), widths, 2, teacher_distance=0.1)
    net = af.mlp(widths)
    assert len(probs) == 2 and tuple(probs[0].labels) == LABEL_KINDS
    p = probs[1]
    assert p.X.shape == (7, 3) and p.theta0.shape == (14,)
    Y1 = np.asarray(p.labels["random one-hot"])
    assert set(np.unique(Y1)) <= {0.0, 1.0} and np.all(Y1.sum(axis=1) == 1)
    np.testing.assert_allclose(p.labels["near teacher"], net(p.theta0 + 0.1 * p.teacher, p.X).reshape(7, 2),
                               rtol=1e-13, atol=1e-15)
    spreads = borderline_formula_spreads(net, probs)
    assert len(spreads.stable) == len(spreads.gram) == len(spreads.rows) == 6
    assert max(spreads.stable) <= 1.0 and max(spreads.gram) <= 1.0
    assert all(sp["pseudo-inverse (4.6)"] == 0.0 for _, sp in spreads.rows)
    orbits = borderline_orbits(net, probs[:1], s1=2.0, n_save=5, rtol=1e-10, atol=1e-12, rank_rtol=1e-5,
                               max_steps=2000)
    assert tuple(orbits) == LABEL_KINDS and all(out in OUTCOMES for runs in orbits.values() for _, out in runs)


def test_near_teacher_orbits_follow_the_comparison_model():
    import jax

    widths = (3, 2, 2)
    probs = borderline_problems(jax.random.PRNGKey(0), widths, 1, teacher_distance=1e-3)
    net = af.mlp(widths)
    kw = dict(s1=5.0, n_save=11, rtol=1e-11, atol=1e-13, rank_rtol=1e-5, max_steps=5000)
    orbits = borderline_orbits(net, probs, **kw)
    assert orbits["near teacher"][0][1] == "s1"
    near = near_teacher_orbits(net, probs, orbits["near teacher"], teacher_distance=1e-3, n_pairs=1, **kw)
    assert near.distance == 1e-3 and len(near.output_deviation) == 1 and len(near.agreement) == 1
    assert len(near.steps) == 2 and near.conds[0] >= 1.0
    assert max(near.output_deviation) < 1e-8 and max(near.rate_deviation) < 1e-7 and max(near.agreement) < 1e-8
    # no converged orbit given: the teacher of the first problem is moved closer until one converges
    again = near_teacher_orbits(net, probs, [(None, "rank-loss")], teacher_distance=1e-3, n_pairs=0, **kw)
    assert again.distance == 5e-4 and len(again.output_deviation) == 1 and again.agreement == []
