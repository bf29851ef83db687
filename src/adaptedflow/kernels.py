r"""The empirical NTK D Dᵀ without materialising D, and the adapted directions three ways.

For an MLP (1.3)–(1.4) the Jacobian has layer structure: with pre-activations
z_ℓ = W_ℓ h_{ℓ−1} + b_ℓ and back-propagated errors δ_ℓ(j, q) = ∂x_{j,q}/∂z_ℓ(j),

    ∂x_{j,q}/∂W_ℓ = δ_ℓ(j, q) h_{ℓ−1}(j)ᵀ,   ∂x_{j,q}/∂b_ℓ = δ_ℓ(j, q),

so the kernel (1.25) is a sum over layers of Hadamard products,

    (D Dᵀ)[(j,q),(i,p)] = Σ_ℓ ⟨δ_ℓ(j,q), δ_ℓ(i,p)⟩ (⟨h_{ℓ−1}(j), h_{ℓ−1}(i)⟩ + 1),

which costs Σ_ℓ (QN)² M_ℓ flops instead of (QN)² K for D Dᵀ from D, and never holds the
QN × K matrix D.  The direction is then u = −Dᵀα, one vector–Jacobian product.

`adapted_step_direction` computes the adapted directions of `flows.FLOWS` — (1.30)
over-parametrized, (5.2) under-parametrized, (4.6) least squares, all equal to −D⁺∇ₓC
where defined — by

* ``"dense"``: D materialised by reverse mode (the reference);
* ``"structured"``: the layer-wise kernel above (MLPs made by `adaptedflow.mlp`): a
  Cholesky solve for (1.30), an eigendecomposition pseudo-inverse of the same kernel for
  (5.2) and (4.6) where the kernel resolves the rank (see `kernel_rank_floor`);
* ``"matrix-free"``: conjugate gradients on D Dᵀ through jvp∘vjp for (1.30), with a
  randomized Nyström or Jacobi preconditioner; LSMR on D for (5.2) and (4.6);

and ``"auto"`` picks the fastest correct one and says why in `DirectionInfo.reason`.

The solver settings travel as one frozen, hashable `DirectionOptions`; the direction as
arrays, for use inside other compiled code (the integrator, discrete descent), is
`direction_with_info(net, flow, options, theta, X, Y)`, and `compiled_direction` is the
same function under `jax.jit` with `(net, flow, options)` static.  The flop model and
the timing harness of these methods are in `adaptedflow.book.bench`.
"""

from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from .cost import grad_x_cost, outputs_and_jacobian
from .flows import check_regime
from .flows import direction as dense_direction
from .linalg import default_fallback_rtol, gram_matrix_solve_info
from .network import MLP
from .numerics import EPS, default_rank_rtol, safe_divide, safe_reciprocal
from .pytrees import explain_method, is_flat_params, route_model
from .validation import positive_float, positive_int, validate_data

METHODS = ("auto", "dense", "structured", "matrix-free")

#: ``"auto"`` forms D (QN × K) for a model the layer-wise kernel does not know only up to this
#: many entries (2²⁴ float64: 128 MiB); above, it takes matrix-free CG (1.30) or LSMR.
DENSE_MAX_ENTRIES = 2**24
PRECONDITIONERS = ("nystrom", "jacobi", "none")
DIRECTION_FLOWS = ("adapted", "adapted-under", "least-squares")


@dataclasses.dataclass(frozen=True)
class DirectionOptions:
    r"""How `adapted_step_direction` computes −D⁺∇ₓC: one frozen, hashable value.

    Equal options compare and hash equal, so they can be a static argument of `jax.jit`
    (`compiled_direction`); they are checked when made.

    Attributes:
        method: ``"auto"``, ``"dense"``, ``"structured"`` or ``"matrix-free"`` (`METHODS`).
        cg_tol: relative (recursive) residual at which CG (1.30) stops, and LSMR's
            rtol = atol (5.2), (4.6); > 0.
        cg_maxiter: the most CG or LSMR iterations, ≥ 1.
        precondition: CG's preconditioner: ``"nystrom"``, ``"jacobi"`` or ``"none"``.
        nystrom_rank: sketch size of the Nyström preconditioner, ≥ 1 (capped at QN − 1
            when used).
        pinv_rtol: the singular-value cut-off of (4.6) relative to σ_max, > 0; None for
            the default max(QN, K)·eps (`numerics.default_rank_rtol`).

    Raises:
        ValueError: an unknown `method` or `precondition`, or a value out of range (the
            message names the field).
        TypeError: a tolerance that is not a real number.
    """

    method: str = "auto"
    cg_tol: float = 1e-12
    cg_maxiter: int = 10_000
    precondition: str = "nystrom"
    nystrom_rank: int = 100
    pinv_rtol: float | None = None

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"`method` must be one of {METHODS}; got {self.method!r}.")
        if self.precondition not in PRECONDITIONERS:
            raise ValueError(f"`precondition` must be one of {PRECONDITIONERS}; got {self.precondition!r}.")
        object.__setattr__(self, "cg_tol", positive_float(self.cg_tol, "cg_tol"))
        object.__setattr__(self, "cg_maxiter", positive_int(self.cg_maxiter, "cg_maxiter"))
        object.__setattr__(self, "nystrom_rank", positive_int(self.nystrom_rank, "nystrom_rank"))
        if self.pinv_rtol is not None:
            object.__setattr__(self, "pinv_rtol", positive_float(self.pinv_rtol, "pinv_rtol"))

    def replace(self, **changes) -> DirectionOptions:
        """A copy with `changes` applied (and checked again)."""
        return dataclasses.replace(self, **changes)

    def resolve(self, net, flow: str, K: int, QN: int) -> tuple[DirectionOptions, str]:
        r"""These options for one problem size: ``"auto"`` resolved, the default `pinv_rtol`
        filled in and `nystrom_rank` capped at QN − 1.

        Args:
            net: the output map (an `MLP` or a function).  flow: one of `DIRECTION_FLOWS`.
            K: number of parameters.  QN: number of outputs.

        Returns:
            `(options, reason)`: the resolved options and why their method (see `choose_method`).

        Raises:
            ValueError: ``"structured"`` that cannot apply (see `choose_method`).
        """
        rtol = default_rank_rtol((QN, K)) if self.pinv_rtol is None else self.pinv_rtol
        method, reason = choose_method(net, flow, self.method, K, QN, rtol)
        rank = max(1, min(self.nystrom_rank, QN - 1))
        return dataclasses.replace(self, method=method, pinv_rtol=rtol, nystrom_rank=rank), reason


class DirectionArrays(NamedTuple):
    r"""The arrays of one direction (`direction_with_info`); `DirectionInfo` documents each."""

    u: jax.Array
    fallback: jax.Array
    converged: jax.Array
    iterations: jax.Array
    residual: jax.Array
    rank: jax.Array
    kappa: jax.Array
    refinements: jax.Array


class DirectionInfo(NamedTuple):
    """Diagnostics of one direction.

    Attributes:
        method: the method used (``"auto"`` resolved).
        reason: why that method (``"auto"``'s choice, or ``"requested"``).
        fallback: whether a direct solve left its fast path: a Cholesky factor (of D Dᵀ
            for (1.30), of DᵀD for dense (5.2)) that was non-finite or whose squared
            pivots had min/max ≤ `fallback_rtol`, so the eigendecomposition pseudo-
            inverse was used; or, for structured (5.2), a K-th eigenvalue of D Dᵀ at the
            kernel's rounding floor (rank D < K: the answer is then the minimum-norm one).
            The pivot test is not a λ_min/λ_max test: λ_min ≤ min pivot², so a λ ratio
            somewhat below the threshold can pass, and the refinement step then limits
            the error.  Always False for matrix-free (see `converged`).
        fallback_rtol: the threshold that decision used (NaN where there is none).
        converged: for matrix-free, whether CG's recursive residual met `cg_tol` within
            `cg_maxiter`, or LSMR ended successfully (not at `cg_maxiter` or at its
            conditioning limit); True for dense and structured.
        iterations: CG or LSMR iterations (0 for dense and structured).
        residual: the true relative residual (CG stops on its recursive one, which can
            drift below it by ~QN·κ·eps): |D Dᵀα − ∇ₓC|/|∇ₓC| for (1.30); the normal-
            equation residual |Dᵀ(D u + ∇ₓC)|/|Dᵀ∇ₓC| for (5.2) and (4.6); 0 when
            ∇ₓC = 0.
        rank: the rank used (QN for (1.30); eigenvalues kept for structured (5.2), (4.6);
            −1 where not computed).
        kappa: for the Cholesky solves of (1.30) (dense and structured), the estimate of
            κ(D) from the Cholesky pivots of D Dᵀ (`linalg.GramSolve`); NaN elsewhere.
        refinements: refinement steps of that solve: 1, or more when `kappa` exceeded
            `linalg.KAPPA_SWITCH` and the solve refined to convergence (error ≈ κ·eps
            instead of the normal equations' κ²·eps); 0 elsewhere.
    """

    method: str
    reason: str
    fallback: jax.Array
    fallback_rtol: float
    converged: jax.Array
    iterations: jax.Array
    residual: jax.Array
    rank: jax.Array
    kappa: jax.Array
    refinements: jax.Array


def is_structured(output_map) -> bool:
    """Whether `output_map` is an `MLP` of `adaptedflow.mlp` (its kernel has layer structure).

    A plain function `output_map(theta, X)` is not, whatever attributes it carries: it works
    with the dense and matrix-free methods only."""
    return isinstance(output_map, MLP)


def kernel_rank_floor(QN: int) -> float:
    r"""The smallest σ_min/σ_max of D that the kernel D Dᵀ resolves: sqrt(QN·eps).

    Eigenvalues of D Dᵀ carry absolute errors ≈ QN·eps·λ_max, so σ² below that level
    (σ/σ_max below sqrt(QN·eps) ≈ 4.7e-7 at QN = 1000) is indistinguishable from 0."""
    return math.sqrt(QN * EPS)


def _forward_and_errors(output_map, theta, X):
    """Outputs, layer inputs h_0 … h_L, σ′(z_ℓ) and the layers of an `adaptedflow.mlp`."""
    sigma = output_map.sigma
    layers = output_map.unflatten(theta)
    hs, dsig = [X], []                    # h_0 … h_L (N, M_ℓ); σ′(z_ℓ) for hidden ℓ
    for W, b in layers[:-1]:
        z = hs[-1] @ W.T + b
        h, vjp = jax.vjp(sigma, z)
        hs.append(h)
        dsig.append(vjp(jnp.ones_like(z))[0])     # σ′(z), elementwise
    W_out, b_out = layers[-1]
    return (hs[-1] @ W_out.T + b_out).reshape(-1), hs, dsig, layers


def _hidden_errors(hs, dsig, layers):
    """Yield (ℓ, δ_ℓ) for the hidden layers, last first; δ_ℓ has shape (N, Q, M_ℓ).
    Nothing for an MLP with no hidden layer (widths (M, Q)): its kernel is the output block."""
    if not dsig:
        return
    delta = layers[-1][0][None, :, :] * dsig[-1][:, None, :]          # δ_L(j, q) = W_out[q] ⊙ σ′(z_L(j))
    for l in range(len(layers) - 2, -1, -1):
        yield l, delta
        if l > 0:
            delta = (delta @ layers[l][0]) * dsig[l - 1][:, None, :]


def mlp_outputs_and_ntk(output_map, theta: jax.Array, X: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""x[θ] and the empirical NTK D Dᵀ of an `adaptedflow.mlp`, layer by layer (no D).

    The output layer's block is (⟨h_L(j), h_L(i)⟩ + 1) δ_{qp} (its δ is e_q), formed by
    broadcasting; each hidden layer adds (δ δᵀ) ⊙ (h hᵀ + 1), Q×Q blocks of (1.25).

    Args:
        output_map: an MLP made by `adaptedflow.mlp(widths, activation)`.
        theta: shape `(K,)`; X: shape `(N, M)`.

    Returns:
        `(x, G)` with shapes `(QN,)` and `(QN, QN)`; G is symmetric PSD and equals
        `D @ D.T` for D of (1.20), rows ordered as (1.6).
    """
    x, hs, dsig, layers = _forward_and_errors(output_map, theta, X)
    N, Q = X.shape[0], output_map.widths[-1]
    hh = hs[-1] @ hs[-1].T + 1.0
    G = hh[:, None, :, None] * jnp.eye(Q, dtype=theta.dtype)[None, :, None, :]
    for l, delta in _hidden_errors(hs, dsig, layers):
        d = delta.reshape(N * Q, -1)                                  # rows (j, q)
        G = G + (d @ d.T).reshape(N, Q, N, Q) * (hs[l] @ hs[l].T + 1.0)[:, None, :, None]
    return x, G.reshape(N * Q, N * Q)


def mlp_ntk_diagonal(output_map, theta: jax.Array, X: jax.Array) -> jax.Array:
    r"""diag(D Dᵀ) = Σ_ℓ |δ_ℓ(j,q)|² (|h_{ℓ−1}(j)|² + 1), shape `(QN,)`, in O(QN·Σ M_ℓ) memory."""
    _, hs, dsig, layers = _forward_and_errors(output_map, theta, X)
    Q = output_map.widths[-1]
    diag = jnp.broadcast_to((jnp.sum(hs[-1] ** 2, axis=1) + 1.0)[:, None], (X.shape[0], Q))
    for l, delta in _hidden_errors(hs, dsig, layers):
        diag = diag + jnp.sum(delta**2, axis=2) * (jnp.sum(hs[l] ** 2, axis=1) + 1.0)[:, None]
    return diag.reshape(-1)


#: Kernels up to this size get their extreme eigenvectors from a full symmetric
#: eigendecomposition (`eigh`); larger ones from Lanczos (`kernel_extreme_singular_values`):
#: `eigh` took 0.11 s at n = 1000, 2.5 structured directions.
EIGH_MAX_SIZE = 256

#: Lanczos steps (full reorthogonalisation) for λ_max of the kernel, whose top is crowded
#: (clusters of Q): measured at QN = 1000, the Ritz value's relative error was 1.2e-5 after
#: 24 steps, 1.3e-12 after 48 and 1e-16 after 64 (26 ms, against 12 ms for the Cholesky).
LANCZOS_STEPS_TOP = 64
#: Shift-and-invert Lanczos steps for the smallest eigenvectors (they separate fast in 1/λ).
LANCZOS_STEPS_LOW = 24


def _krylov_basis(matvec, v0, k: int):
    """An orthonormal basis (n × k) of the Krylov space span{v0, A v0, …, A^{k−1} v0} of a
    symmetric operator (Lanczos with full reorthogonalisation, twice per step)."""
    n = v0.shape[0]

    def body(i, state):
        Q, q = state
        Q = Q.at[:, i].set(q)
        w = matvec(q)
        w = w - Q @ (Q.T @ w)
        w = w - Q @ (Q.T @ w)
        nw = jnp.linalg.norm(w)
        return Q, jnp.where(nw > 0, w / jnp.where(nw > 0, nw, 1.0), 0.0)

    Q, _ = jax.lax.fori_loop(0, k, body, (jnp.zeros((n, k), v0.dtype), v0 / jnp.linalg.norm(v0)))
    return Q


def _ritz_values(G, Q):
    """Eigenvalues (increasing) of G restricted to the orthonormal columns of Q: eig(QᵀGQ)."""
    return jnp.linalg.eigvalsh(Q.T @ (G @ Q))


def _singular_values_on(Dt, V):
    """Singular values (increasing) of B = DᵀV for orthonormal columns V (n × b): b VJPs,
    then a QR of B (K × b) and the SVD of its b × b factor R, so small singular values
    carry an absolute error ≈ eps·|B| (eigenvalues of BᵀB would square it)."""
    B = jax.vmap(Dt, in_axes=1, out_axes=1)(V)
    return jnp.linalg.svd(jnp.linalg.qr(B, mode="r"), compute_uv=False)[::-1]


#: What a successful shifted Cholesky factorisation certifies, as a fraction of the ratio it
#: tested (`kernel_ratio_certainly_above`): 0.9 covers the rounding of G and of its factor
#: (≈ QN·eps·λ_max, ≤ 1 % of the shift wherever the tested ratio is ≥ 10·sqrt(QN·eps)).
CERTIFY_SAFETY = 0.9


def kernel_ratio_certainly_above(G: jax.Array, t) -> jax.Array:
    r"""Whether σ_min(D)/σ_max(D) ≥ `CERTIFY_SAFETY`·t is certified by the kernel G = D Dᵀ.

    λ_max(G) ≤ λ̄ = max_i Σ_j |G_ij| (Gershgorin), and a Cholesky factor of G − μ1 exists
    only if λ_min(G) > μ.  With μ = t²·λ̄, a factor with finite positive pivots certifies
    λ_min/λ_max > t², i.e. σ_min/σ_max > t, up to the rounding of G and of the factor
    (≈ QN·eps·λ_max), which the factor `CERTIFY_SAFETY` covers where t ≥ 10·sqrt(QN·eps).
    One Cholesky factorisation, no eigensolver: the rank event uses it to fix its sign far
    from the threshold (`integrate.rank_event_value`).  A False is no evidence of anything
    (Gershgorin can overestimate λ_max): it only sends the caller to a measurement.

    Args:
        G: the kernel, symmetric positive semidefinite, shape `(n, n)`.
        t: the ratio tested, in (0, 1) (may be traced).

    Returns:
        A boolean scalar.
    """
    n = G.shape[0]
    bound = jnp.max(jnp.sum(jnp.abs(G), axis=1))
    L = jax.lax.linalg.cholesky((G - t**2 * bound * jnp.eye(n, dtype=G.dtype)).T, symmetrize_input=False)
    d = jnp.diagonal(L)
    return jnp.all(jnp.isfinite(d) & (d > 0))


def kernel_extreme_singular_values(output_map, theta: jax.Array, X: jax.Array, *,
                                   through_d_below=None) -> tuple[jax.Array, jax.Array]:
    r"""σ_min(D) and σ_max(D) of an `adaptedflow.mlp` with K ≥ QN, from its kernel, without D.

    σ_max = sqrt(λ_max(G)) of the kernel G = D Dᵀ (1.25): the largest eigenvalue is as
    accurate as G itself (relative error ≈ eps).  σ_min is not: G's eigenvalues carry an
    absolute error ≈ QN·eps·λ_max, so sqrt(λ_min/λ_max) stops at ≈ sqrt(QN·eps) (4.7e-7
    at QN = 1000, `kernel_rank_floor`).  So G only supplies the *subspace* of its smallest
    eigenvectors, and σ_min is measured through D itself by Rayleigh–Ritz: the smallest
    singular value of B = DᵀV for an orthonormal basis V of that subspace (one
    vector–Jacobian product per column).  Its error is quadratic in the error of the
    subspace, and σ_min(DᵀV) ≥ σ_min(D) for every V.

    The subspaces: for QN ≤ `EIGH_MAX_SIZE`, blocks of 2Q + 2 eigenvectors of `eigh(G)`
    (an MLP's kernel has clusters of Q nearly equal eigenvalues: its output layer's block
    is (h hᵀ + 1) ⊗ 1_Q, and a near-duplicate input makes Q small ones); above, Krylov
    spaces of G for λ_max (`LANCZOS_STEPS_TOP` vectors) and of G⁻¹ for the smallest ones
    (`LANCZOS_STEPS_LOW`)
    (shift-and-invert through the Cholesky factor of G + δ1, δ = 10·QN·eps·max G_ii, so the
    factor exists at rank loss).  The bases are held constant under differentiation (Ritz
    values are stationary in them).

    Args:
        output_map: an `MLP` of `adaptedflow.mlp`, with K ≥ QN.
        theta: shape `(K,)`; X: shape `(N, M)`.
        through_d_below: if given (may be traced), the Rayleigh–Ritz step through D runs
            only where the kernel's own estimate sqrt(λ_min/λ_max) is below it; above, that
            estimate is returned.  The integrator's rank event passes 1e3·rank_rtol: far
            from the threshold the event's sign is all that matters, and the b VJPs (about
            one structured direction at QN = 1000) are skipped.

    Returns:
        `(sigma_min, sigma_max)`, scalars.  Measured at QN = 1000 against the SVD of D:
        σ_min/σ_max = 1.36e-7 resolved to ≤ 1e-6 relative (tests/test_kernels.py).
    """
    G = mlp_outputs_and_ntk(output_map, theta, X)[1]
    _, Dt, _ = linearize_outputs(output_map, theta, X)
    n = G.shape[0]
    Gs = jax.lax.stop_gradient(G)
    if n <= EIGH_MAX_SIZE:
        lam, V = jnp.linalg.eigh(Gs)
        b = min(n, 2 * output_map.widths[-1] + 2)
        low, lam_max, lam_low = V[:, :b], lam[-1], lam[0]
    else:
        v0 = jax.random.normal(jax.random.PRNGKey(0), (n,), G.dtype)
        lam_max = _ritz_values(Gs, _krylov_basis(lambda v: Gs @ v, v0, min(n, LANCZOS_STEPS_TOP)))[-1]
        delta = 10 * n * EPS * jnp.max(jnp.diagonal(Gs))
        L = jax.lax.linalg.cholesky((Gs + delta * jnp.eye(n, dtype=G.dtype)).T, symmetrize_input=False)
        low = _krylov_basis(lambda v: jax.scipy.linalg.cho_solve((L, True), v), v0, min(n, LANCZOS_STEPS_LOW))
        lam_low = _ritz_values(Gs, low)[0]
    low = jax.lax.stop_gradient(low)
    sigma_max = jnp.sqrt(lam_max)
    through_d = lambda: _singular_values_on(Dt, low)[0]
    if through_d_below is None:
        return through_d(), sigma_max
    kernel_ratio = jnp.sqrt(jnp.maximum(lam_low, 0.0) / lam_max)
    sigma_min = jax.lax.cond(kernel_ratio < through_d_below, through_d,
                             lambda: jnp.sqrt(jnp.maximum(lam_low, 0.0)))
    return sigma_min, sigma_max


def linearize_outputs(output_map, theta: jax.Array, X: jax.Array):
    r"""x[θ] and the two products with D[θ] (1.20), without forming D.

    One forward pass and its linearisation: `Dt(a) = Dᵀa` (a vector–Jacobian product,
    a of shape `(QN,)` → `(K,)`) and `Dv(v) = D v` (a Jacobian–vector product, v of shape
    `(K,)` → `(QN,)`).  Any output map, MLP or function.

    Args:
        output_map: `output_map(theta, X) -> x`.
        theta: shape `(K,)`; X: shape `(N, M)`.

    Returns:
        `(x, Dt, Dv)`: x of shape `(QN,)` and the two linear maps.
    """
    x, vjp = jax.vjp(lambda t: output_map(t, X), theta)
    Dt = lambda a: vjp(a)[0]                                           # a ↦ Dᵀa
    D = lambda v: jax.jvp(lambda t: output_map(t, X), (theta,), (v,))[1]   # v ↦ D v
    return x, Dt, D


def _cg(matvec, b, precond, tol, maxiter):
    """Preconditioned conjugate gradients for SPD `matvec`; returns (x, iterations, converged)."""

    def body(state):
        x, r, z, p, rz, k = state
        Ap = matvec(p)
        a = rz / jnp.dot(p, Ap)
        x, r = x + a * p, r - a * Ap
        z = precond(r)
        rz_new = jnp.dot(r, z)
        return x, r, z, z + (rz_new / rz) * p, rz_new, k + 1

    def cond(state):
        return (jnp.linalg.norm(state[1]) > tol * jnp.linalg.norm(b)) & (state[5] < maxiter)

    z0 = precond(b)
    x, r, _, _, _, k = jax.lax.while_loop(cond, body, (jnp.zeros_like(b), b, z0, z0, jnp.dot(b, z0), 0))
    return x, k, jnp.linalg.norm(r) <= tol * jnp.linalg.norm(b)


def nystrom_preconditioner(matmat, n: int, rank: int, key, dtype=jnp.float64):
    r"""Randomized Nyström preconditioner P⁻¹ of an SPD operator A (Frangella, Tropp & Udell 2023).

    From one block product Y = AΩ with a random orthonormal Ω ∈ R^{n×r}, the rank-r
    Nyström approximation A ≈ U Λ̂ Uᵀ gives

        P⁻¹ = λ̂_r U Λ̂⁻¹ Uᵀ + (I − U Uᵀ),

    which maps the r largest eigenvalues of A onto ≈ λ̂_r; CG on P⁻¹A then converges at the
    rate of the remaining spectrum λ̂_r/λ_min instead of λ_max/λ_min.

    Args:
        matmat: `B ↦ A B` for B of shape `(n, r)`.
        n: size of A.  rank: r, with 1 ≤ r < n.  key: PRNG key for Ω.

    Returns:
        `(apply, eigenvalues)`: `apply(r) = P⁻¹ r` and Λ̂, shape `(r,)`, decreasing.
    """
    omega, _ = jnp.linalg.qr(jax.random.normal(key, (n, rank), dtype))
    Y = matmat(omega)
    nu = jnp.sqrt(n) * EPS * jnp.linalg.norm(Y)                 # stabilising shift
    Y = Y + nu * omega
    C = jnp.linalg.cholesky(omega.T @ Y)
    B = jax.scipy.linalg.solve_triangular(C, Y.T, lower=True).T
    U, S, _ = jnp.linalg.svd(B, full_matrices=False)
    lam = jnp.maximum(S**2 - nu, 0.0) + nu
    scale = lam[-1] / lam

    def apply(r):
        Ur = U.T @ r
        return U @ (scale * Ur) + (r - U @ Ur)

    return apply, lam - nu


def adapted_step_direction(output_map, theta: jax.Array, X: jax.Array, Y: jax.Array, *,
                           flow: str = "adapted", options: DirectionOptions | None = None,
                           method: str | None = None, cg_tol: float | None = None, cg_maxiter: int | None = None,
                           precondition: str | None = None, nystrom_rank: int | None = None,
                           pinv_rtol: float | None = None) -> tuple[jax.Array, DirectionInfo]:
    r"""The adapted direction ∂ₛθ = −D⁺∇ₓC of (1.30), (5.2) or (4.6), by one of `METHODS`.

    The solver settings are a `DirectionOptions` (`options`); each keyword below that is
    given replaces the field of the same name (defaults: those of `DirectionOptions`).

    Args:
        output_map: `output_map(theta, X) -> x`: an `MLP` from `adaptedflow.mlp`, or any
            function (dense and matrix-free methods only).  With a pytree `theta`: the
            model's `apply(params, X) -> outputs` of shape `(N, Q)` or `(QN,)`, or None when
            `theta` is the model itself, applied row-wise (`jax.vmap(model)(X)`); see
            `adaptedflow.pytrees`.  A recognised dense stack (`equinox.nn.MLP`, …, with
            `apply` None) gets the layer-wise kernel, and `info.reason` says so or why not.
        theta: shape `(K,)`, or the parameters as any pytree of float64 arrays (a dict,
            an `equinox.Module`, …); X: shape `(N, M)`; Y: targets, shape `(N, Q)`.
        flow: ``"adapted"`` (1.30), K ≥ QN, rank QN; ``"adapted-under"`` (5.2), K ≤ QN,
            rank K; ``"least-squares"`` (4.6), any rank, singular values ≤
            `pinv_rtol`·σ_max treated as zero.
        options: a `DirectionOptions`; None for the defaults.
        method: ``"auto"``, ``"dense"``, ``"structured"`` or ``"matrix-free"``.  Auto
            takes structured for `adaptedflow.mlp` maps when the kernel is correct and no
            larger than D (K ≥ QN, not (5.2), and for (4.6) `pinv_rtol` ≥
            10·`kernel_rank_floor`), else dense, except for a map without the kernel
            whose D would have more than `DENSE_MAX_ENTRIES` entries: matrix-free.
            `info.reason` says which held.  It times nothing.
        cg_tol: relative (recursive) residual at which CG (1.30) stops, and LSMR's
            rtol = atol (5.2), (4.6); the direction's relative error is then about
            κ·`cg_tol` (κ the condition number of the inverted part of D, or of D Dᵀ for
            CG) when the solver converged (`info.converged`), so tighten it for
            ill-conditioned D.  Matrix-free (4.6) applies no singular-value cut-off:
            LSMR's conditioning limit is set to 1/`pinv_rtol`, and hitting it is
            reported as `info.converged = False`, not truncated.
        cg_maxiter: the most iterations; `info.iterations` reports those taken.
        precondition: for CG: ``"nystrom"`` (rank-`nystrom_rank` randomized Nyström),
            ``"jacobi"`` (the kernel's diagonal) or ``"none"``.
        nystrom_rank: sketch size of the Nyström preconditioner (capped at QN − 1).
        pinv_rtol: the cut-off of (4.6) (default max(QN, K)·eps, as `linalg.pinv_solve`).

    Returns:
        `(u, info)`: u = ∂ₛθ of shape `(K,)` (for pytree parameters, a pytree of the same
        structure: the model with each trained leaf replaced by its velocity) and a
        `DirectionInfo`.

    Raises:
        TypeError: float32 input (see `validation.validate_data`; for pytrees, any trained
            leaf), or `options` that is not a `DirectionOptions`.
        ValueError: wrong shapes or non-finite θ, X, Y; unknown `flow`, `method` or
            `precondition`; K and QN that do not fit `flow`; ``"structured"`` for a map
            that is not an `adaptedflow.mlp`, or for (4.6) with a `pinv_rtol` below what
            the kernel resolves.
    """
    if flow not in DIRECTION_FLOWS:
        raise ValueError(f"`flow` must be one of {DIRECTION_FLOWS}; got {flow!r}.")
    if options is None:
        options = DirectionOptions()
    elif not isinstance(options, DirectionOptions):
        raise TypeError(f"`options` must be a `DirectionOptions`; got {type(options).__name__}.")
    given = dict(method=method, cg_tol=cg_tol, cg_maxiter=cg_maxiter, precondition=precondition,
                 nystrom_rank=nystrom_rank, pinv_rtol=pinv_rtol)
    given = {k: v for k, v in given.items() if v is not None}
    if given:
        options = options.replace(**given)
    if output_map is None or not is_flat_params(theta):        # a pytree model: through its flat view
        route = route_model(output_map, theta, X, Y, options.method)
        u, info = adapted_step_direction(route.output_map, route.theta0, X, Y, flow=flow, options=options)
        return route.to_params(u), info._replace(reason=explain_method(info.method, info.reason, route))
    theta, X, Y = validate_data(theta, X, Y, "theta")
    K, QN = int(theta.shape[0]), int(Y.size)
    check_regime(flow, K, QN)
    options, reason = options.resolve(output_map, flow, K, QN)
    u, fb, conv, iters, res, rank, kappa, refinements = compiled_direction(output_map, flow, options, theta, X, Y)
    if options.method == "matrix-free" or flow == "least-squares":
        frtol = float("nan")
    elif flow == "adapted":
        frtol = default_fallback_rtol(QN)
    else:                                        # (5.2): DᵀD is K×K (dense); the kernel's floor (structured)
        frtol = default_fallback_rtol(K) if options.method == "dense" else QN * EPS
    return u, DirectionInfo(method=options.method, reason=reason, fallback=fb, fallback_rtol=frtol,
                            converged=conv, iterations=iters, residual=res, rank=rank, kappa=kappa,
                            refinements=refinements)


def choose_method(output_map, flow: str, method: str, K: int, QN: int, pinv_rtol: float) -> tuple[str, str]:
    r"""The method ``"auto"`` resolves to, and why; validates an explicit ``"structured"``.

    Returns:
        `(method, reason)`.
    """
    structured_ok = is_structured(output_map)
    floor = 10 * kernel_rank_floor(QN)
    if method == "structured":
        if not structured_ok:
            raise ValueError("`method='structured'` needs an MLP made by `adaptedflow.mlp`; use 'dense' or "
                             "'matrix-free'.")
        if flow == "least-squares" and pinv_rtol < floor:
            raise ValueError(
                f"`method='structured'` for (4.6) needs `pinv_rtol` ≥ 10·sqrt(QN·eps) = {floor:.1e}: the kernel "
                f"D Dᵀ cannot tell σ/σ_max = {pinv_rtol:.1e} from 0. Use 'dense' (SVD of D) or raise `pinv_rtol`."
            )
    if method != "auto":
        return method, "requested"
    if not structured_ok:
        if QN * K > DENSE_MAX_ENTRIES:
            return "matrix-free", (f"not an adaptedflow.mlp: no layer-wise kernel; D would have QN·K = {QN * K} > "
                                   f"{DENSE_MAX_ENTRIES} entries: matrix-free")
        return "dense", (f"not an adaptedflow.mlp: no layer-wise kernel; D has QN·K = {QN * K} ≤ "
                         f"{DENSE_MAX_ENTRIES} entries")
    if flow == "adapted-under" or K < QN:
        return "dense", f"K = {K} ≤ QN = {QN}: D ({QN}×{K}) is no larger than the kernel ({QN}×{QN})"
    if flow == "least-squares" and pinv_rtol < floor:
        return "dense", (f"pinv_rtol = {pinv_rtol:.1e} is below what the kernel resolves "
                         f"(10·sqrt(QN·eps) = {floor:.1e}): SVD of D")
    return "structured", "adaptedflow.mlp with K ≥ QN: layer-wise kernel"


def _kernel_pinv(G, keep):
    """`(b ↦ G⁺b restricted to the kept eigenvectors, keep mask, eigenvalues)` from eigh(G)."""
    lam, V = jnp.linalg.eigh(G)
    keep = keep(lam)
    inv = safe_reciprocal(lam, keep)
    return (lambda b: V @ (inv * (V.T @ b))), keep, lam


def structured_gram_solve(output_map, theta, X, g, Dt, Dv, damping=None):
    r"""α with (D Dᵀ + λ1)α = g from the layer-wise kernel (λ = `damping`, or 0 if None).

    Cholesky with one refinement step whose residual goes through D itself (`Dt`: a ↦ Dᵀa,
    `Dv`: v ↦ D v, from `linearize_outputs`), and the eigendecomposition fallback of
    `linalg.gram_matrix_solve`.  Shared by the direction (1.30) and damped discrete descent.

    Returns:
        `(alpha, used_fallback)`, shapes `(QN,)` and `()`; `structured_gram_solve_info` also
        returns the κ estimate and the refinement steps (`linalg.GramSolve`).
    """
    out = structured_gram_solve_info(output_map, theta, X, g, Dt, Dv, damping)
    return out.alpha, out.fallback


def structured_gram_solve_info(output_map, theta, X, g, Dt, Dv, damping=None):
    r"""`structured_gram_solve` with its statistics: a `linalg.GramSolve`."""
    G = mlp_outputs_and_ntk(output_map, theta, X)[1]
    if damping is None:
        return gram_matrix_solve_info(G, g, lambda a: Dv(Dt(a)))
    G = G + damping * jnp.eye(G.shape[0], dtype=G.dtype)       # the Gram matrix of [D, √λ·1]
    return gram_matrix_solve_info(G, g, lambda a: Dv(Dt(a)) + damping * a)


def direction_with_info(output_map, flow: str, options: DirectionOptions, theta: jax.Array, X: jax.Array,
                        Y: jax.Array) -> DirectionArrays:
    r"""The direction −D⁺∇ₓC of `flow` and its diagnostics as arrays, traceable (no checks).

    The body of `adapted_step_direction`, for use inside other compiled code (the
    integrator's vector field, discrete descent): θ, X, Y are neither validated nor
    converted, and `options` are resolved here from the static shapes if they are not
    already (``"auto"``, the default `pinv_rtol`, the Nyström rank cap).

    Args:
        output_map: an `MLP` or a function `output_map(theta, X) -> x`.
        flow: one of `DIRECTION_FLOWS`.
        options: a `DirectionOptions`.
        theta: shape `(K,)`; X: shape `(N, M)`; Y: shape `(N, Q)`; float64.

    Returns:
        A `DirectionArrays` `(u, fallback, converged, iterations, residual, rank)`, u of
        shape `(K,)` and scalars (see `DirectionInfo`).
    """
    QN, K = Y.size, theta.shape[0]
    options = options.resolve(output_map, flow, K, QN)[0]
    method, cg_tol, cg_maxiter = options.method, options.cg_tol, options.cg_maxiter
    precondition, nystrom_rank, pinv_rtol = options.precondition, options.nystrom_rank, options.pinv_rtol
    zero, no, yes = jnp.zeros((), jnp.int32), jnp.zeros((), bool), jnp.ones((), bool)
    nan = jnp.full((), jnp.nan, theta.dtype)
    full = jnp.asarray(QN, jnp.int32)
    if method == "dense":
        x, D = outputs_and_jacobian(output_map, theta, X)
        g = grad_x_cost(x, Y)
        if flow == "adapted":
            sol = gram_matrix_solve_info(D @ D.T, g, lambda a: D @ (D.T @ a))
            alpha = sol.alpha
            res = safe_divide(jnp.linalg.norm(D @ (D.T @ alpha) - g), jnp.linalg.norm(g))
            return DirectionArrays(-D.T @ alpha, sol.fallback, yes, zero, res, full, sol.kappa,
                                   sol.refinements.astype(jnp.int32))
        if flow == "adapted-under":                  # (DᵀD)⁻¹Dᵀ∇ₓC, as `flows.adapted_under_direction`
            alpha, fb = gram_matrix_solve_info(D.T @ D, D.T @ g, lambda a: D.T @ (D @ a))[:2]
            u = -alpha
        else:
            u, fb = dense_direction(flow, D, g, rank_rtol=pinv_rtol), no
        res = safe_divide(jnp.linalg.norm(D.T @ (D @ u + g)), jnp.linalg.norm(D.T @ g))
        return DirectionArrays(u, fb, yes, zero, res, -jnp.ones((), jnp.int32), nan, zero)
    x, Dt, Dv = linearize_outputs(output_map, theta, X)
    g = grad_x_cost(x, Y)
    Kmv = lambda a: Dv(Dt(a))                                          # a ↦ D Dᵀ a
    if flow != "adapted":
        if method == "structured":
            G = mlp_outputs_and_ntk(output_map, theta, X)[1]
            if flow == "least-squares":
                cut = lambda lam: lam > pinv_rtol**2 * lam[-1]
            else:   # rank K: the K largest eigenvalues, those above the kernel's rounding floor
                cut = lambda lam: (jnp.arange(QN) >= QN - K) & (lam > QN * EPS * lam[-1])
            pinv, keep, lam = _kernel_pinv(G, cut)
            alpha = pinv(g)
            alpha = alpha + pinv(g - Kmv(alpha))      # one refinement step, residual through D itself
            u = -Dt(alpha)
            # (5.2) needs rank D = K: a K-th largest eigenvalue at the floor means it is lost
            fb = (lam[QN - K] <= QN * EPS * lam[-1]) if flow == "adapted-under" else no
            conv, iters, rank = yes, zero, jnp.sum(keep).astype(jnp.int32)
        else:
            import lineax as lx

            conlim = 1.0 / pinv_rtol if flow == "least-squares" else 1.0 / EPS
            op = lx.FunctionLinearOperator(Dv, jax.eval_shape(lambda: theta))
            solver = lx.LSMR(rtol=cg_tol, atol=cg_tol, max_steps=cg_maxiter, conlim=conlim)
            sol = lx.linear_solve(op, -g, solver, throw=False)
            u, fb, rank = sol.value, no, -jnp.ones((), jnp.int32)
            conv = sol.result == lx.RESULTS.successful
            iters = sol.stats["num_steps"].astype(jnp.int32)
        res = safe_divide(jnp.linalg.norm(Dt(Dv(u) + g)), jnp.linalg.norm(Dt(g)))
        return DirectionArrays(u, fb, conv, iters, res, rank, nan, zero)
    kappa, refinements = nan, zero
    if method == "structured":
        sol = structured_gram_solve_info(output_map, theta, X, g, Dt, Dv)
        alpha, fb, kappa, refinements = sol.alpha, sol.fallback, sol.kappa, sol.refinements.astype(jnp.int32)
        conv, iters = yes, zero
    else:
        if precondition == "nystrom":
            matmat = lambda B: jax.vmap(Kmv, in_axes=1, out_axes=1)(B)
            apply, _ = nystrom_preconditioner(matmat, QN, nystrom_rank, jax.random.PRNGKey(0), g.dtype)
        elif precondition == "jacobi":
            if is_structured(output_map):
                diag = mlp_ntk_diagonal(output_map, theta, X)
            else:
                diag = jax.vmap(lambda e: jnp.dot(e, Kmv(e)))(jnp.eye(QN, dtype=g.dtype))
            apply = lambda r: r / diag
        else:
            apply = lambda r: r
        alpha, iters, conv = _cg(Kmv, g, apply, cg_tol, cg_maxiter)
        fb = no
    res = safe_divide(jnp.linalg.norm(Kmv(alpha) - g), jnp.linalg.norm(g))
    return DirectionArrays(-Dt(alpha), fb, conv, iters, res, full, kappa, refinements)


#: `direction_with_info` under `jax.jit`, with `(output_map, flow, options)` static: compiled
#: once per equal network, flow and options (and shapes), reused for every θ, X, Y.
compiled_direction = jax.jit(direction_with_info, static_argnums=(0, 1, 2))
