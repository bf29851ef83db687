"""Tests for adaptedflow.paper.trapping: Rayleigh quotient (3.1), ‖D‖_op ≥ √N with an output bias, arc length,
Prop. 3.1 and the analyses of chapter 06."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptedflow as af
from adaptedflow.kernels import is_structured
from adaptedflow.paper.trapping import (
    bias_column_norm_bound,
    equilibrium_searches,
    integrate_standard_arclength,
    lemma_3_2_problems,
    mlp_without_output_bias,
    operator_norm,
    orbit_diagnostics,
    proposition_3_1_ratio,
    rayleigh_quotient,
    standard_output_speed,
    trapping_example,
)


@pytest.mark.parametrize("shape", [(4, 9), (6, 6), (8, 3)])
def test_rayleigh_quotient_between_extreme_singular_values(rng, shape):
    D = jnp.asarray(rng.normal(size=shape))
    g = jnp.asarray(rng.normal(size=shape[0]))
    rq = float(rayleigh_quotient(D, g))
    s = np.linalg.svd(np.asarray(D), compute_uv=False)
    smin2 = s[-1] ** 2 if shape[0] <= shape[1] else 0.0
    assert smin2 * (1 - 1e-12) <= rq <= s[0] ** 2 * (1 + 1e-12)
    np.testing.assert_allclose(rq, g @ (D @ D.T) @ g / (g @ g), rtol=1e-12)


def test_output_speed_is_norm_of_1_25(rng):
    D = jnp.asarray(rng.normal(size=(5, 11)))
    g = jnp.asarray(rng.normal(size=5))
    np.testing.assert_allclose(standard_output_speed(D, g), np.linalg.norm(D @ D.T @ g), rtol=1e-13)


def test_output_bias_forces_operator_norm_at_least_sqrt_N(small_problem):
    p = small_problem
    D = af.jacobian(p["net"], p["theta"], p["X"])
    N = p["X"].shape[0]
    assert float(operator_norm(D)) >= bias_column_norm_bound(N) * (1 - 1e-14)
    # the bias columns are e_q ⊗ 1_N
    Q = p["Y"].shape[1]
    np.testing.assert_allclose(np.asarray(D[:, -Q:]), np.kron(np.ones((N, 1)), np.eye(Q)), atol=1e-15)


def test_mlp_without_output_bias_matches_mlp_with_zero_bias(small_problem):
    p = small_problem
    f = mlp_without_output_bias(p["widths"])
    assert f == mlp_without_output_bias(p["widths"]) and hash(f) == hash(mlp_without_output_bias(p["widths"]))
    assert not is_structured(f)
    Q = p["widths"][-1]
    theta = p["theta"][:-Q]
    np.testing.assert_allclose(f(theta, p["X"]), p["net"](jnp.concatenate([theta, jnp.zeros(Q)]), p["X"]), rtol=1e-15)
    assert f.num_params == theta.size


def test_arclength_orbit_and_proposition_3_1():
    X = jnp.asarray(np.random.default_rng(0).normal(size=(5, 2)))
    Y = jnp.asarray(np.random.default_rng(1).normal(size=(5, 1)))
    widths = (2, 4, 1)
    net = mlp_without_output_bias(widths)
    theta0 = af.init_params(jax.random.PRNGKey(0), widths, scale=0.5)[:net.num_params]
    D0 = af.jacobian(net, theta0, X)
    lam = 1.2 * float(operator_norm(D0))
    o = integrate_standard_arclength(net, theta0, X, Y, lam=lam, s1=60.0, n_save=31, rtol=1e-9, atol=1e-11)
    # the cost decreases (1.10) and the arc length grows
    assert np.all(np.diff(o.cost) <= 1e-12) and np.all(np.diff(o.arclength) >= 0)
    # arc length ≥ chord |θ(s1) − θ(0)|
    assert o.arclength[-1] >= np.linalg.norm(o.theta[-1] - o.theta[0]) * (1 - 1e-9)
    # θ(0) ∈ U, so the first interval in U starts at 0; intervals are ordered inside [0, s1]
    assert o.intervals.shape[1] == 4 and o.intervals.shape[0] >= 1 and o.intervals[0, 0] == 0.0
    assert np.all(np.diff(o.intervals[:, :2].ravel()) >= 0) and o.intervals[-1, 1] <= 60.0
    # where ‖D‖_op ≤ λ on the saved grid, the time lies in some interval
    for s, n in zip(o.s, o.opnorm, strict=True):
        if n < lam * (1 - 1e-6):
            assert np.any((o.intervals[:, 0] <= s) & (s <= o.intervals[:, 1]))
    for iv in o.intervals:
        assert proposition_3_1_ratio(iv, lam, 5, o.C0) >= 1.0
        assert proposition_3_1_ratio(iv, lam, 5, iv[3]) >= proposition_3_1_ratio(iv, lam, 5, o.C0) * (1 - 1e-12)


def test_arclength_rejects_bad_lambda(small_problem):
    p = small_problem
    with pytest.raises(ValueError, match="`lam`"):
        integrate_standard_arclength(p["net"], p["theta"], p["X"], p["Y"], lam=-1.0, s1=1.0)
    with pytest.raises(ValueError, match="`s1`"):
        integrate_standard_arclength(p["net"], p["theta"], p["X"], p["Y"], lam=1.0, s1=0.0)
    with pytest.raises(ValueError, match="`N`"):
        bias_column_norm_bound(0)


from adaptedflow.network import output_bias_jacobian  # noqa: E402
from adaptedflow.paper.trapping import bias_column_deviation, search_equilibrium  # noqa: E402


def test_bias_columns_are_exactly_e_q_kron_ones(small_problem):
    p = small_problem
    N, Q = p["X"].shape[0], p["Y"].shape[1]
    Ds = np.stack([np.asarray(af.jacobian(p["net"], p["theta"] * s, p["X"])) for s in (0.5, 1.0, 3.0)])
    assert bias_column_deviation(Ds, N, Q) == 0.0
    cols, expected = output_bias_jacobian(Ds.shape[2], N, Q)
    assert cols.tolist() == list(range(Ds.shape[2] - Q, Ds.shape[2])) and expected.shape == (N * Q, Q)
    # the identity forces ‖D‖_op ≥ √N
    assert np.linalg.norm(Ds[0] @ np.eye(Ds.shape[2])[:, cols[0]]) == pytest.approx(np.sqrt(N), rel=1e-15)
    bad = Ds[0].copy()
    bad[3, cols[1]] += 1e-6
    assert bias_column_deviation(bad, N, Q) == pytest.approx(1e-6)
    with pytest.raises(ValueError, match="`D` must have shape"):
        bias_column_deviation(Ds[0][:-1], N, Q)
    with pytest.raises(ValueError, match="`K` must be ≥ `Q`"):
        output_bias_jacobian(1, N, 2)


def test_search_equilibrium_duplicate_inputs_loses_rank():
    """Two equal inputs with labels ±1: every equilibrium has C ≥ 1/(2N)·2 > 0 and rank D < QN (3.10)."""
    X = jnp.asarray([[0.3, -0.2], [0.3, -0.2], [1.0, 0.5]])
    Y = jnp.asarray([[1.0], [-1.0], [0.2]])
    widths = (2, 3, 1)
    e = search_equilibrium(af.mlp(widths), af.init_params(jax.random.PRNGKey(0), widths), X, Y,
                           grad_stop=1e-6, s_first=50.0, s_max=1600.0)
    assert e.stop in ("converged", "s_max") and e.s_end > 0
    assert e.is_equilibrium(1e-9, 1e-6) and e.cost >= 1 / 3 - 1e-9
    assert e.singular_values[e.QN - 1] <= e.rayleigh_bound() * (1 + 1e-8) + 1e-14
    assert e.singular_values[e.QN - 1] / e.singular_values[0] < 1e-8
    with pytest.raises(ValueError, match="`grad_stop`"):
        search_equilibrium(af.mlp(widths), af.init_params(jax.random.PRNGKey(0), widths), X, Y,
                           grad_stop=0.0, s_first=1.0, s_max=2.0)


def test_trapping_example_labels_orthogonal_to_affine():
    ex = trapping_example(jax.random.PRNGKey(0), 6, 3, 0.1)
    assert ex.X.shape == (6, 2) and ex.Y.shape == (6, 1) and ex.widths == (2, 3, 1)
    assert ex.theta0.shape == (ex.output_map.num_params,) == (12,)
    assert ex.affine_residual < 1e-13
    np.testing.assert_allclose(float(jnp.sum(ex.Y ** 2)), 6.0, rtol=1e-14)     # |y|² = N


def test_orbit_diagnostics_matches_direct_formulas():
    ex = trapping_example(jax.random.PRNGKey(0), 6, 3, 0.1)
    thetas = jnp.stack([ex.theta0, 2 * ex.theta0])
    d = orbit_diagnostics(ex.output_map, thetas, ex.X, ex.Y)
    assert d.D.shape == (2, 6, 12)
    for k in range(2):
        x, D = af.outputs_and_jacobian(ex.output_map, thetas[k], ex.X)
        g = af.grad_x_cost(x, ex.Y)
        np.testing.assert_allclose(d.opnorm[k], np.linalg.svd(np.asarray(D), compute_uv=False)[0], rtol=1e-12)
        np.testing.assert_allclose(d.rayleigh[k], float(rayleigh_quotient(D, g)), rtol=1e-12)
        # the adapted flow moves the outputs at speed |∇_x C| (1.31)
        np.testing.assert_allclose(d.adapted_speed[k], float(jnp.linalg.norm(g)), rtol=1e-10)


def test_lemma_3_2_problems_layout():
    ex = trapping_example(jax.random.PRNGKey(0), 6, 3, 0.1)
    pr = lemma_3_2_problems(ex.X, ex.Y)
    (w1, _, Y1), (w2, X2, Y2) = pr["XOR [2,1,1]"], pr["duplicate [2,8,1]"]
    assert w1 == (2, 1, 1) and w2 == (2, 8, 1)
    np.testing.assert_array_equal(np.asarray(Y1).ravel(), [1.0, -1.0, -1.0, 1.0])
    np.testing.assert_array_equal(X2[0], X2[1])
    assert (float(Y2[0, 0]), float(Y2[1, 0])) == (1.0, -1.0)
    np.testing.assert_array_equal(Y2[2:, 0], ex.Y[2:6, 0])


def test_equilibrium_searches_rows():
    X_xor = jnp.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    problems = {"xor": ((2, 1, 1), X_xor, (X_xor[:, 0] * X_xor[:, 1])[:, None])}
    rows = equilibrium_searches(problems, jax.random.PRNGKey(0), 1, grad_stop=1e-3, s_first=5.0, s_max=10.0)
    assert len(rows) == 1 and rows[0]["name"] == "xor" and rows[0]["i"] == 0
    e = rows[0]["e"]
    assert e.QN == 4 and e.cost > 0.1                        # XOR is not fitted by one hidden unit
    assert rows[0]["rank"] == int(np.sum(e.singular_values > 1e-8 * e.singular_values[0])) <= 4
    assert rows[0]["kept"] == e.is_equilibrium(1e-9, 1e-6)
