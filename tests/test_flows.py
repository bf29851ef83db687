import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptedflow as af


def _D_g(p):
    x, D = af.outputs_and_jacobian(p["net"], p["theta"], p["X"])
    return D, af.grad_x_cost(x, p["Y"])


def test_adapted_direction_solves_D_u_eq_minus_grad_1_31(small_problem):
    D, g = _D_g(small_problem)
    u = af.adapted_direction(D, g)
    np.testing.assert_allclose(D @ u, -g, rtol=1e-11, atol=1e-14)
    # u is the minimum-norm solution: it lies in range(Dᵀ) and equals −D⁺g (1.29)
    np.testing.assert_allclose(u, -np.linalg.pinv(np.asarray(D)) @ np.asarray(g), rtol=1e-9, atol=1e-12)


def test_adapted_equals_1_29_form(small_problem):
    D, g = _D_g(small_problem)
    Dp = np.linalg.pinv(np.asarray(D))
    grad_theta = np.asarray(D).T @ np.asarray(g)
    np.testing.assert_allclose(af.adapted_direction(D, g), -Dp @ Dp.T @ grad_theta, rtol=1e-8, atol=1e-12)


def test_standard_direction_is_minus_gradient(small_problem):
    p = small_problem
    D, g = _D_g(p)
    grad = jax.grad(lambda t: af.cost(p["net"](t, p["X"]), p["Y"]))(p["theta"])
    np.testing.assert_allclose(af.standard_direction(D, g), -grad, rtol=1e-12, atol=1e-16)


def test_under_parametrized_direction_5_2(rng):
    D = jnp.asarray(rng.normal(size=(12, 5)))
    g = jnp.asarray(rng.normal(size=12))
    u = af.adapted_under_direction(D, g)
    np.testing.assert_allclose(D.T @ D @ u, -D.T @ g, rtol=1e-10, atol=1e-13)
    P = D @ np.linalg.solve(D.T @ D, D.T)        # P̃ of (5.3)
    np.testing.assert_allclose(D @ u, -P @ g, rtol=1e-10, atol=1e-13)


def test_borderline_K_eq_QN_both_adapted_forms_agree_6_2(rng):
    D = jnp.asarray(rng.normal(size=(6, 6)))
    g = jnp.asarray(rng.normal(size=6))
    cond = np.linalg.cond(np.asarray(D))
    tol = 100 * cond * np.finfo(float).eps
    np.testing.assert_allclose(af.adapted_direction(D, g), af.adapted_under_direction(D, g), rtol=tol, atol=tol)
    np.testing.assert_allclose(af.adapted_direction(D, g), -np.linalg.solve(np.asarray(D), np.asarray(g)), rtol=tol)


def test_least_squares_handles_rank_loss_4_7(rng):
    D = rng.normal(size=(6, 2)) @ rng.normal(size=(2, 9))     # rank 2 < QN = 6
    g = rng.normal(size=6)
    u = af.least_squares_direction(jnp.asarray(D), jnp.asarray(g))
    Pr = D @ np.linalg.pinv(D)                                # projector onto range D (4.2)
    np.testing.assert_allclose(D @ u, -Pr @ g, rtol=1e-9, atol=1e-12)


def test_direction_dispatch_and_unknown_flow(small_problem, rng):
    """Each flow's direction equals its formula computed here by numpy: −Dᵀg (1.9); the
    minimum-norm solution of D u = −g (1.30) and (4.6), which `lstsq` returns for a wide D;
    the least-squares solution of a tall D (5.2)."""
    D, g = _D_g(small_problem)
    Dn, gn = np.asarray(D), np.asarray(g)
    np.testing.assert_allclose(af.direction("standard", D, g), -Dn.T @ gn, rtol=1e-12, atol=1e-15)
    wide = -np.linalg.lstsq(Dn, gn, rcond=None)[0]
    tol = 100 * max(Dn.shape) * np.linalg.cond(Dn) * np.finfo(float).eps * np.linalg.norm(wide)
    for flow in ("adapted", "least-squares"):
        got = np.asarray(af.direction(flow, D, g))
        assert got.shape == wide.shape and np.linalg.norm(got - wide) <= tol, flow
    tall, h = rng.normal(size=(12, 5)), rng.normal(size=12)
    want = -np.linalg.lstsq(tall, h, rcond=None)[0]
    got = np.asarray(af.direction("adapted-under", jnp.asarray(tall), jnp.asarray(h)))
    np.testing.assert_allclose(got, want, rtol=100 * np.linalg.cond(tall) ** 2 * np.finfo(float).eps)
    assert set(af.FLOWS) == {"standard", "adapted", "least-squares", "adapted-under"}
    with pytest.raises(ValueError, match="flow"):
        af.direction("natural", D, g)
