r"""The network of §1.1: a fully connected MLP with a linear output layer, as a value.

Parameters θ ∈ R^K are one flat vector in the layer order of (1.5): W_1 (row-major),
b_1, W_2, b_2, …, W_{L+1}, b_{L+1}.  Outputs x[θ] ∈ R^{QN} are ordered as (1.6):
x = (x_1, …, x_N), each block x_j ∈ R^Q.

An *output map* here is any pure function `output_map(theta, X) -> x` with `theta` of
shape `(K,)`, `X` of shape `(N, M)` and `x` of shape `(QN,)`.  Every flow in this package
is written for an output map, so the comparison model (`identity_map`) and the MLPs are
handled by the same code.

`mlp(widths, activation)` returns an `MLP`: a frozen, hashable value (equal and with
equal hashes whenever widths and activation are equal) that is itself an output map,
`net(theta, X)`, and carries what the layer-wise kernel of `adaptedflow.kernels` needs
(`widths`, `activation`, `sigma`, `unflatten`).  Because it is compared by value, it can
be a static argument of `jax.jit`: compiled solvers are reused for every equal network,
with no cache keyed on object identity.
"""

from __future__ import annotations

import dataclasses
import functools
import warnings
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .validation import positive_int

_ACTIVATIONS: dict[str, Callable] = {
    "tanh": jnp.tanh,
    "softplus": jax.nn.softplus,
    "sigmoid": jax.nn.sigmoid,
    "gelu": functools.partial(jax.nn.gelu, approximate=False),
    "relu": jax.nn.relu,
}
_NON_SMOOTH = {"relu"}

#: The activations σ an `MLP` accepts (``"relu"`` with a warning: σ′ is not Lipschitz).
ACTIVATIONS = tuple(_ACTIVATIONS)


def activation_function(name: str) -> Callable[[jax.Array], jax.Array]:
    r"""The elementwise activation σ of (1.3) called `name` (one of `ACTIVATIONS`).

    Raises:
        ValueError: `name` is not one of `ACTIVATIONS`.
    """
    if name not in _ACTIVATIONS:
        raise ValueError(f"`activation` must be one of {sorted(_ACTIVATIONS)}; got {name!r}.")
    return _ACTIVATIONS[name]


def _check_widths(widths: Sequence[int]) -> tuple[int, ...]:
    widths = tuple(widths)
    if len(widths) < 2 or not all(
        isinstance(w, (int, np.integer)) and not isinstance(w, bool) and w >= 1 for w in widths
    ):
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
    return sum(a * b + b for a, b in zip(w[:-1], w[1:], strict=True))


def unflatten_params(theta: jax.Array, widths: Sequence[int]) -> list[tuple[jax.Array, jax.Array]]:
    r"""Split θ ∈ R^K into `[(W_1, b_1), …, (W_{L+1}, b_{L+1})]` following (1.5).

    `W_ℓ` has shape `(M_ℓ, M_{ℓ−1})` and `b_ℓ` shape `(M_ℓ,)`; the inverse of
    `flatten_params`.  θ is sliced, not checked: pass θ of shape `(num_params(widths),)`.
    """
    w = _check_widths(widths)
    layers, i = [], 0
    for m_in, m_out in zip(w[:-1], w[1:], strict=True):
        W = theta[i:i + m_in * m_out].reshape(m_out, m_in)
        i += m_in * m_out
        b = theta[i:i + m_out]
        i += m_out
        layers.append((W, b))
    return layers


def flatten_params(layers: Sequence[tuple[jax.Array, jax.Array]], widths: Sequence[int] | None = None) -> jax.Array:
    r"""Stack `[(W_1, b_1), …, (W_{L+1}, b_{L+1})]` into θ ∈ R^K in the order of (1.5).

    The inverse of `unflatten_params`: W_ℓ row-major, then b_ℓ, layer by layer, so
    `flatten_params(unflatten_params(theta, widths)) == theta` entry for entry.

    Args:
        layers: one `(W_ℓ, b_ℓ)` per layer, `W_ℓ` of shape `(M_ℓ, M_{ℓ−1})`, `b_ℓ` of
            shape `(M_ℓ,)`.
        widths: if given, `[M, M_1, …, M_L, Q]`, and every shape is checked against it.

    Returns:
        θ of shape `(K,)`.

    Raises:
        ValueError: a layer that is not a `(W, b)` pair, or shapes that do not chain (or do
            not match `widths`).
    """
    layers = list(layers)
    if not layers:
        raise ValueError("`layers` must hold at least one (W, b) pair; got none.")
    shapes = []
    for l, pair in enumerate(layers, start=1):
        if len(pair) != 2:
            raise ValueError(f"`layers[{l - 1}]` must be a pair (W_{l}, b_{l}); got {len(pair)} entries.")
        W, b = jnp.asarray(pair[0]), jnp.asarray(pair[1])
        if W.ndim != 2 or b.shape != (W.shape[0],):
            raise ValueError(f"layer {l}: `W_{l}` must have shape (M_{l}, M_{l - 1}) and `b_{l}` shape "
                             f"(M_{l},); got {W.shape} and {b.shape}.")
        shapes.append(W.shape)
    derived = (shapes[0][1],) + tuple(m_out for m_out, _ in shapes)
    if any(shapes[l][1] != shapes[l - 1][0] for l in range(1, len(shapes))):
        raise ValueError(f"`layers` do not chain: W shapes {shapes}; W_ℓ must have M_{{ℓ−1}} = rows of W_{{ℓ−1}} "
                         "columns.")
    if widths is not None and _check_widths(widths) != derived:
        raise ValueError(f"`layers` have widths {list(derived)}, but `widths` is {list(widths)}.")
    return jnp.concatenate([part for W, b in layers for part in (jnp.ravel(jnp.asarray(W)), jnp.asarray(b))])


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
    for l, (m_in, m_out) in enumerate(zip(w[:-1], w[1:], strict=True)):
        parts.append(scale / np.sqrt(m_in) * jax.random.normal(keys[2 * l], (m_out * m_in,), dtype=jnp.float64))
        parts.append(scale * np.sqrt(0.1) * jax.random.normal(keys[2 * l + 1], (m_out,), dtype=jnp.float64))
    return jnp.concatenate(parts)


@dataclasses.dataclass(frozen=True)
class MLP:
    r"""The output map θ ↦ x[θ] of an MLP, (1.3)–(1.6), as a frozen, hashable value.

    Hidden layers x^{(ℓ)} = σ(W_ℓ x^{(ℓ−1)} + b_ℓ) (1.3); the output layer is affine,
    x^{(L+1)} = W_{L+1} x^{(L)} + b_{L+1} (1.4).  Two MLPs with the same `widths` and
    `activation` are equal and hash alike, so `jax.jit` with the network as a static
    argument compiles once per configuration.  Make one with `adaptedflow.mlp`.

    Attributes:
        widths: `(M, M_1, …, M_L, Q)`, input width first, output width last.
        activation: the name of σ, one of `ACTIVATIONS`.
    """

    widths: tuple[int, ...]
    activation: str = "tanh"

    def __post_init__(self):
        object.__setattr__(self, "widths", _check_widths(self.widths))
        activation_function(self.activation)

    def __call__(self, theta: jax.Array, X: jax.Array) -> jax.Array:
        r"""x[θ] of shape `(QN,)`, ordered as (1.6), for θ of shape `(K,)` and X of shape `(N, M)`."""
        layers = self.unflatten(theta)
        sigma = self.sigma
        h = X
        for W, b in layers[:-1]:
            h = sigma(h @ W.T + b)
        W, b = layers[-1]
        return (h @ W.T + b).reshape(-1)

    @property
    def sigma(self) -> Callable[[jax.Array], jax.Array]:
        """The activation σ of (1.3), an elementwise function."""
        return _ACTIVATIONS[self.activation]

    @property
    def num_params(self) -> int:
        """K of (1.5), the length of θ."""
        return num_params(self.widths)

    @property
    def __name__(self) -> str:
        """A readable name, e.g. ``mlp[2, 3, 1]_tanh`` (output maps that are functions have one too)."""
        return f"mlp{list(self.widths)}_{self.activation}"

    def unflatten(self, theta: jax.Array) -> list[tuple[jax.Array, jax.Array]]:
        r"""θ of shape `(K,)` → `[(W_1, b_1), …, (W_{L+1}, b_{L+1})]` (1.5); see `unflatten_params`."""
        return unflatten_params(theta, self.widths)

    def flatten(self, layers: Sequence[tuple[jax.Array, jax.Array]]) -> jax.Array:
        r"""`[(W_1, b_1), …]` → θ of shape `(K,)` (1.5), shapes checked against `widths`; see `flatten_params`."""
        return flatten_params(layers, self.widths)


def mlp(widths: Sequence[int], activation: str = "tanh") -> MLP:
    r"""The MLP output map θ ↦ x[θ] of (1.3)–(1.6), as an `MLP` value.

    Equal arguments give equal (and equally hashed) networks, so compiled integrators
    and directions are reused.

    Args:
        widths: `(M, M_1, …, M_L, Q)`.
        activation: one of `"tanh"` (default), `"softplus"`, `"sigmoid"`, `"gelu"`; `"relu"`
            is accepted with a warning, since the theorems need σ′ Lipschitz (§1.1).

    Returns:
        An `MLP`, callable as `net(theta, X) -> x` with `theta` of shape `(K,)`, `X` of
        shape `(N, M)` and `x` of shape `(QN,)` ordered as (1.6).

    Raises:
        ValueError: `widths` not at least two positive integers, or an unknown `activation`.
    """
    net = MLP(tuple(widths), activation)
    if activation in _NON_SMOOTH:
        warnings.warn(
            f"activation {activation!r} has no Lipschitz derivative; the existence and uniqueness "
            "arguments behind Theorems 2.1 and 5.1 (§1.1) do not apply.",
            stacklevel=2,
        )
    return net


def identity_map(theta: jax.Array, X: jax.Array) -> jax.Array:
    r"""The output map x[θ] = θ (K = QN, D = 1): every flow becomes the comparison model (1.11)."""
    return theta


def output_bias_jacobian(K: int, N: int, Q: int) -> tuple[np.ndarray, np.ndarray]:
    r"""The columns of D for the output bias b_{L+1} of an `adaptedflow.mlp` network: e_q ⊗ 1_N.

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
    K, N, Q = positive_int(K, "K"), positive_int(N, "N"), positive_int(Q, "Q")
    if K < Q:
        raise ValueError(f"`K` must be ≥ `Q` (the output bias has Q entries); got K = {K}, Q = {Q}.")
    return np.arange(K - Q, K), np.kron(np.ones((N, 1)), np.eye(Q))
