r"""Linear algebra of the adapted flows: Gram solves, pseudo-inverses, numerical rank.

Every rank here is a *numerical* rank: singular values are taken of D itself (never of
D Dᵀ, whose condition number is the square), and the tolerance is an argument (default
`numerics.default_rank_rtol`, re-exported here).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .numerics import EPS, default_rank_rtol, safe_reciprocal


def singular_values(D: jax.Array) -> jax.Array:
    r"""Singular values of D in decreasing order, shape `(min(QN, K),)`."""
    return jnp.linalg.svd(D, compute_uv=False)


def numerical_rank(D: jax.Array, rtol: float | None = None) -> int:
    r"""Number of singular values of D above `rtol`·σ_max (default `default_rank_rtol`)."""
    s = singular_values(D)
    rtol = default_rank_rtol(D.shape) if rtol is None else rtol
    return int(jnp.sum(s > rtol * s[0]))


def default_fallback_rtol(n: int) -> float:
    r"""The default threshold n·eps on the min/max ratio of squared Cholesky pivots below
    which a Gram solve falls back to the eigendecomposition pseudo-inverse.  The pivots
    bound λ_min from above (λ_min ≤ min pivot²), so this detects near-singularity only
    when it shows in the pivots; the refinement step limits the error otherwise."""
    return n * EPS


def _eigh_pinv_solve(G: jax.Array, b: jax.Array, rtol: float) -> jax.Array:
    """G⁺ b for symmetric PSD G through its eigendecomposition (eigenvalues ≤ rtol·λ_max dropped)."""
    lam, V = jnp.linalg.eigh(G)
    keep = lam > rtol * jnp.max(lam)
    return V @ (safe_reciprocal(lam, keep) * (V.T @ b))


#: Above this estimate of κ(A) = sqrt(λ_max/λ_min) of a Gram matrix G = A Aᵀ, one refinement step
#: no longer brings the Cholesky (normal-equations) solution to κ·eps: its error is about
#: (κ²·eps)² relative, which passes κ·eps at κ ≈ eps^(-1/3) ≈ 1.7e5.  Above κ = 1e4 (κ²·eps =
#: 2.2e-8) `gram_matrix_solve` refines to convergence instead (see `GramSolve`).
KAPPA_SWITCH = 1e4

#: The most refinement steps after the first (each one JVP, one VJP and two triangular solves).
MAX_REFINEMENTS = 20


class GramSolve(NamedTuple):
    r"""The result of `gram_matrix_solve_info`.

    Attributes:
        alpha: the solution of G α = b, shape `(n,)`.
        fallback: whether the eigendecomposition pseudo-inverse replaced the Cholesky solve.
        kappa: sqrt(max/min squared Cholesky pivot), an estimate of κ(A) = sqrt(κ(G)) from
            below (λ_min ≤ min pivot² and max pivot² ≤ λ_max); inf when the factor failed.
        refinements: refinement steps taken (1 below `KAPPA_SWITCH`, up to
            1 + `MAX_REFINEMENTS` above it).
    """

    alpha: jax.Array
    fallback: jax.Array
    kappa: jax.Array
    refinements: jax.Array


def gram_matrix_solve_info(G: jax.Array, b: jax.Array, matvec, *, fallback_rtol: float | None = None,
                           kappa_switch: float = KAPPA_SWITCH) -> GramSolve:
    r"""Solve G α = b for a Gram matrix G = A Aᵀ by Cholesky and iterative refinement.

    Never forms an inverse.  JAX's Cholesky returns NaN *silently* when G is singular (a
    duplicated input, say), or tiny pivots when it is singular up to rounding; both are
    detected (non-finite factor, or smallest squared pivot ≤ `fallback_rtol` × largest)
    and the solve falls back to the eigendecomposition pseudo-inverse of G, so no NaN and
    no 1/eps blow-up leaves here.

    Refinement: the residual b − A(Aᵀα) is computed by `matvec` from A itself, not from
    G (corrected semi-normal equations, Björck 1987), and each correction solves with the
    Cholesky factor.  A Cholesky solution alone has relative error ≈ κ(A)²·eps; each
    step multiplies the error by about κ²·eps.  One step is always taken.  When the
    pivots estimate κ(A) > `kappa_switch` (`KAPPA_SWITCH` = 1e4 by default), the solve
    switches to refinement until convergence: it stops when a correction is ≤ eps·|α|,
    stops shrinking (to less than half the previous one), or after `MAX_REFINEMENTS`
    more steps.  The reached accuracy is then that of A's own products, about κ·eps, as
    long as κ²·eps < 1 (checked against a QR least-squares solve in the tests).

    Args:
        G: symmetric PSD, shape `(n, n)`.
        b: right-hand side, shape `(n,)`.
        matvec: `a ↦ A (Aᵀ a)` for the refinement steps.
        fallback_rtol: eigenvalue cut-off relative to λ_max for the fallback; default `n·eps`.
        kappa_switch: the κ(A) estimate above which the solve refines to convergence.

    Returns:
        A `GramSolve` `(alpha, fallback, kappa, refinements)`.
    """
    rtol = default_fallback_rtol(G.shape[0]) if fallback_rtol is None else fallback_rtol
    # LAPACK's potrf reads a column-major matrix; G is symmetric, so factoring Gᵀ (the
    # same matrix) lets XLA hand over G's row-major buffer as is instead of transposing
    # 8·n² bytes (measured: 36 → 25 ms for one direction at n = 1000).  Symmetrising the
    # input is skipped for the same reason: potrf reads one triangle only.
    L = jax.lax.linalg.cholesky(G.T, symmetrize_input=False)
    pivots = jnp.diagonal(L) ** 2
    ok = jnp.all(jnp.isfinite(L)) & (jnp.min(pivots) > rtol * jnp.max(pivots))
    kappa = jnp.where(ok, jnp.sqrt(jnp.max(pivots) / jnp.min(pivots)), jnp.inf)
    solve = lambda r: jax.scipy.linalg.cho_solve((L, True), r)
    alpha = solve(b)
    delta = solve(b - matvec(alpha))
    alpha = alpha + delta

    def more(state):
        a, d, d_prev, k = state
        nd, na = jnp.linalg.norm(d), jnp.linalg.norm(a)
        return (k < 1 + MAX_REFINEMENTS) & (nd > EPS * na) & (nd < 0.5 * d_prev)

    def refine(state):
        a, d, _, k = state
        d_new = solve(b - matvec(a))
        return a + d_new, d_new, jnp.linalg.norm(d), k + 1

    def to_convergence(a, d):
        a, _, _, k = jax.lax.while_loop(more, refine, (a, d, jnp.asarray(jnp.inf, a.dtype), jnp.asarray(1)))
        return a, k

    alpha, steps = jax.lax.cond(ok & (kappa > kappa_switch), to_convergence,
                                lambda a, d: (a, jnp.asarray(1)), alpha, delta)
    # The Cholesky solution is computed unconditionally (NaNs stay in the discarded
    # branch); the cond then carries only vectors and G, not the factor.
    alpha = jax.lax.cond(ok, lambda a, G, b: a, lambda a, G, b: _eigh_pinv_solve(G, b, rtol), alpha, G, b)
    return GramSolve(alpha, ~ok, kappa, jnp.where(ok, steps, 0))


def gram_matrix_solve(G: jax.Array, b: jax.Array, matvec, *, fallback_rtol: float | None = None
                      ) -> tuple[jax.Array, jax.Array]:
    r"""Solve G α = b for a Gram matrix G = A Aᵀ: `gram_matrix_solve_info` without its statistics.

    Args:
        G: symmetric PSD, shape `(n, n)`.
        b: right-hand side, shape `(n,)`.
        matvec: `a ↦ A (Aᵀ a)` for the refinement steps.
        fallback_rtol: eigenvalue cut-off relative to λ_max for the fallback; default `n·eps`.

    Returns:
        `(alpha, used_fallback)`: the solution, shape `(n,)`, and a boolean scalar.
    """
    out = gram_matrix_solve_info(G, b, matvec, fallback_rtol=fallback_rtol)
    return out.alpha, out.fallback


def gram_solve(A: jax.Array, b: jax.Array, *, fallback_rtol: float | None = None) -> tuple[jax.Array, jax.Array]:
    r"""Solve (A Aᵀ) α = b; `gram_matrix_solve` with G = A Aᵀ formed from A.

    Args:
        A: shape `(n, K)` with n ≤ K (D for (1.30); Dᵀ for (5.2)).
        b: right-hand side, shape `(n,)`.
        fallback_rtol: eigenvalue cut-off relative to λ_max for the fallback; default `n·eps`.

    Returns:
        `(alpha, used_fallback)`: the solution, shape `(n,)`, and a boolean scalar.
    """
    return gram_matrix_solve(A @ A.T, b, lambda a: A @ (A.T @ a), fallback_rtol=fallback_rtol)


def pinv_solve(D: jax.Array, b: jax.Array, rtol: float | None = None) -> jax.Array:
    r"""The minimum-norm least-squares solution D⁺ b = argmin_v |D v − b| of least norm (4.6).

    Rank-revealing: from the SVD of D, singular values ≤ `rtol`·σ_max are treated as
    zero (default `rtol = max(QN, K)·eps`).

    Args:
        D: shape `(QN, K)`.
        b: shape `(QN,)`.
        rtol: relative singular-value cut-off defining the numerical rank.

    Returns:
        D⁺ b, shape `(K,)`.
    """
    rtol = default_rank_rtol(D.shape) if rtol is None else rtol
    U, s, Vt = jnp.linalg.svd(D, full_matrices=False)
    keep = s > rtol * s[0]
    return Vt.T @ (safe_reciprocal(s, keep) * (U.T @ b))
