"""Tests for adaptedflow.paper.critical: Hessian, nullity, f_i of (4.13), Newton, walks, the perturbation test."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptedflow as af
from adaptedflow.paper import critical
from adaptedflow.paper.critical import (
    constraint_jacobian,
    constraint_values,
    cost_gradient,
    cost_hessian,
    curvatures,
    hessian_nullity,
    independent_columns,
    newton_to_critical,
    null_directions,
    perturbation_cost_change,
    walk_critical_set,
)

X_XOR = jnp.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
Y_XOR = (X_XOR[:, 0] * X_XOR[:, 1])[:, None]


def _xor_saddle(h=2):
    """W_1 = 0, b_2 = ȳ − W_2 tanh(b_1): a critical point with C = 1/2 (labels ⟂ affine functions)."""
    w = (2, h, 1)
    th = np.array(af.init_params(jax.random.PRNGKey(3), w))
    th[:2 * h] = 0.0
    th[-1] = -th[3 * h:4 * h] @ np.tanh(th[2 * h:3 * h])
    return af.mlp(w), jnp.asarray(th)


def test_gradient_and_hessian_match_finite_differences(small_problem):
    p = small_problem
    g = np.asarray(cost_gradient(p["net"], p["theta"], p["X"], p["Y"]))
    H = np.asarray(cost_hessian(p["net"], p["theta"], p["X"], p["Y"]))
    np.testing.assert_allclose(H, H.T, atol=1e-14)
    e = np.zeros_like(g)
    e[3] = 1.0
    h = 1e-6
    gp = np.asarray(cost_gradient(p["net"], p["theta"] + h * e, p["X"], p["Y"]))
    gm = np.asarray(cost_gradient(p["net"], p["theta"] - h * e, p["X"], p["Y"]))
    np.testing.assert_allclose((gp - gm) / (2 * h), H[:, 3], atol=1e-7)
    x, D = af.outputs_and_jacobian(p["net"], p["theta"], p["X"])
    np.testing.assert_allclose(g, D.T @ af.grad_x_cost(x, p["Y"]), rtol=1e-12, atol=1e-15)


def test_nullity_of_a_known_matrix(rng):
    V = np.linalg.qr(rng.normal(size=(7, 7)))[0]
    H = V @ np.diag([3.0, -2.0, 1.0, 0, 0, 0, 1e-20]) @ V.T
    assert hessian_nullity(H, 1e-10) == 4
    assert null_directions(H, 1e-10).shape == (4, 7)
    with pytest.raises(ValueError, match="`H`"):
        hessian_nullity(np.ones((2, 3)), 1e-10)


def test_constraint_values_are_gradient_entries(small_problem):
    p = small_problem
    D = af.jacobian(p["net"], p["theta"], p["X"])
    cols = independent_columns(D, 5)
    assert cols.shape == (5,) and np.linalg.matrix_rank(np.asarray(D)[:, cols]) == 5
    f = constraint_values(p["net"], p["theta"], p["X"], p["Y"], cols)
    g = cost_gradient(p["net"], p["theta"], p["X"], p["Y"])
    np.testing.assert_allclose(f, np.asarray(g)[cols], rtol=1e-12, atol=1e-15)
    J = constraint_jacobian(p["net"], p["theta"], p["X"], p["Y"], cols)
    H = cost_hessian(p["net"], p["theta"], p["X"], p["Y"])
    np.testing.assert_allclose(J, np.asarray(H)[cols], rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="`r`"):
        independent_columns(D, 0)


def test_xor_saddle_is_critical_and_degenerate():
    net, th = _xor_saddle(2)
    assert float(np.linalg.norm(cost_gradient(net, th, X_XOR, Y_XOR))) < 1e-15
    H = cost_hessian(net, th, X_XOR, Y_XOR)
    K, r = th.size, af.numerical_rank(af.jacobian(net, th, X_XOR))
    assert r == 3
    n0 = hessian_nullity(H, 1e-9)
    assert n0 == 4 < K - r            # critical set {W_1 = 0, W_2 tanh b_1 + b_2 = 0}: dimension 2h = 4
    assert np.linalg.eigvalsh(np.asarray(H)).min() < 0


def test_walk_stays_on_the_critical_set():
    net, th = _xor_saddle(2)
    H = cost_hessian(net, th, X_XOR, Y_XOR)
    V = null_directions(H, 1e-9)
    dirs = np.random.default_rng(0).normal(size=(V.shape[0] + 4, V.shape[0])) @ V
    w = walk_critical_set(net, th, X_XOR, Y_XOR, dirs, step=1e-4)
    assert w.grad_norms.max() < 1e-12
    assert np.abs(w.cost_change).max() < 1e-14
    assert w.corrections.max() < 1e-6                     # O(t²)
    assert int(np.sum(w.singular_values > 1e-2)) == 4


def test_newton_converges_quadratically_near_a_minimum(small_problem):
    p = small_problem
    net, X = p["net"], p["X"]
    Y = jnp.asarray(net(p["theta"], X).reshape(p["Y"].shape))   # θ is a global minimiser for these targets
    th, norms = newton_to_critical(net, p["theta"] + 1e-4, X, Y)
    assert norms[-1] <= 1e-13 and len(norms) <= 8


def test_perturbation_cost_change_is_even_in_eta():
    net, th = _xor_saddle(2)
    H = np.asarray(cost_hessian(net, th, X_XOR, Y_XOR))
    n = np.random.default_rng(1).normal(size=th.size)
    dC = perturbation_cost_change(net, th, X_XOR, Y_XOR, n, [-1e-4, 1e-4])
    pred = 0.5 * 1e-8 * curvatures(H, n[None, :])[0]
    np.testing.assert_allclose(dC, [pred, pred], rtol=1e-3, atol=1e-16)
    with pytest.raises(ValueError, match="`direction`"):
        perturbation_cost_change(net, th, X_XOR, Y_XOR, np.zeros(3), [1e-3])


# --- fixed instances, the rule of §4.2, Theorem 4.1 along an orbit ---------------------------

from adaptedflow.paper.critical import (  # noqa: E402
    analyse_critical_point,
    flat_equilibrium,
    nullity_gap,
    one_hidden_layer_output_rounding,
    perturbation_rule_test,
    perturbation_rule_tests,
    projected_flow_check,
    projected_gradient_norm,
    random_xor_saddles,
    span_curvatures,
    xor_saddle,
    xor_saddle_theta,
)


def test_xor_saddle_is_a_fixed_critical_point_where_the_rule_fails():
    a, b = xor_saddle(), xor_saddle()
    assert np.array_equal(np.asarray(a.theta), np.asarray(b.theta))           # the same numbers every call
    assert a.widths == (2, 3, 1) and a.theta.shape == (13,)
    assert float(np.linalg.norm(cost_gradient(a.output_map, a.theta, a.X, a.Y))) < 1e-15
    t = perturbation_rule_test(a.output_map, a.theta, a.X, a.Y)
    assert t.least_span > 1.7 and t.least_hessian < -0.29 and t.scale < 1e-13


def test_xor_saddle_theta_and_random_family_are_critical():
    X, Y = critical.xor_data()
    net = af.mlp((2, 4, 1))
    th = xor_saddle_theta(np.linspace(-1, 1, 4), np.arange(1.0, 5.0))
    assert float(np.linalg.norm(cost_gradient(net, th, X, Y))) < 1e-15
    ths = random_xor_saddles(jax.random.PRNGKey(0), 4, 5)
    assert ths.shape == (5, 17) and np.all(ths[:, :8] == 0)
    rules = perturbation_rule_tests(net, ths, X, Y)
    assert rules.least_span.shape == (5,) and rules.grad_norm.max() < 1e-14
    one = perturbation_rule_test(net, ths[2], X, Y)
    np.testing.assert_allclose(one.least_span, rules.least_span[2], rtol=1e-12)
    with pytest.raises(ValueError, match="`b1` and `W2`"):
        xor_saddle_theta(np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="`n`"):
        random_xor_saddles(jax.random.PRNGKey(0), 3, 0)


def test_flat_equilibrium_has_nullity_below_k_minus_r():
    inst = flat_equilibrium()
    net = inst.output_map
    assert float(np.linalg.norm(cost_gradient(net, inst.theta, inst.X, inst.Y))) < 1e-15
    assert af.numerical_rank(af.jacobian(net, inst.theta, inst.X)) == 1
    assert projected_gradient_norm(net, inst.theta, inst.X, inst.Y) < 1e-15
    lam = np.linalg.eigvalsh(np.asarray(cost_hessian(net, inst.theta, inst.X, inst.Y)))
    assert nullity_gap(lam, 32)[0] > 1e6                  # fewer than K − r = 32 zero eigenvalues
    zero, gap = nullity_gap(lam, 16)
    assert zero < 1 and gap < 1                           # nullity exactly 16 beyond rounding


def test_analyse_critical_point_counts_at_the_xor_saddle():
    inst = xor_saddle()
    a = analyse_critical_point(inst.output_map, inst.theta, inst.X, inst.Y, jax.random.PRNGKey(0), walk_step=1e-4)
    assert (a.K, a.r, a.nullity, a.rank_J, a.walk_dimension) == (13, 3, 6, 3, 6)
    assert a.rank_off == 4
    assert "Hessian nullity 6" in critical.describe_critical_point(a)
    summary = critical.critical_point_summary(a)
    assert (summary["K"], summary["r = rank D"], summary["K − r"], summary["Hessian nullity"]) == (13, 3, 10, 6)
    assert (summary["rank ∂f"], summary["walked dimension"], summary["rank D at a random point 1e-3 away"]) == (3, 6, 4)
    assert summary["rank D at walked points"] == ", ".join(str(r) for r in a.ranks_near)
    assert summary["largest zero |λ| / max |λ|"] < 1e-14 < summary["smallest non-zero |λ| / max |λ|"]
    assert summary["largest walk correction (t = 0.0001)"] == float(a.walk.corrections.max())


def test_nullity_gap_and_span_curvatures_on_known_matrices(rng):
    lam = np.array([0.0, 1e-18, -2.0, 1.0, 3.0])
    zero, gap = nullity_gap(lam, 2)
    assert zero < 1 and gap < 1e-10
    assert nullity_gap(lam, 3)[0] > 1
    with pytest.raises(ValueError, match="`d`"):
        nullity_gap(lam, 6)
    H = np.diag([1.0, -2.0, 3.0, 4.0])
    J = np.array([[1.0, 0, 0, 0], [0, 0, 2.0, 0]])
    np.testing.assert_allclose(span_curvatures(H, J), [1.0, 3.0], atol=1e-14)
    Q = np.linalg.qr(rng.normal(size=(4, 4)))[0]
    np.testing.assert_allclose(span_curvatures(Q @ H @ Q.T, J @ Q.T), [1.0, 3.0], atol=1e-13)


def test_projected_flow_check_on_a_duplicated_input():
    X = jnp.array([[0.3, -0.2], [0.3, -0.2], [1.0, 0.5], [-0.7, 0.1]])
    Y = jnp.array([[1.0], [-1.0], [0.2], [0.4]])
    net = af.mlp((2, 4, 1))
    ths = np.stack([np.asarray(af.init_params(jax.random.PRNGKey(i), (2, 4, 1))) for i in range(3)])
    pf = projected_flow_check(net, ths, X, Y)
    assert np.all(pf.rank == 3)                           # rows 0 and 1 coincide
    assert np.all(pf.residual <= pf.bound)
    np.testing.assert_allclose(pf.projected_grad[0], projected_gradient_norm(net, ths[0], X, Y), rtol=1e-12)


def test_output_rounding_bound_covers_extended_precision(rng):
    widths = (2, 5, 1)
    th = np.asarray(af.init_params(jax.random.PRNGKey(1), widths))
    X = rng.normal(size=(7, 2))
    x64 = np.asarray(af.mlp(widths)(jnp.asarray(th), jnp.asarray(X)))
    t, Xl = th.astype(np.longdouble), X.astype(np.longdouble)
    W1, b1, W2, b2 = t[:10].reshape(5, 2), t[10:15], t[15:20], t[20]
    x_ld = np.tanh(Xl @ W1.T + b1) @ W2 + b2
    bound = one_hidden_layer_output_rounding(widths, th, X)
    assert 0 < bound < 1e-13
    assert np.max(np.abs(x64 - x_ld.astype(np.float64))) <= bound
    with pytest.raises(ValueError, match="`widths`"):
        one_hidden_layer_output_rounding((2, 3, 3, 1), th, X)


def test_newton_steps_and_stopping_rules(small_problem):
    p = small_problem
    net, X = p["net"], p["X"]
    Y = jnp.asarray(net(p["theta"], X).reshape(p["Y"].shape))
    th, norms = newton_to_critical(net, p["theta"] + 1e-4, X, Y, tol=None, max_iter=3)
    assert norms.shape == (4,) and norms[-1] < 1e-12 < norms[0]        # all three steps taken
    inst = xor_saddle()                                                # a degenerate saddle (Morse–Bott)
    start = np.asarray(inst.theta) + 1e-6
    th_p, n_p = newton_to_critical(inst.output_map, start, inst.X, inst.Y)
    assert n_p[-1] <= 1e-13 and np.linalg.norm(th_p - start) < 1e-4    # the minimum-norm step stays near the set
    with pytest.raises(ValueError, match="`step`"):
        newton_to_critical(net, p["theta"], X, Y, step="lu")
    with pytest.raises(ValueError, match="`max_iter`"):
        newton_to_critical(net, p["theta"], X, Y, max_iter=0)


def test_random_xor_saddles_layout():
    ths = random_xor_saddles(jax.random.PRNGKey(0), 3, 4)
    draws = jax.vmap(lambda k: af.init_params(k, (2, 3, 1)))(jax.random.split(jax.random.PRNGKey(0), 4))
    for th, d in zip(ths, np.asarray(draws), strict=True):
        (W1, b1), (W2, b2) = af.network.unflatten_params(th, (2, 3, 1))
        (_, b1d), (W2d, _) = af.network.unflatten_params(d, (2, 3, 1))
        assert np.all(W1 == 0) and np.array_equal(b1, b1d) and np.array_equal(W2, W2d)
        assert b2[0] == pytest.approx(-W2[0] @ np.tanh(b1), rel=1e-15)
    np.testing.assert_array_equal(xor_saddle_theta(ths[1][6:9], ths[1][9:12]), ths[1])


# --- the analyses of the rank-loss chapter ----------------------------------------------------

from adaptedflow.paper.rank_loss import (  # noqa: E402
    duplicated_input_problem,
    rank_restoring_escape,
    rule_at_saddle,
    rule_frequency,
    structural_rank_loss,
)


def test_duplicated_input_problem():
    key = jax.random.PRNGKey(0)
    widths, X, Y, theta0, C_min, y_inf = duplicated_input_problem(key, 5, 4)
    assert widths == (2, 4, 1) and X.shape == (5, 2) and Y.shape == (5, 1) and theta0.shape == (17,)
    assert np.array_equal(X[0], X[1]) and (float(Y[0, 0]), float(Y[1, 0])) == (1.0, -1.0)
    assert C_min == pytest.approx(4 / 20) and np.array_equal(y_inf[:2], [0.0, 0.0])
    np.testing.assert_array_equal(y_inf[2:], np.asarray(Y)[2:, 0])
    D = af.jacobian(af.mlp(widths), theta0, X)
    assert af.numerical_rank(D) == 4 and np.array_equal(np.asarray(D)[0], np.asarray(D)[1])
    with pytest.raises(ValueError, match="`N`"):
        duplicated_input_problem(key, 1, 4)


def test_structural_rank_loss_small_instance():
    problem = duplicated_input_problem(jax.random.PRNGKey(0), 4, 4)
    s = structural_rank_loss(problem, rtol=1e-12, atol=1e-14, cost_floor=1e-4, s_first_standard=20.0,
                             s_max_standard=2000.0)
    assert s.gap < 4 * 17 * af.numerics.EPS                    # σ_QN/σ_1 = 0 to rounding: rank D ≤ QN − Q
    assert np.all(s.projected.rank == 3) and np.all(s.projected.residual <= s.projected.bound)
    assert s.output_error <= s.output_tolerance and np.max(s.rate_error / s.rate_tolerance) <= 1.0
    assert s.adapted.cost[-1] - problem.C_min == pytest.approx(1e-4 * (s.adapted.cost[0] - problem.C_min), rel=1e-6)
    assert s.grad_norms[-1] <= 1e-13 and s.equilibrium_distance <= s.equilibrium_tolerance
    np.testing.assert_allclose(s.x_standard[:2], s.x_standard[0], rtol=1e-14)        # x_a = x_b always


def test_rule_at_saddle_and_frequency():
    inst = xor_saddle()
    a = analyse_critical_point(inst.output_map, inst.theta, inst.X, inst.Y, jax.random.PRNGKey(0), walk_step=1e-4)
    r = rule_at_saddle(inst, a, [-1e-3, 1e-3])
    assert r.span_curvatures.shape == (3,) and r.span_curvatures[0] == pytest.approx(1.7892, abs=1e-4)
    assert r.least_eigenvalue == pytest.approx(-0.2974, abs=1e-4) and r.rule.least_span == pytest.approx(
        r.span_curvatures[0], rel=1e-9)
    assert r.cost_change.shape == (3, 2) and np.all(r.cost_change > 0)            # raises C for both signs
    np.testing.assert_allclose(r.cost_change, r.predicted, rtol=1e-2)             # (η²/2)nᵀHn + O(η³)
    f = rule_frequency(jax.random.PRNGKey(1), 3, 12, inst.X, inst.Y)
    rules = perturbation_rule_tests(inst.output_map, random_xor_saddles(jax.random.PRNGKey(1), 3, 12), inst.X, inst.Y)
    decided = np.abs(rules.least_span) > rules.scale
    assert (f.n_decided, f.k_lower) == (int(decided.sum()), int(np.sum(rules.least_span[decided] < 0)))
    assert f.k_saddle == int(np.sum(rules.least_hessian < -rules.scale)) and 0 <= f.k_lower <= f.n_decided <= 12


def test_rank_restoring_escape_on_the_xor_saddle():
    inst = xor_saddle()
    e = rank_restoring_escape(inst, jax.random.PRNGKey(8), eta=1e-6, eps=1e-2, rtol=1e-12, atol=1e-14)
    (W1, b1), (W2, b2) = af.network.unflatten_params(np.asarray(e.theta), inst.widths)
    (_, b1s), (W2s, b2s) = af.network.unflatten_params(np.asarray(inst.theta), inst.widths)
    assert np.linalg.norm(W1) == pytest.approx(1e-6, rel=1e-12)                    # only W_1 moved, by η
    assert np.array_equal(b1, b1s) and np.array_equal(W2, W2s) and np.array_equal(b2, b2s)
    assert e.sv.shape == (4,) and e.sv[-1] > 0 and e.cost == pytest.approx(0.5, abs=1e-9)
    assert e.s_predicted == pytest.approx(2 * np.log(100)) and e.time_error <= e.time_tolerance
    assert e.rate_error < 1e-6 and e.standard.s_end > e.adapted.s_end
