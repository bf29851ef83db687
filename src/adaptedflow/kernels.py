r"""The empirical NTK D Dᵀ without materialising D, and the adapted direction three ways.

For an MLP (1.3)–(1.4) the Jacobian has layer structure: with pre-activations
z_ℓ = W_ℓ h_{ℓ−1} + b_ℓ and back-propagated errors δ_ℓ(j, q) = ∂x_{j,q}/∂z_ℓ(j),

    ∂x_{j,q}/∂W_ℓ = δ_ℓ(j, q) h_{ℓ−1}(j)ᵀ,   ∂x_{j,q}/∂b_ℓ = δ_ℓ(j, q),

so the kernel (1.25) is a sum over layers of Hadamard products,

    (D Dᵀ)[(j,q),(i,p)] = Σ_ℓ ⟨δ_ℓ(j,q), δ_ℓ(i,p)⟩ (⟨h_{ℓ−1}(j), h_{ℓ−1}(i)⟩ + 1),

which costs Σ_ℓ (QN)² M_ℓ flops instead of (QN)² K for D Dᵀ from D, and never holds the
QN × K matrix D.  The direction is then u = Dᵀα with (D Dᵀ)α = ∇ₓC, and Dᵀα is one
vector–Jacobian product.

`adapted_step_direction` computes the over-parametrized adapted direction (1.30) by

* ``"dense"``: D materialised by reverse mode, Gram from D (the reference);
* ``"structured"``: the layer-wise kernel above (MLPs made by `adaptedflow.mlp`);
* ``"matrix-free"``: conjugate gradients on D Dᵀ through jvp∘vjp, Jacobi-preconditioned
  (the diagonal of D Dᵀ from the structured formula when available), for sizes where even
  the kernel does not fit;

and ``"auto"`` picks structured for the package's MLPs, dense otherwise.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .cost import grad_x_cost, outputs_and_jacobian
from .linalg import gram_matrix_solve, gram_solve
from .network import _ACTIVATIONS, unflatten_params

METHODS = ("auto", "dense", "structured", "matrix-free")


class DirectionInfo(NamedTuple):
    """Diagnostics of one direction: the method used, whether the Gram solve fell back to
    the eigendecomposition pseudo-inverse, CG iterations (0 unless matrix-free) and the
    relative residual |D Dᵀα − ∇ₓC|/|∇ₓC| of the solve."""

    method: str
    fallback: jax.Array
    iterations: jax.Array
    residual: jax.Array


def is_structured(output_map) -> bool:
    """Whether `output_map` is an MLP of `adaptedflow.mlp` (its kernel has layer structure)."""
    return getattr(output_map, "widths", None) is not None and getattr(output_map, "activation", None) in _ACTIVATIONS


def mlp_outputs_and_ntk(output_map, theta: jax.Array, X: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""x[θ] and the empirical NTK D Dᵀ of an `adaptedflow.mlp`, layer by layer (no D).

    Args:
        output_map: an MLP made by `adaptedflow.mlp(widths, activation)`.
        theta: shape `(K,)`; X: shape `(N, M)`.

    Returns:
        `(x, G)` with shapes `(QN,)` and `(QN, QN)`; G is symmetric PSD and equals
        `D @ D.T` for D of (1.20), rows ordered as (1.6).
    """
    widths, sigma = output_map.widths, _ACTIVATIONS[output_map.activation]
    layers = unflatten_params(theta, widths)
    N, Q = X.shape[0], widths[-1]
    hs, dsig = [X], []                    # h_0 … h_L (N, M_ℓ); σ'(z_ℓ) for hidden ℓ
    for W, b in layers[:-1]:
        z = hs[-1] @ W.T + b
        h, vjp = jax.vjp(sigma, z)
        hs.append(h)
        dsig.append(vjp(jnp.ones_like(z))[0])     # σ′(z), elementwise
    W_out, b_out = layers[-1]
    x = (hs[-1] @ W_out.T + b_out).reshape(-1)
    # δ_{L+1}(j, q) = e_q: shape (N, Q, Q); then back through the hidden layers.
    delta = jnp.broadcast_to(jnp.eye(Q, dtype=theta.dtype), (N, Q, Q))
    G = jnp.zeros((N * Q, N * Q), dtype=theta.dtype)
    for l in range(len(layers) - 1, -1, -1):
        d = delta.reshape(N * Q, -1)                                  # rows (j, q)
        hh = jnp.repeat(jnp.repeat(hs[l] @ hs[l].T + 1.0, Q, axis=0), Q, axis=1)
        G = G + (d @ d.T) * hh
        if l > 0:
            W = layers[l][0]
            delta = (delta @ W) * dsig[l - 1][:, None, :]              # (N, Q, M_{l})
    return x, G


def _vjp_jvp(output_map, theta, X):
    x, vjp = jax.vjp(lambda t: output_map(t, X), theta)
    Dt = lambda a: vjp(a)[0]                                           # a ↦ Dᵀa
    D = lambda v: jax.jvp(lambda t: output_map(t, X), (theta,), (v,))[1]   # v ↦ D v
    return x, Dt, D


def _cg(matvec, b, precond, tol, maxiter):
    """Preconditioned conjugate gradients for SPD `matvec`; returns (x, iterations)."""

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
    return x, k


def adapted_step_direction(output_map, theta: jax.Array, X: jax.Array, Y: jax.Array, *,
                           method: str = "auto", cg_tol: float = 1e-12, cg_maxiter: int = 10_000,
                           precondition: bool = True) -> tuple[jax.Array, DirectionInfo]:
    r"""The over-parametrized adapted direction −D⁺∇ₓC of (1.30), by one of `METHODS`.

    Args:
        output_map: `output_map(theta, X) -> x`.
        theta: shape `(K,)`; X: shape `(N, M)`; Y: targets, shape `(N, Q)`; K ≥ QN.
        method: ``"auto"`` (structured for `adaptedflow.mlp` maps, else dense),
            ``"dense"``, ``"structured"`` or ``"matrix-free"``.
        cg_tol: relative residual at which conjugate gradients stop (matrix-free).
        cg_maxiter: the most CG iterations (matrix-free); `info.iterations` reports them.
        precondition: Jacobi preconditioning of CG by the kernel's diagonal (matrix-free).

    Returns:
        `(u, info)`: u = ∂ₛθ of shape `(K,)` with D u = −∇ₓC, and a `DirectionInfo`.

    Raises:
        ValueError: unknown `method`, or ``"structured"`` for a map that is not an
            `adaptedflow.mlp`.
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}; got {method!r}.")
    if method == "auto":
        method = "structured" if is_structured(output_map) else "dense"
    if method == "structured" and not is_structured(output_map):
        raise ValueError("`method='structured'` needs an MLP made by `adaptedflow.mlp`; use 'dense' or 'matrix-free'.")
    return _direction(output_map, method, float(cg_tol), int(cg_maxiter), bool(precondition), theta, X, Y)


def _direction_impl(output_map, method, cg_tol, cg_maxiter, precondition, theta, X, Y):
    if method == "dense":
        x, D = outputs_and_jacobian(output_map, theta, X)
        g = grad_x_cost(x, Y)
        alpha, fb = gram_solve(D, g)
        u = -D.T @ alpha
        res = jnp.linalg.norm(D @ (D.T @ alpha) - g) / jnp.linalg.norm(g)
        return u, fb, jnp.zeros((), jnp.int32), res
    x, Dt, Dv = _vjp_jvp(output_map, theta, X)
    g = grad_x_cost(x, Y)
    K = lambda a: Dv(Dt(a))                                            # a ↦ D Dᵀ a
    if method == "structured":
        _, G = mlp_outputs_and_ntk(output_map, theta, X)
        alpha, fb = gram_matrix_solve(G, g, K)
        iters = jnp.zeros((), jnp.int32)
    else:
        if precondition and is_structured(output_map):
            diag = jnp.diagonal(mlp_outputs_and_ntk(output_map, theta, X)[1])
        elif precondition:
            diag = jax.vmap(lambda e: jnp.dot(e, K(e)))(jnp.eye(g.shape[0], dtype=g.dtype))
        else:
            diag = jnp.ones_like(g)
        alpha, iters = _cg(K, g, lambda r: r / diag, cg_tol, cg_maxiter)
        fb = jnp.zeros((), bool)
    res = jnp.linalg.norm(K(alpha) - g) / jnp.linalg.norm(g)
    return -Dt(alpha), fb, iters, res


_direction_jit = jax.jit(_direction_impl, static_argnums=(0, 1, 2, 3, 4))


def _direction(output_map, method, cg_tol, cg_maxiter, precondition, theta, X, Y):
    u, fb, iters, res = _direction_jit(output_map, method, cg_tol, cg_maxiter, precondition, theta, X, Y)
    return u, DirectionInfo(method=method, fallback=fb, iterations=iters, residual=res)


def direction_flops(widths, N: int) -> dict[str, float]:
    r"""Leading-order flop counts of one adapted direction, by method, for an MLP.

    With K parameters, QN outputs and hidden widths M_ℓ:

    * dense: D by reverse mode, QN VJPs through the whole batch (≈ QN·4NK), then the
      Gram D Dᵀ (QN²·K) and the Cholesky factor (QN³/3);
    * structured: the layer-wise kernel Σ_ℓ QN²·(M_ℓ + 1) + N²·M_{ℓ−1}, the back-
      propagated errors (≈ 2·QN·Σ_ℓ M_ℓ M_{ℓ+1}), the same Cholesky, one VJP (≈ 4NK);
    * one standard gradient: ≈ 6NK (forward and backward pass).

    Returns:
        Dict with keys ``"dense"``, ``"structured"``, ``"gradient"`` (flops), ``"K"``, ``"QN"``.
    """
    widths = tuple(int(w) for w in widths)
    K = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    Q = widths[-1]
    QN = Q * N
    chol = QN**3 / 3
    dense = QN * 4 * N * K + QN**2 * K + chol
    layer = sum(QN**2 * (m_out + 1) + N**2 * m_in for m_in, m_out in zip(widths[:-1], widths[1:]))
    backprop = 2 * QN * sum(a * b for a, b in zip(widths[1:-1], widths[2:]))
    return {"dense": float(dense), "structured": float(layer + backprop + chol + 4 * N * K),
            "gradient": float(6 * N * K), "K": K, "QN": QN}


def time_direction_methods(widths, N: int, *, methods=("structured", "matrix-free", "dense"), repeats: int = 3,
                           key=None) -> dict:
    r"""Median wall seconds of one adapted direction per method, and of one gradient, in this process.

    Compiles each method once before timing; every time is the median of `repeats` runs.
    Also returns the largest relative difference of each method's direction from the
    dense one (when "dense" is among `methods`).

    Returns:
        Dict: ``K``, ``QN``, ``gradient`` (seconds), ``seconds`` (method → seconds),
        ``iterations`` (method → CG iterations), ``agreement`` (method → relative difference).
    """
    import time

    import numpy as np

    from .network import init_params, mlp
    from .problem import gaussian_clusters
    from .cost import cost

    key = jax.random.PRNGKey(0) if key is None else key
    widths = tuple(int(w) for w in widths)
    X, _, Y = gaussian_clusters(jax.random.fold_in(key, 0), N, widths[0], widths[-1])
    net = mlp(widths)
    theta = init_params(jax.random.fold_in(key, 1), widths)
    grad = jax.jit(jax.grad(lambda t: cost(net(t, X), Y)))

    def median_time(fn):
        jax.block_until_ready(fn())
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts))

    out = {"K": int(theta.size), "QN": int(widths[-1] * N), "gradient": median_time(lambda: grad(theta)),
           "seconds": {}, "iterations": {}, "agreement": {}}
    dirs = {}
    for m in methods:
        out["seconds"][m] = median_time(lambda m=m: adapted_step_direction(net, theta, X, Y, method=m)[0])
        u, info = adapted_step_direction(net, theta, X, Y, method=m)
        dirs[m] = u
        out["iterations"][m] = int(info.iterations)
    if "dense" in dirs:
        ref = dirs["dense"]
        for m, u in dirs.items():
            out["agreement"][m] = float(jnp.linalg.norm(u - ref) / jnp.linalg.norm(ref))
    return out
