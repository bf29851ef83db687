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
The bracket kernels are `jax.jit` functions with the output map as a static argument
(compiled once per output map, QN and depth), so pass *stable* function objects
(module-level functions or `adaptedflow.mlp(...)`), as for `integrate_flow`.
"""

from __future__ import annotations

import functools
import itertools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..cost import grad_x_cost, jacobian, outputs_and_jacobian
from ..linalg import gram_solve
from ..network import init_params, mlp, num_params
from ..numerics import EPS, default_rank_rtol, safe_divide
from ..problem import gaussian_clusters
from ..validation import as_float64, positive_int, require_finite, require_shape

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
        raise ValueError("`output_map(theta, X)` must return the stacked outputs x of shape (QN,); "
                         f"got shape {x.shape}.")
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
    rtol = default_rank_rtol(D.shape) if rtol is None else _check_rtol(rtol)
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
    return pairs, _pair_brackets(output_map, QN, theta, X, jnp.asarray(pairs))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _pair_brackets(output_map, QN: int, theta, X, pairs):
    """The pair-vmapped brackets [X_a, X_b], compiled once per output map and QN."""
    eye = jnp.eye(QN)
    field = section_field(output_map, X)

    def one(ab):
        return lie_bracket(lambda t: field(t, eye[ab[0]]), lambda t: field(t, eye[ab[1]]), theta)

    return jax.vmap(one)(pairs)


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
        D = jacobian(output_map, theta, X)
        alpha = jnp.linalg.solve(D @ D.T, D @ w)
        return w - D.T @ alpha

    return Z


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
    return _kernel_pair_brackets(output_map, theta, X, W)


@functools.partial(jax.jit, static_argnums=0)
def _kernel_pair_brackets(output_map, theta, X, W):
    """All [Z_{w_i}, Z_{w_j}], i < j, compiled once per output map (and shape of `W`)."""
    pairs = jnp.asarray(_pairs(W.shape[0]))

    def one(ij):
        return lie_bracket(kernel_section(output_map, X, W[ij[0]]), kernel_section(output_map, X, W[ij[1]]), theta)

    return jax.vmap(one)(pairs)


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
    return safe_divide(jnp.linalg.norm(normal, axis=1), nv)


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
    magnitudes, and the cut-off should not depend on them).  The gap
    σ_r/σ_1 ≫ rtol ≫ σ_{r+1}/σ_1 is reported so the reader can see that the rank does not hinge on `rtol`.

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
    return [np.asarray(v) for v in _bracket_levels(output_map, QN, depth, theta, X)]


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _bracket_levels(output_map, QN: int, depth: int, theta, X):
    """The levels of `bracket_family`, compiled once per output map, QN and depth."""
    eye = jnp.eye(QN)
    pairs = jnp.asarray(_pairs(QN))
    triples = jnp.asarray([(a, b, c) for a in range(QN) for (b, c) in _pairs(QN)], dtype=int).reshape(-1, 3)
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


# ---------------------------------------------------------------------------------------------
# Proposition 2.4 measured five ways, with per-instance tolerances


def bundle_gradient_errors(D: jax.Array, grad_x: jax.Array, V: jax.Array, W: jax.Array) -> dict[str, float]:
    r"""How far u = `bundle_gradient`(D, ∇_x C) is from each characterisation of grad_V C (2.23)–(2.30).

    Every entry is a relative error that vanishes in exact arithmetic:

    * ``solves``: |D u − ∇_x C|/|∇_x C| (u solves (2.30));
    * ``horizontal``: |(1 − P) u|/|u| (u ∈ V_θ, P from the SVD, `horizontal_projector`);
    * ``lstsq``: |u − D⁺∇_x C|/|u|, D⁺ from the SVD (`pinv_solve`, (4.6));
    * ``form129``: |u − D⁺(D⁺)ᵀ∇_θ C|/|u| with explicit pseudo-inverses and ∇_θ C = Dᵀ∇_x C (1.29);
    * ``definition``: |u − u₂.₂₃|/|u| with u₂.₂₃ the solution of the defining equations (2.23)
      in an orthonormal basis of V_θ (`bundle_gradient_from_metric`);
    * ``metric``: max over the rows v of `V` (in V_θ) of |h(u, v) − ⟨∇_θ C, v⟩|/(|D u||D v|) (2.23), (2.25);
    * ``kernel``: max over the rows w of `W` (in ker D) of |⟨u, w⟩|/(|u||w|) (u ⊥ ker D);
    * ``pythagoras``: max over w of |(|u + w|² − |u|²) − |w|²|/(|u|² + |w|²): every other
      solution u + w of D v = ∇_x C is longer, by exactly |w|², so u has least norm.

    Also ``kappa`` = κ(D) = σ₁/σ_QN and ``norm_u`` = |u|.

    Args:
        D: Jacobian D[θ], shape `(QN, K)`, rank QN.
        grad_x: ∇_x C, shape `(QN,)`.
        V: test vectors of V_θ as rows, shape `(n_v, K)`.
        W: test vectors of ker D as rows, shape `(n_w, K)`.

    Returns:
        dict of Python floats (keys above).

    References:
        Proposition 2.4.
    """
    D = _matrix(D)
    QN, K = D.shape
    grad_x = _vector(grad_x, QN, "grad_x", "`grad_x` = ∇_x C must have length QN = D.shape[0].")
    V = np.asarray(as_float64(V, "V"))
    W = np.asarray(as_float64(W, "W"))
    for name, A in (("V", V), ("W", W)):
        if A.ndim != 2 or A.shape[1] != K:
            raise ValueError(f"`{name}` must hold vectors of R^K (K = {K}) as rows; got shape {A.shape}.")
    from ..linalg import pinv_solve

    Dn, gn = np.asarray(D), np.asarray(grad_x)
    sv = np.linalg.svd(Dn, compute_uv=False)
    u = np.asarray(bundle_gradient(D, grad_x))
    un = np.linalg.norm(u)
    P = np.asarray(horizontal_projector(D))
    Dp = np.linalg.pinv(Dn)
    grad_theta = Dn.T @ gn
    h_uv = (V @ Dn.T) @ (Dn @ u)
    wn = np.linalg.norm(W, axis=1)
    excess = np.linalg.norm(u[None, :] + W, axis=1) ** 2 - un ** 2
    return dict(
        kappa=float(sv[0] / sv[-1]), norm_u=float(un),
        solves=float(np.linalg.norm(Dn @ u - gn) / np.linalg.norm(gn)),
        horizontal=float(np.linalg.norm(u - P @ u) / un),
        lstsq=float(np.linalg.norm(u - np.asarray(pinv_solve(D, grad_x))) / un),
        form129=float(np.linalg.norm(u - Dp @ (Dp.T @ grad_theta)) / un),
        definition=float(np.linalg.norm(u - np.asarray(bundle_gradient_from_metric(D, grad_x))) / un),
        metric=float(np.max(np.abs(h_uv - V @ grad_theta)
                            / (np.linalg.norm(Dn @ u) * np.linalg.norm(V @ Dn.T, axis=1)))),
        kernel=float(np.max(np.abs(W @ u) / (un * wn))),
        pythagoras=float(np.max(np.abs(excess - wn ** 2) / (un ** 2 + wn ** 2))),
    )


def one_neuron_map(theta: jax.Array, X: jax.Array) -> jax.Array:
    r"""x[θ] = θ₂ tanh(θ₁ ξ) for inputs ξ = X[:, 0]: one tanh neuron, K = 2.

    With one input, QN = 1: the level sets {x = const} are curves in the (θ₁, θ₂)-plane
    (the leaves of the foliation (2.32)) and V_θ is the line spanned by ∇_θ x.

    Args:
        theta: shape `(2,)`.
        X: inputs, shape `(N, M)` (only the first column is used).

    Returns:
        x, shape `(N,)`.
    """
    return theta[1] * jnp.tanh(theta[0] * X[:, 0])


def free_lie_dims(n: int, depth: int = 3) -> list[int]:
    r"""Dimensions of the free nilpotent Lie algebra on n generators, steps 1..depth (Witt's formula).

    The brackets of order ≤ k of n vector fields span at most this many dimensions:
    step 1: n; step 2: n + n(n − 1)/2; step 3: n + n(n − 1)/2 + (n³ − n)/3.  Witt: the
    homogeneous part of degree k has dimension (1/k) Σ_{d | k} μ(d) n^{k/d}.

    Args:
        n: number of generators (QN), ≥ 1.
        depth: number of steps, 1–3.

    Returns:
        List of `depth` cumulative dimensions.
    """
    n = positive_int(n, "n")
    if depth not in (1, 2, 3):
        raise ValueError(f"`depth` must be 1, 2 or 3; got {depth!r}.")
    return [n, n + n * (n - 1) // 2, n + n * (n - 1) // 2 + (n ** 3 - n) // 3][:depth]


def kernel_bracket_defects(output_map, theta: jax.Array, X: jax.Array, W: jax.Array) -> tuple[np.ndarray, float]:
    r"""|D[Z_i, Z_j]|/(|D|₂|[Z_i, Z_j]|) for the ker D sections Z_w = (1 − P)w (`kernel_section`).

    ker D is tangent to the leaves of (2.32), so it is integrable and these vanish in exact
    arithmetic.  What is computed: Z_w = w − Dᵀα with (D Dᵀ)α = D w by an LU solve, and
    its derivatives by forward mode, whose tangent solves reuse the same matrix D Dᵀ.  An
    LU solve is backward stable with |δG| ≤ γ_{3QN}|L||U| ≈ 3QN·eps·|G| (Higham, Thm 9.4;
    growth ≈ 1 for a symmetric positive definite G), so α and each tangent of α carry a
    relative error ≤ 3QN·eps·κ(D D ᵀ) = 3QN·eps·κ(D)²; forming D Dᵀ and D w (dot products
    of length K) adds K·eps·κ(D)².  That error is the part of Z and of [Z_i, Z_j] that
    leaves ker D, so to first order each defect is ≤ (3QN + K)·eps·κ(D)².

    Args:
        output_map, theta (K,), X (N, M): as in `section_brackets`.
        W: constant vectors w_i as rows, shape `(n, K)`, n ≥ 2.

    Returns:
        `(defects, kappa)`: shape `(n(n − 1)/2,)`, and κ(D) = σ₁/σ_QN.
    """
    theta, X, _ = _theta_and_X(output_map, theta, X)
    D = np.asarray(jacobian(output_map, theta, X))
    Z = np.asarray(kernel_brackets(output_map, theta, X, W))
    sv = np.linalg.svd(D, compute_uv=False)
    return np.linalg.norm(Z @ D.T, axis=1) / (sv[0] * np.linalg.norm(Z, axis=1)), float(sv[0] / sv[-1])


def kernel_bracket_tolerance(QN: int, K: int, kappa: float) -> float:
    r"""(3QN + K)·eps·κ(D)²: the first-order bound on `kernel_bracket_defects` (see there)."""
    return (3 * QN + K) * EPS * float(kappa) ** 2


def max_normal_fraction(output_map, theta: jax.Array, X: jax.Array) -> tuple[float, float]:
    r"""max over a < b of |(1 − P)[X_a, X_b]|/|[X_a, X_b]| at θ, and κ(D): the Frobenius defect (2.31).

    V is integrable near θ only if this vanishes; one θ where it is clearly nonzero shows
    that V is not integrable (a single point where (2.31) fails suffices).

    Args:
        output_map, theta (K,), X (N, M): as in `section_brackets`; QN ≥ 2.

    Returns:
        `(fraction, kappa)`, Python floats.
    """
    D, br = bracket_family(output_map, theta, X, depth=2)
    if br.shape[0] == 0:
        raise ValueError("`output_map` must have QN ≥ 2 outputs for a bracket [X_a, X_b]; got QN = 1.")
    sv = np.linalg.svd(np.asarray(D), compute_uv=False)
    return float(np.max(np.asarray(normal_fraction(D, br)))), float(sv[0] / sv[-1])


def normal_fraction_tolerance(K: int, kappa: float) -> float:
    r"""K·eps·κ(D): the rounding bound on `normal_fraction` of a vector that lies in V_θ.

    The projector P = B Bᵀ comes from the SVD of D, whose computed right singular vectors
    span range(Dᵀ + E) with |E| ≤ c·K·eps·|D| (backward stability, c ≈ 1); the angle
    between the computed and the exact V_θ is then ≤ K·eps·κ(D) (Wedin's sin θ theorem),
    and the brackets themselves (two Jacobian–vector products) are exact to a few eps.
    """
    return int(K) * EPS * float(kappa)


class GeometryWitness(NamedTuple):
    """A fixed small tanh MLP and a fixed point: widths `(M, M_1, Q)`, inputs X `(N, M)`, θ `(K,)`."""

    widths: tuple[int, ...]
    X: np.ndarray
    theta: np.ndarray


def geometry_witnesses() -> tuple[GeometryWitness, ...]:
    r"""Four fixed one-hidden-layer tanh MLPs with a fixed θ each: the witnesses of §2.4.

    Literal numbers (short decimals), the same for every reader and seed.  At each, the
    book measures (chapter 05) that a bracket [X_a, X_b] of the spanning sections of
    V = range Dᵀ has a normal part of order one (so the Frobenius condition (2.31) fails:
    V is not integrable), and that V + [V, V] + [V, [V, V]] has rank K with a wide
    singular-value gap at every step (so V is bracket generating at θ, hence on a
    neighbourhood of θ, and — the network being analytic in θ — off a proper analytic
    subset of R^K).  The points were picked by hand, away from saturation (every
    pre-activation |W₁ξ + b₁| ≤ 2) and with distinct inputs, so κ(D) is moderate.

    Layout of θ as in `adaptedflow.mlp`: W₁ (M_1 × M, row-major), b₁, W₂ (Q × M_1), b₂.

    Returns:
        Four `GeometryWitness` with (M, M_1, Q, N) = (1, 1, 1, 2), (1, 2, 1, 4),
        (2, 2, 1, 3), (2, 2, 1, 5); K = 4, 7, 9, 9 and QN = 2, 4, 3, 5.
    """
    return _WITNESSES


def near_integrable_instance() -> GeometryWitness:
    r"""A random instance where V is *nearly* integrable, and why: a saturated hidden unit.

    Found by a search over the random instances (θ from `init_params`, inputs from
    `gaussian_clusters`) of the widths (1, 2, 1) with N = 4 for seeds 0–40 of chapter 05's
    former sampling; stored as the float64 numbers it produced.  Its largest normal fraction
    max_(a<b) |(1 − P)[X_a, X_b]|/|[X_a, X_b]| is the smallest found (about 2e-6).  The
    second hidden unit has pre-activations 9.9–15.5 at the four inputs, so
    tanh′ = sech² ≤ 1e-8 there: the unit is constant to that accuracy, its two incoming
    parameters drop out of D, and its outgoing weight duplicates the output bias — an
    effective model with K − 3 = 4 = QN parameters, which is borderline (§6): V is then
    the whole effective tangent space and integrable.  κ(D) is about 5e5.

    Returns:
        A `GeometryWitness` (widths (1, 2, 1), X of shape (4, 1), θ of shape (7,)).
    """
    return _NEAR_INTEGRABLE


def _witness(widths, X, theta) -> GeometryWitness:
    X, theta = np.array(X, dtype=np.float64), np.array(theta, dtype=np.float64)
    X.setflags(write=False)
    theta.setflags(write=False)
    return GeometryWitness(tuple(widths), X, theta)


_WITNESSES = (
    _witness((1, 1, 1), [[1.4], [-1.4]], [-0.6, 0.4, 0.2, -0.4]),
    _witness((1, 2, 1), [[-1.3], [-0.4], [1.4], [0.6]], [0.7, 0.7, -1.0, 0.6, 0.5, -1.2, -0.6]),
    _witness((2, 2, 1), [[0.2, 0.5], [-0.6, -0.2], [0.7, -0.6]], [-0.2, -1.1, -0.6, 0.4, 0.4, 0.9, -0.7, -1.1, 0.2]),
    _witness((2, 2, 1), [[-1.4, -1.1], [-0.7, 0.8], [0.1, -1.2], [-0.7, 0.2], [1.2, 0.2]],
             [0.4, 1.2, 0.7, -1.0, 0.4, 0.2, -1.1, 0.9, 0.3]),
)


def velocity_normal_fractions(flow: str, output_map, thetas: jax.Array, X: jax.Array, Y: jax.Array) -> np.ndarray:
    r"""|(1 − P)∂_sθ|/|∂_sθ| at each θ of an orbit of a one-output model (QN = 1).

    ∂_sθ = `adaptedflow.direction`(flow, D, ∇_x C), (1.30) or (1.22); with one output
    V_θ is the line spanned by d = D[θ]ᵀ, and P v = (d̂·v) d̂ with d̂ = d/|d|.  Both
    velocities are multiples of d (2.24), so what is measured is rounding, bounded to first
    order by 11u = 5.5·eps (u = eps/2 the unit round-off): the velocity v = c·d is rounded
    componentwise (u; off the line by ≤ u|v|); d̂ carries the rounding of |d| (γ₂ and the
    square root, 2u) and of the division (u), its scale error entering (d̂·v)d̂ twice
    (≤ 4u|v| along v) and its direction error once (u); d̂·v and the product add γ₂ + u = 3u.

    Args:
        flow: ``"adapted"`` or ``"standard"``.
        output_map: `output_map(theta, X) -> x` with one output in total (QN = 1).
        thetas: saved parameters, shape `(T, K)`, e.g. `orbit.theta`.
        X: inputs, shape `(N, M)`; Y: targets, shape `(N, Q)`.

    Returns:
        Shape `(T,)`.
    """
    from ..flows import direction

    if flow not in ("adapted", "standard"):
        raise ValueError(f"`flow` must be 'adapted' or 'standard'; got {flow!r}.")
    thetas = as_float64(thetas, "thetas")
    require_shape(thetas, (None, None), "thetas", "Pass the saved θ of an orbit as rows, e.g. `orbit.theta`.")
    QN = int(jnp.asarray(output_map(thetas[0], X)).size)
    if QN != 1:
        raise ValueError(f"`output_map` must have one output in total (QN = 1) for the line projector; got QN = {QN}. "
                         "Use `normal_fraction(D, v[None])` with the SVD projector for QN > 1.")

    def one(th):
        x, D = outputs_and_jacobian(output_map, th, X)
        v = direction(flow, D, grad_x_cost(x, Y))
        d = D[0] / jnp.linalg.norm(D[0])
        return jnp.linalg.norm(v - (d @ v) * d) / jnp.linalg.norm(v)

    return np.asarray(jax.jit(jax.vmap(one))(thetas))


#: First-order rounding bound of `velocity_normal_fractions` (11 unit round-offs).
VELOCITY_NORMAL_TOLERANCE = 5.5 * EPS


def jacobi_defect(levels: list) -> float:
    r"""max over distinct a < b < c of |J_abc|/(sum of the three norms), J the Jacobi sum.

    J_abc = [X_a, [X_b, X_c]] + [X_b, [X_c, X_a]] + [X_c, [X_a, X_b]] = 0 in exact
    arithmetic; computed from the third level of `bracket_family` (rows (a, (b, c)),
    b < c, in `_pairs` order), it measures the rounding of the level-3 brackets.

    Args:
        levels: output of `bracket_family` with depth 3.

    Returns:
        The defect (0.0 when QN < 3: no distinct triple).
    """
    if len(levels) < 3:
        raise ValueError(f"`levels` must come from `bracket_family(..., depth=3)`; got {len(levels)} levels.")
    QN = int(np.asarray(levels[0]).shape[0])
    L3 = np.asarray(levels[2])
    pidx = {tuple(p): i for i, p in enumerate(_pairs(QN).tolist())}
    npairs = len(pidx)
    row = lambda a, bc: L3[a * npairs + pidx[bc]]
    worst = 0.0
    for a, b, c in itertools.combinations(range(QN), 3):
        t = [row(a, (b, c)), -row(b, (a, c)), row(c, (a, b))]    # [X_b,[X_c,X_a]] = −[X_b,[X_a,X_c]]
        scale = sum(float(np.linalg.norm(v)) for v in t)
        if scale > 0:
            worst = max(worst, float(np.linalg.norm(t[0] + t[1] + t[2])) / scale)
    return worst

_NEAR_INTEGRABLE = _witness(
    (1, 2, 1), [[4.877000643924939], [4.326001219476669], [4.5396590584753955], [3.1036638603709794]],
    [0.2052013676492334, 3.1944459272688435, 0.3283158324344196, -0.0384836503914465, 0.19397697427606922,
     -0.018051417665223383, 0.4015168711287402])


# ---------------------------------------------------------------------------------------------
# the analyses of chapter 05 (one call each)

#: The error columns of `bundle_gradient_errors` compared with K·eps·κ(D) in chapter 05.
BUNDLE_GRADIENT_ERROR_KEYS = ("solves", "horizontal", "lstsq", "form129", "definition", "metric", "kernel",
                              "pythagoras")


class BundleGradientTrials(NamedTuple):
    r"""`bundle_gradient_errors` at random θ, with each error divided by its tolerance.

    Attributes:
        rows: one dict of `bundle_gradient_errors` per θ.
        tolerances: K·eps·κ(D) at each θ, shape `(n_theta,)` as a list.
        ratios: for each key of `BUNDLE_GRADIENT_ERROR_KEYS`, the list of error/tolerance over θ;
            for ``"pythagoras"`` the tolerance is K·eps·κ(D) + (4K + 6)·eps.
    """

    rows: list
    tolerances: list
    ratios: dict


def bundle_gradient_trials(widths, X: jax.Array, Y: jax.Array, key, n_theta: int) -> BundleGradientTrials:
    r"""Proposition 2.4 at `n_theta` random θ of the MLP `widths`: every characterisation of grad_V C.

    At θ_i = `init_params`(fold_in(key, 100 + i)) it draws 8 vectors of V_θ and 8 of ker D
    (from fold_in(key, 200 + i)), scales the kernel vectors to |w|/|u| = 10⁻³ … 10, and
    calls `bundle_gradient_errors`; each error is divided by K·eps·κ(D) (Wedin's bound for
    range Dᵀ), plus (4K + 6)·eps for the three squared norms of Pythagoras.

    Args:
        widths: `(M, M_1, …, Q)` of a tanh MLP.  X: inputs `(N, M)`.  Y: targets `(N, Q)`.
        key: a `jax.random` key.  n_theta: number of random θ (≥ 1).

    Returns:
        A `BundleGradientTrials`.

    References:
        Proposition 2.4, (2.23)–(2.30).
    """
    n_theta = positive_int(n_theta, "n_theta")
    widths = tuple(widths)
    net, K = mlp(widths), num_params(widths)
    rows = []
    for i in range(n_theta):
        theta = init_params(jax.random.fold_in(key, 100 + i), widths)
        x, D = outputs_and_jacobian(net, theta, X)
        g = grad_x_cost(x, Y)
        P = np.asarray(horizontal_projector(D))
        k_v, k_w = jax.random.split(jax.random.fold_in(key, 200 + i), 2)
        V_rand = np.asarray(jax.random.normal(k_v, (8, K))) @ P                  # rows in V_θ
        W_rand = np.asarray(jax.random.normal(k_w, (8, K))) @ (np.eye(K) - P)    # rows in ker D
        u_norm = float(np.linalg.norm(bundle_gradient(D, g)))
        W_rand *= (u_norm * np.logspace(-3, 1, 8) / np.linalg.norm(W_rand, axis=1))[:, None]
        rows.append(bundle_gradient_errors(D, g, V_rand, W_rand))
    tols = [K * EPS * r["kappa"] for r in rows]
    ratios = {c: [r[c] / (t + (4 * K + 6) * EPS * (c == "pythagoras")) for r, t in zip(rows, tols, strict=True)]
              for c in BUNDLE_GRADIENT_ERROR_KEYS}
    return BundleGradientTrials(rows, tols, ratios)


class FrobeniusControls(NamedTuple):
    r"""The two integrable controls of the Frobenius test (2.31) (see `frobenius_controls`).

    Attributes:
        affine_max: max over θ and pairs of |[X_a, X_b]| for x = Aθ + 0.5.
        affine_tol: 10·eps·|A|_F², one bracket's rounding.
        tanh_fractions: every normal fraction |(1 − P)[X_a, X_b]|/|[X_a, X_b]| of x = tanh(Aθ).
        tanh_ratios: per θ, the largest of them over K·eps·κ(D) (`normal_fraction_tolerance`).
        tanh_min_norms: per θ, the smallest |[X_a, X_b]| (nonzero: the test sees normal parts,
            not merely nonzero brackets).
    """

    affine_max: float
    affine_tol: float
    tanh_fractions: list
    tanh_ratios: list
    tanh_min_norms: list


def frobenius_controls(key, n_theta: int) -> FrobeniusControls:
    r"""Brackets of two models whose V is integrable: x = Aθ + 0.5 (D constant) and x = tanh(Aθ).

    A = N(0, 1)/3 of shape (4, 9) from fold_in(key, 7) (QN = 4, K = 9); θ_i ~ N(0, 1_9) from
    fold_in(key, 300 + i).  For the affine model every bracket vanishes; for tanh(Aθ),
    V = range Aᵀ is constant, so brackets are nonzero but lie in V (2.31).

    Args:
        key: a `jax.random` key.  n_theta: number of random θ (≥ 1).

    Returns:
        A `FrobeniusControls`.
    """
    n_theta = positive_int(n_theta, "n_theta")
    A = jnp.asarray(np.asarray(jax.random.normal(jax.random.fold_in(key, 7), (4, 9))) / 3.0)

    def affine_model(theta, X):
        return A @ theta + 0.5

    def tanh_affine_model(theta, X):
        return jnp.tanh(A @ theta)

    X_none = jnp.zeros((1, 1))
    thetas = [jax.random.normal(jax.random.fold_in(key, 300 + i), (9,)) for i in range(n_theta)]
    aff = max(float(np.max(np.linalg.norm(bracket_family(affine_model, t, X_none, depth=2)[1], axis=1)))
              for t in thetas)
    fractions, ratios, norms = [], [], []
    for t in thetas:
        D, br = bracket_family(tanh_affine_model, t, X_none, depth=2)
        f = np.asarray(normal_fraction(D, br))
        sv = np.linalg.svd(np.asarray(D), compute_uv=False)
        fractions += f.tolist()
        ratios.append(float(f.max()) / normal_fraction_tolerance(9, sv[0] / sv[-1]))
        norms.append(float(np.min(np.linalg.norm(br, axis=1))))
    return FrobeniusControls(aff, 10 * EPS * float(np.linalg.norm(np.asarray(A))) ** 2, fractions, ratios, norms)


def small_mlp_instance(key, spec, net_index: int, i: int):
    r"""Random instance i of the small tanh MLP `spec` = [M, M_1, Q, N]: inputs and θ.

    The key is fold_in(key, 10000·(net_index + 1) + i); the inputs come from
    `gaussian_clusters` (its fold 0) and θ from `init_params` (its fold 1).

    Args:
        key: a `jax.random` key.  spec: `[M, M_1, Q, N]`.  net_index: the network's position in
            the chapter's list.  i: the instance number.

    Returns:
        `(output_map, widths, X, theta)`: `mlp(widths)`, `(M, M_1, Q)`, shape `(N, M)`, shape `(K,)`.
    """
    m, h, q, n = spec
    k = jax.random.fold_in(key, 10_000 * (net_index + 1) + i)
    X, _, _ = gaussian_clusters(jax.random.fold_in(k, 0), n, m, q)
    return mlp((m, h, q)), (m, h, q), X, init_params(jax.random.fold_in(k, 1), (m, h, q))


class KernelBracketControl(NamedTuple):
    r"""`kernel_bracket_defects` at random instances (see `kernel_bracket_control`).

    Attributes:
        defects: every |D[Z, Z']|/(|D||[Z, Z']|) over instances and pairs.
        ratios: per instance, the largest defect over (3QN + K)·eps·κ(D)².
        tolerances: per instance, (3QN + K)·eps·κ(D)² (`kernel_bracket_tolerance`).
        widths: `(M, M_1, Q)` of the network.
    """

    defects: list
    ratios: list
    tolerances: list
    widths: tuple


def kernel_bracket_control(key, spec, net_index: int, n_theta: int) -> KernelBracketControl:
    r"""The ker D control of the Frobenius test: brackets of Z_w = (1 − P)w stay in ker D (2.32).

    At instance 400 + i of `small_mlp_instance`, three constant w ~ N(0, 1_K) from
    fold_in(key, 500 + i).

    Args:
        key: a `jax.random` key.  spec: `[M, M_1, Q, N]`.  net_index: as in `small_mlp_instance`.
        n_theta: number of instances (≥ 1).

    Returns:
        A `KernelBracketControl`.
    """
    n_theta = positive_int(n_theta, "n_theta")
    defects, ratios, tols = [], [], []
    for i in range(n_theta):
        net, widths, X, t = small_mlp_instance(key, spec, net_index, 400 + i)
        K, QN = num_params(widths), widths[-1] * X.shape[0]
        d, kappa = kernel_bracket_defects(net, t, X, jax.random.normal(jax.random.fold_in(key, 500 + i), (3, K)))
        tol = kernel_bracket_tolerance(QN, K, kappa)
        defects += d.tolist()
        ratios.append(float(d.max()) / tol)
        tols.append(tol)
    return KernelBracketControl(defects, ratios, tols, widths)


def witness_analysis(rank_rtol: float = DEFAULT_BRACKET_RTOL) -> list[dict]:
    r"""The Frobenius defect and the bracket flag at each of the `geometry_witnesses`.

    Per witness: the largest normal fraction of [X_a, X_b] (2.31) with its rounding bound
    K·eps·κ(D), the ranks of V, V + [V, V], V + [V, V] + [V, [V, V]] (`spanned_rank` at
    `rank_rtol`), the largest ranks min(K, Witt dimension) (`free_lie_dims`), the singular
    value σ_r/σ_1 at those ranks, and the Jacobi defect of level 3.

    Args:
        rank_rtol: the rank cut-off in (0, 1).

    Returns:
        One dict per witness with keys widths, N, K, QN, frac, kappa, tol, ranks, full_rank,
        gaps (three floats), jacobi.
    """
    out = []
    for wi in geometry_witnesses():
        net, K, QN = mlp(wi.widths), num_params(wi.widths), wi.widths[-1] * wi.X.shape[0]
        levels = bracket_family(net, jnp.asarray(wi.theta), jnp.asarray(wi.X), depth=3)
        sv = np.linalg.svd(levels[0], compute_uv=False)
        frac = float(np.max(np.asarray(normal_fraction(levels[0], levels[1]))))
        reps = [spanned_rank(np.concatenate(levels[:k + 1]), rank_rtol) for k in range(3)]
        full_rank = [min(K, d) for d in free_lie_dims(QN)]
        gaps = [rep.singular_values[r - 1] / rep.singular_values[0] for rep, r in zip(reps, full_rank, strict=True)]
        out.append(dict(widths=wi.widths, N=wi.X.shape[0], K=K, QN=QN, frac=frac, kappa=sv[0] / sv[-1],
                        tol=normal_fraction_tolerance(K, sv[0] / sv[-1]), ranks=[r.rank for r in reps],
                        full_rank=full_rank, gaps=gaps, jacobi=jacobi_defect(levels)))
    return out


def random_bracket_analysis(key, nets, n_random: int, rank_rtol: float = DEFAULT_BRACKET_RTOL) -> list[dict]:
    r"""Frobenius defect, bracket flag and saturation at random instances of small tanh MLPs.

    For each `spec` of `nets` and i < `n_random`, instance i of `small_mlp_instance`: every
    normal fraction of [X_a, X_b] (2.31), the ranks of the flag (as `witness_analysis`), κ(D),
    and the saturation of the most saturated hidden unit, min_j max_i sech²(W₁ξ_i + b₁)_j.

    Args:
        key: a `jax.random` key.  nets: list of `[M, M_1, Q, N]`.  n_random: instances per net.
        rank_rtol: the rank cut-off in (0, 1).

    Returns:
        One dict per instance with keys spec (tuple), K, QN, fractions (`(QN(QN−1)/2,)`),
        frac (their max), kappa, ranks, full_rank, saturation.
    """
    n_random = positive_int(n_random, "n_random")
    out = []
    for spec in nets:
        for i in range(n_random):
            net, widths, X, t = small_mlp_instance(key, spec, nets.index(spec), i)
            K, QN = num_params(widths), widths[-1] * spec[3]
            levels = bracket_family(net, t, X, depth=3)
            f = np.asarray(normal_fraction(levels[0], levels[1]))
            reps = [spanned_rank(np.concatenate(levels[:k + 1]), rank_rtol) for k in range(3)]
            sv = np.linalg.svd(levels[0], compute_uv=False)
            m, h = spec[0], spec[1]
            z = np.asarray(X) @ np.asarray(t[:m * h]).reshape(h, m).T + np.asarray(t[m * h:m * h + h])
            out.append(dict(spec=tuple(spec), K=K, QN=QN, fractions=f, frac=float(f.max()), kappa=sv[0] / sv[-1],
                            ranks=[r.rank for r in reps], full_rank=[min(K, d) for d in free_lie_dims(QN)],
                            saturation=float(np.min(np.max(1.0 / np.cosh(z) ** 2, axis=0)))))
    return out


def random_bracket_summary(rand: list[dict], nets, near_integrable: float) -> list[dict]:
    r"""Per network, what the instances of `random_bracket_analysis` show: the rows of a table.

    Args:
        rand: the output of `random_bracket_analysis`.  nets: its list of `[M, M_1, Q, N]`.
        near_integrable: an instance whose largest normal fraction is below this counts as
            near-integrable.

    Returns:
        One dict per spec of `nets`, in order: spec (tuple), n (instances), median_fraction
        (over all brackets of its instances), min_frac (the smallest largest normal fraction
        of an instance), near (instances with largest normal fraction < `near_integrable`),
        short (rank < K after the last step), slow (some step's rank below min(K, free
        dimension)), full_rank (min(K, free dimension) by step), steps (the generating steps
        seen, ascending; None last: not generating within the steps computed).
    """
    out = []
    for spec in nets:
        rs = [r for r in rand if r["spec"] == tuple(spec)]
        if not rs:
            raise ValueError(f"no instance of network {list(spec)} in `rand`.")
        steps = {next((k + 1 for k, x in enumerate(r["ranks"]) if x == r["K"]), None) for r in rs}
        median = float(np.median(np.concatenate([r["fractions"] for r in rs])))
        out.append(dict(spec=tuple(spec), n=len(rs), median_fraction=median, min_frac=min(r["frac"] for r in rs),
                        near=sum(r["frac"] < near_integrable for r in rs),
                        short=sum(r["ranks"][-1] < r["K"] for r in rs),
                        slow=sum(r["ranks"] != r["full_rank"] for r in rs), full_rank=list(rs[0]["full_rank"]),
                        steps=sorted(steps - {None}) + ([None] if None in steps else [])))
    return out


def near_integrable_analysis(shrink: float = 0.2) -> dict:
    r"""Why `near_integrable_instance` is nearly integrable: its second hidden unit is saturated.

    Measures the largest normal fraction and κ(D) there (`max_normal_fraction`), the
    pre-activations W₁ξ_i + b₁ and max_i sech² per hidden unit, and the same at the θ whose
    unit-2 incoming weight and bias are multiplied by `shrink` (out of saturation).

    Args:
        shrink: factor on θ[1] and θ[3] (unit 2's weight and bias).

    Returns:
        dict with widths, N, frac, kappa, preactivations `(N, 2)`, saturation `(2,)`, frac_desat, kappa_desat.
    """
    ni = near_integrable_instance()
    net = mlp(ni.widths)
    frac, kappa = max_normal_fraction(net, jnp.asarray(ni.theta), jnp.asarray(ni.X))
    z = ni.X @ ni.theta[:2].reshape(2, 1).T + ni.theta[2:4]
    desat = np.array(ni.theta)
    desat[[1, 3]] *= shrink
    frac_desat, kappa_desat = max_normal_fraction(net, jnp.asarray(desat), jnp.asarray(ni.X))
    return dict(widths=ni.widths, N=int(ni.X.shape[0]), frac=frac, kappa=kappa, preactivations=z,
                saturation=(1.0 / np.cosh(z) ** 2).max(axis=0),
                frac_desat=frac_desat, kappa_desat=kappa_desat)
