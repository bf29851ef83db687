r"""The analyses of §1–2.2 run by the first chapters: identities, the rate (2.6), the stopping time (2.18).

* `setting_identities`: the chain rule (1.21), D u = −∇_x C (1.31) and u ∈ range Dᵀ for the
  adapted direction (1.30), with the spectrum of D Dᵀ, at a list of θ.
* `rate_errors`: how far adapted orbits are from the comparison solutions (2.6)–(2.7) of
  Theorem 2.1, with each orbit's integrator budget.
* `stopping_time_errors`: measured first-passage times against s_*(ε) (2.18) of Theorem 2.3,
  with their error budget.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import numpy as np

from ..comparison import comparison_cost, comparison_outputs, stopping_time
from ..cost import cost, grad_x_cost, outputs_and_jacobian
from ..flows import adapted_direction
from ..integrate import cost_error_budget, first_passage_times, integrate_flow, output_error_budget
from ..linalg import singular_values


class SettingIdentities(NamedTuple):
    r"""The identities of §1 at each θ (see `setting_identities`); every list has one entry per θ.

    Attributes:
        chain: |∇_θC − Dᵀ∇_xC|/|∇_θC| (1.21).
        adapted: |D u + ∇_xC|/|∇_xC| for u the adapted direction (1.30)–(1.31).
        horizontal: |Dᵀα − u|/|u| with α the least-squares solution of Dᵀα = u (u ∈ range Dᵀ).
        conds: κ(D) = σ_1/σ_QN.
        spectra: the eigenvalues σ_i² of D Dᵀ (1.25), each of shape `(QN,)`.
    """

    chain: list
    adapted: list
    horizontal: list
    conds: list
    spectra: list


def setting_identities(output_map, thetas: Sequence, X, Y) -> SettingIdentities:
    r"""Check (1.21), (1.31) and u ∈ range Dᵀ at each θ of `thetas`, with κ(D) and the NTK spectrum.

    ∇_θC is computed by reverse-mode AD of θ ↦ C[x[θ]] (1.7), independently of D (1.20).

    Args:
        output_map: `output_map(theta, X) -> x`.  thetas: parameters, each of shape `(K,)`.
        X: inputs `(N, M)`.  Y: targets `(N, Q)`.

    Returns:
        A `SettingIdentities`.
    """
    out = SettingIdentities([], [], [], [], [])
    for theta in thetas:
        x, D = outputs_and_jacobian(output_map, theta, X)
        g = grad_x_cost(x, Y)
        grad_theta = jax.grad(lambda t: cost(output_map(t, X), Y))(theta)
        out.chain.append(float(np.linalg.norm(grad_theta - D.T @ g) / np.linalg.norm(grad_theta)))
        sv = np.asarray(singular_values(D))
        out.conds.append(sv[0] / sv[-1])
        out.spectra.append(sv**2)
        u = adapted_direction(D, g)
        out.adapted.append(float(np.linalg.norm(D @ u + g) / np.linalg.norm(g)))
        alpha = np.linalg.lstsq(np.asarray(D).T, np.asarray(u), rcond=None)[0]
        out.horizontal.append(float(np.linalg.norm(np.asarray(D).T @ alpha - u) / np.linalg.norm(u)))
    return out


def rate_errors(orbits: Sequence, Y, N: int) -> tuple[list, list, list]:
    r"""Deviation of adapted orbits from Theorem 2.1's solutions, and each orbit's output budget τ.

    Args:
        orbits: `Orbit`s of the adapted flow (1.30).  Y: targets `(N, Q)`.  N: number of inputs.

    Returns:
        `(rate_err, out_err, budget_x)`, one float per orbit: max_s |C(s)/(C(0)e^{−2s/N}) − 1| (2.6),
        max_s |x(s) − (2.7)|/|x(0) − y_ω|, and τ = `output_error_budget`(orbit, |x(0) − y_ω|).
    """
    y = Y.reshape(-1)
    rate_err, out_err, budget_x = [], [], []
    for o in orbits:
        budget_x.append(output_error_budget(o, np.linalg.norm(o.x[0] - y)))
        rate_err.append(np.max(np.abs(o.cost / comparison_cost(o.cost[0], o.s, N) - 1)))
        out_err.append(np.max(np.linalg.norm(o.x - comparison_outputs(o.x[0], Y, o.s), axis=1))
                       / np.linalg.norm(o.x[0] - y))
    return rate_err, out_err, budget_x


class StoppingTimes(NamedTuple):
    r"""Measured and predicted stopping times (see `stopping_time_errors`), shape `(n_inits, n_eps)` unless noted.

    Attributes:
        C0: C(0) per start, shape `(n_inits,)`.  measured: first s with C(s) ≤ ε.
        predicted: s_*(ε) = (N/2) log(C(0)/ε) (2.18).  rel_err: |measured/predicted − 1|.
        tau: the integrator's output budget per start, shape `(n_inits,)`.
        budget: the allowed relative error, δ_C(ε)/log(C(0)/ε) + 1e-10·(1 + 1/s_*).
    """

    C0: np.ndarray
    measured: np.ndarray
    predicted: np.ndarray
    rel_err: np.ndarray
    tau: np.ndarray
    budget: np.ndarray


def stopping_time_errors(output_map, theta0s: Sequence, X, Y, ratios, *, rtol: float, atol: float,
                         rank_rtol: float) -> StoppingTimes:
    r"""Theorem 2.3: the first time C(s) ≤ ε along the adapted flow, against s_*(ε) (2.18).

    The thresholds are ε = ratio·C(0).  Crossings are located by `first_passage_times` up to
    s = 2N log(1/min ratio) (four times (2.18), never used to locate); τ comes from one saved
    integration per start up to its largest s_*.

    Args:
        output_map: `output_map(theta, X) -> x`.  theta0s: starts, each `(K,)`.  X: `(N, M)`.  Y: `(N, Q)`.
        ratios: ε/C(0), shape `(n_eps,)`.  rtol, atol, rank_rtol: as in `integrate_flow`.

    Returns:
        A `StoppingTimes`.
    """
    N = X.shape[0]
    ratios = np.asarray(ratios, dtype=float)
    C0s = np.array([float(cost(output_map(t0, X), Y)) for t0 in theta0s])
    measured = np.empty((len(theta0s), len(ratios)))
    s_give_up = 2 * N * np.log(1 / ratios.min())
    for i, t0 in enumerate(theta0s):
        measured[i] = first_passage_times("adapted", output_map, t0, X, Y, ratios * C0s[i], s1=s_give_up,
                                          rtol=rtol, atol=atol, rank_rtol=rank_rtol)
    predicted = np.array([stopping_time(C0, r * C0, N) for C0 in C0s for r in ratios]).reshape(measured.shape)
    tau = np.array([output_error_budget(
        integrate_flow("adapted", output_map, t0, X, Y, s1=predicted[i].max(), rtol=rtol, atol=atol,
                       rank_rtol=rank_rtol),
        np.sqrt(2 * N * C0s[i])) for i, t0 in enumerate(theta0s)])
    budget = (cost_error_budget(tau[:, None], ratios[None, :]) / np.log(1 / ratios)[None, :]
              + 1e-10 * (1 + 1 / predicted))
    return StoppingTimes(C0s, measured, predicted, np.abs(measured / predicted - 1), tau, budget)
