r"""The discrete adapted descent analysed: closed forms of the rate, the Taylor defect of one step,
the rate bound over a run, the fixed Gauss–Newton counterexample and the optimiser race (chapter 10).

The algorithm itself is `adaptedflow.descent`.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..cost import outputs_and_jacobian
from ..descent import DescentRun, check_damping, check_step, damped_adapted_direction, descent
from ..flows import adapted_direction
from ..validation import as_float64, positive_int, require_shape, validate_data


def _directional_derivatives(output_map, theta, X, v):
    """x'[v], x''[v, v], x'''[v, v, v] by nested forward-mode AD (no finite differences)."""
    f = lambda t: output_map(t, X)
    d1 = lambda t: jax.jvp(f, (t,), (v,))[1]
    d2 = lambda t: jax.jvp(d1, (t,), (v,))[1]
    d3 = lambda t: jax.jvp(d2, (t,), (v,))[1]
    return d1(theta), d2(theta), d3(theta)


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


class StepDefect(NamedTuple):
    r"""The departure of one adapted-descent step from its linearisation, relative to |x_k − y_ω|.

    Attributes:
        measured: undamped, |x_{k+1} − y_ω − (1 − h/N)(x_k − y_ω)| / |x_k − y_ω|; damped,
            |x_{k+1} − x_k − h D v| / |x_k − y_ω|; shape `(H,)` (one per h).
        second: h²·|½ x''[v, v]| / |x_k − y_ω|, the predicted leading term, shape `(H,)`.
        third: h³·|(1/6) x'''[v, v, v]| / |x_k − y_ω|, the next Taylor term, shape `(H,)`.
        solve_residual: |x'[v] + ∇_x C| / |∇_x C|, how well D v = −∇_x C (1.31) is solved
            (≈ eps·κ(D)²); NaN for the damped direction, where D v ≠ −∇_x C by design.
    """

    measured: np.ndarray
    second: np.ndarray
    third: np.ndarray
    solve_residual: float


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
    res = float(jnp.linalg.norm(d1 + g) / jnp.linalg.norm(g)) if damping is None else float("nan")
    return StepDefect(measured=measured, second=hs ** 2 * a2, third=hs ** 3 * a3, solve_residual=res)


@functools.lru_cache(maxsize=16)
def _compiled_taylor(output_map):
    # one compilation for both: at λ = 0 the damped solve is the undamped one (same Gram matrix)
    def one(theta, X, Y, lam, h):
        x, D = outputs_and_jacobian(output_map, theta, X)
        r = x - Y.reshape(-1)
        g = r / Y.shape[0]
        v = damped_adapted_direction(D, g, lam)
        _, d2, d3 = _directional_derivatives(output_map, theta, X, v)
        nr = jnp.linalg.norm(r)
        s = jnp.linalg.svd(D, compute_uv=False)
        res = jnp.linalg.norm(D @ v + g) / jnp.linalg.norm(g)
        # the second-order prediction of |x_{k+1} − y_ω|/|x_k − y_ω| for the undamped step h
        pred = jnp.linalg.norm((1.0 - h / Y.shape[0]) * r + h**2 * 0.5 * d2) / nr
        return (jnp.linalg.norm(0.5 * d2) / nr, jnp.linalg.norm(d3 / 6.0) / nr, s[-1], s[0], res,
                jnp.linalg.norm(x) / nr, pred)

    @jax.jit
    def along(thetas, X, Y, lam, h):
        return jax.lax.map(lambda t: one(t, X, Y, lam, h), thetas)

    return along


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
    out = _compiled_taylor(output_map)(thetas, X, Y, jnp.float64(damping or 0.0), jnp.float64(0.0))
    return tuple(np.asarray(o) for o in out[:4])


#: Relative rounding unit of float64 (half the machine epsilon).
_U = float(np.finfo(np.float64).eps) / 2


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
    A2, A3, smin, smax, res, xrel, pred = (np.asarray(o) for o in _compiled_taylor(output_map)(
        thetas, X, Y, jnp.float64(0.0), jnp.float64(h)))
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
    A2, A3, smin, smax, _, xrel, _ = (np.asarray(o) for o in _compiled_taylor(output_map)(
        jnp.asarray(run.thetas[:-1]), X, Y, jnp.float64(lam), jnp.float64(run.step)))
    per_step = run.step**2 * A2 + 2 * run.step**3 * A3
    rho = np.sqrt(run.costs[1:] / run.costs[:-1])
    lo = 1 - f * smax**2 / (smax**2 + lam)
    hi = 1 - f * smin**2 / (smin**2 + lam)
    rounding = 10 * np.finfo(float).eps * xrel
    excess = np.maximum(0, np.maximum(rho - hi, lo - rho)) / (per_step + rounding)
    ok = run.costs[:-1] >= floor * run.costs[0]
    return excess[ok], np.stack([lo, hi], axis=1)


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

    from ..network import init_params, mlp

    if isinstance(n_train, bool) or not isinstance(n_train, (int, np.integer)) or not 3 <= n_train < 178:
        raise ValueError(f"`n_train` must be an integer in [3, 178); got {n_train!r}.")
    wine = load_wine()
    rng = np.random.default_rng(int(seed))
    train = np.concatenate([rng.permutation(np.flatnonzero(wine.target == c))[:round(n_train * np.mean(wine.target == c))]
                            for c in range(3)])
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
    final = np.array([descent(method, output_map, theta0, X, Y, step=lr, n_steps=n_steps, repeats=1).costs[-1]
                      for lr in lrs])
    final = np.where(np.isfinite(final), final, np.inf)
    return lrs[int(np.argmin(final))], final


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

    Adapted descent runs `n_adapted` steps at each h = f·N, f in `h_fracs`; gradient descent
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
    ad = [descent("adapted", p.net, p.theta0, p.X, p.Y, step=f * N, n_steps=n_adapted, test=test, repeats=1)
          for f in h_fracs]
    base = [descent(m, p.net, p.theta0, p.X, p.Y, step=lrs[m], n_steps=n_baseline, test=test, repeats=1)
            for m in ("gd", "adam")]
    eps = 10.0 ** -target_decade
    ka = [censored_steps(r.costs, eps * r.costs[0]) for r in ad]
    kb = [censored_steps(r.costs, eps * r.costs[0]) for r in base]
    ia = min(range(len(ad)), key=lambda i: (ka[i][0], i))
    ib = min(range(len(base)), key=lambda i: (kb[i][0], i))
    return dict(k_adapted=ka[ia][0], reached_adapted=ka[ia][1], k_baseline=kb[ib][0], reached_baseline=kb[ib][1],
                test_adapted=max(r.test_accuracy for r in ad), test_baseline=max(r.test_accuracy for r in base),
                n_test=int(p.X_test.shape[0]), diverged=int(sum(not np.isfinite(r.costs[-1]) for r in base)))


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
        name → dict with ``ks`` (steps to each target, −1 if not reached), ``reached``,
        ``censored`` (steps, a target not reached counted as n + 1), ``secs`` (k × median
        time per step; ∞ if not reached), ``censored_secs`` (not reached: the whole run),
        ``step`` (median seconds per step), ``spread`` (slowest/fastest repeat), ``n``,
        ``final`` (C_n), ``train``, ``test`` (accuracies), ``row`` (index into `seconds`).
    """
    seconds = np.asarray(seconds, dtype=np.float64)
    if seconds.ndim != 2 or seconds.shape[0] != len(runs):
        raise ValueError(f"`seconds` must have shape (len(runs), repeats) = ({len(runs)}, r); got {seconds.shape}.")
    targets = float(C0) * 10.0 ** -np.asarray(target_decades, dtype=float)
    table = {}
    for row, ((name, r), secs) in enumerate(zip(runs.items(), seconds)):
        n = len(r.costs) - 1
        step_s = float(np.median(secs)) / n
        ks = [first_step_below(r.costs, e) for e in targets]
        cens = [censored_steps(r.costs, e)[0] for e in targets]
        table[name] = dict(ks=ks, reached=[k >= 0 for k in ks], censored=cens,
                           secs=[k * step_s if k >= 0 else np.inf for k in ks],
                           censored_secs=[min(k, n) * step_s for k in cens], step=step_s,
                           spread=float(secs.max() / secs.min()), n=n, final=float(r.costs[-1]),
                           train=r.train_accuracy, test=r.test_accuracy, row=row)
    return table


def best_adapted(table: dict) -> str:
    r"""The adapted run of a `race_summary` with the fewest steps to the tightest target (ties:
    the shorter time), its name."""
    names = [n for n in table if n.startswith("adapted")]
    if not names:
        raise ValueError("`table` holds no adapted run (names starting with 'adapted').")
    return min(names, key=lambda n: (table[n]["censored"][-1], table[n]["censored_secs"][-1]))


def race_rows(table: dict, target_decades, n_test: int) -> list[tuple[str, str, str, str]]:
    r"""The verdict table of a race: (quantity, best adapted run, best baseline, which is better).

    Each row compares the best adapted run *for that row* with the best baseline for that
    row, both named: fewest (censored) steps, least (censored) time, cheapest step, highest
    accuracy.  A target not reached counts at the whole run (shown as "> n" or "≥ time");
    test accuracies differ only when the gap exceeds `accuracy_difference_band` (else
    "tie within 2 s.e.").
    """
    ad = [n for n in table if n.startswith("adapted")]
    base = [n for n in table if not n.startswith("adapted")]
    if not ad or not base:
        raise ValueError("`table` needs adapted runs (names starting with 'adapted') and baselines.")
    lo = lambda names, key: min(names, key=key)
    hi = lambda names, key: max(names, key=key)
    rows = []
    for i, d in enumerate(target_decades):
        show = lambda n: f"{table[n]['ks'][i]} ({n})" if table[n]["reached"][i] else f"> {table[n]['n']} ({n})"
        a, b = (lo(ad, lambda n: table[n]["censored"][i]), lo(base, lambda n: table[n]["censored"][i]))
        ka, kb = table[a]["censored"][i], table[b]["censored"][i]
        rows.append((f"steps to C ≤ 1e-{d}·C_0", show(a), show(b),
                     "adapted" if ka < kb else ("baseline" if kb < ka else "tie")))
        a, b = (lo(ad, lambda n: table[n]["censored_secs"][i]), lo(base, lambda n: table[n]["censored_secs"][i]))
        ta, tb = table[a]["censored_secs"][i], table[b]["censored_secs"][i]
        ms = lambda n, t: f"{'' if table[n]['reached'][i] else '≥ '}{1e3 * t:.1f} ({n})"
        rows.append((f"ms to C ≤ 1e-{d}·C_0", ms(a, ta), ms(b, tb),
                     "adapted" if ta < tb and table[a]["reached"][i] else
                     ("baseline" if tb < ta and table[b]["reached"][i] else "—")))
    a, b = lo(ad, lambda n: table[n]["step"]), lo(base, lambda n: table[n]["step"])
    rows.append(("time per step (µs)", f"{1e6 * table[a]['step']:.0f} ({a})", f"{1e6 * table[b]['step']:.0f} ({b})",
                 "adapted" if table[a]["step"] < table[b]["step"] else "baseline"))
    for key, label in (("train", "train accuracy at the end"), ("test", "test accuracy at the end")):
        a, b = hi(ad, lambda n: table[n][key]), hi(base, lambda n: table[n][key])
        gap = table[a][key] - table[b][key]
        band = accuracy_difference_band(table[a][key], table[b][key], n_test) if key == "test" else 0.0
        rows.append((label, f"{table[a][key]:.3f} ({a})", f"{table[b][key]:.3f} ({b})",
                     "adapted" if gap > band else ("baseline" if gap < -band else
                                                   ("tie within 2 s.e." if key == "test" else "tie"))))
    return rows


def race_markdown(rows, header: str) -> str:
    r"""The rows of `race_rows` as a Markdown table, headed `header` | adapted | baseline | better."""
    md = f"| {header} | adapted (best for the row) | baseline (best for the row) | better |\n|---|---|---|---|\n"
    return md + "\n".join(f"| {a} | {b} | {c} | {w} |" for a, b, c, w in rows) + "\n"


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

