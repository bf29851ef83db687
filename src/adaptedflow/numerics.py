r"""Named numerical hazards and the constants they depend on (one place for each).

* `EPS`: the float64 machine epsilon, 2⁻⁵² ≈ 2.2e-16; every tolerance derived from
  rounding in this package is a multiple of it.
* `default_rank_rtol`: the one default threshold on σ/σ_max below which a singular value
  of a (QN, K) matrix counts as zero.
* `safe_reciprocal`, `safe_divide`: division that returns 0 where the divisor is 0,
  without the NaN gradient that `jnp.where(d > 0, n / d, 0)` produces at d = 0.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

#: Machine epsilon of float64 (2⁻⁵²).
EPS = float(np.finfo(np.float64).eps)


def default_rank_rtol(shape: tuple[int, int]) -> float:
    r"""The default relative rank tolerance of a matrix of `shape` (m, n): max(m, n)·eps.

    NumPy's and LAPACK's convention: singular values σ ≤ max(m, n)·eps·σ_max are at the
    level of the backward error of the SVD itself, so they count as zero.
    """
    return max(int(shape[0]), int(shape[1])) * EPS


def safe_reciprocal(x, keep):
    r"""1/x where `keep`, 0 elsewhere, with no NaN or inf anywhere (values or gradients).

    `jnp.where(keep, 1/x, 0)` evaluates 1/x at the dropped entries too: at x = 0 the value
    is masked but the gradient through the masked branch is NaN (0·inf), and it poisons
    everything reverse mode touches.  Dividing by `where(keep, x, 1)` instead never forms
    1/0.

    Args:
        x: array.  keep: boolean array broadcastable to `x`: where to invert.

    Returns:
        Array shaped as `x`.
    """
    return jnp.where(keep, 1.0 / jnp.where(keep, x, 1.0), 0.0)


def safe_divide(num, den):
    r"""num/den where den ≠ 0, and 0 where den = 0 (values and gradients finite).

    Used for relative residuals |r|/|b| that must read 0 when b = 0 (nothing to solve).
    """
    nz = den != 0
    return jnp.where(nz, num / jnp.where(nz, den, 1.0), 0.0)
