"""Input validation shared by the public entry points (run before any tracing): dtypes, shapes,
finiteness, positive integers and positive tolerances, with messages that name the argument and the fix."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np


class RankLossError(RuntimeError):
    """The Jacobian lost the rank the chosen flow needs (numerical rank, with tolerance)."""


def positive_int(n, name: str) -> int:
    """`n` as an `int`, checked to be a positive integer (bools and floats are refused).

    Raises:
        ValueError: `n` is not an integer ≥ 1; the message names `name` and the value.
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {n!r}.")
    return int(n)


def positive_float(v, name: str) -> float:
    """`v` as a `float`, checked to be a positive, finite real number (a tolerance).

    Raises:
        TypeError: `v` is not a real number (bools are refused).
        ValueError: `v` ≤ 0, NaN or infinite; the message names `name` and the value.
    """
    if isinstance(v, bool) or not hasattr(v, "__float__"):
        raise TypeError(f"`{name}` must be a real number; got {type(v).__name__} {v!r}.")
    v = float(v)
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"`{name}` must be a positive finite number; got {v!r}.")
    return v


def as_float64(a, name: str):
    """`a` as a float64 JAX array; float32/16 input is refused, not silently upcast.

    A float32 pseudo-inverse keeps ~7 digits, which no check of a theorem here survives.
    """
    dtype = getattr(a, "dtype", None)
    if dtype is not None and np.issubdtype(np.dtype(dtype), np.floating) and np.dtype(dtype).itemsize < 8:
        raise TypeError(
            f"`{name}` has dtype {dtype}; adaptedflow computes in float64 only. "
            f"Pass `{name}.astype('float64')`."
        )
    out = jnp.asarray(a, dtype=jnp.float64)
    return out


def require_finite(a, name: str) -> None:
    """Raise `ValueError` naming `name` if `a` has a NaN or an infinity."""
    arr = np.asarray(a)
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        raise ValueError(f"`{name}` has {n_bad} non-finite entries (NaN or inf); all must be finite.")


def require_shape(a, shape, name: str, hint: str = "") -> None:
    """Raise `ValueError` unless `a.shape` matches `shape` (None matches any length)."""
    ok = a.ndim == len(shape) and all(s is None or s == d for s, d in zip(shape, a.shape, strict=True))
    if not ok:
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(f"`{name}` must have shape {want}; got {tuple(a.shape)}.{(' ' + hint) if hint else ''}")


def as_float64_matrix(D, name: str = "D"):
    """`D` as a non-empty, finite float64 NumPy matrix (QN, K); float32 is refused."""
    dtype = getattr(D, "dtype", None)
    if dtype is not None and np.issubdtype(np.dtype(dtype), np.floating) and np.dtype(dtype).itemsize < 8:
        raise TypeError(f"`{name}` has dtype {dtype}; adaptedflow computes in float64 only. "
                        f"Pass `{name}.astype('float64')`.")
    D = np.asarray(D, dtype=np.float64)
    if D.ndim != 2 or D.size == 0:
        raise ValueError(f"`{name}` must be a non-empty 2-D matrix (QN, K); got shape {D.shape}.")
    require_finite(D, name)
    return D


def validate_data(theta, X, Y, theta_name: str = "theta0"):
    """θ, X, Y as float64 arrays of shapes (K,), (N, M), (N, Q), finite, with N ≥ 1.

    The one check of a problem's arrays that every public entry point runs first.

    Raises:
        TypeError: float32/16 input.
        ValueError: a wrong rank or shape, N = 0, or non-finite entries.
    """
    theta = as_float64(theta, theta_name)
    X = as_float64(X, "X")
    Y = as_float64(Y, "Y")
    require_shape(theta, (None,), theta_name, "θ is one flat vector in the order of (1.5).")
    require_shape(X, (None, None), "X", "Use `X[:, None]` for scalar inputs.")
    require_shape(Y, (X.shape[0], None), "Y",
                  f"Targets are one row y_ω(j) per input: (N, Q) with N = {X.shape[0]} from `X`.")
    if X.shape[0] == 0:
        raise ValueError("`X` has no inputs (N = 0); the cost (1.7) needs N ≥ 1.")
    for a, name in ((theta, theta_name), (X, "X"), (Y, "Y")):
        require_finite(a, name)
    return theta, X, Y
