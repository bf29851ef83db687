"""Tests for adaptedflow.critical: Hessian, nullity, f_i of (4.13), Newton, walks, the perturbation test."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptedflow as af
from adaptedflow.critical import (constraint_jacobian, constraint_values, cost_gradient, cost_hessian, curvatures,
                                  hessian_nullity, independent_columns, newton_to_critical, null_directions,
                                  perturbation_cost_change, walk_critical_set)

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
    e = np.zeros_like(g); e[3] = 1.0
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
