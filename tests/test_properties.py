"""Property-based tests of the linear algebra over random shapes, ranks and seeds (hypothesis).

Tolerances are relative to the conditioning the example draws: c · κ · eps with κ the
condition number of the matrix involved, so a drawn ill-conditioned case is judged by
what float64 can deliver, not by a fixed number.
"""

import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import adaptedflow as af

EPS = np.finfo(np.float64).eps
SETTINGS = settings(max_examples=20, deadline=None)


@st.composite
def wide_full_rank(draw):
    """D ∈ R^{QN×K}, K ≥ QN, full row rank with κ(D) ≤ 1e6, and g ∈ R^{QN}."""
    qn = draw(st.integers(1, 12))
    k = draw(st.integers(qn, 40))
    seed = draw(st.integers(0, 2**32 - 1))
    log_kappa = draw(st.floats(0, 6))
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.normal(size=(qn, qn)))
    V, _ = np.linalg.qr(rng.normal(size=(k, qn)))
    s = np.logspace(0, -log_kappa, qn) * rng.uniform(0.5, 2)
    return (U * s) @ V.T, rng.normal(size=qn), s[0] / s[-1]


@SETTINGS
@given(wide_full_rank())
def test_adapted_direction_inverts_D_over_parametrized(case):
    D, g, kappa = case
    u = np.asarray(af.adapted_direction(jnp.asarray(D), jnp.asarray(g)))
    scale = np.linalg.norm(D, 2) * np.linalg.norm(u) + np.linalg.norm(g)
    assert np.linalg.norm(D @ u + g) <= 100 * D.shape[0] * kappa * EPS * scale       # D D⁺ = 1 (1.27)
    Dp = np.linalg.pinv(D)
    assert np.linalg.norm(u - Dp @ D @ u) <= 100 * kappa * EPS * np.linalg.norm(u) * D.shape[1]  # u ∈ range Dᵀ


@SETTINGS
@given(wide_full_rank(), st.integers(0, 2**32 - 1))
def test_adapted_direction_is_the_minimum_norm_solution(case, seed):
    D, g, kappa = case
    u = np.asarray(af.adapted_direction(jnp.asarray(D), jnp.asarray(g)))
    # any other solution u + n, n ∈ ker D, is longer (Proposition 2.4)
    n = np.random.default_rng(seed).normal(size=D.shape[1])
    n -= np.linalg.pinv(D) @ (D @ n)
    assert np.linalg.norm(u + n) >= np.linalg.norm(u) * (1 - 100 * kappa * EPS * D.shape[1])


@st.composite
def any_rank(draw):
    m = draw(st.integers(1, 10))
    n = draw(st.integers(1, 30))
    r = draw(st.integers(0, min(m, n)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    D = rng.normal(size=(m, r)) @ rng.normal(size=(r, n)) if r else np.zeros((m, n))
    return D, rng.normal(size=m), r


@SETTINGS
@given(any_rank())
def test_pseudo_inverse_projectors(case):
    D, g, r = case
    if r == 0:
        return
    v = np.asarray(af.pinv_solve(jnp.asarray(D), jnp.asarray(g), rtol=1e-10))
    Pr = D @ np.linalg.pinv(D, rcond=1e-10)                       # (4.2): projector onto range D
    np.testing.assert_allclose(Pr @ Pr, Pr, atol=1e-9)
    np.testing.assert_allclose(Pr, Pr.T, atol=1e-9)
    np.testing.assert_allclose(D @ v, Pr @ g, atol=1e-8 * (1 + np.linalg.norm(g)))   # (4.7)
    assert af.numerical_rank(jnp.asarray(D)) == r


@SETTINGS
@given(st.integers(1, 8), st.integers(0, 6), st.integers(0, 2**32 - 1))
def test_under_parametrized_projector_identities(k, extra, seed):
    qn = k + extra
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(qn, k))
    g = rng.normal(size=qn)
    u = np.asarray(af.adapted_under_direction(jnp.asarray(D), jnp.asarray(g)))
    P = D @ np.linalg.solve(D.T @ D, D.T)                         # P̃ of (5.3)
    kappa = np.linalg.cond(D)
    tol = 100 * qn * kappa**2 * EPS
    np.testing.assert_allclose(P @ P, P, atol=tol)
    np.testing.assert_allclose(D @ u, -P @ g, atol=tol * np.linalg.norm(g))


@SETTINGS
@given(st.integers(1, 10), st.integers(0, 2**32 - 1))
def test_borderline_both_adapted_forms_coincide(n, seed):
    D = np.random.default_rng(seed).normal(size=(n, n))
    g = np.random.default_rng(seed + 1).normal(size=n)
    kappa = np.linalg.cond(D)
    a = np.asarray(af.adapted_direction(jnp.asarray(D), jnp.asarray(g)))
    b = np.asarray(af.adapted_under_direction(jnp.asarray(D), jnp.asarray(g)))
    assert np.linalg.norm(a - b) <= 100 * n * kappa**2 * EPS * np.linalg.norm(a)      # (6.2) = (5.2)
