r"""The L² cost (1.7), its output-layer gradient (1.23) and the Jacobian D (1.20)."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def cost(x: jax.Array, Y: jax.Array) -> jax.Array:
    r"""C[x] = (1/2N) |x − y_ω|²_{R^{QN}}  (1.7).

    Args:
        x: outputs x[θ], shape `(QN,)` ordered as (1.6).
        Y: targets y_{ω(j)} as rows, shape `(N, Q)`; `Y.reshape(-1)` is y_ω (1.8).

    Returns:
        Scalar C ≥ 0.
    """
    r = x - Y.reshape(-1)
    return 0.5 * jnp.dot(r, r) / Y.shape[0]


def grad_x_cost(x: jax.Array, Y: jax.Array) -> jax.Array:
    r"""∇_x C[x] = (1/N)(x − y_ω)  (1.23).  Shape `(QN,)`."""
    return (x - Y.reshape(-1)) / Y.shape[0]


def outputs_and_jacobian(output_map, theta: jax.Array, X: jax.Array) -> tuple[jax.Array, jax.Array]:
    r"""x[θ] and D[θ] = ∂x[θ]/∂θ ∈ R^{QN×K}  (1.20), from one forward pass.

    Reverse mode (one VJP per output row) is used, since QN ≤ K in the regimes where
    D is needed most; row i of D is the gradient of x_i.

    Args:
        output_map: `output_map(theta, X) -> x` (see `adaptedflow.network`).
        theta: parameters, shape `(K,)`.
        X: inputs, shape `(N, M)`.

    Returns:
        `(x, D)` with shapes `(QN,)` and `(QN, K)`.
    """
    x, vjp = jax.vjp(lambda t: output_map(t, X), theta)
    (D,) = jax.vmap(vjp)(jnp.eye(x.shape[0], dtype=x.dtype))
    return x, D


def jacobian(output_map, theta: jax.Array, X: jax.Array) -> jax.Array:
    r"""D[θ] = ∂x[θ]/∂θ, shape `(QN, K)`  (1.20)."""
    return outputs_and_jacobian(output_map, theta, X)[1]


def ntk_gram(D: jax.Array) -> jax.Array:
    r"""The empirical neural tangent kernel D Dᵀ of (1.25), shape `(QN, QN)`, symmetric PSD."""
    return D @ D.T
