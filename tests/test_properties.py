"""Property-based tests of the linear algebra over random shapes, ranks and seeds (hypothesis).

Tolerances are relative to the conditioning the example draws: c · κ · eps with κ the
condition number of the matrix involved, so a drawn ill-conditioned case is judged by
what float64 can deliver, not by a fixed number.
"""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import adaptedflow as af
from adaptedflow.paper.regimes import range_projector

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
    """D = A B ∈ R^{m×n} of rank r ≤ min(m, n) (r = 0 drawn too), g ∈ R^m, and the factors."""
    m = draw(st.integers(1, 10))
    n = draw(st.integers(1, 30))
    r = draw(st.integers(0, min(m, n)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    A, B = rng.normal(size=(m, r)), rng.normal(size=(r, n))
    return A @ B, rng.normal(size=m), r, A, B


def _columns(solve, D, n):
    """The matrix of the package's linear map b ↦ solve(D, b) on R^n, one column per unit vector
    (`solve` compiled once for the example's shape, then applied to each column)."""
    solve = jax.jit(solve)
    return np.stack([np.asarray(solve(jnp.asarray(D), jnp.asarray(e))) for e in np.eye(n)], axis=1)


@SETTINGS
@given(any_rank())
def test_pseudo_inverse_projectors(case):
    """P_r = D D⁺, built from the package's own `pinv_solve`, is the orthoprojector onto range D
    (4.2), and D⁺g is the minimum-norm least-squares solution (4.6)–(4.7).  The checks use only
    the factors D = A B the example was drawn from: range D = range A, range Dᵀ = range Bᵀ."""
    D, g, r, A, B = case
    assume(r > 0)                                     # D = 0 has no σ_r: `test_pseudo_inverse_of_zero`
    s = np.linalg.svd(D, compute_uv=False)
    tol = 100 * max(D.shape) * (s[0] / s[r - 1]) * EPS
    P = D @ _columns(lambda M, b: af.pinv_solve(M, b, rtol=1e-10), D, D.shape[0])
    np.testing.assert_allclose(P @ P, P, atol=tol)                            # idempotent
    np.testing.assert_allclose(P, P.T, atol=tol)                              # symmetric
    np.testing.assert_allclose(P @ A, A, atol=tol * np.linalg.norm(A, 2))     # identity on range D
    assert abs(np.trace(P) - r) <= tol * D.shape[0]                          # rank r
    v = np.asarray(af.pinv_solve(jnp.asarray(D), jnp.asarray(g), rtol=1e-10))
    scale = np.linalg.norm(g) + s[0] * np.linalg.norm(v)
    assert np.linalg.norm(A.T @ (g - D @ v)) <= tol * np.linalg.norm(A, 2) * scale   # residual ⟂ range D
    c = np.linalg.lstsq(B.T, v, rcond=None)[0]
    assert np.linalg.norm(B.T @ c - v) <= tol * np.linalg.norm(v)                # v ∈ range Dᵀ: least norm
    np.testing.assert_allclose(af.least_squares_direction(jnp.asarray(D), jnp.asarray(g), rtol=1e-10), -v,
                               rtol=1e-14, atol=1e-300)
    assert af.numerical_rank(jnp.asarray(D)) == r


def test_pseudo_inverse_of_zero():
    D, g = jnp.zeros((3, 5)), jnp.ones(3)
    np.testing.assert_array_equal(af.pinv_solve(D, g), np.zeros(5))
    assert af.numerical_rank(D) == 0


@SETTINGS
@given(st.integers(1, 8), st.integers(0, 6), st.integers(0, 2**32 - 1))
def test_under_parametrized_projector_identities(k, extra, seed):
    """The map g ↦ −D u(g), u(g) = `adapted_under_direction(D, g)` (5.2), is P̃, the orthoprojector
    onto range D (5.3)–(5.4): it fixes D, is symmetric and idempotent, has trace K, and agrees with
    the SVD projector `paper.regimes.range_projector`; u solves the normal equations."""
    qn = k + extra
    rng = np.random.default_rng(seed)
    D = rng.normal(size=(qn, k))
    g = rng.normal(size=qn)
    kappa = np.linalg.cond(D)
    tol = 100 * qn * kappa**2 * EPS
    P = -D @ _columns(af.adapted_under_direction, D, qn)
    np.testing.assert_allclose(P @ P, P, atol=tol)
    np.testing.assert_allclose(P, P.T, atol=tol)
    np.testing.assert_allclose(P @ D, D, atol=tol * np.linalg.norm(D, 2))
    assert abs(np.trace(P) - k) <= tol * qn
    np.testing.assert_allclose(P, range_projector(D), atol=tol)
    u = np.asarray(af.adapted_under_direction(jnp.asarray(D), jnp.asarray(g)))
    np.testing.assert_allclose(D.T @ (D @ u + g), 0, atol=tol * np.linalg.norm(D, 2) ** 2 * np.linalg.norm(g))


@SETTINGS
@given(st.integers(1, 10), st.integers(0, 2**32 - 1))
def test_borderline_both_adapted_forms_coincide(n, seed):
    D = np.random.default_rng(seed).normal(size=(n, n))
    g = np.random.default_rng(seed + 1).normal(size=n)
    kappa = np.linalg.cond(D)
    a = np.asarray(af.adapted_direction(jnp.asarray(D), jnp.asarray(g)))
    b = np.asarray(af.adapted_under_direction(jnp.asarray(D), jnp.asarray(g)))
    assert np.linalg.norm(a - b) <= 100 * n * kappa**2 * EPS * np.linalg.norm(a)      # (6.2) = (5.2)
