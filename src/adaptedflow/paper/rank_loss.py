r"""The analyses of the rank-loss chapter (§4): Theorem 4.1 on a structurally rank-deficient problem, §4.2's rule.

Built from the tools of `adaptedflow.paper.critical`:

* `duplicated_input_problem`: N inputs of which two coincide with labels +1 and −1, so
  rank D ≤ QN − Q everywhere (the structural rank loss of §4);
* `structural_rank_loss`: the pseudo-inverse flow (4.6) and the standard flow (4.4) on
  that problem, with the error budgets that decide (4.7) and (4.12);
* `rule_at_saddle`, `rule_frequency`: §4.2's perturbation rule (4.15)–(4.17) at the fixed
  XOR equilibrium and at random ones;
* `rank_restoring_escape`: the perturbation W_1 ↦ ηw that restores rank D = QN, and the
  orbits of both flows from there.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..cost import cost, jacobian, outputs_and_jacobian
from ..integrate import Orbit, cost_error_budget, integrate_flow, integrate_until, output_error_budget
from ..linalg import singular_values
from ..network import flatten_params, init_params, mlp, unflatten_params
from ..numerics import EPS
from ..validation import positive_int
from .critical import (
    CriticalAnalysis,
    Instance,
    ProjectedFlowCheck,
    RuleTest,
    curvatures,
    newton_to_critical,
    one_hidden_layer_output_rounding,
    perturbation_cost_change,
    perturbation_rule_test,
    perturbation_rule_tests,
    projected_flow_check,
    projected_gradient_norm,
    random_xor_saddles,
    span_curvatures,
)


class DuplicatedInput(NamedTuple):
    r"""A problem whose Jacobian is rank deficient everywhere: inputs 0 and 1 coincide, labels +1 and −1.

    Attributes:
        widths: `(2, hidden, 1)`.  X: inputs, shape `(N, 2)`.  Y: labels, shape `(N, 1)`.
        theta0: θ(0), shape `(K,)`.
        C_min: |y_a − y_b|²/(4N), the least cost any network reaches (rows a, b of D coincide).
        y_inf: P_r y, the labels with the pair replaced by its mean, shape `(N,)`: the limit
            of x(s) under (4.7).
    """

    widths: tuple
    X: jax.Array
    Y: jax.Array
    theta0: jax.Array
    C_min: float
    y_inf: np.ndarray


def duplicated_input_problem(key, N: int, hidden: int) -> DuplicatedInput:
    r"""N Gaussian inputs in R² (input 1 a copy of input 0), Gaussian labels with y_0 = 1, y_1 = −1, and θ(0).

    Rows 0 and 1 of D are the same function of θ, so rank D ≤ QN − Q = N − 1 everywhere and
    (when the other rows are independent) range D = {x_0 = x_1} (§4, (4.1)–(4.2)).

    Args:
        key: PRNG key: X from `key`, the labels from `fold_in(key, 1)`, θ(0) from
            `init_params(fold_in(key, 2), (2, hidden, 1))`.
        N: inputs (≥ 2).  hidden: hidden width.

    Returns:
        A `DuplicatedInput`.
    """
    N, hidden = positive_int(N, "N"), positive_int(hidden, "hidden")
    if N < 2:
        raise ValueError(f"`N` must be ≥ 2 (inputs 0 and 1 coincide); got {N}.")
    Xn = np.array(jax.random.normal(key, (N, 2), dtype=jnp.float64))
    Xn[1] = Xn[0]
    yn = np.array(jax.random.normal(jax.random.fold_in(key, 1), (N,), dtype=jnp.float64))
    yn[0], yn[1] = 1.0, -1.0
    widths = (2, hidden, 1)
    y_inf = yn.copy()
    y_inf[:2] = yn[:2].mean()
    return DuplicatedInput(widths=widths, X=jnp.asarray(Xn), Y=jnp.asarray(yn[:, None]),
                           theta0=init_params(jax.random.fold_in(key, 2), widths),
                           C_min=(yn[0] - yn[1]) ** 2 / (4 * N), y_inf=y_inf)


class StructuralRankLoss(NamedTuple):
    r"""Theorem 4.1 and the equilibria (4.12) on a `DuplicatedInput` problem.

    Attributes:
        adapted: the orbit of the pseudo-inverse flow (4.6) (T saved points).
        projected: `projected_flow_check` along it.
        standard: the standard flow's convergence run (4.4).
        theta_standard: its end point polished by `newton_to_critical`, shape `(K,)`.
        grad_norms: |∇_θC| along that Newton run.
        x_standard: x at `theta_standard`, shape `(QN,)`.  sv_standard: σ(D) there, descending.
        gap: max along both orbits of σ_QN(D)/σ_1(D) (zero in exact arithmetic).
        scale: |x(0) − P_r y|.  output_rounding: max forward rounding of the outputs δx.
        output_error: max over s of |x(s) − prediction|/|x(0) − P_r y| under (4.7).
        output_tolerance: integrator budget + √QN·δx/scale.
        rate_error: |(C − C_min)/((C0 − C_min)e^{−2s/N}) − 1|, shape `(T,)`.
        rate_tolerance: its budget at each s, shape `(T,)`.
        equilibrium_distance: |x − P_r y|/scale at `theta_standard` (the same equilibrium set).
        equilibrium_tolerance: (N|∇_θC|/σ_r + 2√QN·δx·σ_1/σ_r)/scale.
    """

    adapted: Orbit
    projected: ProjectedFlowCheck
    standard: Orbit
    theta_standard: np.ndarray
    grad_norms: np.ndarray
    x_standard: np.ndarray
    sv_standard: np.ndarray
    gap: float
    scale: float
    output_rounding: float
    output_error: float
    output_tolerance: float
    rate_error: np.ndarray
    rate_tolerance: np.ndarray
    equilibrium_distance: float
    equilibrium_tolerance: float


def structural_rank_loss(problem: DuplicatedInput, *, rtol: float, atol: float, cost_floor: float,
                         s_first_standard: float, s_max_standard: float) -> StructuralRankLoss:
    r"""Both flows on a problem with rank D ≤ QN − Q everywhere, and the budgets that decide (4.7) and (4.12).

    The pseudo-inverse flow (4.6) is integrated to s = (N/2)log(1/cost_floor), where (4.7)
    predicts x(s) = P_r y + e^{−s/N}(x(0) − P_r y) and C − C_min = (C0 − C_min)e^{−2s/N}.
    The standard flow (4.4) runs (segments doubling from `s_first_standard`, at most
    `s_max_standard`) until |P_r∇ₓC| ≤ √cost_floor·|P_r∇ₓC(0)|, and its end point is
    polished by Newton's method (`newton_to_critical`) onto ∇_θC = 0.

    Args:
        problem: a `DuplicatedInput`.
        rtol, atol: tolerances of the pseudo-inverse flow's integrator (the standard flow
            uses 1e-10, 1e-12).
        cost_floor: the relative cost C − C_min followed down to.
        s_first_standard, s_max_standard: the standard flow's first segment and longest time.

    Returns:
        A `StructuralRankLoss`.

    References:
        Theorem 4.1, (4.5)–(4.7); Theorem 4.2, (4.4), (4.12).
    """
    widths, X, Y, theta0, C_min, y_inf = problem
    net = mlp(widths)
    N = QN = int(X.shape[0])
    Q = 1
    yn = np.asarray(Y)[:, 0]
    ada = integrate_flow("least-squares", net, theta0, X, Y, s1=0.5 * N * np.log(1 / cost_floor), n_save=101,
                         rtol=rtol, atol=atol)
    pf = projected_flow_check(net, ada.theta, X, Y)
    pg0 = projected_gradient_norm(net, theta0, X, Y)
    std = integrate_until("standard", net, theta0, X, Y, s_first=s_first_standard, s_max=s_max_standard,
                          converged=lambda t: projected_gradient_norm(net, t, X, Y) <= np.sqrt(cost_floor) * pg0,
                          rtol=1e-10, atol=1e-12, max_steps=1_000_000)
    theta_std, g_std = newton_to_critical(net, std.theta_end, X, Y)
    x_std, D_std = outputs_and_jacobian(net, jnp.asarray(theta_std), X)
    sv_std = np.asarray(singular_values(D_std))
    gap = max(float(np.max(pf.sv[:, QN - Q] / pf.sv[:, 0])), float(np.max(std.sigma_min / std.sigma_max)))
    scale0 = float(np.linalg.norm(ada.x[0] - y_inf))
    tau = output_error_budget(ada, scale0)
    dx = max(one_hidden_layer_output_rounding(widths, t, X) for t in ada.theta)
    x_pred = y_inf + np.exp(-ada.s / N)[:, None] * (ada.x[0] - y_inf)
    out_err = np.max(np.linalg.norm(ada.x - x_pred, axis=1)) / scale0
    out_tol = tau + np.sqrt(QN) * dx / scale0
    dC = ada.cost - C_min
    rate_err = np.abs(dC / (dC[0] * np.exp(-2 * ada.s / N)) - 1)
    rho = np.linalg.norm(x_pred - y_inf, axis=1) / scale0              # |x − P_r y|/|x(0) − P_r y| = e^{−s/N}
    resid_l1 = np.sum(np.abs(ada.x - yn), axis=1)
    round_C = (resid_l1 * dx / N + 2 * QN * EPS * ada.cost + 4 * EPS * C_min) / dC   # relative rounding of C − C_min
    rate_tol = cost_error_budget(out_tol, rho**2) + round_C + round_C[0]
    sr = sv_std[QN - Q - 1]
    return StructuralRankLoss(
        adapted=ada, projected=pf, standard=std, theta_standard=theta_std, grad_norms=g_std,
        x_standard=np.asarray(x_std), sv_standard=sv_std, gap=gap, scale=scale0, output_rounding=dx,
        output_error=out_err, output_tolerance=out_tol, rate_error=rate_err, rate_tolerance=rate_tol,
        equilibrium_distance=float(np.linalg.norm(np.asarray(x_std) - y_inf)) / scale0,
        equilibrium_tolerance=(N * g_std[-1] / sr + 2 * np.sqrt(QN) * dx * sv_std[0] / sr) / scale0)


class SaddleRule(NamedTuple):
    r"""§4.2's rule at one critical point, direction by direction.

    Attributes:
        span_curvatures: eigenvalues of nᵀHn over span{∇_θ f_i} (4.16), ascending, shape `(r,)`.
        least_eigenvalue: λ_min(∇²_θC).
        rule: the `RuleTest` at the point (its `scale` is the rounding K·eps·‖H‖).
        etas: the η tried, shape `(E,)`.
        cost_change: C(θ_* + ηn) − C(θ_*) for n = ∇_θ f_i, shape `(r, E)`.
        predicted: (η²/2)nᵀHn/|n|² for the same n and η, shape `(r, E)`.
    """

    span_curvatures: np.ndarray
    least_eigenvalue: float
    rule: RuleTest
    etas: np.ndarray
    cost_change: np.ndarray
    predicted: np.ndarray


def rule_at_saddle(instance: Instance, analysis: CriticalAnalysis, etas) -> SaddleRule:
    r"""Test §4.2's rule at a critical point: curvature over span{∇_θ f_i} and the cost change along each ∇_θ f_i.

    At a critical point C(θ_* + ηn) − C_* = (η²/2)nᵀHn + O(η³) for either sign of η, so the
    rule (4.15)–(4.17) lowers C only if some n ∈ span{∇_θ f_i} has nᵀHn < 0.

    Args:
        instance: the critical point and its problem (e.g. `xor_saddle()`).
        analysis: `analyse_critical_point` at it (its H and J = ∂f/∂θ are used).
        etas: η values, shape `(E,)`.

    Returns:
        A `SaddleRule`.

    References:
        §4.2, (4.15)–(4.17).
    """
    om, theta, X, Y = instance.output_map, instance.theta, instance.X, instance.Y
    H, J = analysis.H, analysis.J
    etas = np.asarray(etas, dtype=np.float64)
    dC = np.array([perturbation_cost_change(om, theta, X, Y, J[i], etas) for i in range(J.shape[0])])
    return SaddleRule(span_curvatures=span_curvatures(H, J), least_eigenvalue=float(analysis.eigenvalues[0]),
                      rule=perturbation_rule_test(om, theta, X, Y), etas=etas, cost_change=dC,
                      predicted=0.5 * etas[None, :] ** 2 * curvatures(H, J)[:, None])


class RuleFrequency(NamedTuple):
    r"""§4.2's rule at n random XOR equilibria.

    Attributes:
        rules: the `RuleTest` of each point (fields of shape `(n,)`).
        n_decided: points whose least curvature over the span exceeds its rounding in size.
        k_lower: of those, the points where the rule can lower C (least curvature < 0).
        k_saddle: points with λ_min(∇²_θC) < −rounding (saddles).
    """

    rules: RuleTest
    n_decided: int
    k_lower: int
    k_saddle: int


def rule_frequency(key, hidden: int, n: int, X, Y) -> RuleFrequency:
    r"""How often §4.2's rule can lower C at random XOR equilibria W_1 = 0 (`random_xor_saddles`).

    Args:
        key: PRNG key of the points.  hidden: hidden width of the network (2, hidden, 1).
        n: number of points.  X: inputs, shape `(4, 2)`.  Y: XOR labels, shape `(4, 1)`.

    Returns:
        A `RuleFrequency`.

    References:
        §4.2, (4.16)–(4.17).
    """
    rules = perturbation_rule_tests(mlp((2, hidden, 1)), random_xor_saddles(key, hidden, n), X, Y)
    decided = np.abs(rules.least_span) > rules.scale
    return RuleFrequency(rules=rules, n_decided=int(decided.sum()), k_lower=int(np.sum(rules.least_span[decided] < 0)),
                         k_saddle=int(np.sum(rules.least_hessian < -rules.scale)))


class Escape(NamedTuple):
    r"""Both flows from a critical point perturbed to restore rank D = QN.

    Attributes:
        theta: the perturbed point θ_* + ηw, shape `(K,)`.  cost: C there.
        sv: σ(D) there, descending.
        s_predicted: (N/2)log(1/ε), the time (2.18) at which (4.6) reaches C = ε·C.
        adapted, standard: the orbits of (4.6) and of the standard flow, both stopped at C = ε·C.
        rate_error: max over s of |C/(C(0)e^{−2s/N}) − 1| along `adapted`.
        time_error: |s_end − s_predicted|/s_predicted for `adapted`.
        time_tolerance: its budget (root finder 1e-10 in s plus (N/2)·ε_C).
    """

    theta: jax.Array
    cost: float
    sv: np.ndarray
    s_predicted: float
    adapted: Orbit
    standard: Orbit
    rate_error: float
    time_error: float
    time_tolerance: float


def rank_restoring_escape(instance: Instance, key, *, eta: float, eps: float, rtol: float, atol: float) -> Escape:
    r"""Perturb W_1 ↦ W_1 + ηw (w random, |w| = 1) at a one-hidden-layer critical point and follow both flows.

    At the XOR equilibrium W_1 = 0 the rank of D is 3 < QN = 4; any W_1 ≠ 0 restores it, and
    from there the pseudo-inverse flow (4.6) falls at the rate e^{−2s/N} of (2.18) from
    the first instant, reaching C = ε·C at s = (N/2)log(1/ε), while the standard flow has
    to leave the saddle first.

    Args:
        instance: the critical point, widths `(M, h, 1)`.
        key: PRNG key of w (`jax.random.normal(key, (h·M,))`, laid out as W_1 row-major).
        eta: the size η of the perturbation.  eps: the relative cost ε at which both orbits stop.
        rtol, atol: tolerances of the adapted flow's integrator (the standard flow uses 1e-10, 1e-12).

    Returns:
        An `Escape`.

    References:
        §4.2; (2.18), (4.6).
    """
    widths, net, X, Y = instance.widths, instance.output_map, instance.X, instance.Y
    M, h = widths[0], widths[1]
    (W1, b1), *rest = unflatten_params(np.asarray(instance.theta), widths)
    w = np.asarray(jax.random.normal(key, (h * M,))).reshape(h, M)
    theta_p = jnp.asarray(flatten_params([(W1 + eta * w / np.linalg.norm(w), b1), *rest], widths))
    N = int(X.shape[0])
    C_p = float(cost(net(theta_p, X), Y))
    sv_p = np.asarray(singular_values(jacobian(net, theta_p, X)))
    s_pred = 0.5 * N * np.log(1 / eps)
    ada = integrate_flow("least-squares", net, theta_p, X, Y, s1=2 * s_pred, eps=eps * C_p, n_save=101,
                         rtol=rtol, atol=atol)
    std = integrate_flow("standard", net, theta_p, X, Y, s1=2000.0, eps=eps * C_p,
                         ts=np.linspace(0.0, 400.0, 2001), rtol=1e-10, atol=1e-12)
    rate = np.max(np.abs(ada.cost / (C_p * np.exp(-2 * ada.s / N)) - 1))
    # error of the event time: root finder (1e-10 in s) + relative cost error ε_C, i.e. (N/2)·ε_C in s
    r_end = float(np.sqrt(2 * N * eps * C_p))                      # |x − y| at the event
    tau = output_error_budget(ada, r_end)
    dx = max(one_hidden_layer_output_rounding(widths, t, X) for t in ada.theta)
    eps_C = 2 * tau + tau**2 + 2 * np.sqrt(N) * dx / r_end + 8 * EPS
    return Escape(theta=theta_p, cost=C_p, sv=sv_p, s_predicted=s_pred, adapted=ada, standard=std,
                  rate_error=float(rate), time_error=abs(ada.s_end - s_pred) / s_pred,
                  time_tolerance=(1e-10 * (1 + s_pred) + 0.5 * N * eps_C) / s_pred)

