r"""The geometry of §2.3–2.4: the pullback bundle V, its metric h, brackets and Frobenius.

The pullback bundle V = x*TR^{QN} has fibre V_θ = range(D[θ]ᵀ) ⊂ R^K, spanned by the
sections X_a(θ) = D[θ]ᵀ e_a, a = 1, …, QN (the gradients of the outputs x_a).  The
bundle metric is h(u, v) = ⟨D u, D v⟩ (2.22), (2.25) and the h-gradient of the cost is
grad_V C = D⁺ ∇_x C (2.24), (2.30) — the adapted direction up to sign (Proposition 2.4).

V is integrable iff the Frobenius condition (2.31) holds, [X, Y] ∈ V for all sections;
since every section is Σ f_a X_a, it suffices to test the spanning sections X_a.  Lie
brackets [X, Y] = DY·X − DX·Y are computed by forward-mode differentiation
(`jax.jvp`), never by finite differences.  V is bracket generating (Hörmander /
Chow–Rashevskii) at θ when V + [V, V] + [V, [V, V]] + … spans R^K; `bracket_ranks`
measures the numerical rank of each step with an explicit SVD tolerance and reports the
gap in the singular values that decides it.

Sections are handled as `field(theta, c) -> (K,)`, linear in the coefficient vector
`c ∈ R^{QN}`: `field(θ, c) = D[θ]ᵀ c` (a vector–Jacobian product), so X_a = field(·, e_a).
The bracket kernels are jitted and cached per output map (and QN), so pass *stable*
function objects (module-level functions or `adaptedflow.mlp(...)`), as for `integrate_flow`.
"""

from __future__ import annotations

import functools
import itertools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import as_float64, require_finite, require_shape
from .linalg import gram_solve

VectorField = Callable[[jax.Array], jax.Array]

#: Default relative cut-off for the numerical rank of a bracket family (see `spanned_rank`):
#: about 10⁶·eps, six orders above the round-off of forward-mode brackets (dropped singular
#: values of exactly dependent families are observed at ≤ 1e-16).
DEFAULT_BRACKET_RTOL = 1e-10


# ---------------------------------------------------------------------------------------------
# validation helpers


def _matrix(D, name: str = "D") -> jax.Array:
    D = as_float64(D, name)
    require_shape(D, (None, None), name, "Pass the Jacobian D[θ] of shape (QN, K).")
    require_finite(D, name)
    return D


def _vector(v, length: int | None, name: str, hint: str = "") -> jax.Array:
    v = as_float64(v, name)
    require_shape(v, (length,), name, hint)
    require_finite(v, name)
    return v


def _theta_and_X(output_map, theta, X):
    if not callable(output_map):
        raise TypeError(f"`output_map` must be callable as output_map(theta, X) -> x; got {type(output_map).__name__}.")
    theta = _vector(theta, None, "theta", "Pass the flat parameter vector θ of shape (K,).")
    X = as_float64(X, "X")
    require_shape(X, (None, None), "X", "Use `X[None, :]` for one input.")
    x = jnp.asarray(output_map(theta, X))
    if x.ndim != 1:
        raise ValueError(f"`output_map(theta, X)` must return the stacked outputs x of shape (QN,); got shape {x.shape}.")
    return theta, X, int(x.shape[0])


def _check_rtol(rtol, name: str = "rtol") -> float:
    rtol = float(rtol)
    if not (0.0 < rtol < 1.0):
        raise ValueError(f"`{name}` must lie in (0, 1) (a relative singular-value cut-off); got {rtol!r}.")
    return rtol


# ---------------------------------------------------------------------------------------------
# Proposition 2.4: the bundle metric and the h-gradient


def bundle_metric(D: jax.Array, u: jax.Array, v: jax.Array) -> jax.Array:
    r"""h(u, v) = ⟨D u, D v⟩_{R^{QN}}, the pullback metric on V (2.22), (2.25).

    Args:
        D: Jacobian D[θ], shape `(QN, K)`.
        u, v: vectors of R^K (meant in V_θ = range Dᵀ), shape `(K,)`.

    Returns:
        Scalar h(u, v).
    """
    D = _matrix(D)
    K = D.shape[1]
    u = _vector(u, K, "u", "`u` must be a vector of R^K, K = D.shape[1].")
    v = _vector(v, K, "v", "`v` must be a vector of R^K, K = D.shape[1].")
    return jnp.dot(D @ u, D @ v)


def bundle_gradient(D: jax.Array, grad_x: jax.Array) -> jax.Array:
    r"""grad_V C = D⁺ ∇_x C = D⁺ (D⁺)ᵀ ∇_θ C, the h-gradient of C (2.24), (2.30).

    This is −(the adapted direction (1.30)): the minimum-norm solution of D u = ∇_x C,
    computed as u = Dᵀ α with (D Dᵀ) α = ∇_x C (Cholesky plus one refinement step,
    `linalg.gram_solve`).  Needs rank D = QN (2.1).

    Args:
        D: Jacobian D[θ], shape `(QN, K)`, K ≥ QN.
        grad_x: ∇_x C (1.23), shape `(QN,)`.

    Returns:
        u, shape `(K,)`, in V_θ = range(Dᵀ) (horizontal) with D u = ∇_x C.

    References:
        Proposition 2.4.
    """
    D = _matrix(D)
    QN, K = D.shape
    if K < QN:
        raise ValueError(f"`D` must be over-parametrized (K ≥ QN) for (2.30); got shape {D.shape}. "
                         "For K < QN use `adaptedflow.adapted_under_direction` (5.2).")
    grad_x = _vector(grad_x, QN, "grad_x", "`grad_x` = ∇_x C must have length QN = D.shape[0].")
    return _bundle_gradient(D, grad_x)


@jax.jit
def _bundle_gradient(D, grad_x):
    alpha, _ = gram_solve(D, grad_x)
    return D.T @ alpha


def fibre_basis(D: jax.Array, rtol: float | None = None) -> jax.Array:
    r"""An orthonormal basis of V_θ = range(D[θ]ᵀ) ⊂ R^K, from the SVD of D.

    Args:
        D: shape `(QN, K)`.
        rtol: singular values ≤ `rtol`·σ_max are dropped (default max(QN, K)·eps).

    Returns:
        B, shape `(K, r)` with r the numerical rank of D; Bᵀ B = 1_r.
    """
    D = _matrix(D)
    rtol = max(D.shape) * float(jnp.finfo(jnp.float64).eps) if rtol is None else _check_rtol(rtol)
    _, s, Vt = np.linalg.svd(np.asarray(D), full_matrices=False)
    r = int(np.sum(s > rtol * s[0])) if s.size and s[0] > 0 else 0
    return jnp.asarray(Vt[:r].T)


def bundle_gradient_from_metric(D: jax.Array, grad_x: jax.Array, rtol: float | None = None) -> jax.Array:
    r"""The h-gradient from its *definition* (2.23): u ∈ V_θ with h(u, v) = dC(v) ∀ v ∈ V_θ.

    Independent of the closed form (2.30): with B an orthonormal basis of V_θ
    (`fibre_basis`), u = B c and (2.23) for v = B e_j reads
    (Bᵀ Dᵀ D B) c = Bᵀ Dᵀ ∇_x C = Bᵀ ∇_θ C (2.26)–(2.27), solved here by `lstsq`.

    Args:
        D: shape `(QN, K)`; grad_x: ∇_x C, shape `(QN,)`.
        rtol: rank cut-off for the basis (see `fibre_basis`).

    Returns:
        u, shape `(K,)`.
    """
    D = _matrix(D)
    grad_x = _vector(grad_x, D.shape[0], "grad_x", "`grad_x` must have length QN = D.shape[0].")
    B = fibre_basis(D, rtol)
    DB = D @ B
    c = jnp.linalg.lstsq(DB.T @ DB, B.T @ (D.T @ grad_x))[0]
    return B @ c


def horizontal_projector(D: jax.Array, rtol: float | None = None) -> jax.Array:
    r"""P = D⁺ D = B Bᵀ, the orthoprojector of R^K onto V_θ = range(Dᵀ) (1.28), (2.3).

    Built from the SVD of D (never from D Dᵀ), so its accuracy is eps·κ(D), not eps·κ².

    Args:
        D: shape `(QN, K)`.
        rtol: rank cut-off (see `fibre_basis`).

    Returns:
        P, shape `(K, K)`, symmetric, P² = P, rank = numerical rank of D.
    """
    B = fibre_basis(D, rtol)
    return B @ B.T


# ---------------------------------------------------------------------------------------------
# sections and Lie brackets


def section_field(output_map, X: jax.Array) -> Callable[[jax.Array, jax.Array], jax.Array]:
    r"""The sections of V as one function `field(theta, c) = D[θ]ᵀ c` (a VJP; no D formed).

    X_a = field(·, e_a) are the spanning sections of §2.4; `field(·, c)` for a constant
    c ∈ R^{QN} is the section Σ_a c_a X_a.

    Args:
        output_map: `output_map(theta, X) -> x`, x of shape `(QN,)`.
        X: inputs, shape `(N, M)`.

    Returns:
        `field(theta, c) -> (K,)`, with `theta` of shape `(K,)` and `c` of shape `(QN,)`.
    """
    def field(theta, c):
        _, vjp = jax.vjp(lambda t: output_map(t, X), theta)
        return vjp(c)[0]

    return field


def lie_bracket(F: VectorField, G: VectorField, theta: jax.Array) -> jax.Array:
    r"""[F, G](θ) = DG(θ)·F(θ) − DF(θ)·G(θ), by two Jacobian–vector products (`jax.jvp`).

    The sign follows §2.4 ([X, Y] = DY·X − DX·Y).  Pure and traceable: can be nested
    (brackets of brackets) and vmapped.

    Args:
        F, G: vector fields R^K → R^K (pure functions of θ).
        theta: shape `(K,)`.

    Returns:
        Shape `(K,)`.
    """
    f = F(theta)
    g = G(theta)
    _, dG_f = jax.jvp(G, (theta,), (f,))
    _, dF_g = jax.jvp(F, (theta,), (g,))
    return dG_f - dF_g


def _pairs(n: int) -> np.ndarray:
    return np.array(list(itertools.combinations(range(n), 2)), dtype=int).reshape(-1, 2)


def section_brackets(output_map, theta: jax.Array, X: jax.Array, pairs=None) -> tuple[np.ndarray, jax.Array]:
    r"""The brackets [X_a, X_b](θ) of the spanning sections X_a = Dᵀ e_a of V, vmapped over pairs.

    Frobenius (2.31) for V is equivalent to (1 − P)[X_a, X_b] = 0 for all a < b.

    Args:
        output_map: `output_map(theta, X) -> x`, x of shape `(QN,)`.
        theta: shape `(K,)`.
        X: inputs, shape `(N, M)`.
        pairs: integer array `(n_pairs, 2)` of (a, b); default all a < b.

    Returns:
        `(pairs, brackets)`: shapes `(n_pairs, 2)` and `(n_pairs, K)`.
    """
    theta, X, QN = _theta_and_X(output_map, theta, X)
    pairs = _pairs(QN) if pairs is None else np.asarray(pairs, dtype=int)
    if pairs.ndim != 2 or pairs.shape[1] != 2 or (pairs.size and (pairs.min() < 0 or pairs.max() >= QN)):
        raise ValueError(f"`pairs` must be an integer array (n_pairs, 2) with entries in [0, QN = {QN}); "
                         f"got shape {pairs.shape} with entries in [{pairs.min() if pairs.size else '-'}, "
                         f"{pairs.max() if pairs.size else '-'}]. Pass pairs (a, b) of output indices.")
    return pairs, _compiled_brackets(output_map, QN)(theta, X, jnp.asarray(pairs))


@functools.lru_cache(maxsize=64)
def _compiled_brackets(output_map, QN: int):
    """jit of the pair-vmapped brackets [X_a, X_b], compiled once per output map and QN."""
    eye = jnp.eye(QN)

    @jax.jit
    def brackets(theta, X, pairs):
        field = section_field(output_map, X)

        def one(ab):
            return lie_bracket(lambda t: field(t, eye[ab[0]]), lambda t: field(t, eye[ab[1]]), theta)

        return jax.vmap(one)(pairs)

    return brackets


def kernel_section(output_map, X: jax.Array, w: jax.Array) -> VectorField:
    r"""The section Z_w(θ) = (1 − P(θ)) w of ker D[θ] (tangent to the leaves of (2.32)).

    P = Dᵀ (D Dᵀ)⁻¹ D is written through a linear solve so that it is differentiable; Z_w
    is smooth wherever rank D = QN.

    Args:
        output_map: `output_map(theta, X) -> x`.
        X: inputs, shape `(N, M)`.
        w: a constant vector of R^K, shape `(K,)`.

    Returns:
        `Z(theta) -> (K,)`.
    """
    def Z(theta):
        _, D = _jacobian(output_map, theta, X)
        alpha = jnp.linalg.solve(D @ D.T, D @ w)
        return w - D.T @ alpha

    return Z


def _jacobian(output_map, theta, X):
    x, vjp = jax.vjp(lambda t: output_map(t, X), theta)
    (D,) = jax.vmap(vjp)(jnp.eye(x.shape[0], dtype=x.dtype))
    return x, D


def kernel_brackets(output_map, theta: jax.Array, X: jax.Array, W: jax.Array) -> jax.Array:
    r"""[Z_{w_i}, Z_{w_j}](θ) for the ker D sections of `kernel_section`, all pairs i < j.

    ker D is the tangent bundle of the foliation (2.32), hence integrable: these brackets
    must lie in ker D, i.e. D[θ] [Z_i, Z_j] = 0 (the control for the Frobenius test).

    Args:
        output_map, theta (K,), X (N, M): as in `section_brackets`.
        W: constant vectors w_i as rows, shape `(n, K)`.

    Returns:
        Brackets, shape `(n(n − 1)/2, K)`, pairs in `itertools.combinations` order.
    """
    theta, X, _ = _theta_and_X(output_map, theta, X)
    W = as_float64(W, "W")
    require_shape(W, (None, theta.shape[0]), "W", "Pass the vectors w_i of R^K as rows.")
    return _compiled_kernel_brackets(output_map, W.shape[0])(theta, X, W)


@functools.lru_cache(maxsize=64)
def _compiled_kernel_brackets(output_map, n: int):
    pairs = jnp.asarray(_pairs(n))

    @jax.jit
    def brackets(theta, X, W):
        def one(ij):
            return lie_bracket(kernel_section(output_map, X, W[ij[0]]), kernel_section(output_map, X, W[ij[1]]), theta)

        return jax.vmap(one)(pairs)

    return brackets


def normal_fraction(D: jax.Array, vectors: jax.Array, rtol: float | None = None) -> jax.Array:
    r"""|(1 − P) v| / |v| for each row v: the sine of the angle between v and V_θ.

    Applied to the brackets [X_a, X_b] this measures the failure of Frobenius (2.31).
    A bracket of norm zero gives 0 (it lies in V trivially).

    Args:
        D: shape `(QN, K)`.
        vectors: shape `(n, K)`.
        rtol: rank cut-off for P (see `fibre_basis`).

    Returns:
        Shape `(n,)`, values in [0, 1].
    """
    D = _matrix(D)
    vectors = as_float64(vectors, "vectors")
    require_shape(vectors, (None, D.shape[1]), "vectors", "Pass vectors of R^K as rows.")
    B = fibre_basis(D, rtol)
    normal = vectors - (vectors @ B) @ B.T
    nv = jnp.linalg.norm(vectors, axis=1)
    return jnp.where(nv > 0, jnp.linalg.norm(normal, axis=1) / jnp.where(nv > 0, nv, 1.0), 0.0)


# ---------------------------------------------------------------------------------------------
# bracket generation


class SpanReport(NamedTuple):
    """Numerical rank of a family of vectors and the singular-value gap that decides it."""

    rank: int
    singular_values: np.ndarray   # of the row-normalised family, decreasing
    rtol: float
    smallest_kept: float          # σ_rank/σ_1 (1.0 when rank = 0 is impossible)
    largest_dropped: float        # σ_{rank+1}/σ_1, 0.0 when nothing was dropped
    n_zero: int                   # rows of norm ≤ rtol·(largest row norm), left out as zero


def spanned_rank(vectors: jax.Array, rtol: float = DEFAULT_BRACKET_RTOL) -> SpanReport:
    r"""Dimension of span{v_i}: the number of singular values > `rtol`·σ_1 of the family.

    Rows of norm ≤ `rtol`·(largest row norm) count as zero and are left out (so that
    round-off brackets, e.g. of an affine model, are not blown up); the others are scaled
    to unit length (rank is unchanged; brackets of different order have different
    magnitudes, and the cut-off should not depend on them).  The gap σ_r/σ_1 ≫ rtol ≫ σ_{r+1}/σ_1 is reported so the reader can
    see that the rank does not hinge on `rtol`.

    Args:
        vectors: shape `(n, K)`.
        rtol: relative singular-value cut-off in (0, 1).

    Returns:
        `SpanReport(rank, singular_values, rtol, smallest_kept, largest_dropped, n_zero)`.
    """
    rtol = _check_rtol(rtol)
    V = np.asarray(as_float64(vectors, "vectors"))
    if V.ndim != 2:
        raise ValueError(f"`vectors` must be 2-D (n, K); got shape {V.shape}.")
    require_finite(V, "vectors")
    norms = np.linalg.norm(V, axis=1)
    keep = norms > rtol * (np.max(norms) if norms.size else 0.0)
    if not np.any(keep):
        return SpanReport(0, np.zeros(0), rtol, 1.0, 0.0, int(V.shape[0]))
    V = V[keep] / norms[keep, None]
    s = np.linalg.svd(V, compute_uv=False)
    rel = s / s[0]
    r = int(np.sum(rel > rtol))
    return SpanReport(r, s, rtol, float(rel[r - 1]), float(rel[r]) if r < rel.size else 0.0, int(np.sum(~keep)))


def bracket_family(output_map, theta: jax.Array, X: jax.Array, depth: int = 3) -> list[jax.Array]:
    r"""The vectors spanning V, [V, V] and [V, [V, V]] at θ, level by level.

    Level 1: X_a (QN vectors, the rows of D).  Level 2: [X_a, X_b], a < b.  Level 3:
    [X_a, [X_b, X_c]], all a and b < c (a spanning set of the third step by Jacobi).
    Nested `jax.jvp` through `lie_bracket`; level 3 needs third derivatives of x[θ].

    Args:
        output_map: `output_map(theta, X) -> x`, x of shape `(QN,)`.
        theta: shape `(K,)`.
        X: inputs, shape `(N, M)`.
        depth: 1, 2 or 3.

    Returns:
        List of `depth` arrays of shapes `(QN, K)`, `(QN(QN−1)/2, K)`, `(QN²(QN−1)/2, K)`.
    """
    if depth not in (1, 2, 3):
        raise ValueError(f"`depth` must be 1, 2 or 3; got {depth!r}.")
    theta, X, QN = _theta_and_X(output_map, theta, X)
    return [np.asarray(v) for v in _compiled_family(output_map, QN, depth)(theta, X)]


@functools.lru_cache(maxsize=64)
def _compiled_family(output_map, QN: int, depth: int):
    """jit of the levels of `bracket_family`, compiled once per output map, QN and depth."""
    eye = jnp.eye(QN)
    pairs = jnp.asarray(_pairs(QN))
    triples = jnp.asarray([(a, b, c) for a in range(QN) for (b, c) in _pairs(QN)], dtype=int).reshape(-1, 3)

    @jax.jit
    def family(theta, X):
        field = section_field(output_map, X)
        levels = [jax.vmap(lambda c: field(theta, c))(eye)]
        if depth >= 2:
            levels.append(jax.vmap(lambda ab: lie_bracket(lambda t: field(t, eye[ab[0]]),
                                                          lambda t: field(t, eye[ab[1]]), theta))(pairs))
        if depth >= 3:
            def one(abc):
                inner = lambda t: lie_bracket(lambda u: field(u, eye[abc[1]]), lambda u: field(u, eye[abc[2]]), t)
                return lie_bracket(lambda t: field(t, eye[abc[0]]), inner, theta)

            levels.append(jax.vmap(one)(triples))
        return levels

    return family


def bracket_ranks(output_map, theta: jax.Array, X: jax.Array, depth: int = 3,
                  rtol: float = DEFAULT_BRACKET_RTOL) -> list[SpanReport]:
    r"""Numerical dim of V, V + [V, V], V + [V, V] + [V, [V, V]] at θ (the flag of V).

    V is bracket generating at θ (Hörmander's condition; Chow–Rashevskii then joins any
    two points by a horizontal path) at the first step whose rank is K.

    Args:
        output_map, theta (K,), X (N, M): as in `bracket_family`.
        depth: number of steps, 1–3.
        rtol: relative cut-off of `spanned_rank`.

    Returns:
        One `SpanReport` per step, cumulative (step k spans levels 1..k).
    """
    rtol = _check_rtol(rtol)
    levels = bracket_family(output_map, theta, X, depth)
    return [spanned_rank(jnp.concatenate(levels[:k + 1], axis=0), rtol) for k in range(len(levels))]


def generating_step(reports: list[SpanReport], K: int) -> int | None:
    r"""The first step k (1-based) with rank K in `bracket_ranks` output, or None if none reaches K."""
    for k, rep in enumerate(reports, start=1):
        if rep.rank == K:
            return k
    return None
