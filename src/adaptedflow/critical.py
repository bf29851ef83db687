r"""Equilibrium sets of the flows (§4): Hessian nullity, the functions f_i of (4.13), walks, perturbations.

At an equilibrium θ_* of the standard flow, ∇_θ C = Dᵀ∇_x C = 0 (Lemma 3.2, (4.12)).
Theorem 4.2 says that where rank D = r is constant on an open set, the equilibria are
{f_1 = … = f_r = 0}, f_i = ⟨v_i, ∇_x C⟩ (4.13), generically a submanifold of dimension
K − r (4.14).  This module measures that dimension three ways:

* the nullity of the Hessian ∇²_θ C at θ_* (the tangent cone of the critical set lies in
  its kernel, so nullity ≥ local dimension, with equality for a Morse–Bott set);
* the rank of the Jacobian of (f_1, …, f_r) (rank r gives a (K − r)-manifold);
* walks from θ_* along null directions, each corrected back onto ∇_θ C = 0 by Newton's
  method; the span of the corrected displacements gives the dimension from below.

And it tests the perturbation rule of §4.2 (4.15)–(4.17): at a critical point the cost
change C(θ_* + ηn) − C(θ_*) = (η²/2) nᵀHn + O(η³), whatever the sign of η.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from ._checks import validate_data
from .cost import cost, grad_x_cost, outputs_and_jacobian


def _validate(output_map, theta, X, Y):
    return validate_data(theta, X, Y, "theta")


def cost_of_params(output_map, theta, X, Y) -> jax.Array:
    r"""C[x[θ]] (1.7) as a function of θ.  theta `(K,)`, X `(N, M)`, Y `(N, Q)` → scalar."""
    return cost(output_map(theta, X), Y)


_jit_grad = jax.jit(jax.grad(cost_of_params, argnums=1), static_argnums=0)
_jit_hessian = jax.jit(jax.hessian(cost_of_params, argnums=1), static_argnums=0)


def cost_gradient(output_map, theta, X, Y) -> jax.Array:
    r"""∇_θ C = Dᵀ ∇_x C (1.21), shape `(K,)`."""
    theta, X, Y = _validate(output_map, theta, X, Y)
    return _jit_grad(output_map, theta, X, Y)


def cost_hessian(output_map, theta, X, Y) -> jax.Array:
    r"""∇²_θ C = (1/N) DᵀD + (1/N) Σ_j ⟨x_j − y_ω(j), ∇²_θ x_j⟩, shape `(K, K)`, symmetric.

    At an equilibrium the second term vanishes when the residual pairs cancel (e.g. a
    duplicated input with two labels, where r_a = −r_b and ∇²x_a = ∇²x_b).
    """
    theta, X, Y = _validate(output_map, theta, X, Y)
    H = _jit_hessian(output_map, theta, X, Y)
    return 0.5 * (H + H.T)


def hessian_nullity(H, rtol: float) -> int:
    r"""Number of eigenvalues of the symmetric `H` with |λ| ≤ `rtol`·max|λ|.

    Args:
        H: symmetric, shape `(K, K)`.
        rtol: relative cut-off (> 0).  A cut-off of c·K·eps is exact-arithmetic nullity up to
            rounding; at an approximate critical point with |∇C| = δ the null eigenvalues
            move by O(δ·‖∇³C‖/‖H‖) relative, so state the gap you see.

    Returns:
        The nullity (an int).
    """
    H = np.asarray(H, dtype=np.float64)
    if H.ndim != 2 or H.shape[0] != H.shape[1]:
        raise ValueError(f"`H` must be a square matrix (K, K); got shape {H.shape}.")
    if not rtol > 0:
        raise ValueError(f"`rtol` must be > 0; got {rtol!r}.")
    lam = np.linalg.eigvalsh(H)
    return int(np.sum(np.abs(lam) <= rtol * np.max(np.abs(lam))))


def null_directions(H, rtol: float) -> np.ndarray:
    r"""An orthonormal basis of the numerical kernel of symmetric `H`, shape `(n0, K)` (rows)."""
    H = np.asarray(H, dtype=np.float64)
    lam, V = np.linalg.eigh(H)
    keep = np.abs(lam) <= rtol * np.max(np.abs(lam))
    return V[:, keep].T


def independent_columns(D, r: int) -> np.ndarray:
    r"""Indices of r columns of D spanning range D (pivoted QR): the fields v_i of (4.13).

    Args:
        D: shape `(QN, K)`.  r: the rank to select, 1 ≤ r ≤ min(QN, K).

    Returns:
        Sorted integer indices, shape `(r,)`.
    """
    D = np.asarray(D, dtype=np.float64)
    if not (isinstance(r, (int, np.integer)) and 1 <= r <= min(D.shape)):
        raise ValueError(f"`r` must be an integer in 1..{min(D.shape)} (min(QN, K)); got {r!r}.")
    _, _, piv = scipy.linalg.qr(D, pivoting=True, mode="economic")
    return np.sort(piv[:r])


def constraint_values(output_map, theta, X, Y, columns) -> jax.Array:
    r"""f_i(θ) = ⟨v_i(θ), ∇_x C[x[θ]]⟩ with v_i = column `columns[i]` of D[θ]  (4.13).

    These are the entries (∇_θ C)_{c_i}: the equilibria (4.12) in a set of constant rank r
    are the zeros of f.  Shape `(r,)`.
    """
    theta, X, Y = _validate(output_map, theta, X, Y)
    cols = jnp.asarray(np.asarray(columns, dtype=int))
    return _constraint_values(output_map, theta, X, Y, cols)


def _constraint_values(output_map, theta, X, Y, cols):
    x, D = outputs_and_jacobian(output_map, theta, X)
    return D[:, cols].T @ grad_x_cost(x, Y)


_jit_constraint_jacobian = jax.jit(jax.jacfwd(_constraint_values, argnums=1), static_argnums=0)


def constraint_jacobian(output_map, theta, X, Y, columns) -> jax.Array:
    r"""∂f/∂θ of (4.13), shape `(r, K)`; rank r makes {f = 0} a (K − r)-manifold near θ (4.14)."""
    theta, X, Y = _validate(output_map, theta, X, Y)
    cols = jnp.asarray(np.asarray(columns, dtype=int))
    return _jit_constraint_jacobian(output_map, theta, X, Y, cols)


def newton_to_critical(output_map, theta, X, Y, *, tol: float = 1e-13, max_iter: int = 30,
                       pinv_rtol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    r"""Newton's method for ∇_θ C = 0 with the minimum-norm step −H⁺∇_θC.

    The pseudo-inverse step moves orthogonally to ker H, so near a Morse–Bott critical
    set it lands on the set at the nearest point to first order (quadratic convergence).

    Args:
        theta: start, shape `(K,)`.
        tol: stop when |∇_θ C| ≤ tol.  max_iter: at most this many steps.
        pinv_rtol: eigenvalues of H with |λ| ≤ pinv_rtol·max|λ| are treated as zero.

    Returns:
        `(theta, grad_norms)`: the last iterate, shape `(K,)`, and |∇_θC| at each iterate
        (the last entry is at the returned θ).
    """
    theta, X, Y = _validate(output_map, theta, X, Y)
    grad, hess = _jit_grad, _jit_hessian
    norms = []
    th = np.asarray(theta)
    for _ in range(int(max_iter)):
        g = np.asarray(grad(output_map, jnp.asarray(th), X, Y))
        norms.append(float(np.linalg.norm(g)))
        if norms[-1] <= tol:
            break
        H = np.asarray(hess(output_map, jnp.asarray(th), X, Y))
        lam, V = np.linalg.eigh(0.5 * (H + H.T))
        keep = np.abs(lam) > pinv_rtol * np.max(np.abs(lam))
        th = th - V[:, keep] @ ((V[:, keep].T @ g) / lam[keep])
    else:   # max_iter steps taken: report |∇C| at the returned iterate too
        norms.append(float(np.linalg.norm(np.asarray(grad(output_map, jnp.asarray(th), X, Y)))))
    return th, np.asarray(norms)


class Walk(NamedTuple):
    r"""Walks from θ_* along directions n_k, each corrected back onto ∇_θ C = 0.

    Attributes:
        step: the step length t.
        endpoints: corrected points θ_k, shape `(n, K)`.
        corrections: |θ_k − (θ_* + t n_k)|, shape `(n,)` (O(t²) along a tangent direction).
        grad_norms: |∇_θ C(θ_k)|, shape `(n,)`.
        cost_change: C(θ_k) − C(θ_*), shape `(n,)`.
        singular_values: of the displacements (θ_k − θ_*)/t, shape `(min(n, K),)`.
    """

    step: float
    endpoints: np.ndarray
    corrections: np.ndarray
    grad_norms: np.ndarray
    cost_change: np.ndarray
    singular_values: np.ndarray


def walk_critical_set(output_map, theta_star, X, Y, directions, *, step: float = 1e-3,
                      tol: float = 1e-13, max_iter: int = 30, pinv_rtol: float = 1e-10) -> Walk:
    r"""Step θ_* + t n_k along each direction n_k and Newton-correct back to ∇_θ C = 0.

    If the critical set is a d-manifold near θ_*, the corrected displacements (θ_k − θ_*)/t
    lie within O(t) of its tangent space, so the number of their singular values that are
    O(1) (not O(t)) is d, whatever directions in ker H are walked.

    Args:
        theta_star: a critical point, shape `(K,)`.
        directions: unit rows, shape `(n, K)` (e.g. random combinations of `null_directions`).
        step: t.  tol, max_iter, pinv_rtol: as in `newton_to_critical`.

    Returns:
        A `Walk`.
    """
    theta_star, X, Y = _validate(output_map, theta_star, X, Y)
    dirs = np.atleast_2d(np.asarray(directions, dtype=np.float64))
    if dirs.shape[1] != theta_star.shape[0]:
        raise ValueError(f"`directions` must have shape (n, K) with K = {theta_star.shape[0]}; got {dirs.shape}.")
    if not step > 0:
        raise ValueError(f"`step` must be > 0; got {step!r}.")
    C_star = float(cost_of_params(output_map, theta_star, X, Y))
    ends, corr, gn, dc = [], [], [], []
    for n in dirs:
        start = np.asarray(theta_star) + step * n / np.linalg.norm(n)
        th, norms = newton_to_critical(output_map, start, X, Y, tol=tol, max_iter=max_iter, pinv_rtol=pinv_rtol)
        ends.append(th)
        corr.append(float(np.linalg.norm(th - start)))
        gn.append(float(norms[-1]))
        dc.append(float(cost_of_params(output_map, jnp.asarray(th), X, Y)) - C_star)
    ends = np.asarray(ends)
    sv = np.linalg.svd((ends - np.asarray(theta_star)) / step, compute_uv=False)
    return Walk(step=float(step), endpoints=ends, corrections=np.asarray(corr), grad_norms=np.asarray(gn),
                cost_change=np.asarray(dc), singular_values=sv)


def perturbation_cost_change(output_map, theta_star, X, Y, direction, etas) -> np.ndarray:
    r"""C(θ_* + η n) − C(θ_*) for each η, the test (4.17) of the rule (4.15)–(4.16).

    Args:
        direction: n, shape `(K,)` (normalised here).  etas: η values, shape `(E,)`.

    Returns:
        Shape `(E,)`.  At a critical point this is (η²/2) nᵀHn + O(η³) for either sign of η.
    """
    theta_star, X, Y = _validate(output_map, theta_star, X, Y)
    n = np.asarray(direction, dtype=np.float64)
    if n.shape != theta_star.shape or not np.linalg.norm(n) > 0:
        raise ValueError(f"`direction` must be a non-zero vector of shape {theta_star.shape}; got shape {n.shape}.")
    n = n / np.linalg.norm(n)
    C_star = cost_of_params(output_map, theta_star, X, Y)
    thetas = theta_star[None, :] + jnp.asarray(np.atleast_1d(etas), dtype=jnp.float64)[:, None] * jnp.asarray(n)
    return np.asarray(_jit_costs(output_map, thetas, X, Y) - C_star)


_jit_costs = jax.jit(jax.vmap(cost_of_params, in_axes=(None, 0, None, None)), static_argnums=0)


def curvatures(H, directions) -> np.ndarray:
    r"""nᵀHn/|n|² for each row n of `directions` (shape `(n, K)`): the second-order cost change 2ΔC/η²."""
    H = np.asarray(H, dtype=np.float64)
    dirs = np.atleast_2d(np.asarray(directions, dtype=np.float64))
    return np.einsum("ik,kl,il->i", dirs, H, dirs) / np.einsum("ik,ik->i", dirs, dirs)
