r"""The vector fields on parameter space R^K: standard (1.9) and adapted (1.30), (5.2), (4.6).

Each direction is a pure function of the Jacobian D ∈ R^{QN×K} and ∇_x C ∈ R^{QN};
`parameter_velocity` assembles ∂_s θ from an output map.
"""

from __future__ import annotations

import jax

from .cost import grad_x_cost, outputs_and_jacobian
from .linalg import gram_solve, pinv_solve

#: The flows this package integrates, with the equation each implements.
FLOWS = {
    "standard": "(1.9): ∂_s θ = −∇_θ C = −Dᵀ ∇_x C",
    "adapted": "(1.30): ∂_s θ = −D⁺ ∇_x C, D⁺ = Dᵀ(D Dᵀ)⁻¹ (K ≥ QN, rank D = QN)",
    "adapted-under": "(5.2): ∂_s θ = −(DᵀD)⁻¹ Dᵀ ∇_x C (K ≤ QN, rank D = K)",
    "least-squares": "(4.6): ∂_s θ = −D⁺ ∇_x C, Moore–Penrose pseudo-inverse (any rank)",
}


def standard_direction(D: jax.Array, grad_x: jax.Array) -> jax.Array:
    r"""−∇_θ C = −Dᵀ ∇_x C, (1.9) with (1.21).  Shapes `(QN, K)`, `(QN,)` → `(K,)`."""
    return -D.T @ grad_x


def adapted_direction(D: jax.Array, grad_x: jax.Array) -> jax.Array:
    r"""−D⁺ ∇_x C = −Dᵀ (D Dᵀ)⁻¹ ∇_x C, the over-parametrized adapted field (1.30).

    Solved by Cholesky of D Dᵀ (see `gram_solve`), never an explicit inverse.  Needs
    rank D = QN (the rank condition (2.1)); on a singular D Dᵀ it falls back to the
    pseudo-inverse, and the integrator stops at the rank loss.

    Args:
        D: Jacobian, shape `(QN, K)`, K ≥ QN.
        grad_x: ∇_x C, shape `(QN,)`.

    Returns:
        ∂_s θ, shape `(K,)`, in range(Dᵀ); D ∂_s θ = −∇_x C (1.31).
    """
    alpha, _ = gram_solve(D, grad_x)
    return -D.T @ alpha


def adapted_under_direction(D: jax.Array, grad_x: jax.Array) -> jax.Array:
    r"""−(DᵀD)⁻¹ Dᵀ ∇_x C, the under-parametrized adapted field (5.2) (Gauss–Newton).

    Args:
        D: Jacobian, shape `(QN, K)`, K ≤ QN, rank K.
        grad_x: ∇_x C, shape `(QN,)`.

    Returns:
        ∂_s θ, shape `(K,)`; D ∂_s θ = −P̃ ∇_x C (5.3).
    """
    alpha, _ = gram_solve(D.T, D.T @ grad_x)
    return -alpha


def least_squares_direction(D: jax.Array, grad_x: jax.Array, rtol: float | None = None) -> jax.Array:
    r"""−D⁺ ∇_x C with the rank-revealing pseudo-inverse (4.5)–(4.6); D ∂_s θ = −P_r ∇_x C (4.7).

    Args:
        D: Jacobian, shape `(QN, K)`, any rank.
        grad_x: ∇_x C, shape `(QN,)`.
        rtol: singular values ≤ `rtol`·σ_max count as zero (see `linalg.pinv_solve`).
    """
    return -pinv_solve(D, grad_x, rtol)


def direction(flow: str, D: jax.Array, grad_x: jax.Array, *, rank_rtol: float | None = None) -> jax.Array:
    r"""∂_s θ for `flow` in `FLOWS`, from D (shape `(QN, K)`) and ∇_x C (shape `(QN,)`)."""
    if flow == "standard":
        return standard_direction(D, grad_x)
    if flow == "adapted":
        return adapted_direction(D, grad_x)
    if flow == "adapted-under":
        return adapted_under_direction(D, grad_x)
    if flow == "least-squares":
        return least_squares_direction(D, grad_x, rank_rtol)
    raise ValueError(f"`flow` must be one of {sorted(FLOWS)}; got {flow!r}.")


def parameter_velocity(flow: str, output_map, theta: jax.Array, X: jax.Array, Y: jax.Array,
                       *, rank_rtol: float | None = None) -> jax.Array:
    r"""∂_s θ at θ for `flow`, building x[θ], D[θ] (1.20) and ∇_x C (1.23) once.

    Args:
        flow: a key of `FLOWS`.
        output_map: `output_map(theta, X) -> x`.
        theta: shape `(K,)`; X: shape `(N, M)`; Y: targets, shape `(N, Q)`.

    Returns:
        Shape `(K,)`.
    """
    x, D = outputs_and_jacobian(output_map, theta, X)
    return direction(flow, D, grad_x_cost(x, Y), rank_rtol=rank_rtol)


def check_regime(flow: str, K: int, QN: int) -> None:
    r"""Raise `ValueError` if `flow` cannot apply with K parameters and QN outputs."""
    if flow not in FLOWS:
        raise ValueError(f"`flow` must be one of {sorted(FLOWS)}; got {flow!r}.")
    if flow == "adapted" and K < QN:
        raise ValueError(
            f"`flow='adapted'` (1.30) needs an over-parametrized network, K ≥ QN; got K = {K} < "
            f"QN = {QN}. Use `flow='adapted-under'` (5.2) or `flow='least-squares'` (4.6)."
        )
    if flow == "adapted-under" and K > QN:
        raise ValueError(
            f"`flow='adapted-under'` (5.2) needs K ≤ QN (DᵀD is singular otherwise); got K = {K} > "
            f"QN = {QN}. Use `flow='adapted'` (1.30)."
        )
