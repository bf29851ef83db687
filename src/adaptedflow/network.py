r"""The network of §1.1: a fully connected MLP with a linear output layer.

Parameters θ ∈ R^K are one flat vector in the layer order of (1.5): W_1 (row-major),
b_1, W_2, b_2, …, W_{L+1}, b_{L+1}.  Outputs x[θ] ∈ R^{QN} are ordered as (1.6):
x = (x_1, …, x_N), each block x_j ∈ R^Q.

An *output map* here is any pure function `output_map(theta, X) -> x` with `theta` of
shape `(K,)`, `X` of shape `(N, M)` and `x` of shape `(QN,)`.  Every flow in this package
is written for an output map, so the comparison model (`identity_map`) and the MLPs are
handled by the same code.
"""

from __future__ import annotations

import functools
import warnings
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

_ACTIVATIONS: dict[str, Callable] = {
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
    "sigmoid": jax.nn.sigmoid,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "relu": jax.nn.relu,
}
_NON_SMOOTH = {"relu"}


def _check_widths(widths: Sequence[int]) -> tuple[int, ...]:
    widths = tuple(widths)
    if len(widths) < 2 or not all(isinstance(w, (int, np.integer)) and w >= 1 for w in widths):
        raise ValueError(
            f"`widths` must list at least two positive integers [M, M_1, …, M_L, Q]; got {widths!r}."
        )
    return tuple(int(w) for w in widths)


def num_params(widths: Sequence[int]) -> int:
    r"""K = Σ_{ℓ=1}^{L+1} (M_ℓ M_{ℓ−1} + M_ℓ), the number of weights and biases (1.5).

    Args:
        widths: `[M, M_1, …, M_L, Q]`, input width first, output width last.
    """
    w = _check_widths(widths)
    return sum(a * b + b for a, b in zip(w[:-1], w[1:]))


def unflatten_params(theta: jax.Array, widths: Sequence[int]) -> list[tuple[jax.Array, jax.Array]]:
    r"""Split θ ∈ R^K into `[(W_1, b_1), …, (W_{L+1}, b_{L+1})]` following (1.5).

    `W_ℓ` has shape `(M_ℓ, M_{ℓ−1})` and `b_ℓ` shape `(M_ℓ,)`.
    """
    w = _check_widths(widths)
    layers, i = [], 0
    for m_in, m_out in zip(w[:-1], w[1:]):
        W = theta[i:i + m_in * m_out].reshape(m_out, m_in)
        i += m_in * m_out
        b = theta[i:i + m_out]
        i += m_out
        layers.append((W, b))
    return layers


def init_params(key, widths: Sequence[int], *, scale: float = 1.0) -> jax.Array:
    r"""Random θ(0) ∈ R^K: W_ℓ ~ N(0, scale²/M_{ℓ−1}) entrywise, b_ℓ ~ N(0, scale²·0.1).

    Args:
        key: a `jax.random` key (the only source of randomness).
        widths: `[M, M_1, …, M_L, Q]`.
        scale: overall scale; small values start near the affine regime of tanh.

    Returns:
        θ of shape `(K,)`, float64.
    """
    w = _check_widths(widths)
    parts = []
    keys = jax.random.split(key, 2 * (len(w) - 1))
    for l, (m_in, m_out) in enumerate(zip(w[:-1], w[1:])):
        parts.append(scale / np.sqrt(m_in) * jax.random.normal(keys[2 * l], (m_out * m_in,), dtype=jnp.float64))
        parts.append(scale * np.sqrt(0.1) * jax.random.normal(keys[2 * l + 1], (m_out,), dtype=jnp.float64))
    return jnp.concatenate(parts)


def mlp(widths: tuple[int, ...], activation: str = "tanh") -> Callable[[jax.Array, jax.Array], jax.Array]:
    r"""The output map θ ↦ x[θ] of an MLP, (1.3)–(1.6).

    Hidden layers x^{(ℓ)} = σ(W_ℓ x^{(ℓ−1)} + b_ℓ) (1.3); the output layer is affine,
    x^{(L+1)} = W_{L+1} x^{(L)} + b_{L+1} (1.4).  The same `(widths, activation)` always
    returns the same function object, so compiled integrators are reused.

    Args:
        widths: tuple `(M, M_1, …, M_L, Q)`.
        activation: one of `"tanh"` (default), `"softplus"`, `"sigmoid"`, `"gelu"`; `"relu"`
            is accepted with a warning, since the theorems need σ′ Lipschitz (§1.1).

    Returns:
        `output_map(theta, X) -> x`, `theta` of shape `(K,)`, `X` of shape `(N, M)`,
        `x` of shape `(QN,)` ordered as (1.6).
    """
    w = _check_widths(widths)
    if activation not in _ACTIVATIONS:
        raise ValueError(f"`activation` must be one of {sorted(_ACTIVATIONS)}; got {activation!r}.")
    if activation in _NON_SMOOTH:
        warnings.warn(
            f"activation {activation!r} has no Lipschitz derivative; the existence and uniqueness "
            "arguments behind Theorems 2.1 and 5.1 (§1.1) do not apply.",
            stacklevel=2,
        )
    return _mlp(w, activation)


@functools.lru_cache(maxsize=None)
def _mlp(w: tuple[int, ...], activation: str):
    """The cached output map of `mlp` (one function object per configuration)."""
    sigma = _ACTIVATIONS[activation]

    def output_map(theta: jax.Array, X: jax.Array) -> jax.Array:
        layers = unflatten_params(theta, w)
        h = X
        for W, b in layers[:-1]:
            h = sigma(h @ W.T + b)
        W, b = layers[-1]
        return (h @ W.T + b).reshape(-1)

    output_map.widths = w  # type: ignore[attr-defined]
    output_map.activation = activation  # type: ignore[attr-defined]
    output_map.__name__ = f"mlp{list(w)}_{activation}"
    return output_map


def identity_map(theta: jax.Array, X: jax.Array) -> jax.Array:
    r"""The output map x[θ] = θ (K = QN, D = 1): every flow becomes the comparison model (1.11)."""
    return theta


def output_bias_jacobian(K: int, N: int, Q: int) -> tuple[np.ndarray, np.ndarray]:
    r"""The columns of D for the output bias b_{L+1} of an `adaptedflow.mlp` map: e_q ⊗ 1_N.

    With x_j = W_{L+1} a_L(x_j) + b_{L+1} (1.4), ∂x_{j,q}/∂b_{L+1,q'} = δ_{qq'} for every
    input j and every θ, so in the stacked order of x (QN entries, j-major) the Q bias
    columns form the (QN, Q) matrix 1_N ⊗ 1_Q (Kronecker), independent of θ.  The bias
    entries are the last Q of θ (the order of (1.5)).

    Args:
        K: number of parameters (K ≥ Q).  N: number of inputs.  Q: output dimension.

    Returns:
        `(cols, expected)`: the indices of the bias columns, shape `(Q,)`, and the exact
        columns, shape `(QN, Q)`.
    """
    for name, v in (("K", K), ("N", N), ("Q", Q)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"`{name}` must be a positive integer; got {v!r}.")
    if K < Q:
        raise ValueError(f"`K` must be ≥ `Q` (the output bias has Q entries); got K = {K}, Q = {Q}.")
    return np.arange(K - Q, K), np.kron(np.ones((N, 1)), np.eye(Q))
