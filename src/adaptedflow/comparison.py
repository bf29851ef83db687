r"""Closed forms of the comparison model (1.11) and the a-priori stopping time (2.18)."""

from __future__ import annotations

import numpy as np


def comparison_outputs(x0, Y, s) -> np.ndarray:
    r"""x(s) = y_ω + e^{−s/N}(x(0) − y_ω), the solution (1.13) of (1.11) — and (2.7).

    Args:
        x0: x(0), shape `(QN,)`.
        Y: targets, shape `(N, Q)`.
        s: times, shape `(T,)` (or a scalar).

    Returns:
        Shape `(T, QN)` (or `(QN,)` for scalar s).
    """
    Y = np.asarray(Y, dtype=np.float64)
    y = Y.reshape(-1)
    N = Y.shape[0]
    s = np.asarray(s, dtype=np.float64)
    decay = np.exp(-s / N)
    return y + decay[..., None] * (np.asarray(x0, dtype=np.float64) - y)


def comparison_cost(C0: float, s, N: int) -> np.ndarray:
    r"""C(s) = e^{−2s/N} C(0), (1.14) — the uniform rate of Theorem 2.1 (2.6)."""
    return C0 * np.exp(-2.0 * np.asarray(s, dtype=np.float64) / N)


def stopping_time(C0: float, eps, N: int):
    r"""s_*(ε) = (N/2) log(C(0)/ε) for 0 < ε < C(0), and 0 for ε ≥ C(0): (2.18), (2.21).

    Raises:
        ValueError: if ε ≤ 0 (C never reaches 0 in finite time) or C(0) ≤ 0.
    """
    eps = np.asarray(eps, dtype=np.float64)
    if np.any(eps <= 0):
        raise ValueError(f"`eps` must be > 0: C(s) > 0 for all finite s by (1.14); got {eps}.")
    if not C0 > 0:
        raise ValueError(f"`C0` must be > 0; got {C0}. At C(0) = 0, θ(0) is already a global minimizer.")
    return np.where(eps < C0, 0.5 * N * np.log(C0 / np.minimum(eps, C0)), 0.0)
