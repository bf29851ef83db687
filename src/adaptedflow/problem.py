r"""The supervised-learning problem of §1.1: inputs, label map ω, targets y_ω.

Shapes use the paper's letters: `N` training inputs, `M` input dimension, `Q` output
dimension.  The stacked target vector y_ω ∈ R^{QN} of (1.8) is stored as its `(N, Q)`
matrix of rows y_{ω(j)}; `Y.reshape(-1)` is y_ω in the order of (1.6).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .validation import as_float64, positive_int, require_finite


def one_hot_labels(Q: int) -> jax.Array:
    r"""The default output labels y_ℓ = e_ℓ ∈ R^Q, ℓ = 1..Q (§1.1).

    Returns:
        Array of shape `(Q, Q)` whose row ℓ is y_ℓ (the identity matrix).
    """
    return jnp.eye(positive_int(Q, "Q"), dtype=jnp.float64)


def stacked_targets(omega, labels) -> jax.Array:
    r"""The targets y_{ω(j)} of every input, as rows: y_ω of (1.8) reshaped to (N, Q).

    Args:
        omega: the label map ω of (1.1) as integers in `0..Q-1`, shape `(N,)`.
        labels: the output labels y_ℓ as rows, shape `(Q, Q')` (usually `(Q, Q)`).

    Returns:
        `Y` of shape `(N, Q')` with `Y[j] = labels[omega[j]]`; `Y.reshape(-1)` is y_ω.

    Raises:
        ValueError: if `omega` is not 1-D, is empty, or has a label outside `0..Q-1`.
    """
    omega = np.asarray(omega)
    labels = as_float64(labels, "labels")
    if labels.ndim != 2:
        raise ValueError(f"`labels` must be 2-D (Q, Q'); got shape {labels.shape}.")
    if omega.ndim != 1 or omega.size == 0:
        raise ValueError(f"`omega` must be a non-empty 1-D array of labels; got shape {omega.shape}.")
    if not np.issubdtype(omega.dtype, np.integer):
        raise TypeError(f"`omega` must hold integers; got dtype {omega.dtype}.")
    Q = labels.shape[0]
    bad = (omega < 0) | (omega >= Q)
    if bad.any():
        raise ValueError(
            f"`omega` must take values in 0..{Q - 1} (Q = {Q} labels); got "
            f"{sorted(set(omega[bad].tolist()))[:5]}."
        )
    require_finite(labels, "labels")
    return labels[jnp.asarray(omega)]


def gaussian_clusters(key, N: int, M: int, Q: int, *, separation: float = 2.0,
                      spread: float = 1.0):
    r"""A seeded synthetic data set: `Q` Gaussian clusters in R^M, labels one-hot.

    Input j belongs to class ω(j) = j mod Q (so every class is used when N ≥ Q); its
    point is the class centre (i.i.d. N(0, separation²) per coordinate) plus
    N(0, spread²) noise.

    Args:
        key: a `jax.random` key.
        N, M, Q: number of inputs, input dimension, number of classes.
        separation, spread: standard deviations of the centres and of the noise.

    Returns:
        `(X, omega, Y)`: inputs of shape `(N, M)`, labels of shape `(N,)` in `0..Q-1`,
        and targets `Y = one_hot_labels(Q)[omega]` of shape `(N, Q)`.
    """
    N, M, Q = positive_int(N, "N"), positive_int(M, "M"), positive_int(Q, "Q")
    k_centre, k_noise = jax.random.split(key)
    centres = separation * jax.random.normal(k_centre, (Q, M), dtype=jnp.float64)
    omega = np.arange(N) % Q
    X = centres[omega] + spread * jax.random.normal(k_noise, (N, M), dtype=jnp.float64)
    return X, omega, stacked_targets(omega, one_hot_labels(Q))
