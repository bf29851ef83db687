r"""Adapted descent (the explicit Euler scheme of (1.30)) analysed, as chapter 10 does.

The algorithm is `adaptedflow.descent`; this module asks what survives of the continuous
rate (2.6) and stopping time (2.18) in discrete time, and how the scheme fares against
gradient descent and Adam.  Its sections:

* *closed forms*: the linearised factor 1 − h/N, the rate C_k = (1 − h/N)^{2k}C_0, the
  step count k_*(ε), the damped per-mode factors, the stopping margin;
* *the Taylor analysis of one step*: the O(h²) defect measured and predicted by
  forward-mode AD (`step_defect`, `taylor_coefficients`);
* *the rate over a run*: the bound the one-step defects imply (`rate_bound`), the
  small-step runs, the stopping rule on the output-linearised model and on the network,
  the rank of D along the runs;
* *damping*: the damped contraction against its linearised band;
* *the race*: the Wine data, the fixed Gauss–Newton counterexample, the tuning of the
  baselines, the untimed runs, the summary of their (separately measured) timings, and
  the comparison over random splits.

No wall clock is read here: the race's timings come from
`adaptedflow.book.bench.round_robin_seconds` (of `race_callables`) and enter `race_summary`
as an argument.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..cost import outputs_and_jacobian
from ..descent import (
    DescentRun,
    check_damping,
    check_step,
    classification_accuracy,
    compiled_run,
    damped_adapted_direction,
    descent,
    prepare_run,
)
from ..flows import adapted_direction
from ..network import identity_map, init_params, mlp
from ..numerics import EPS, safe_divide
from ..solvers import AdaptedGaussNewton, least_squares_path, model_residual, residual_view
from ..validation import as_float64, positive_int, require_shape, validate_data

#: Relative rounding unit of float64, u = 2⁻⁵³ (half the machine epsilon).
_U = EPS / 2


# --------------------------------------------------------------------------- closed forms of the discrete rate

def discrete_factor(h: float, N: int) -> float:
    r"""The linearised output contraction 1 − h/N of adapted descent (Euler on (1.11)).

    Args:
        h: step, 0 < h < 2N.
        N: number of training inputs.

    Returns:
        1 − h/N ∈ (−1, 1); 0 at h = N (one Gauss–Newton step).

    Raises:
        ValueError: h ≤ 0 or h ≥ 2N (the linearised iteration does not converge).
    """
    N = positive_int(N, "N")
    return 1.0 - check_step(h, N) / N


def discrete_cost(C0: float, h: float, N: int, k) -> np.ndarray:
    r"""C_k = (1 − h/N)^{2k} C_0: the discrete rate, exact for the identity output map.

    Args:
        C0: initial cost C_0 ≥ 0.
        h: step, 0 < h < 2N.
        N: number of training inputs.
        k: step indices, any shape.

    Returns:
        Array of the shape of `k`.
    """
    q = discrete_factor(h, N)
    return float(C0) * (q * q) ** np.asarray(k, dtype=np.float64)


def stopping_steps(C0: float, eps: float, h: float, N: int) -> int:
    r"""k_*(ε) = min{k ≥ 0 : (1 − h/N)^{2k} C_0 ≤ ε}, the discrete analogue of (2.18).

    k_* = ⌈log(ε/C_0) / (2 log|1 − h/N|)⌉ for 0 < ε < C_0, 0 for ε ≥ C_0, and 1 at h = N.
    As h → 0, h·k_* → s_*(ε) = (N/2) log(C_0/ε) (2.18).

    Args:
        C0: initial cost, > 0.
        eps: target cost, > 0.
        h: step, 0 < h < 2N.
        N: number of training inputs.

    Raises:
        ValueError: `eps` ≤ 0 (the rate never reaches 0 for h ≠ N), `C0` ≤ 0, or a bad `h`.
    """
    q = discrete_factor(h, N)
    C0, eps = float(C0), float(eps)
    if not C0 > 0:
        raise ValueError(f"`C0` must be > 0; got {C0}. At C_0 = 0, θ_0 is already a global minimizer.")
    if not eps > 0:
        raise ValueError(f"`eps` must be > 0: C_k = (1 − h/N)^(2k) C_0 > 0 for every k when h ≠ N; got {eps}.")
    if eps >= C0:
        return 0
    if q == 0.0:
        return 1
    return int(math.ceil(math.log(eps / C0) / (2.0 * math.log(abs(q)))))


def damped_factors(sigma, h: float, N: int, damping: float) -> np.ndarray:
    r"""Per-mode linearised factors 1 − (h/N)·σ_i²/(σ_i² + λ) of damped adapted descent.

    x_{k+1} − y_ω ≈ (1 − (h/N) D Dᵀ(D Dᵀ + λ1)⁻¹)(x_k − y_ω): the component of x_k − y_ω
    along the left singular vector of D with singular value σ_i is multiplied by this
    factor.  λ = 0 gives 1 − h/N for every mode; damping slows the modes with σ_i² ≲ λ most.

    Args:
        sigma: singular values of D, shape `(QN,)` (σ_i > 0 unless λ > 0).
        h: step, 0 < h < 2N.
        N: number of training inputs.
        damping: λ ≥ 0.

    Returns:
        Shape `(QN,)`.
    """
    q = discrete_factor(h, N)
    lam = check_damping(damping)
    if lam is None:
        raise ValueError("`damping` must be a number λ ≥ 0 here; got None. Use 0.0 for undamped.")
    s2 = np.asarray(sigma, dtype=np.float64) ** 2
    return 1.0 - (1.0 - q) * s2 / (s2 + lam)


def first_step_below(costs, eps: float) -> int:
    r"""The measured stopping step: min{k : C_k ≤ ε}, or −1 if the run never gets there.

    Args:
        costs: C_k, shape `(n + 1,)`.
        eps: target cost.
    """
    costs = np.asarray(costs, dtype=np.float64)
    if costs.ndim != 1:
        raise ValueError(f"`costs` must be 1-D (n + 1,); got shape {costs.shape}.")
    hit = np.nonzero(costs <= eps)[0]
    return int(hit[0]) if hit.size else -1


# --------------------------------------------------------------------------- the Taylor analysis of one step

def _directional_derivatives(output_map, theta, X, v):
    """x'[v], x''[v, v], x'''[v, v, v] by nested forward-mode AD (no finite differences)."""
    f = lambda t: output_map(t, X)
    d1 = lambda t: jax.jvp(f, (t,), (v,))[1]
    d2 = lambda t: jax.jvp(d1, (t,), (v,))[1]
    d3 = lambda t: jax.jvp(d2, (t,), (v,))[1]
    return d1(theta), d2(theta), d3(theta)


class StepDefect(NamedTuple):
    r"""The departure of one adapted-descent step from its linearisation, relative to |x_k − y_ω|.

    Attributes:
        measured: undamped, |x_{k+1} − y_ω − (1 − h/N)(x_k − y_ω)| / |x_k − y_ω|; damped,
            |x_{k+1} − x_k − h D v| / |x_k − y_ω|; shape `(H,)` (one per h).
        second: h²·|½ x''[v, v]| / |x_k − y_ω|, the predicted leading term, shape `(H,)`.
        third: h³·|(1/6) x'''[v, v, v]| / |x_k − y_ω|, the next Taylor term, shape `(H,)`.
        solve_residual: |x'[v] + ∇_x C| / |∇_x C|, how well D v = −∇_x C (1.31) is solved
            (≈ eps·κ(D)²); NaN for the damped direction, where D v ≠ −∇_x C by design.
        steps: the steps h, shape `(H,)`.
    """

    measured: np.ndarray
    second: np.ndarray
    third: np.ndarray
    solve_residual: float
    steps: np.ndarray

    @property
    def order(self) -> float:
        r"""The fitted slope of log δ(h) against log h: 2 when the defect is second order."""
        return float(np.polyfit(np.log(self.steps), np.log(self.measured), 1)[0])

    @property
    def taylor_ratio(self) -> float:
        r"""max_h |δ(h) − h²A2| / (h³A3): at most 1 + O(h) when the next Taylor term accounts for the rest."""
        return float(np.max(np.abs(self.measured - self.second) / self.third))


def step_defect(output_map, theta, X, Y, hs, *, damping: float | None = None) -> StepDefect:
    r"""Measure the O(h²) term of x_{k+1} − y_ω = (1 − h/N)(x_k − y_ω) + O(h²) at θ_k = `theta`.

    With v = −D⁺∇_x C (or its damped form) and θ_{k+1} = θ + h v, Taylor's theorem gives
    x_{k+1} = x_k + h x'[v] + ½h² x''[v, v] + (1/6)h³ x'''[v, v, v] + O(h⁴), and
    x'[v] = D v = −∇_x C = −(x_k − y_ω)/N (1.31) when undamped.  The derivatives are
    computed by forward-mode AD, the step by evaluating the network.

    Args:
        output_map: `output_map(theta, X) -> x`.
        theta: θ_k, shape `(K,)`.
        X: inputs, shape `(N, M)`; Y: targets, shape `(N, Q)`.
        hs: steps, shape `(H,)`, each 0 < h < 2N.
        damping: λ for the damped direction, or None.

    Returns:
        A `StepDefect`.
    """
    theta, X, Y = validate_data(theta, X, Y)
    N = X.shape[0]
    hs = np.asarray([check_step(h, N) for h in np.atleast_1d(np.asarray(hs, dtype=np.float64))])
    damping = check_damping(damping)
    x, D = outputs_and_jacobian(output_map, theta, X)
    r = x - Y.reshape(-1)
    g = r / N
    v = adapted_direction(D, g) if damping is None else damped_adapted_direction(D, g, damping)
    d1, d2, d3 = _directional_derivatives(output_map, theta, X, v)
    nr = float(jnp.linalg.norm(r))
    y = Y.reshape(-1)
    # undamped: the rate's own linearisation y_ω + (1 − h/N)(x_k − y_ω); damped: x_k + h D v
    lin = (lambda h: y + (1.0 - h / N) * r) if damping is None else (lambda h: x + h * d1)
    measured = np.array([float(jnp.linalg.norm(output_map(theta + h * v, X) - lin(h))) for h in hs]) / nr
    a2 = float(jnp.linalg.norm(0.5 * d2)) / nr
    a3 = float(jnp.linalg.norm(d3 / 6.0)) / nr
    res = float(safe_divide(jnp.linalg.norm(d1 + g), jnp.linalg.norm(g))) if damping is None else float("nan")
    return StepDefect(measured=measured, second=hs ** 2 * a2, third=hs ** 3 * a3, solve_residual=res, steps=hs)


def _taylor_terms(output_map, theta, X, Y, lam, h):
    """At one θ_k: A2, A3, σ_min, σ_max, the solve residual, |x_k|/|x_k − y_ω| and P_k (see `rate_bound`)."""
    x, D = outputs_and_jacobian(output_map, theta, X)
    r = x - Y.reshape(-1)
    g = r / Y.shape[0]
    v = damped_adapted_direction(D, g, lam)      # at λ = 0 the undamped direction (same Gram matrix)
    _, d2, d3 = _directional_derivatives(output_map, theta, X, v)
    nr = jnp.linalg.norm(r)
    s = jnp.linalg.svd(D, compute_uv=False)
    res = safe_divide(jnp.linalg.norm(D @ v + g), jnp.linalg.norm(g))    # 0 at ∇_x C = 0: nothing to solve
    # the second-order prediction of |x_{k+1} − y_ω|/|x_k − y_ω| for the undamped step h
    pred = jnp.linalg.norm((1.0 - h / Y.shape[0]) * r + h**2 * 0.5 * d2) / nr
    return (jnp.linalg.norm(0.5 * d2) / nr, jnp.linalg.norm(d3 / 6.0) / nr, s[-1], s[0], res,
            jnp.linalg.norm(x) / nr, pred)


@functools.partial(jax.jit, static_argnums=0)
def _taylor_along(output_map, thetas, X, Y, lam, h):
    """`_taylor_terms` at every row of `thetas`: compiled once per output map and shapes (λ, h are traced)."""
    return jax.lax.map(lambda t: _taylor_terms(output_map, t, X, Y, lam, h), thetas)


def taylor_coefficients(output_map, thetas, X, Y, *, damping: float | None = None):
    r"""The Taylor coefficients of one adapted-descent step, at each θ_k of an orbit.

    For v_k = −D⁺∇_x C (or the damped direction), x[θ_k + h v_k] = x_k + h D v_k + h² a_k
    + h³ b_k + O(h⁴) with a_k = ½ x''[v_k, v_k], b_k = (1/6) x'''[v_k, v_k, v_k] (forward-mode
    AD).  The relative one-step defect of the rate is therefore h²·A2_k + O(h³), with the
    coefficients below.  Also returns the extreme singular values of D[θ_k].

    Args:
        output_map: `output_map(theta, X) -> x`.
        thetas: θ_k, shape `(T, K)`.
        X: shape `(N, M)`; Y: shape `(N, Q)`.
        damping: λ ≥ 0 for the damped direction, or None.

    Returns:
        `(A2, A3, sigma_min, sigma_max)`, each shape `(T,)`: A2 = |a_k|/|x_k − y_ω|,
        A3 = |b_k|/|x_k − y_ω|.
    """
    X, Y = as_float64(X, "X"), as_float64(Y, "Y")
    thetas = as_float64(thetas, "thetas")
    require_shape(thetas, (None, None), "thetas", "Pass θ_k as rows; use `theta[None]` for one point.")
    damping = check_damping(damping)
    out = _taylor_along(output_map, thetas, X, Y, jnp.float64(damping or 0.0), jnp.float64(0.0))
    return tuple(np.asarray(o) for o in out[:4])


# --------------------------------------------------------------------------- the rate over a run

def rate_deviation(costs, h: float, N: int) -> np.ndarray:
    r"""|C_k / ((1 − h/N)^{2k} C_0) − 1|, k = 0..n: how far a run is from the discrete rate.

    C_0 is `costs[0]`, computed like every C_k, so the entry k = 0 is exactly 0.

    Args:
        costs: C_k, shape `(n + 1,)`, C_0 > 0.
        h: the step, 0 < h < 2N.  N: number of inputs.

    Returns:
        Shape `(n + 1,)`.
    """
    costs = np.asarray(costs, dtype=np.float64)
    if costs.ndim != 1 or not costs[0] > 0:
        raise ValueError(f"`costs` must be 1-D (n + 1,) with C_0 > 0; got shape {costs.shape}.")
    return np.abs(costs / discrete_cost(costs[0], h, N, np.arange(costs.size)) - 1.0)


class RateBound(NamedTuple):
    r"""What the one-step defects of a run allow its deviation from (1 − h/N)^{2k} C_0 to be.

    Attributes:
        per_step: e_k = (h²A2_k + 2h³A3_k + (h/N)·r_k)/|1 − h/N|, the relative one-step
            defect of |x_k − y_ω| (r_k the solve residual |Dv_k + ∇_xC|/|∇_xC|), shape `(n,)`.
        taylor: B_k = max(Π_{j<k}(1 + e_j)² − 1, 1 − Π_{j<k}(1 − e_j)²), shape `(n + 1,)`.
        rounding: R_k, the rounding allowance of the computed ratio C_k/((1 − h/N)^{2k}C_0),
            shape `(n + 1,)`.
        total: B_k + (1 + B_k) R_k, the tolerance of the deviation at step k, shape `(n + 1,)`.
        log_width: L_k = −2Σ_{j<k} log(1 − e_j) + 2R_k ≥ |log(C_k/((1 − h/N)^{2k}C_0))|, shape `(n + 1,)`.
        predicted: P_k = |(1 − h/N)(x_k − y_ω) + h²a_k| / |x_k − y_ω|, the second-order prediction of
            the step's contraction (C_{k+1}/C_k)^{1/2}, shape `(n,)`.
        third: T_k + (1 + T_k)R_k with T_k = max(Π_{j<k}(1 + ε_j)² − 1, 1 − Π_{j<k}(1 − ε_j)²),
            ε_j = ((h/N)r_j + 2h³A3_j)/P_j: the tolerance of `second_order_deviation`, shape `(n + 1,)`.
        sigma_min, sigma_max: extreme singular values of D[θ_k], shape `(n,)`.
    """

    per_step: np.ndarray
    taylor: np.ndarray
    rounding: np.ndarray
    total: np.ndarray
    sigma_min: np.ndarray
    sigma_max: np.ndarray
    log_width: np.ndarray
    predicted: np.ndarray
    third: np.ndarray


def rate_bound(output_map, thetas, X, Y, h: float, *, n_forward: int) -> RateBound:
    r"""The bound on |C_k/((1 − h/N)^{2k}C_0) − 1| that the measured one-step defects imply.

    One undamped step gives x_{k+1} − y_ω = q(x_k − y_ω) + d_k with q = 1 − h/N and
    d_k = h(Dv_k + ∇_xC) + h²a_k + h³b_k + O(h⁴) (Taylor in h; a_k = ½x''[v_k, v_k],
    b_k = (1/6)x'''[v_k, v_k, v_k]).  With the remainder taken as at most one more h³|b_k|
    (the one-step check measures this), |d_k| ≤ e_k |q| |x_k − y_ω|, so
    |x_{k+1} − y_ω| / (|q||x_k − y_ω|) ∈ [1 − e_k, 1 + e_k] and, multiplying over the steps,

        C_k/(q^{2k}C_0) ∈ [Π_{j<k}(1 − e_j)², Π_{j<k}(1 + e_j)²],

    whence |C_k/(q^{2k}C_0) − 1| ≤ B_k = max(Π_{j<k}(1 + e_j)² − 1, 1 − Π_{j<k}(1 − e_j)²) and
    |log(C_k/(q^{2k}C_0))| ≤ −2Σ_{j<k} log(1 − e_j) (all e_j < 1).  This is Euler's global error
    with its constant stated: the sum of the one-step defects, O(h) over a run.

    The O(h²) term itself is computed, so the run can also be compared with its
    second-order prediction: |x_{k+1} − y_ω| / |x_k − y_ω| = P_k(1 ± ε_k) with
    P_k = |q(x_k − y_ω) + h²a_k|/|x_k − y_ω| and ε_k = ((h/N)r_k + 2h³A3_k)/P_k, so
    C_k/(C_0Π_{j<k}P_j²) lies within T_k of 1 (`predicted`, `third`; `second_order_deviation`).

    Rounding: with C_0 = `costs[0]` (the same computation as every C_k) the ratio is exactly
    1 at k = 0.  For k ≥ 1 the computed outputs carry an error taken as ≤ n_F·u·|x_k|
    (u = 2⁻⁵³, n_F = `n_forward` the summed lengths of the forward pass's dot products:
    the γ_n bound of a dot product, per layer), so the computed cost has relative error
    ≤ ρ_k = 2n_F u|x_k|/|x_k − y_ω| + (QN + 2)u; the ratio adds ρ_k, ρ_0 and (2k + 2)u from
    the power q^{2k}:  R_k = 2(ρ_k + ρ_0 + (2k + 2)u).  It matters only once C_k nears its
    rounding floor ≈ (n_F u|x|)².

    Args:
        output_map: `output_map(theta, X) -> x`.
        thetas: θ_0..θ_n of an undamped run with step h, shape `(n + 1, K)`.
        X: inputs, shape `(N, M)`.  Y: targets, shape `(N, Q)`.
        h: the step, 0 < h < 2N.
        n_forward: n_F ≥ 1, e.g. `sum(widths)` of an MLP.

    Returns:
        A `RateBound`.
    """
    X, Y = as_float64(X, "X"), as_float64(Y, "Y")
    thetas = as_float64(thetas, "thetas")
    require_shape(thetas, (None, None), "thetas", "Pass the run's θ_0..θ_n as rows.")
    N, QN = X.shape[0], Y.size
    h = check_step(h, N)
    n_forward = positive_int(n_forward, "n_forward")
    A2, A3, smin, smax, res, xrel, pred = (np.asarray(o) for o in _taylor_along(
        output_map, thetas, X, Y, jnp.float64(0.0), jnp.float64(h)))
    q = abs(1.0 - h / N)
    e = (h**2 * A2[:-1] + 2 * h**3 * A3[:-1] + (h / N) * res[:-1]) / q
    if np.any(e >= 1):
        raise ValueError(f"the one-step defect e_k reaches {e.max():.3g} ≥ 1: h = {h} is too large for the "
                         "Taylor bound; use a smaller step.")
    taylor = np.concatenate([[0.0], np.maximum(np.cumprod((1.0 + e) ** 2) - 1.0, 1.0 - np.cumprod((1.0 - e) ** 2))])
    log_lo = np.concatenate([[0.0], -2.0 * np.cumsum(np.log1p(-e))])
    rho = 2 * n_forward * _U * xrel + (QN + 2) * _U
    k = np.arange(thetas.shape[0])
    rounding = 2.0 * (rho + rho[0] + (2 * k + 2) * _U)
    rounding[0] = 0.0
    eps3 = ((h / N) * res[:-1] + 2 * h**3 * A3[:-1]) / pred[:-1]
    if np.any(eps3 >= 1):
        raise ValueError(f"the third-order defect reaches {eps3.max():.3g} of the predicted step; use a smaller h.")
    t3 = np.concatenate([[0.0], np.maximum(np.cumprod((1.0 + eps3) ** 2) - 1.0, 1.0 - np.cumprod((1.0 - eps3) ** 2))])
    return RateBound(per_step=e, taylor=taylor, rounding=rounding, total=taylor + (1.0 + taylor) * rounding,
                     sigma_min=smin[:-1], sigma_max=smax[:-1], log_width=log_lo + 2.0 * rounding,
                     predicted=pred[:-1], third=t3 + (1.0 + t3) * rounding)


def second_order_deviation(costs, predicted) -> np.ndarray:
    r"""|C_k / (C_0 Π_{j<k} P_j²) − 1|: how far a run is from its step-by-step second-order prediction.

    P_j (`RateBound.predicted`) is |(1 − h/N)(x_j − y_ω) + h²a_j|/|x_j − y_ω| with
    a_j = ½x''[v_j, v_j]: the contraction the Taylor expansion of (1.30)'s Euler step predicts
    through second order.  What is left is third order per step (`RateBound.third`).

    Args:
        costs: C_0..C_n, shape `(n + 1,)`.  predicted: P_0..P_{n−1}, shape `(n,)`.

    Returns:
        Shape `(n + 1,)`; exactly 0 at k = 0.
    """
    costs = np.asarray(costs, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.float64)
    if costs.ndim != 1 or predicted.shape != (costs.size - 1,):
        raise ValueError(f"need `costs` of shape (n + 1,) and `predicted` of shape (n,); got {costs.shape}, "
                         f"{predicted.shape}.")
    return np.abs(costs / (costs[0] * np.concatenate([[1.0], np.cumprod(predicted ** 2)])) - 1.0)


def stopping_margin(log_width: float, h: float, N: int) -> int:
    r"""⌈L/(2|log|1 − h/N||)⌉ + 1: the steps by which a run may miss k_*(ε) when
    |log(C_k/((1 − h/N)^{2k}C_0))| ≤ L at every step.

    Then C_k ≤ ε holds for every k ≥ k_*(ε) + L/(2|log|1 − h/N||) and fails for every
    k < k_*(ε) − 1 − L/(2|log|1 − h/N||), so the first such k differs from k_*(ε)
    (`stopping_steps`) by at most the margin (the +1 for the rounding up of k_*).
    `RateBound.log_width` gives L.

    Args:
        log_width: L ≥ 0.  h: step, 0 < h < 2N, h ≠ N.  N: number of inputs.
    """
    q = discrete_factor(h, N)
    if q == 0.0:
        raise ValueError("`h` must differ from N: at h = N the discrete rate predicts one step, with no margin.")
    if not (math.isfinite(log_width) and log_width >= 0):
        raise ValueError(f"`log_width` must be finite and ≥ 0; got {log_width!r}.")
    return int(math.ceil(log_width / (-2.0 * math.log(abs(q))))) + 1


class SmallStepRun(NamedTuple):
    r"""One undamped run of adapted descent with a small step h, set against the rate and its bounds.

    Attributes:
        run: the `DescentRun`, n steps.
        deviation: |C_k/((1 − h/N)^{2k}C_0) − 1| (`rate_deviation`), shape `(n + 1,)`.
        bound: the `RateBound` of the run (what its one-step defects allow).
        second_order: |C_k/(C_0 Π_{j<k} P_j²) − 1| (`second_order_deviation`), shape `(n + 1,)`.
    """

    run: DescentRun
    deviation: np.ndarray
    bound: RateBound
    second_order: np.ndarray

    @property
    def bound_ratio(self) -> float:
        r"""max_{k ≥ 1} deviation_k / (B_k + (1 + B_k)R_k): the share of the Taylor bound the run uses (≤ 1)."""
        return float(np.max(self.deviation[1:] / self.bound.total[1:]))

    @property
    def second_order_ratio(self) -> float:
        r"""max_{k ≥ 1} second_order_k / (T_k + (1 + T_k)R_k): ≤ 1 when the third-order terms account for the rest."""
        return float(np.max(self.second_order[1:] / self.bound.third[1:]))


def small_step_runs(output_map, theta0, X, Y, fracs, *, n_steps: int, n_forward: int) -> dict:
    r"""Undamped runs at the small steps h = f·N, each with its deviation from the rate and its bounds.

    For each f of `fracs`: `descent("adapted", …)` for `n_steps` steps at h = f·N, the
    deviation from C_k = (1 − h/N)^{2k}C_0 (`rate_deviation`), the bound the one-step
    defects imply (`rate_bound`, with Taylor coefficients along the orbit) and the deviation
    from the step-by-step second-order prediction (`second_order_deviation`).

    Args:
        output_map: `output_map(theta, X) -> x`.
        theta0: θ_0, shape `(K,)`.
        X: inputs, shape `(N, M)`.  Y: targets, shape `(N, Q)`.
        fracs: the h/N, each with e_k < 1 along its run (else `rate_bound` raises).
        n_steps: steps per run, ≥ 1.  n_forward: n_F of `rate_bound`.

    Returns:
        f → `SmallStepRun`, in the order of `fracs`.
    """
    N = int(np.shape(X)[0])
    out = {}
    for f in fracs:
        h = f * N
        run = descent("adapted", output_map, theta0, X, Y, step=h, n_steps=n_steps)
        rb = rate_bound(output_map, run.thetas, X, Y, h, n_forward=n_forward)
        out[f] = SmallStepRun(run=run, deviation=rate_deviation(run.costs, h, N), bound=rb,
                              second_order=second_order_deviation(run.costs, rb.predicted))
    return out


class StoppingTable(NamedTuple):
    r"""Measured first steps with C_k ≤ ε against k_*(ε) (`stopping_steps`).

    Attributes:
        rows: `linearised_stopping`: one `(f, k_* per ε, measured per ε)` per h/N;
            `network_stopping`: one `(f, ε/C_0, k_*, measured, margin)` per (h, ε) reached.
        worst: max |measured − k_*| (linearised) or max |measured − k_*|/margin (network;
            ∞ where a target within the run was never reached).
    """

    rows: list
    worst: float


def linearised_stopping(x0, X, Y, C0: float, eps, fracs) -> StoppingTable:
    r"""The stopping rule (2.18) in discrete time on the output-linearised model, where the rate is exact.

    Runs adapted descent on `identity_map` (K = QN, D = 1) from θ_0 = `x0` at h = f·N for
    each f of `fracs`, all for one number of steps (the largest k_* plus 2, so one compiled
    length), and compares the first step with C_k ≤ ε with k_*(ε) for each ε of `eps`.
    They agree to within one step (a cost landing on ε to rounding).

    Args:
        x0: outputs x[θ_0] of the network, shape `(QN,)`: the identity model's θ_0.
        X: inputs, shape `(N, M)`.  Y: targets, shape `(N, Q)`.
        C0: the initial cost C[x0], > 0.
        eps: targets ε, shape `(E,)`, 0 < ε < C0.
        fracs: the h/N, each in (0, 2).

    Returns:
        A `StoppingTable`; `worst` is an int.
    """
    N = int(np.shape(X)[0])
    n_lin = max(stopping_steps(C0, e, f * N, N) for e in eps for f in fracs) + 2   # one compiled length
    err, rows = 0, []
    for f in fracs:
        h = f * N
        lin = descent("adapted", identity_map, x0, X, Y, step=h, n_steps=n_lin)
        meas = [first_step_below(lin.costs, e) for e in eps]
        pred = [stopping_steps(C0, e, h, N) for e in eps]
        err = max(err, max(abs(a - b) for a, b in zip(meas, pred, strict=True)))
        rows.append((f, pred, meas))
    return StoppingTable(rows=rows, worst=err)


def network_stopping(runs: dict, N: int, C0: float, eps) -> StoppingTable:
    r"""The stopping rule on the network: measured first steps against k_*(ε), in units of the margin.

    For each run of `small_step_runs` (h = f·N) the margin is `stopping_margin` of the
    largest log-width L of its `RateBound`; each ε with k_*(ε) within the run is compared.

    Args:
        runs: f → `SmallStepRun` (`small_step_runs`).
        N: number of training inputs.  C0: the initial cost.  eps: targets ε, shape `(E,)`.

    Returns:
        A `StoppingTable`; `worst` ≤ 1 when every count is within its margin.
    """
    rows, ratio = [], 0.0
    for f, s in runs.items():
        h = f * N
        margin = stopping_margin(float(s.bound.log_width.max()), h, N)
        for e in eps:
            kp = stopping_steps(C0, e, h, N)
            if kp > len(s.run.costs) - 1:
                continue
            km = first_step_below(s.run.costs, e)
            rows.append((f, e / C0, kp, km, margin))
            ratio = max(ratio, abs(km - kp) / margin if km >= 0 else np.inf)
    return StoppingTable(rows=rows, worst=ratio)


class RankDecay(NamedTuple):
    r"""How σ_min(D)/σ_max(D) falls along a run.

    Attributes:
        ratio: σ_min/σ_max of D[θ_k], shape `(n,)`.
        exponent: the fitted p of σ_min/σ_max ∝ |x_k − y_ω|^p = (2NC_k)^{p/2}, over the
            steps with C_k ≥ 1e-14·C_0.
        n_singular: the steps where D Dᵀ is singular to working precision,
            (σ_min/σ_max)² < QN·eps (the Gram solve falls back to an eigendecomposition).
    """

    ratio: np.ndarray
    exponent: float
    n_singular: int


def rank_decay(run: SmallStepRun, C0: float, QN: int) -> RankDecay:
    r"""σ_min/σ_max of D along a run of `small_step_runs`, its decay against the residual, and the singular steps.

    Args:
        run: a `SmallStepRun`.  C0: the initial cost.  QN: the number of outputs.

    Returns:
        A `RankDecay`.
    """
    c = run.run.costs[:-1]
    keep = c >= 1e-14 * C0
    ratio = run.bound.sigma_min / run.bound.sigma_max
    expo = float(np.polyfit(0.5 * np.log(c[keep]), np.log(ratio[keep]), 1)[0])
    return RankDecay(ratio=ratio, exponent=expo, n_singular=int(np.sum(ratio**2 < QN * EPS)))


# --------------------------------------------------------------------------- damping


def damped_band_excess(output_map, run: DescentRun, X, Y, *, floor: float = 1e-12) -> tuple[np.ndarray, np.ndarray]:
    r"""How far each damped step's contraction leaves its linearised band, in units of its defect.

    ρ_k = (C_{k+1}/C_k)^{1/2} should lie in [1 − (h/N)σ_max²/(σ_max² + λ), 1 − (h/N)σ_min²/(σ_min² + λ)]
    (σ of D[θ_k]) up to the one-step defect h²A2 + 2h³A3 of the damped direction and the
    rounding 10u'|x_k|/|x_k − y_ω| (u' = machine epsilon) of the computed costs.

    Args:
        output_map: `output_map(theta, X) -> x`.
        run: a `DescentRun` of method ``"adapted"`` (damped or not).
        X: inputs `(N, M)`.  Y: targets `(N, Q)`.
        floor: steps with C_k < floor·C_0 are left out (their contraction is rounding).

    Returns:
        `(excess, band)`: excess_k = (distance of ρ_k outside the band)/(defect + rounding),
        shape `(n',)` over the kept steps, and the band at every step, shape `(n, 2)`.
    """
    if run.method != "adapted":
        raise ValueError(f"`run` must be an adapted-descent run; got method {run.method!r}.")
    X, Y = as_float64(X, "X"), as_float64(Y, "Y")
    N = X.shape[0]
    lam = 0.0 if run.damping is None else float(run.damping)
    f = run.step / N
    A2, A3, smin, smax, _, xrel, _ = (np.asarray(o) for o in _taylor_along(
        output_map, jnp.asarray(run.thetas[:-1]), X, Y, jnp.float64(lam), jnp.float64(run.step)))
    per_step = run.step**2 * A2 + 2 * run.step**3 * A3
    rho = np.sqrt(run.costs[1:] / run.costs[:-1])
    lo = 1 - f * smax**2 / (smax**2 + lam)
    hi = 1 - f * smin**2 / (smin**2 + lam)
    rounding = 10 * EPS * xrel
    excess = np.maximum(0, np.maximum(rho - hi, lo - rho)) / (per_step + rounding)
    ok = run.costs[:-1] >= floor * run.costs[0]
    return excess[ok], np.stack([lo, hi], axis=1)


class DampedRun(NamedTuple):
    r"""One run of damped adapted descent and its per-step contraction.

    Attributes:
        damping: λ (0 for the undamped run).
        run: the `DescentRun`, n steps.
        rho: ρ_k = (C_{k+1}/C_k)^{1/2}, shape `(n,)`.
        band: the linearised band of ρ_k at each step (`damped_band_excess`), shape `(n, 2)`.
        late_rho: the last ρ_k with C_k ≥ floor·C_0.
    """

    damping: float
    run: DescentRun
    rho: np.ndarray
    band: np.ndarray
    late_rho: float


class DampedStudy(NamedTuple):
    r"""Damped adapted descent at several λ: its one-step defect and its contraction against the band.

    Attributes:
        runs: λ/σ_min(D[θ_0])² → `DampedRun`, the undamped run (0.0) first.
        taylor_ratio: max over λ > 0 of `StepDefect.taylor_ratio` of the damped direction at θ_0.
        n_inside: steps with ρ_k inside the band.  n_widened: inside the band widened by the
            defect bound.  n_steps: steps counted (C_k ≥ floor·C_0), over all runs.
        worst_excess: the largest excess over the band, in units of the defect bound.
    """

    runs: dict
    taylor_ratio: float
    n_inside: int
    n_widened: int
    n_steps: int
    worst_excess: float


def damped_study(output_map, theta0, X, Y, fracs, *, sigma_min: float, h: float, n_steps: int, defect_steps,
                 floor: float = 1e-12) -> DampedStudy:
    r"""Runs of adapted descent at λ = c·σ_min², c in (0, *`fracs`), against the damped band.

    For each c > 0 the one-step defect of the damped direction at θ_0 (`step_defect` at
    the steps `defect_steps`); for every c a run of `n_steps` steps at `h`, with ρ_k and
    its band (`damped_band_excess`).

    Args:
        output_map: `output_map(theta, X) -> x`.  theta0: θ_0, shape `(K,)`.
        X: inputs, shape `(N, M)`.  Y: targets, shape `(N, Q)`.
        fracs: the c = λ/σ_min², each > 0.
        sigma_min: σ_min(D[θ_0]).  h: the step of the runs, 0 < h < 2N.
        n_steps: steps per run.  defect_steps: the steps of the one-step check, shape `(H,)`.
        floor: steps with C_k < floor·C_0 are not counted.

    Returns:
        A `DampedStudy`.
    """
    runs, ratio, n_in, n_widened, n_band, worst = {}, 0.0, 0, 0, 0, 0.0
    for c in [0.0, *fracs]:
        lam = c * sigma_min ** 2
        if c:
            ratio = max(ratio, step_defect(output_map, theta0, X, Y, defect_steps, damping=lam).taylor_ratio)
        run = descent("adapted", output_map, theta0, X, Y, step=h, n_steps=n_steps, damping=lam if c else None)
        excess, band = damped_band_excess(output_map, run, X, Y, floor=floor)
        n_in, n_widened, n_band = n_in + int(np.sum(excess == 0)), n_widened + int(np.sum(excess <= 1)), \
            n_band + excess.size
        worst = max(worst, float(excess.max()))
        rho = np.sqrt(run.costs[1:] / run.costs[:-1])
        late = float(rho[run.costs[:-1] >= floor * run.costs[0]][-1])
        runs[c] = DampedRun(damping=lam, run=run, rho=rho, band=band, late_rho=late)
    return DampedStudy(runs=runs, taylor_ratio=ratio, n_inside=n_in, n_widened=n_widened, n_steps=n_band,
                       worst_excess=worst)


# --------------------------------------------------------------------------- the race: data, tuning, runs, summary


class WineProblem(NamedTuple):
    r"""A train/test split of the Wine recognition data and a tanh MLP on it.

    Attributes:
        X, Y: standardised training inputs `(N, 13)` and one-hot targets `(N, 3)`.
        X_test, Y_test: the other wines, shapes `(N', 13)`, `(N', 3)`.
        net: `adaptedflow.mlp(widths)`.  widths: `(13, *hidden, 3)`.
        theta0: θ_0 = `init_params(PRNGKey(seed), widths, scale=init_scale)`, shape `(K,)`.
        seed: the seed of the split and of θ_0.
    """

    X: np.ndarray
    Y: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    net: object
    widths: tuple
    theta0: jax.Array
    seed: int


def wine_problem(seed: int, n_train: int, hidden=(16,), init_scale: float = 1.0) -> WineProblem:
    r"""The Wine data (178 wines, 13 measurements, 3 cultivars; Forina et al., UCI, CC BY 4.0,
    shipped with scikit-learn), split by `seed`, with a tanh MLP and θ_0.

    A stratified split puts round(n_train·share of class c) wines of each class c in the
    training set (a permutation by `numpy.random.default_rng(seed)` per class); features are
    standardised by the training mean and spread.  θ_0 comes from `PRNGKey(seed)`.

    Args:
        seed: integer ≥ 0.  n_train: training inputs, 3 ≤ n_train < 178.
        hidden: hidden widths.  init_scale: scale of θ_0.

    Returns:
        A `WineProblem`.
    """
    from sklearn.datasets import load_wine

    n_train = positive_int(n_train, "n_train")
    if not 3 <= n_train < 178:
        raise ValueError(f"`n_train` must be in [3, 178): at least one wine per class, and a test set; got {n_train}.")
    wine = load_wine()
    rng = np.random.default_rng(int(seed))
    share = [round(n_train * np.mean(wine.target == c)) for c in range(3)]
    train = np.concatenate([rng.permutation(np.flatnonzero(wine.target == c))[:share[c]] for c in range(3)])
    test = np.setdiff1d(np.arange(len(wine.target)), train)
    mu, sd = wine.data[train].mean(0), wine.data[train].std(0)
    widths = (wine.data.shape[1], *tuple(int(w) for w in hidden), 3)
    return WineProblem(X=(wine.data[train] - mu) / sd, Y=np.eye(3)[wine.target[train]],
                       X_test=(wine.data[test] - mu) / sd, Y_test=np.eye(3)[wine.target[test]],
                       net=mlp(widths), widths=widths,
                       theta0=init_params(jax.random.PRNGKey(int(seed)), widths, scale=init_scale), seed=int(seed))


def gauss_newton_counterexample() -> WineProblem:
    r"""A fixed instance where one step at h = N (the minimum-norm Gauss–Newton step) raises the cost.

    The discrete rate predicts k_*(ε) = 1 at h = N for every ε < C_0 (`stopping_steps`).
    On Wine split by seed 0, N = 60 training wines, widths (13, 16, 3), θ_0 from
    `PRNGKey(0)` (`wine_problem(0, 60, (16,))`), the first step at h = N gives
    C_1 ≈ 1.41·C_0 > C_0: the O(h²) term of (1.30)'s Euler step is as large as the linear
    one.  The same numbers for every reader (float64 on CPU).

    Returns:
        The `WineProblem`.
    """
    return wine_problem(0, 60, (16,), 1.0)


class GaussNewtonCheck(NamedTuple):
    r"""Adapted descent at h = N on `gauss_newton_counterexample`.

    Attributes:
        problem: the `WineProblem`.  run: the `DescentRun` at h = N.
        ratio: C_1/C_0, the cost after one minimum-norm Gauss–Newton step relative to C_0.
        steps_to_target: the first k with C_k ≤ 10^{−d}C_0, −1 if not within the run.
    """

    problem: WineProblem
    run: DescentRun
    ratio: float
    steps_to_target: int


def gauss_newton_check(*, n_steps: int, target_decade: int) -> GaussNewtonCheck:
    r"""Run `n_steps` adapted steps at h = N (k_*(ε) = 1 by the discrete rule) on the fixed counterexample.

    Args:
        n_steps: steps, ≥ 1.  target_decade: d of the target ε = 10^{−d}C_0.

    Returns:
        A `GaussNewtonCheck`; its `ratio` ≈ 1.41 > 1 (float64 on CPU).
    """
    gn = gauss_newton_counterexample()
    N = gn.X.shape[0]
    run = descent("adapted", gn.net, gn.theta0, gn.X, gn.Y, step=float(N), n_steps=n_steps)
    return GaussNewtonCheck(problem=gn, run=run, ratio=float(run.costs[1] / run.costs[0]),
                            steps_to_target=first_step_below(run.costs, 10.0 ** -target_decade * run.costs[0]))


def tune_learning_rate(method: str, output_map, theta0, X, Y, lrs, *, n_steps: int) -> tuple[float, np.ndarray]:
    r"""The learning rate of `lrs` with the lowest training cost after `n_steps` steps of `method`.

    A diverged run (non-finite final cost) counts as +∞.  The test set is not used.

    Args:
        method: ``"gd"`` or ``"adam"``.  output_map, theta0, X, Y: as for `descent`.
        lrs: the grid, a sequence of η > 0.  n_steps: steps per run.

    Returns:
        `(best_lr, final_costs)`, the final costs of shape `(len(lrs),)`.
    """
    if method not in ("gd", "adam"):
        raise ValueError(f"`method` must be 'gd' or 'adam'; got {method!r}.")
    lrs = [float(lr) for lr in lrs]
    if not lrs:
        raise ValueError("`lrs` must hold at least one learning rate.")
    final = np.array([descent(method, output_map, theta0, X, Y, step=lr, n_steps=n_steps).costs[-1]
                      for lr in lrs])
    final = np.where(np.isfinite(final), final, np.inf)
    return lrs[int(np.argmin(final))], final


class TunedRate(NamedTuple):
    r"""The tuned learning rate of one baseline.

    Attributes:
        lr: the rate of `grid` with the lowest final training cost.
        grid: the rates tried.  final: their final costs (∞: diverged), shape `(len(grid),)`.
    """

    lr: float
    grid: tuple
    final: np.ndarray

    @property
    def at_edge(self) -> bool:
        r"""Whether the tuned rate is the first or the last of its grid (the grid may be too narrow)."""
        return self.lr in (self.grid[0], self.grid[-1])


def tune_baselines(output_map, theta0, X, Y, grids: dict, *, n_steps: int) -> dict:
    r"""`tune_learning_rate` for each baseline: method → its grid of learning rates.

    Args:
        output_map, theta0, X, Y: as for `descent`.
        grids: e.g. ``{"gd": [...], "adam": [...]}``.  n_steps: steps per run.

    Returns:
        method → `TunedRate`, in the order of `grids`.
    """
    out = {}
    for method, grid in grids.items():
        lr, final = tune_learning_rate(method, output_map, theta0, X, Y, grid, n_steps=n_steps)
        out[method] = TunedRate(lr=lr, grid=tuple(grid), final=final)
    return out


def race_specs(N: int, h_fracs, n_adapted: int, lrs: dict, n_baseline: int) -> dict:
    r"""The runs of the race, by name: `descent` arguments (method, step, n_steps) of each.

    Adapted descent at h = f·N for f in `h_fracs` (``"adapted h = fN"``), gradient descent
    and Adam at their tuned rates `lrs` (``{"gd": η, "adam": η}``).
    """
    specs = {f"adapted h = {f:g}N": dict(method="adapted", step=f * N, n_steps=n_adapted) for f in h_fracs}
    specs[f"gradient descent η = {lrs['gd']:g}"] = dict(method="gd", step=lrs["gd"], n_steps=n_baseline)
    specs[f"Adam η = {lrs['adam']:g}"] = dict(method="adam", step=lrs["adam"], n_steps=n_baseline)
    return specs


def equinox_mlp(net, theta, *, key: int = 0):
    r"""The `equinox.nn.MLP` with the architecture of `net` (an `adaptedflow.mlp`) and the weights θ.

    Args:
        net: an `adaptedflow.mlp` with equal hidden widths (as `equinox.nn.MLP` has).
        theta: shape `(K,)`, in the layer order (1.5).  key: seeds the (overwritten) initialisation.

    Returns:
        An `equinox.nn.MLP`, float64, computing `net(theta, ·)` row by row.

    Raises:
        ValueError: hidden widths that differ, or no hidden layer.
    """
    import equinox as eqx

    hidden = net.widths[1:-1]
    if not hidden or len(set(hidden)) != 1:
        raise ValueError(f"`net` needs ≥ 1 hidden layer, all of one width, for equinox.nn.MLP; got {net.widths}.")
    model = eqx.nn.MLP(net.widths[0], net.widths[-1], hidden[0], len(hidden), activation=net.sigma,
                       dtype=jnp.float64, key=jax.random.PRNGKey(key))
    layers = net.unflatten(jnp.asarray(theta, jnp.float64))
    return eqx.tree_at(lambda m: [a for layer in m.layers for a in (layer.weight, layer.bias)], model,
                       [a for W, b in layers for a in (W, b)])


def _optx_adapted(model, X, Y, h: float, n_steps: int):
    """The pieces of an adapted run through optimistix: `(fn, solver, params)`, step size s = h/N."""
    check_step(h, X.shape[0])
    fn, params = model_residual(model, X, Y)
    solver = AdaptedGaussNewton(rtol=0.0, atol=0.0, step_size=h / X.shape[0], residual=fn)
    return fn, solver, params


def optx_adapted_run(model, X, Y, *, step: float, n_steps: int, test=None) -> DescentRun:
    r"""Adapted descent θ_{k+1} = θ_k − h D⁺∇ₓC on an equinox model, by `AdaptedGaussNewton`.

    With r = x − y_ω, ∇ₓC = r/N, so a step of size s = h/N of the solver's minimum-norm
    Gauss–Newton step −D⁺r is a step h of adapted descent; `least_squares_path` keeps every
    iterate of the same `solver.init`/`solver.step` that `optx.least_squares` runs.

    Args:
        model: an `equinox.nn.MLP` (see `equinox_mlp`).  X: `(N, M)`; Y: `(N, Q)` one-hot.
        step: h, 0 < h < 2N.  n_steps: n ≥ 1.  test: optional `(X_test, Y_test)`.

    Returns:
        A `DescentRun` with method ``"adapted"``: C_0..C_n, θ_k flattened in the layer order
        (1.5) of the equivalent `adaptedflow.mlp`, accuracies at θ_n, and `params` (the models'
        trainable leaves, each with a leading axis of n + 1).
    """
    fn, solver, params = _optx_adapted(model, X, Y, step, n_steps)
    path = least_squares_path(fn, solver, params, n_steps=n_steps)
    costs = np.sum(np.asarray(path.residuals) ** 2, axis=1) / (2 * X.shape[0])
    net, to_theta, why = residual_view(fn, params)
    if net is None:
        raise ValueError(f"`model` must be an equinox.nn.MLP that adaptedflow.mlp can express: {why}.")
    thetas = np.asarray(jax.vmap(to_theta)(path.ys))
    acc = lambda A, B: classification_accuracy(net, thetas[-1], A, np.argmax(np.asarray(B), axis=1))
    test_acc = float("nan") if test is None else acc(*test)
    return DescentRun(method="adapted", step=float(step), damping=None, costs=costs, thetas=thetas,
                      train_accuracy=acc(X, Y), test_accuracy=test_acc, params=path.ys)


def race_runs(specs: dict, output_map, theta0, X, Y, *, test=None, model=None) -> dict:
    r"""Each run of `race_specs`, untimed (`descent` with one repeat), with test accuracies on `test`.

    With `model` (an `equinox.nn.MLP` equal to `output_map` at θ_0, `equinox_mlp`), the adapted
    runs go through `optx_adapted_run` (optimistix, `AdaptedGaussNewton`) instead of `descent`.

    Returns:
        name → `DescentRun`.
    """
    return {name: (optx_adapted_run(model, X, Y, step=sp["step"], n_steps=sp["n_steps"], test=test)
                   if model is not None and sp["method"] == "adapted" else
                   descent(**sp, output_map=output_map, theta0=theta0, X=X, Y=Y, test=test))
            for name, sp in specs.items()}


def race_callables(specs: dict, output_map, theta0, X, Y, *, model) -> list:
    r"""The race's runs as compiled zero-argument callables, to be timed together.

    The baselines are `descent`'s compiled runs; the adapted runs go through optimistix
    (`least_squares_path` of `AdaptedGaussNewton` on `model`), as `race_runs` computes them.
    Time them with `adaptedflow.book.bench.round_robin_seconds` (compile time excluded).

    Returns:
        One callable per entry of `specs`, in order.
    """
    fns = []
    for sp in specs.values():
        if sp["method"] == "adapted":
            fn, solver, params = _optx_adapted(model, X, Y, sp["step"], sp["n_steps"])
            fns.append(functools.partial(least_squares_path, fn, solver, params, n_steps=sp["n_steps"]))
        else:
            args, static = prepare_run(sp["method"], output_map, theta0, X, Y, step=sp["step"], n_steps=sp["n_steps"])
            fns.append(functools.partial(compiled_run.lower(*args, **static).compile(), *args))
    return fns


def censored_steps(costs, eps: float) -> tuple[int, bool]:
    r"""(steps to C ≤ ε, reached): a target never reached counts as n + 1 (a lower bound).

    Args:
        costs: C_0..C_n, shape `(n + 1,)`.  eps: the target.
    """
    k = first_step_below(costs, eps)
    n = len(costs) - 1
    return (k, True) if k >= 0 else (n + 1, False)


def split_comparison(seed: int, n_train: int, hidden, *, init_scale: float, h_fracs, n_adapted: int,
                     lrs: dict, n_baseline: int, target_decade: int) -> dict:
    r"""One split of the race, untimed: steps to C ≤ 10^{−d}C_0 and test accuracies.

    Adapted descent runs `n_adapted` steps at each h = f·N, f in `h_fracs`, through optimistix
    on the split's network as an `equinox.nn.MLP` (`optx_adapted_run`); gradient descent
    and Adam run `n_baseline` steps at the learning rates `lrs` ({"gd": η, "adam": η}).  Each
    family is represented by its best member, per quantity: the fewest steps to the target
    (ties: the first), and the highest test accuracy.

    Returns:
        A dict: ``k_adapted``, ``reached_adapted`` (the adapted run with the fewest steps),
        ``k_baseline``, ``reached_baseline`` (the baseline with the fewest steps),
        ``test_adapted``, ``test_baseline`` (the highest test accuracy of each family),
        ``n_test``, ``diverged`` (baseline runs with a non-finite final cost).
    """
    p = wine_problem(seed, n_train, hidden, init_scale)
    N = p.X.shape[0]
    test = (p.X_test, p.Y_test)
    model = equinox_mlp(p.net, p.theta0)
    ad = [optx_adapted_run(model, p.X, p.Y, step=f * N, n_steps=n_adapted, test=test) for f in h_fracs]
    base = [descent(m, p.net, p.theta0, p.X, p.Y, step=lrs[m], n_steps=n_baseline, test=test)
            for m in ("gd", "adam")]
    eps = 10.0 ** -target_decade
    ka = [censored_steps(r.costs, eps * r.costs[0]) for r in ad]
    kb = [censored_steps(r.costs, eps * r.costs[0]) for r in base]
    ia = min(range(len(ad)), key=lambda i: (ka[i][0], i))
    ib = min(range(len(base)), key=lambda i: (kb[i][0], i))
    return dict(k_adapted=ka[ia][0], reached_adapted=ka[ia][1], k_baseline=kb[ib][0], reached_baseline=kb[ib][1],
                test_adapted=max(r.test_accuracy for r in ad), test_baseline=max(r.test_accuracy for r in base),
                n_test=int(p.X_test.shape[0]), diverged=int(sum(not np.isfinite(r.costs[-1]) for r in base)))


class SplitFrequencies(NamedTuple):
    r"""The race repeated untimed on further random splits (`split_comparison` on each).

    Attributes:
        splits: the dicts of `split_comparison`, one per seed.
        n_lost: splits where the best adapted run does not reach the target in fewer steps
            than the better baseline.
        gaps: best adapted − best baseline test accuracy per split, shape `(S,)`.
        bands: `accuracy_difference_band` per split, shape `(S,)`.
        n_better, n_worse: splits where the gap is above `band`, below −`band`.
        n_reached_adapted, n_reached_baseline: splits where the family reaches the target.
    """

    splits: list
    n_lost: int
    gaps: np.ndarray
    bands: np.ndarray
    n_better: int
    n_worse: int
    n_reached_adapted: int
    n_reached_baseline: int


def split_frequencies(seeds, n_train: int, hidden, *, init_scale: float, h_fracs, n_adapted: int, lrs: dict,
                      n_baseline: int, target_decade: int) -> SplitFrequencies:
    r"""`split_comparison` on the split of each seed of `seeds`, and the counts the chapter's frequencies need.

    Args:
        seeds: one seed per split (of the data and of θ_0).
        n_train, hidden, init_scale, h_fracs, n_adapted, lrs, n_baseline, target_decade:
            as for `split_comparison`.

    Returns:
        A `SplitFrequencies`.
    """
    splits = [split_comparison(s, n_train, hidden, init_scale=init_scale, h_fracs=h_fracs, n_adapted=n_adapted,
                               lrs=lrs, n_baseline=n_baseline, target_decade=target_decade) for s in seeds]
    lost = [not (s["reached_adapted"] and s["k_adapted"] < s["k_baseline"]) for s in splits]
    gaps = np.array([s["test_adapted"] - s["test_baseline"] for s in splits])
    bands = np.array([accuracy_difference_band(s["test_adapted"], s["test_baseline"], s["n_test"]) for s in splits])
    return SplitFrequencies(splits=splits, n_lost=sum(lost), gaps=gaps, bands=bands,
                            n_better=int(np.sum(gaps > bands)), n_worse=int(np.sum(gaps < -bands)),
                            n_reached_adapted=sum(s["reached_adapted"] for s in splits),
                            n_reached_baseline=sum(s["reached_baseline"] for s in splits))


def accuracy_difference_band(p1: float, p2: float, n_test: int) -> float:
    r"""Twice the standard error of a difference of two test accuracies on n_test inputs.

    2·sqrt(2p̄(1 − p̄)/n_test) with p̄ = (p1 + p2)/2 (the binomial standard error of each
    accuracy, the two taken as independent), and at least 2/n_test (two test inputs) so
    that a band never collapses when both accuracies are 1.
    """
    n_test = positive_int(n_test, "n_test")
    pbar = 0.5 * (float(p1) + float(p2))
    return max(2.0 * math.sqrt(2.0 * pbar * (1.0 - pbar) / n_test), 2.0 / n_test)


def race_summary(runs: dict, seconds, C0: float, target_decades) -> dict:
    r"""Per method of a race: steps and wall-clock time to each target C ≤ 10^{−d}C_0, and more.

    Args:
        runs: name → `DescentRun` (the untimed runs, for costs and accuracies).
        seconds: the interleaved timings of the same runs, shape `(len(runs), repeats)`
            (`interleaved_run_seconds`).
        C0: the common initial cost.  target_decades: the d of each target.

    Returns:
        name → dict with ``method`` (of the run), ``ks`` (steps to each target, −1 if not reached), ``reached``,
        ``censored`` (steps, a target not reached counted as n + 1), ``secs`` (k × median
        time per step; ∞ if not reached), ``censored_secs`` (not reached: the whole run),
        ``step`` (median seconds per step), ``spread`` (slowest/fastest repeat), ``n``,
        ``final`` (C_n), ``final_ratio`` (C_n/C_0), ``train``, ``test`` (accuracies), ``row`` (index into `seconds`).
    """
    seconds = np.asarray(seconds, dtype=np.float64)
    if seconds.ndim != 2 or seconds.shape[0] != len(runs):
        raise ValueError(f"`seconds` must have shape (len(runs), repeats) = ({len(runs)}, r); got {seconds.shape}.")
    targets = float(C0) * 10.0 ** -np.asarray(target_decades, dtype=float)
    table = {}
    for row, ((name, r), secs) in enumerate(zip(runs.items(), seconds, strict=True)):
        n = len(r.costs) - 1
        step_s = float(np.median(secs)) / n
        ks = [first_step_below(r.costs, e) for e in targets]
        cens = [censored_steps(r.costs, e)[0] for e in targets]
        table[name] = dict(method=r.method, ks=ks, reached=[k >= 0 for k in ks], censored=cens,
                           secs=[k * step_s if k >= 0 else np.inf for k in ks],
                           censored_secs=[min(k, n) * step_s for k in cens], step=step_s,
                           spread=float(secs.max() / secs.min()), n=n, final=float(r.costs[-1]),
                           final_ratio=float(r.costs[-1] / C0),
                           train=r.train_accuracy, test=r.test_accuracy, row=row)
    return table


def race_names(table: dict) -> tuple[list[str], list[str]]:
    r"""The names of a race's adapted runs (starting with "adapted") and of its baselines (the rest)."""
    return [n for n in table if n.startswith("adapted")], [n for n in table if not n.startswith("adapted")]


def best_adapted(table: dict) -> str:
    r"""The adapted run of a `race_summary` with the fewest steps to the tightest target (ties:
    the shorter time), its name."""
    names = race_names(table)[0]
    if not names:
        raise ValueError("`table` holds no adapted run (names starting with 'adapted').")
    return min(names, key=lambda n: (table[n]["censored"][-1], table[n]["censored_secs"][-1]))


def step_cost_ratios(table: dict) -> np.ndarray:
    r"""Per adapted run of a `race_summary`: its median time per step / the cheapest baseline's, shape `(A,)`."""
    adapted, base = race_names(table)
    if not adapted or not base:
        raise ValueError("`table` needs adapted runs (names starting with 'adapted') and baselines.")
    return np.array([table[a]["step"] / min(table[b]["step"] for b in base) for a in adapted])


class TestGap(NamedTuple):
    r"""The best test accuracies of the two families of a race, and whether their gap is beyond noise.

    Attributes:
        adapted, baseline: the names of the runs with the highest test accuracy.
        gap: test accuracy of `adapted` − that of `baseline`.
        band: `accuracy_difference_band` of the two (twice the standard error of the gap).
    """

    adapted: str
    baseline: str
    gap: float
    band: float


def best_test_gap(table: dict, n_test: int) -> TestGap:
    r"""The best adapted and the best baseline test accuracy of a `race_summary`, their gap and its 2-s.e. band."""
    adapted, base = race_names(table)
    if not adapted or not base:
        raise ValueError("`table` needs adapted runs (names starting with 'adapted') and baselines.")
    at = max(adapted, key=lambda n: table[n]["test"])
    bt = max(base, key=lambda n: table[n]["test"])
    return TestGap(adapted=at, baseline=bt, gap=table[at]["test"] - table[bt]["test"],
                   band=accuracy_difference_band(table[at]["test"], table[bt]["test"], n_test))


def race_rows(table: dict, target_decades, n_test: int) -> list[tuple[str, str, str, str]]:
    r"""The verdict table of a race: (quantity, best adapted run, best baseline, which is better).

    Each row compares the best adapted run *for that row* with the best baseline for that
    row, both named: fewest (censored) steps, least (censored) time, cheapest step, highest
    accuracy.  A target not reached counts at the whole run (shown as "> n" or "≥ time");
    test accuracies differ only when the gap exceeds `accuracy_difference_band` (else
    "tie within 2 s.e.").
    """
    ad, base = race_names(table)
    if not ad or not base:
        raise ValueError("`table` needs adapted runs (names starting with 'adapted') and baselines.")

    def entry(n, key, i=None):
        return table[n][key] if i is None else table[n][key][i]

    def lo(names, key, i=None):
        return min(names, key=lambda n: entry(n, key, i))

    rows = []
    for i, d in enumerate(target_decades):
        def show(n, i=i):
            return f"{table[n]['ks'][i]} ({n})" if table[n]["reached"][i] else f"> {table[n]['n']} ({n})"

        def ms(n, t, i=i):
            return f"{'' if table[n]['reached'][i] else '≥ '}{1e3 * t:.1f} ({n})"

        a, b = lo(ad, "censored", i), lo(base, "censored", i)
        ka, kb = table[a]["censored"][i], table[b]["censored"][i]
        rows.append((f"steps to C ≤ 1e-{d}·C_0", show(a), show(b),
                     "adapted" if ka < kb else ("baseline" if kb < ka else "tie")))
        a, b = lo(ad, "censored_secs", i), lo(base, "censored_secs", i)
        ta, tb = table[a]["censored_secs"][i], table[b]["censored_secs"][i]
        rows.append((f"ms to C ≤ 1e-{d}·C_0", ms(a, ta), ms(b, tb),
                     "adapted" if ta < tb and table[a]["reached"][i] else
                     ("baseline" if tb < ta and table[b]["reached"][i] else "—")))
    a, b = lo(ad, "step"), lo(base, "step")
    rows.append(("time per step (µs)", f"{1e6 * table[a]['step']:.0f} ({a})", f"{1e6 * table[b]['step']:.0f} ({b})",
                 "adapted" if table[a]["step"] < table[b]["step"] else "baseline"))
    for key, label in (("train", "train accuracy at the end"), ("test", "test accuracy at the end")):
        a, b = max(ad, key=lambda n, k=key: table[n][k]), max(base, key=lambda n, k=key: table[n][k])
        gap = table[a][key] - table[b][key]
        band = accuracy_difference_band(table[a][key], table[b][key], n_test) if key == "test" else 0.0
        rows.append((label, f"{table[a][key]:.3f} ({a})", f"{table[b][key]:.3f} ({b})",
                     "adapted" if gap > band else ("baseline" if gap < -band else
                                                   ("tie within 2 s.e." if key == "test" else "tie"))))
    return rows


def paired_time_ratios(table: dict, seconds, name: str, others, i: int) -> np.ndarray:
    r"""Per timed round r: time of `name` to target i / the fastest of `others` in the same round.

    Times are (censored steps / n)·(seconds of the whole run in round r), so a target not
    reached counts at the whole run; pairing by round lets the machine's load drift cancel.

    Args:
        table: a `race_summary`.  seconds: its timings, shape `(len(table), repeats)`.
        name: the run compared.  others: names of the runs it is compared with.  i: target index.

    Returns:
        Shape `(repeats,)`.
    """
    seconds = np.asarray(seconds, dtype=np.float64)

    def t(n):
        e = table[n]
        return min(e["censored"][i], e["n"]) / e["n"] * seconds[e["row"]]

    return t(name) / np.min(np.stack([t(o) for o in others]), axis=0)


#: How a race's methods are named in its tables.
METHOD_NAMES = {"adapted": "adapted descent", "gd": "gradient descent", "adam": "Adam"}


def race_label(name: str) -> tuple[str, str]:
    r"""(method, step size) of a run named by `race_specs`: ``"adapted h = 0.25N"`` →
    ``("adapted descent", "h = 0.25N")``, ``"Adam η = 0.01"`` → ``("Adam", "η = 0.01")``."""
    for sep in (" h = ", " η = "):
        head, found, step = name.partition(sep)
        if found:
            return METHOD_NAMES.get(head, head), sep.strip() + " " + step
    raise ValueError(f"not a race run's name (\"<method> h = …\" or \"<method> η = …\"): {name!r}")


def _steps(k: int) -> str:
    return f"{k} step" if k == 1 else f"{k} steps"


def _to_target(entry: dict, i: int) -> str:
    if entry["reached"][i]:
        return f"{_steps(entry['ks'][i])}, {1e3 * entry['secs'][i]:.1f} ms"
    return f"not within {entry['n']} steps"


def race_run_rows(table: dict, target_decades) -> tuple[list[str], list[tuple]]:
    r"""Every run of a `race_summary`, one row each: `(columns, rows)` for a table.

    Columns: method, step size, median µs per step, steps and milliseconds to each target
    C ≤ 10^{−d}C_0 (or "not within n steps"), the final training cost C_n/C_0, train and
    test accuracy.
    """
    columns = ["method", "step size", "µs per step",
               *[f"to C ≤ 1e-{d}·C_0" for d in target_decades], "final C_n/C_0", "train accuracy", "test accuracy"]
    rows = []
    for name, e in table.items():
        method, step = race_label(name)
        rows.append((method, step, f"{1e6 * e['step']:.1f}", *[_to_target(e, i) for i in range(len(target_decades))],
                     f"{e['final_ratio']:.1e}", f"{e['train']:.3f}", f"{e['test']:.3f}"))
    return columns, rows


def race_fastest(table: dict, target_decades) -> list[dict]:
    r"""Per target C ≤ 10^{−d}C_0 of a `race_summary`: the fastest run per method and overall.

    "Fastest" is the least wall-clock time to the target (steps × median time per step)
    among the runs that reach it; for each method the run with the fewest steps is named
    too (for adapted descent it need not be the fastest: a larger h takes fewer, dearer steps).

    Returns:
        One dict per target: ``decade``, ``target`` (e.g. ``"1e-6·C_0"``), ``methods``
        (method → dict with ``fastest`` (the run's name or None if no run of the method
        reached the target), ``ms``, ``steps`` (of that run), ``fewest_steps`` (name or None),
        ``fewest_k``), ``overall`` (the fastest run's name or None) and ``overall_ms``.
    """
    out = []
    for i, d in enumerate(target_decades):
        methods = {}
        for name, e in table.items():
            methods.setdefault(METHOD_NAMES.get(e["method"], e["method"]), []).append(name)
        per = {}
        for method, names in methods.items():
            hit = [n for n in names if table[n]["reached"][i]]
            fast = min(hit, key=lambda n: table[n]["secs"][i]) if hit else None
            few = min(hit, key=lambda n: (table[n]["ks"][i], table[n]["secs"][i])) if hit else None
            per[method] = dict(fastest=fast, ms=1e3 * table[fast]["secs"][i] if fast else None,
                               steps=table[fast]["ks"][i] if fast else None, fewest_steps=few,
                               fewest_k=table[few]["ks"][i] if few else None)
        reached = [p for p in per.values() if p["fastest"] is not None]
        best = min(reached, key=lambda p: p["ms"]) if reached else None
        out.append(dict(decade=int(d), target=f"1e-{d}·C_0", methods=per,
                        overall=best["fastest"] if best else None, overall_ms=best["ms"] if best else None))
    return out


def race_fastest_rows(fastest: list[dict]) -> tuple[list[str], list[tuple]]:
    r"""`race_fastest` as `(columns, rows)` for a table: per target, the fastest run of each
    method (its step size, time and steps), adapted descent's fewest-steps run, and the fastest overall."""
    methods = list(fastest[0]["methods"]) if fastest else []

    def cell(p):
        if p["fastest"] is None:
            return "not reached"
        return f"{race_label(p['fastest'])[1]}: {p['ms']:.1f} ms ({_steps(p['steps'])})"

    columns = ["target", *[f"fastest {m}" for m in methods], "fewest steps, adapted descent", "fastest overall"]
    rows = []
    for f in fastest:
        ad = f["methods"].get(METHOD_NAMES["adapted"], {})
        few = (f"{race_label(ad['fewest_steps'])[1]}: {_steps(ad['fewest_k'])}" if ad.get("fewest_steps")
               else "not reached")
        overall = "not reached" if f["overall"] is None else ", ".join(race_label(f["overall"]))
        rows.append((f"C ≤ {f['target']}", *[cell(f["methods"][m]) for m in methods], few, overall))
    return columns, rows


def race_fastest_data(fastest: list[dict]) -> dict:
    r"""The numbers of `race_fastest` a chapter's text quotes (through a claim record's ``data``).

    Flat fields for the tightest (last) target: ``tight_target``, ``fastest_adapted`` (step
    size of the fastest adapted run, or "none"), ``fastest_adapted_ms``, ``fastest_adapted_steps``,
    ``fewest_steps_adapted`` (step size), ``fewest_steps_adapted_k``, ``fastest_overall``
    ("method, step size" or "none"), ``fastest_overall_ms``; and ``fastest``: per target
    ``"1e-d"`` the run names and times of every method.
    """
    if not fastest:
        raise ValueError("`fastest` is empty: the race had no target.")
    t = fastest[-1]
    ad = t["methods"].get(METHOD_NAMES["adapted"], dict(fastest=None, ms=None, steps=None, fewest_steps=None,
                                                         fewest_k=None))
    return dict(
        tight_target=t["target"],
        fastest_adapted=race_label(ad["fastest"])[1] if ad["fastest"] else "none",
        fastest_adapted_ms=ad["ms"], fastest_adapted_steps=ad["steps"],
        fewest_steps_adapted=race_label(ad["fewest_steps"])[1] if ad["fewest_steps"] else "none",
        fewest_steps_adapted_k=ad["fewest_k"],
        fastest_overall=", ".join(race_label(t["overall"])) if t["overall"] else "none",
        fastest_overall_ms=t["overall_ms"],
        fastest={f"1e-{f['decade']}": {m: dict(run=p["fastest"], ms=p["ms"], steps=p["steps"])
                                       for m, p in f["methods"].items()} for f in fastest})


#: The reading of a test-accuracy gap against twice its standard error (`generalisation_reading`).
READINGS = {"worse": "adapted descent generalises worse",
            "none": "there is no detectable difference in generalisation",
            "better": "adapted descent generalises better"}


def generalisation_reading(gap: float, band: float) -> str:
    r"""``"worse"``, ``"none"`` (no detectable difference) or ``"better"``: the gap (adapted −
    baseline test accuracy) against `band`, twice its standard error (`accuracy_difference_band`)."""
    return "worse" if gap < -band else ("better" if gap > band else "none")


def generalisation_gap(table: dict, n_test: int) -> dict:
    r"""The generalisation gaps of a `race_summary`, as a claim record's ``data`` quotes them.

    Two comparisons, each read by the 2-standard-error rule (`generalisation_reading`):
    the best adapted run against the best baseline (each family by its highest test
    accuracy, as `split_comparison` counts a split), and every adapted run against the best
    baseline (so the step sizes where adapted descent generalises worse are named).

    Returns:
        ``adapted``, ``baseline`` (the runs with the best test accuracy of each family, as
        "method, step size"), ``test_adapted``, ``test_baseline``, ``gap`` (adapted − baseline),
        ``se`` (its standard error, half of `accuracy_difference_band`), ``band`` (2 s.e.),
        ``reading`` (`generalisation_reading`), ``reading_text`` (`READINGS`); ``per_step``:
        step size → dict(test, gap, se, reading) of every adapted run against the best
        baseline; ``worse_at`` (the step sizes read "worse", joined, or "none of the race's
        step sizes"); ``lowest`` (the step size of the adapted run with the lowest test
        accuracy), ``lowest_test``, ``lowest_gap``, ``lowest_se``, ``lowest_reading_text``.
    """
    tg = best_test_gap(table, n_test)
    reading = generalisation_reading(tg.gap, tg.band)
    best = float(table[tg.baseline]["test"])
    per_step = {}
    for name in race_names(table)[0]:
        test = float(table[name]["test"])
        band = accuracy_difference_band(test, best, n_test)
        per_step[race_label(name)[1]] = dict(test=test, gap=test - best, se=band / 2,
                                             reading=generalisation_reading(test - best, band))
    worse = [step for step, g in per_step.items() if g["reading"] == "worse"]
    lowest = min(per_step, key=lambda step: per_step[step]["test"])
    low = per_step[lowest]
    return dict(adapted=", ".join(race_label(tg.adapted)), baseline=", ".join(race_label(tg.baseline)),
                test_adapted=float(table[tg.adapted]["test"]), test_baseline=best,
                gap=float(tg.gap), se=float(tg.band / 2), band=float(tg.band), reading=reading,
                reading_text=READINGS[reading], per_step=per_step,
                worse_at=" and ".join(worse) if worse else "none of the race's step sizes",
                lowest=lowest, lowest_test=low["test"], lowest_gap=low["gap"], lowest_se=low["se"],
                lowest_reading_text=READINGS[low["reading"]])


def rate_run_findings(small: dict) -> tuple[tuple[str, str], dict]:
    r"""The findings and data of the whole-run rate check over `small_step_runs` (h/N → `SmallStepRun`).

    Returns:
        `(findings, data)`: two sentences (the O(h) deviation from the rate, the share of the
        bound B_k it uses; what the second-order terms leave) and their numbers.
    """
    b_ratio = max(s.bound_ratio for s in small.values())
    findings = ("over a run the deviation from (1 − h/N)^(2k)·C_0 is O(h), Euler's global error, not O(h²): max "
                + ", ".join(f"{s.deviation.max():.2e} at h = {f:g}N" for f, s in small.items())
                + f"; it uses up to {b_ratio:.2f} of the bound B_k that the one-step defects allow",
                "the second-order terms account for it: what is left is "
                + ", ".join(f"{s.second_order.max():.1e} at h = {f:g}N" for f, s in small.items()))
    data = dict(max_dev={f"{f:g}": float(s.deviation.max()) for f, s in small.items()},
                max_dev_second_order={f"{f:g}": float(s.second_order.max()) for f, s in small.items()},
                max_dev_over_B=b_ratio)
    return findings, data


def damped_findings(study: DampedStudy, h_frac: float) -> tuple[str]:
    r"""The finding of the damped check: how many steps of `damped_study`'s runs at h = `h_frac`·N
    contract inside their band, and inside the band widened by the defect bound."""
    return (f"along runs at h = {h_frac:g}N (λ/σ_min² ∈ {list(study.runs)}), ρ_k lies inside its band "
            f"on {study.n_inside}/{study.n_steps} steps and inside the band widened by the defect bound on "
            f"{study.n_widened}/{study.n_steps}; the largest excess is {study.worst_excess:.2f} of the defect "
            "bound (the defect can point along the residual)",)
