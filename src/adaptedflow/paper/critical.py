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
change C(θ_* + ηn) − C(θ_*) = (η²/2) nᵀHn + O(η³), whatever the sign of η, so the rule
lowers C only if some n ∈ span{∇_θ f_i} has nᵀHn < 0 (`span_curvatures`,
`perturbation_rule_tests`).

Fixed instances (the same float64 numbers for every reader and seed): `xor_saddle` (the
counterexample to §4.2) and `flat_equilibrium` (an equilibrium outside the constant-rank
hypothesis of Theorem 4.2).  `projected_flow_check` compares the pseudo-inverse flow with
(4.7) against a rounding bound, for Theorem 4.1.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from ..cost import cost, grad_x_cost, outputs_and_jacobian
from ..numerics import EPS, default_rank_rtol
from ..validation import positive_int, validate_data


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


#: The Newton steps of `newton_to_critical`.
NEWTON_STEPS = ("pseudo-inverse", "solve")


@functools.partial(jax.jit, static_argnums=0)
def _solve_step(output_map, theta, X, Y):
    loss = lambda t: cost(output_map(t, X), Y)  # noqa: E731
    g = jax.grad(loss)(theta)
    H = jax.hessian(loss)(theta)
    return theta - jnp.linalg.solve(H, g)


def newton_to_critical(output_map, theta, X, Y, *, tol: float | None = 1e-13, max_iter: int = 30,
                       step: str = "pseudo-inverse", pinv_rtol: float = 1e-10) -> tuple[np.ndarray, np.ndarray]:
    r"""Newton's method for a critical point, ∇_θ C = Dᵀ∇_x C = 0 (1.21), (4.12), (5.6).

    Two steps, chosen by `step`:

    * ``"pseudo-inverse"``: the minimum-norm step −H⁺∇_θC from the eigendecomposition of
      the symmetrised Hessian H = ∇²_θC.  It moves orthogonally to ker H, so near a
      Morse–Bott critical set (§4, Theorem 4.2) it lands on the set at the nearest point
      to first order (quadratic convergence).
    * ``"solve"``: the full step −H⁻¹∇_θC by an LU solve, for a non-degenerate critical
      point (H invertible), e.g. an equilibrium (5.6) of the under-parametrized flow (5.2)
      with rank D = K; it converges quadratically from a point close enough (e.g. θ(s₁)
      of a converging orbit), unlike full Gauss–Newton steps.

    Args:
        output_map: `output_map(theta, X) -> x`.
        theta: start, shape `(K,)`.  X: inputs, shape `(N, M)`.  Y: targets, shape `(N, Q)`.
        tol: stop when |∇_θ C| ≤ tol; `None` takes all `max_iter` steps.
        max_iter: at most this many steps (a positive integer).
        step: ``"pseudo-inverse"`` or ``"solve"`` (see above).
        pinv_rtol: for the pseudo-inverse step, eigenvalues of H with |λ| ≤ pinv_rtol·max|λ|
            are treated as zero.

    Returns:
        `(theta, grad_norms)`: the last iterate, shape `(K,)`, and |∇_θC| at each iterate
        (the last entry is at the returned θ), shape `(steps + 1,)`.
    """
    if step not in NEWTON_STEPS:
        raise ValueError(f"`step` must be one of {NEWTON_STEPS}; got {step!r}.")
    max_iter = positive_int(max_iter, "max_iter")
    theta, X, Y = _validate(output_map, theta, X, Y)
    grad, hess = _jit_grad, _jit_hessian
    norms = []
    th = np.asarray(theta)
    for _ in range(max_iter):
        g = np.asarray(grad(output_map, jnp.asarray(th), X, Y))
        norms.append(float(np.linalg.norm(g)))
        if tol is not None and norms[-1] <= tol:
            break
        if step == "solve":
            th = np.asarray(_solve_step(output_map, jnp.asarray(th), X, Y))
            continue
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


# ---------------------------------------------------------------------------------------
# Fixed instances (the same numbers for every reader and every seed).
# ---------------------------------------------------------------------------------------

class Instance(NamedTuple):
    r"""A fixed network, data set and parameter point: an instance a chapter checks.

    Attributes:
        widths: layer widths of the tanh MLP (`adaptedflow.mlp`), e.g. `(2, 3, 1)`.
        theta: the point θ_*, shape `(K,)`, float64.
        X: inputs, shape `(N, M)`.  Y: targets, shape `(N, Q)`.
    """

    widths: tuple
    theta: jax.Array
    X: jax.Array
    Y: jax.Array

    @property
    def output_map(self):
        """`adaptedflow.mlp(widths)`."""
        from ..network import mlp

        return mlp(self.widths)


def xor_data() -> tuple[jax.Array, jax.Array]:
    r"""The XOR data: X = {±1}², shape `(4, 2)`, labels y = x_1 x_2, shape `(4, 1)`.

    The labels are orthogonal to every affine function of the inputs (Σ_j y_j = 0 and
    Σ_j y_j X_j = 0), which makes W_1 = 0 an invariant set of the standard flow.
    """
    X = jnp.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]], dtype=jnp.float64)
    return X, (X[:, 0] * X[:, 1])[:, None]


def xor_saddle_theta(b1, W2) -> jax.Array:
    r"""The point W_1 = 0, b_1, W_2 given, b_2 = ȳ − W_2·tanh(b_1) of the XOR network [2, h, 1].

    At W_1 = 0 every output equals W_2·tanh(b_1) + b_2 = ȳ = 0, the residual is −y, and
    ∇_θC = 0 because y is orthogonal to the constant and to both input coordinates.  The
    rows of D are affine in the inputs there, so rank D ≤ M + 1 = 3 < QN = 4.

    Args:
        b1, W2: shape `(h,)` each.

    Returns:
        θ in the layout of `adaptedflow.mlp((2, h, 1))` (W_1, b_1, W_2, b_2), shape `(4h + 1,)`.
    """
    b1 = np.asarray(b1, dtype=np.float64)
    W2 = np.asarray(W2, dtype=np.float64)
    if b1.ndim != 1 or W2.shape != b1.shape:
        raise ValueError(f"`b1` and `W2` must be 1-D of the same length h; got shapes {b1.shape} and {W2.shape}.")
    from ..network import flatten_params

    return flatten_params([(np.zeros((b1.size, 2)), b1), (W2[None, :], np.array([-W2 @ np.tanh(b1)]))])


def xor_saddle() -> Instance:
    r"""A fixed non-global equilibrium of the XOR network [2, 3, 1]: the counterexample to §4.2.

    θ_* has W_1 = 0, b_1 = (−0.1066…, −0.0871…, −0.2105…), W_2 = (0.8585…, −0.5123…, 1.1161…)
    (stored below as literal float64 numbers; they were drawn once by
    `adaptedflow.init_params(fold_in(PRNGKey(0), 5), (2, 3, 1))`) and b_2 = −W_2·tanh(b_1)
    (also stored).  There C = 1/2, ∇_θC = 0 (to rounding), rank D = 3 < QN = 4, the Hessian
    ∇²_θC has the eigenvalue ≈ −0.297, and with v_i the columns of D selected by
    `independent_columns` (pivoted QR), every n ∈ span{∇_θ f_i} of (4.16) has
    nᵀ∇²_θC n/|n|² ≥ ≈ 1.79: the rule (4.15)–(4.17) raises C for both signs of η.

    Returns:
        An `Instance` with widths `(2, 3, 1)`, θ shape `(13,)`, X `(4, 2)`, Y `(4, 1)`.

    References:
        §4.2, (4.15)–(4.17); Theorem 4.2.
    """
    X, Y = xor_data()
    theta = jnp.array([0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
                       -0.10664874123856088, -0.08709434554434416, -0.210490993790865,
                       0.8585171031329512, -0.5123024352590856, 1.1160705365309378,
                       0.2782217086121608], dtype=jnp.float64)
    return Instance(widths=(2, 3, 1), theta=theta, X=X, Y=Y)


def flat_equilibrium() -> Instance:
    r"""A fixed non-global equilibrium W_1 = 0, W_2 = 0, b_2 = ȳ of the network [2, 8, 1].

    Six inputs in R² of which the first two coincide with labels +1 and −1 (the other
    inputs and labels, and b_1, were drawn once with `PRNGKey(0)` and are stored as
    literal float64 numbers).  With W_2 = 0 every output is b_2 = ȳ, so ∇_θC = 0; with
    W_1 = 0 every row of D is the same, so rank D = 1 and K − r = 32, while the Hessian
    nullity (an upper bound of the local dimension of the equilibrium set) is 16: rank D
    is not constant near θ_* (it is 5 at a generic nearby point).

    Returns:
        An `Instance` with widths `(2, 8, 1)`, θ shape `(33,)`, X `(6, 2)`, Y `(6, 1)`.

    References:
        Theorem 4.2, (4.13)–(4.14).
    """
    X = jnp.array([[-0.2058421394796434, -0.7847657764467411], [-0.2058421394796434, -0.7847657764467411],
                   [0.08086788103743275, -0.3721107933346203], [1.19016372498863, 0.3386422910309605],
                   [0.08482584466880495, -0.8718178356628346], [1.0545160942256122, -1.5594978984929742]],
                  dtype=jnp.float64)
    y = np.array([1.0, -1.0, 0.6248106961344603, 0.20048727190797802, 0.24714761103775162, 0.5244771012032242])
    b1 = np.array([0.5023905576691897, 0.051963325125891295, -0.41041443173962444, 0.2689325471646783,
                   -0.431398859112228, 1.3377918937272426, -1.0990476341880704, -0.5303895241937643])
    from ..network import flatten_params

    theta = flatten_params([(np.zeros((8, 2)), b1), (np.zeros((1, 8)), np.array([y.mean()]))])
    return Instance(widths=(2, 8, 1), theta=theta, X=X, Y=jnp.asarray(y[:, None]))


# ---------------------------------------------------------------------------------------
# Analysis of a critical point (Theorem 4.2) and the rule of §4.2.
# ---------------------------------------------------------------------------------------

class CriticalAnalysis(NamedTuple):
    r"""The local dimension of the equilibrium set at a critical point, measured three ways.

    Attributes:
        K: parameters.  r: numerical rank of D at θ_* (`linalg.numerical_rank`).
        sv: singular values of D, descending, shape `(min(QN, K),)`.
        eigenvalues: of ∇²_θC, ascending, shape `(K,)`.  H: ∇²_θC, shape `(K, K)`.
        nullity: Hessian nullity at the cut-off `null_rtol` (≥ local dimension).
        columns: the r columns of D taken as the fields v_i of (4.13), shape `(r,)`.
        J: ∂f/∂θ of (4.13), shape `(r, K)`; sJ: its singular values, shape `(r,)`.
        rank_J: numerical rank of J.
        walk: the Newton-corrected `Walk` along random null directions.
        walk_dimension: number of singular values of the walked displacements/t above √t.
        ranks_near: rank D at (up to) five walked points; rank_off: at a random point at
            distance 10⁻³.
    """

    K: int
    r: int
    sv: np.ndarray
    eigenvalues: np.ndarray
    H: np.ndarray
    nullity: int
    columns: np.ndarray
    J: np.ndarray
    sJ: np.ndarray
    rank_J: int
    walk: Walk
    walk_dimension: int
    ranks_near: list
    rank_off: int


def analyse_critical_point(output_map, theta, X, Y, key, *, null_rtol: float = 1e-9, walk_step: float = 1e-4,
                           extra_directions: int = 8) -> CriticalAnalysis:
    r"""Rank of D, Hessian nullity, rank of ∂f (4.13) and a Newton-corrected walk at θ_*.

    Args:
        output_map, theta, X, Y: the network and a critical point; shapes `(K,)`, `(N, M)`, `(N, Q)`.
        key: PRNG key of the random walk directions and of the random nearby point.
        null_rtol: Hessian eigenvalues |λ| ≤ null_rtol·max|λ| count as zero.
        walk_step: the step t of `walk_critical_set`.
        extra_directions: walk nullity + this many random directions in ker ∇²C.

    Returns:
        A `CriticalAnalysis`.

    References:
        Theorem 4.2, (4.12)–(4.14).
    """
    from ..cost import jacobian
    from ..linalg import numerical_rank

    theta, X, Y = _validate(output_map, theta, X, Y)
    D = np.asarray(jacobian(output_map, theta, X))
    sv = np.linalg.svd(D, compute_uv=False)
    r = numerical_rank(jnp.asarray(D))
    H = np.asarray(cost_hessian(output_map, theta, X, Y))
    lam = np.linalg.eigvalsh(H)
    n0 = hessian_nullity(H, null_rtol)
    cols = independent_columns(D, r)
    J = np.asarray(constraint_jacobian(output_map, theta, X, Y, cols))
    sJ = np.linalg.svd(J, compute_uv=False)
    Vn = null_directions(H, null_rtol)
    dirs = np.asarray(jax.random.normal(key, (n0 + extra_directions, n0), dtype=jnp.float64)) @ Vn
    walk = walk_critical_set(output_map, theta, X, Y, dirs, step=walk_step)
    d_walk = int(np.sum(walk.singular_values > np.sqrt(walk_step)))
    ranks_near = [numerical_rank(jacobian(output_map, jnp.asarray(e), X)) for e in walk.endpoints[:5]]
    u = jax.random.normal(jax.random.fold_in(key, 1), theta.shape, dtype=jnp.float64)
    rank_off = numerical_rank(jacobian(output_map, theta + 1e-3 * u / jnp.linalg.norm(u), X))
    return CriticalAnalysis(K=int(theta.size), r=int(r), sv=sv, eigenvalues=lam, H=H, nullity=int(n0),
                            columns=cols, J=J, sJ=sJ, rank_J=int(np.sum(sJ > default_rank_rtol(J.shape) * sJ[0])),
                            walk=walk, walk_dimension=d_walk, ranks_near=ranks_near, rank_off=int(rank_off))


def _hessian_gaps(a: CriticalAnalysis) -> tuple[float, float]:
    """(largest |λ| counted as zero, smallest non-zero |λ|), both relative to max |λ| of ∇²_θC."""
    absl = np.sort(np.abs(a.eigenvalues))
    top = absl[-1]
    z = absl[a.nullity - 1] / top if a.nullity else 0.0
    nz = absl[a.nullity] / top if a.nullity < a.K else np.inf
    return float(z), float(nz)


def describe_critical_point(a: CriticalAnalysis) -> str:
    r"""One line summarising a `CriticalAnalysis` (the counts and the gaps that decide them)."""
    z, nz = _hessian_gaps(a)
    w = a.walk
    return (f"K = {a.K}, r = {a.r}, K − r = {a.K - a.r} | Hessian nullity {a.nullity} (largest zero |λ|/max = {z:.1e}, "
            f"smallest non-zero {nz:.1e}) | rank ∂f = {a.rank_J} | walk: dimension {a.walk_dimension}, max correction "
            f"{w.corrections.max():.1e} (t = {w.step:g}), max |∇C| {w.grad_norms.max():.1e}, max |ΔC| "
            f"{np.abs(w.cost_change).max():.1e} | rank D at walked points {a.ranks_near}, at a random point 1e-3 away "
            f"{a.rank_off}")


def critical_point_summary(a: CriticalAnalysis) -> dict:
    r"""The numbers of a `CriticalAnalysis` by name, in reading order: one row (or column) of a table.

    Keys: the counts K, r = rank D and K − r; the Hessian nullity with the two eigenvalue
    ratios that decide it (largest |λ| counted as zero and smallest non-zero |λ|, relative to
    max |λ|); rank ∂f; the walks' dimension, largest Newton correction, largest |∇_θC| and
    |ΔC| at the walked points; rank D at (up to five) walked points and at a random point
    at distance 10⁻³. Values are ints, floats, or a string for the list of ranks.
    """
    z, nz = _hessian_gaps(a)
    w = a.walk
    return {"K": a.K, "r = rank D": a.r, "K − r": a.K - a.r, "Hessian nullity": a.nullity,
            "largest zero |λ| / max |λ|": z, "smallest non-zero |λ| / max |λ|": nz, "rank ∂f": a.rank_J,
            "walked dimension": a.walk_dimension,
            f"largest walk correction (t = {w.step:g})": float(w.corrections.max()),
            "largest |∇C| on the walks": float(w.grad_norms.max()),
            "largest |ΔC| on the walks": float(np.abs(w.cost_change).max()),
            "rank D at walked points": ", ".join(str(int(r)) for r in a.ranks_near),
            "rank D at a random point 1e-3 away": a.rank_off}


def nullity_gap(eigenvalues, d: int) -> tuple[float, float]:
    r"""The two ratios that decide "nullity = d" for a symmetric matrix with these eigenvalues.

    With ε_K = K·eps·max|λ| (rounding of a backward-stable symmetric eigensolver, Weyl):
    the d smallest |λ| must be ≤ ε_K (zero to rounding) and the (d+1)-th > ε_K.

    Args:
        eigenvalues: shape `(K,)`.  d: the claimed nullity, 0 ≤ d ≤ K.

    Returns:
        `(zero_ratio, gap_ratio)` = (|λ|_(d)/ε_K, ε_K/|λ|_(d+1)), both ≤ 1 exactly when the
        computed spectrum shows nullity d beyond rounding (0 for an empty side).
    """
    lam = np.sort(np.abs(np.asarray(eigenvalues, dtype=np.float64)))
    K = lam.size
    if not (isinstance(d, (int, np.integer)) and 0 <= d <= K):
        raise ValueError(f"`d` must be an integer in 0..{K}; got {d!r}.")
    eps_K = K * EPS * lam[-1]
    zero = lam[d - 1] / eps_K if d > 0 else 0.0
    gap = eps_K / lam[d] if d < K else 0.0
    return float(zero), float(gap)


def span_curvatures(H, J) -> np.ndarray:
    r"""Eigenvalues of BᵀHB, B an orthonormal basis of span{∇_θ f_i} = range Jᵀ (4.16).

    These are the extreme values of the second-order cost change 2ΔC/η² = nᵀHn/|n|² over
    the directions n = Σ_i c_i ∇_θ f_i of (4.16): §4.2's rule can lower C at the critical
    point only if the least of them is negative.

    Args:
        H: ∇²_θC, shape `(K, K)`.  J: ∂f/∂θ, shape `(r, K)`, full row rank.

    Returns:
        Ascending, shape `(r,)`.
    """
    H = np.asarray(H, dtype=np.float64)
    J = np.atleast_2d(np.asarray(J, dtype=np.float64))
    if H.ndim != 2 or H.shape[0] != H.shape[1] or J.shape[1] != H.shape[0]:
        raise ValueError(f"`H` must be (K, K) and `J` (r, K); got {H.shape} and {J.shape}.")
    B = np.linalg.qr(J.T)[0]
    return np.linalg.eigvalsh(B.T @ H @ B)


class RuleTest(NamedTuple):
    r"""§4.2's rule at one critical point.

    Attributes:
        least_span: least curvature nᵀHn/|n|² over span{∇_θ f_i}.
        least_hessian: least eigenvalue of ∇²_θC.
        scale: K·eps·‖H‖₂, the rounding of both (Weyl).
        grad_norm: |∇_θC| at the point.
    """

    least_span: float
    least_hessian: float
    scale: float
    grad_norm: float


def perturbation_rule_tests(output_map, thetas, X, Y) -> RuleTest:
    r"""Whether §4.2's rule (4.15)–(4.17) can lower C, at each of several critical points.

    The fields v_i of (4.13) are the r = rank D columns of D chosen by
    `independent_columns` (pivoted QR); the span of (4.16) depends on that choice.  Since
    f_i = ⟨v_i, ∇ₓC⟩ = (∇_θC)_{c_i}, ∇_θ f_i is row c_i of ∇²_θC, so one batched Hessian
    and Jacobian serve every point.

    Args:
        thetas: critical points, shape `(P, K)` (or `(K,)` for one).

    Returns:
        A `RuleTest` whose fields are arrays of shape `(P,)` (floats for a single point):
        the rule lowers C (to second order) iff `least_span` < 0; θ is a saddle iff
        `least_hessian` < 0 (each decided only beyond `scale`).
    """
    from ..linalg import numerical_rank

    single = np.ndim(thetas) == 1
    thetas = np.atleast_2d(np.asarray(thetas, dtype=np.float64))
    _, X, Y = _validate(output_map, jnp.asarray(thetas[0]), X, Y)
    Hs, Ds, gs = (np.asarray(a) for a in _jit_batched_second_order(output_map, jnp.asarray(thetas), X, Y))
    eps = EPS
    out = {f: [] for f in RuleTest._fields}
    for H, D, g in zip(Hs, Ds, gs, strict=True):
        H = 0.5 * (H + H.T)
        cols = independent_columns(D, numerical_rank(jnp.asarray(D)))
        lam = np.linalg.eigvalsh(H)
        out["least_span"].append(float(span_curvatures(H, H[cols])[0]))
        out["least_hessian"].append(float(lam[0]))
        out["scale"].append(float(H.shape[0] * eps * np.max(np.abs(lam))))
        out["grad_norm"].append(float(np.linalg.norm(g)))
    if single:
        return RuleTest(**{f: v[0] for f, v in out.items()})
    return RuleTest(**{f: np.asarray(v) for f, v in out.items()})


def perturbation_rule_test(output_map, theta, X, Y) -> RuleTest:
    r"""`perturbation_rule_tests` at one critical point θ, shape `(K,)`: a `RuleTest` of floats."""
    return perturbation_rule_tests(output_map, np.asarray(theta, dtype=np.float64).reshape(-1), X, Y)


def _second_order(output_map, theta, X, Y):
    return (jax.hessian(cost_of_params, argnums=1)(output_map, theta, X, Y),
            outputs_and_jacobian(output_map, theta, X)[1],
            jax.grad(cost_of_params, argnums=1)(output_map, theta, X, Y))


_jit_batched_second_order = jax.jit(jax.vmap(_second_order, in_axes=(None, 0, None, None)), static_argnums=0)


def random_xor_saddles(key, hidden: int, n: int) -> np.ndarray:
    r"""n random points of the XOR equilibrium family: W_1 = 0, (b_1, W_2) as drawn by
    `adaptedflow.init_params` for (2, hidden, 1) under `jax.random.split(key, n)`, and
    b_2 = −W_2·tanh(b_1) (`xor_saddle_theta`).

    Returns:
        θ's, shape `(n, 4·hidden + 1)`.
    """
    from ..network import flatten_params, init_params, unflatten_params

    widths = (2, positive_int(hidden, "hidden"), 1)
    draws = jax.vmap(lambda k: init_params(k, widths))(jax.random.split(key, positive_int(n, "n")))
    (W1, b1), (W2, _) = jax.vmap(lambda t: unflatten_params(t, widths))(draws)
    b1, W2 = np.asarray(b1), np.asarray(W2)[:, 0, :]
    b2 = -np.einsum("ph,ph->p", W2, np.tanh(b1))
    layers = [(np.zeros(W1.shape), b1), (W2[:, None, :], b2[:, None])]
    return np.asarray(jax.vmap(lambda l: flatten_params(l, widths))(layers))


# ---------------------------------------------------------------------------------------
# Theorem 4.1 along an orbit.
# ---------------------------------------------------------------------------------------

class ProjectedFlowCheck(NamedTuple):
    r"""(4.7) at the saved points of an orbit of the pseudo-inverse flow.

    Attributes:
        sv: singular values of D, shape `(T, min(QN, K))`.
        rank: numerical rank at each point, shape `(T,)`.
        residual: |D·(−D⁺∇ₓC) + P_r∇ₓC| / |P_r∇ₓC|, shape `(T,)`.
        bound: the rounding bound max(QN, K)·eps·(σ_1/σ_r)·|∇ₓC|/|P_r∇ₓC|, shape `(T,)`.
        projected_grad: |P_r∇ₓC|, shape `(T,)`.  grad: |∇ₓC|, shape `(T,)`.
    """

    sv: np.ndarray
    rank: np.ndarray
    residual: np.ndarray
    bound: np.ndarray
    projected_grad: np.ndarray
    grad: np.ndarray


def projected_flow_check(output_map, thetas, X, Y) -> ProjectedFlowCheck:
    r"""Compare D·∂ₛθ of the pseudo-inverse flow (4.6) with −P_r∇ₓC (4.7) at each θ.

    D⁺∇ₓC comes from `flows.least_squares_direction` and P_r from a separate SVD of D
    (rank at `linalg.default_rank_rtol`).  Each SVD is backward stable: it is exact for a
    D + E with ‖E‖ ≤ c·max(QN, K)·eps·σ_1, which turns the computed range projector by
    an angle ≤ ‖E‖/σ_r (Wedin; σ_{r+1} is zero).  Both projectors act on the whole of ∇ₓC,
    not only on its range part, so the error relative to |P_r∇ₓC| is of order
    max(QN, K)·eps·(σ_1/σ_r)·|∇ₓC|/|P_r∇ₓC|: the last factor grows as the orbit
    approaches the equilibrium set, where P_r∇ₓC → 0 while ∇ₓC does not.

    Args:
        thetas: points, shape `(T, K)`.

    Returns:
        A `ProjectedFlowCheck`.

    References:
        Theorem 4.1, (4.5)–(4.7).
    """
    from ..flows import least_squares_direction

    thetas = np.atleast_2d(np.asarray(thetas, dtype=np.float64))
    _, X, Y = _validate(output_map, jnp.asarray(thetas[0]), X, Y)
    xs, Ds = _jit_outputs_and_jacobians(output_map, jnp.asarray(thetas), X)
    gs = jax.vmap(lambda x: grad_x_cost(x, Y))(xs)
    xdots = np.asarray(jax.vmap(lambda D, g: D @ least_squares_direction(D, g))(Ds, gs))
    eps = EPS
    svs, ranks, res, bnd, pg, gn = [], [], [], [], [], []
    for D, g, xdot in zip(np.asarray(Ds), np.asarray(gs), xdots, strict=True):
        U, s, _ = np.linalg.svd(D, full_matrices=False)
        r = int(np.sum(s > default_rank_rtol(D.shape) * s[0]))
        Pg = U[:, :r] @ (U[:, :r].T @ g)
        npg, ng = float(np.linalg.norm(Pg)), float(np.linalg.norm(g))
        svs.append(s)
        ranks.append(r)
        pg.append(npg)
        gn.append(ng)
        res.append(float(np.linalg.norm(xdot + Pg)) / npg)
        bnd.append(max(D.shape) * eps * (s[0] / s[r - 1]) * ng / npg)
    return ProjectedFlowCheck(sv=np.asarray(svs), rank=np.asarray(ranks), residual=np.asarray(res),
                              bound=np.asarray(bnd), projected_grad=np.asarray(pg), grad=np.asarray(gn))


def _outputs_and_jacobians(output_map, thetas, X):
    return jax.vmap(lambda t: outputs_and_jacobian(output_map, t, X))(thetas)


_jit_outputs_and_jacobians = jax.jit(_outputs_and_jacobians, static_argnums=0)


def one_hidden_layer_output_rounding(widths, theta, X) -> float:
    r"""A forward rounding bound on the outputs of a one-hidden-layer tanh MLP, max over j.

    x_j = W_2·tanh(z) + b_2 with z = W_1 X_j + b_1: the affine maps are sums of M + 1 and
    h + 1 terms (error ≤ γ_n·Σ|terms|, γ_n ≈ n·eps), tanh is 1-Lipschitz and correctly
    rounded to ≤ 2 ulp, so
    |fl(x_j) − x_j| ≤ γ_{h+1}(‖W_2‖₁ + |b_2|) + ‖W_2‖₁·(2·eps + γ_{M+1}·max_k(|W_1||X_j| + |b_1|)_k).

    Args:
        widths: `(M, h, 1)`.  theta: shape `(K,)`.  X: shape `(N, M)`.

    Returns:
        The bound (a float ≥ 0).
    """
    widths = tuple(int(w) for w in widths)
    if len(widths) != 3 or widths[2] != 1:
        raise ValueError(f"`widths` must be (M, h, 1) for one hidden layer and one output; got {widths}.")
    from ..network import unflatten_params

    M, h, _ = widths
    Xa = np.asarray(X, dtype=np.float64)
    (W1, b1), (W2, b2) = unflatten_params(np.asarray(theta, dtype=np.float64), widths)
    W2, b2 = W2[0], b2[0]
    eps = EPS
    Z = np.max(np.abs(Xa) @ np.abs(W1).T + np.abs(b1)[None, :])
    w2 = float(np.sum(np.abs(W2)))
    return float((h + 1) * eps * (w2 + abs(b2)) + w2 * (2 * eps + (M + 1) * eps * Z))


def projected_gradient_norm(output_map, theta, X, Y) -> float:
    r"""|P_r∇ₓC| at θ: the norm of the gradient's component in range D (4.2), (4.12).

    P_r comes from the SVD of D, with the rank at `linalg.default_rank_rtol`; P_r∇ₓC = 0
    is the equilibrium condition (4.12) of both the standard flow (4.4) and the
    pseudo-inverse flow (4.7) where rank D is locally constant.

    Args:
        theta: shape `(K,)`; X: `(N, M)`; Y: `(N, Q)`.

    Returns:
        A float ≥ 0.
    """
    theta, X, Y = _validate(output_map, theta, X, Y)
    x, D = outputs_and_jacobian(output_map, theta, X)
    U, s, _ = np.linalg.svd(np.asarray(D), full_matrices=False)
    r = int(np.sum(s > default_rank_rtol(D.shape) * s[0]))
    g = np.asarray(grad_x_cost(x, Y))
    return float(np.linalg.norm(U[:, :r].T @ g))
