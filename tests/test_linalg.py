import jax.numpy as jnp
import numpy as np
import pytest

import adaptedflow as af
from adaptedflow.numerics import EPS


@pytest.mark.parametrize("shape", [(3, 7), (5, 5), (8, 40)])
def test_gram_solve_matches_dense_solve(rng, shape):
    A = jnp.asarray(rng.normal(size=shape))
    b = jnp.asarray(rng.normal(size=shape[0]))
    alpha, fallback = af.gram_solve(A, b)
    assert not bool(fallback)
    np.testing.assert_allclose(alpha, np.linalg.solve(A @ A.T, b), rtol=1e-10)


def test_gram_solve_falls_back_on_singular_gram_instead_of_nan(rng):
    A = rng.normal(size=(4, 10))
    A[3] = A[2]                                     # a duplicated row: A Aᵀ is singular
    b = rng.normal(size=4)
    alpha, fallback = af.gram_solve(jnp.asarray(A), jnp.asarray(b))
    assert bool(fallback) and np.all(np.isfinite(alpha))
    G = A @ A.T   # the fallback gives the minimum-norm least-squares solution of G α = b
    np.testing.assert_allclose(alpha, np.linalg.pinv(G, rcond=1e-12) @ b, rtol=1e-8, atol=1e-10)


def test_jax_cholesky_is_silently_nan_on_exactly_singular_gram():
    """The hazard gram_solve guards against (documented in the issue): no exception, only NaN."""
    A = jnp.asarray([[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
    L = jnp.linalg.cholesky(A @ A.T)
    assert not np.all(np.isfinite(L))
    alpha, fallback = af.gram_solve(A, jnp.asarray([1.0, 1.0]))
    assert bool(fallback) and np.all(np.isfinite(alpha))
    np.testing.assert_allclose(alpha, [0.5, 0.5], rtol=1e-12)


@pytest.mark.parametrize("shape,rank", [((6, 10), 6), ((6, 10), 4), ((10, 6), 3)])
def test_pinv_solve_is_minimum_norm_least_squares(rng, shape, rank):
    D = rng.normal(size=(shape[0], rank)) @ rng.normal(size=(rank, shape[1]))
    b = rng.normal(size=shape[0])
    v = af.pinv_solve(jnp.asarray(D), jnp.asarray(b))
    np.testing.assert_allclose(v, np.linalg.pinv(D) @ b, rtol=1e-9, atol=1e-12)
    assert af.numerical_rank(jnp.asarray(D)) == rank


def test_singular_values_are_of_D_not_of_the_gram(rng):
    D = jnp.asarray(np.diag([1.0, 1e-9]) @ rng.normal(size=(2, 5)))
    s = af.singular_values(D)
    np.testing.assert_allclose(s, np.linalg.svd(np.asarray(D), compute_uv=False), rtol=1e-12)
    assert af.numerical_rank(D) == 2           # 1e-9 relative is far above 5·eps


@pytest.mark.parametrize("kappa", [1e6, 1e7])
def test_gram_solve_refines_to_kappa_eps_above_the_switch(kappa):
    # D = U diag(s) Vᵀ with κ(D) = kappa: the minimum-norm solution Dᵀ(D Dᵀ)⁻¹g against a QR/SVD lstsq.
    # One refinement step leaves the normal equations' error (measured 1.9e-7 = 86 κ·eps at κ = 1e7);
    # refining to convergence reaches ~0.2 κ·eps.  Bound: 2 κ·eps.
    from adaptedflow.linalg import KAPPA_SWITCH, gram_matrix_solve_info

    rng = np.random.default_rng(0)
    QN, K = 60, 90
    U, _ = np.linalg.qr(rng.standard_normal((QN, QN)))
    V, _ = np.linalg.qr(rng.standard_normal((K, QN)))
    D = jnp.asarray((U * np.logspace(0, -np.log10(kappa), QN)) @ V.T)
    g = jnp.asarray(rng.standard_normal(QN))
    ref = np.linalg.lstsq(np.asarray(D), np.asarray(g), rcond=None)[0]
    err = lambda out: np.linalg.norm(np.asarray(D.T @ out.alpha) - ref) / np.linalg.norm(ref)
    out = gram_matrix_solve_info(D @ D.T, g, lambda a: D @ (D.T @ a))
    assert float(out.kappa) > KAPPA_SWITCH and int(out.refinements) > 1 and not bool(out.fallback)
    assert float(out.kappa) <= kappa * (1 + 1e-6)             # the pivots estimate κ from below
    assert err(out) <= 2 * kappa * EPS, err(out)
    if kappa >= 1e7:                                           # the switch matters: one step is far off
        one = gram_matrix_solve_info(D @ D.T, g, lambda a: D @ (D.T @ a), kappa_switch=np.inf)
        assert int(one.refinements) == 1 and err(one) > 10 * kappa * EPS


def test_gram_solve_takes_one_refinement_below_the_switch():
    from adaptedflow.linalg import gram_matrix_solve_info

    A = jnp.asarray(np.random.default_rng(1).standard_normal((20, 30)))
    out = gram_matrix_solve_info(A @ A.T, jnp.ones(20), lambda a: A @ (A.T @ a))
    assert int(out.refinements) == 1 and float(out.kappa) < 1e4
