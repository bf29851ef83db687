r"""Trapping of the standard flow (§3): Rayleigh quotient, arc length, the sets U = {‖D‖_op ≤ λ}.

The standard flow (1.9) seen in the output layer is ∂_s x = −D Dᵀ ∇_x C (1.25), (3.1): its
speed is governed by the Rayleigh quotient of the neural tangent kernel D Dᵀ at ∇_x C,
not by ‖D‖.  `integrate_standard_arclength` solves the standard flow augmented with its
arc length ℓ(s) = ∫_0^s |∂_s θ| (3.5) and locates, by root finding on the solver's dense
output, every entry into and exit from U = {θ : ‖D[θ]‖_op ≤ λ} (3.4), which is what
Proposition 3.1 (3.6) needs.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import brentq

from ..cost import cost, grad_x_cost, outputs_and_jacobian
from ..network import mlp, num_params, output_bias_jacobian
from ..validation import validate_data


def rayleigh_quotient(D: jax.Array, grad_x: jax.Array) -> jax.Array:
    r"""⟨∇_x C, D Dᵀ ∇_x C⟩ / |∇_x C|² = |Dᵀ∇_x C|²/|∇_x C|², the NTK's quotient in (3.1).

    It lies in [σ_min(D)², σ_max(D)²]; the output speed of the standard flow is
    |∂_s x| = |D Dᵀ ∇_x C| ≥ this quotient · |∇_x C| (1.25).

    Args:
        D: Jacobian, shape `(QN, K)`.
        grad_x: ∇_x C, shape `(QN,)`, non-zero.

    Returns:
        Scalar ≥ 0.
    """
    v = D.T @ grad_x
    return jnp.dot(v, v) / jnp.dot(grad_x, grad_x)


def standard_output_speed(D: jax.Array, grad_x: jax.Array) -> jax.Array:
    r"""|∂_s x| = |D Dᵀ ∇_x C| along the standard flow (1.25).  Shapes `(QN, K)`, `(QN,)` → scalar."""
    return jnp.linalg.norm(D @ (D.T @ grad_x))


def operator_norm(D: jax.Array) -> jax.Array:
    r"""‖D‖_op = σ_max(D), the quantity bounded on U in (3.4).  Shape `(QN, K)` → scalar."""
    return jnp.linalg.norm(D, ord=2)


def bias_column_norm_bound(N: int) -> float:
    r"""√N: a lower bound of ‖D‖_op for any network with an output bias b_{L+1} (1.4).

    The columns of D for b_{L+1} are e_q ⊗ 1_N (∂x_j/∂b_{L+1} = 1_Q for every j), of norm
    √N, and ‖D‖_op ≥ the norm of any column; so U = {‖D‖_op ≤ λ} is empty for λ < √N.
    """
    if not isinstance(N, (int, np.integer)) or N < 1:
        raise ValueError(f"`N` must be a positive integer; got {N!r}.")
    return float(np.sqrt(N))


@functools.lru_cache(maxsize=None)
def mlp_without_output_bias(widths: tuple[int, ...], activation: str = "tanh"):
    r"""The MLP output map of `adaptedflow.mlp` with b_{L+1} = 0 removed from θ (K = K_mlp − Q).

    θ lists W_1, b_1, …, W_{L+1} in the order of (1.5), without the final Q biases.
    The same `(widths, activation)` returns the same function object (compiled solvers
    are cached on it).

    Args:
        widths: tuple `(M, M_1, …, M_L, Q)`.
        activation: as in `adaptedflow.mlp`.

    Returns:
        `output_map(theta, X) -> x`, `theta` of shape `(K_mlp − Q,)`, `x` of shape `(QN,)`.
    """
    full = mlp(tuple(widths), activation)
    Q = full.widths[-1]

    def output_map(theta, X):
        return full(jnp.concatenate([theta, jnp.zeros((Q,), dtype=theta.dtype)]), X)

    output_map.widths = full.widths  # type: ignore[attr-defined]
    output_map.num_params = num_params(full.widths) - Q  # type: ignore[attr-defined]
    output_map.__name__ = full.__name__ + "_no_output_bias"
    return output_map


class ArclengthOrbit(NamedTuple):
    r"""A standard orbit with its arc length and the crossings of ‖D‖_op = λ.

    Attributes:
        s: saved times, shape `(T,)`.
        theta: θ(s), shape `(T, K)`.  arclength: ℓ(s) = ∫_0^s |∂_sθ| (3.5), shape `(T,)`.
        cost: C(s), shape `(T,)`.  opnorm: ‖D[θ(s)]‖_op, shape `(T,)`.
        rayleigh: the quotient (3.1) at θ(s), shape `(T,)`.  speed: |∂_s x|, shape `(T,)`.
        crossings: times where ‖D‖_op = λ, located to `event_tol`, shape `(E,)`.
        intervals: the maximal intervals [s_0, s_1] ⊂ [0, s1] spent in U, as rows
            `(s_0, s_1, ℓ(s_1) − ℓ(s_0), C(s_0))`, shape `(I, 4)`.
        lam: λ.  C0: C(0).  n_steps: accepted solver steps.
    """

    s: np.ndarray
    theta: np.ndarray
    arclength: np.ndarray
    cost: np.ndarray
    opnorm: np.ndarray
    rayleigh: np.ndarray
    speed: np.ndarray
    crossings: np.ndarray
    intervals: np.ndarray
    lam: float
    C0: float
    n_steps: int


@functools.lru_cache(maxsize=32)
def _arclength_solver(output_map, rtol, atol, max_steps):
    def field(s, y, args):
        X, Y = args
        x, D = outputs_and_jacobian(output_map, y[:-1], X)
        v = -D.T @ grad_x_cost(x, Y)
        return jnp.concatenate([v, jnp.linalg.norm(v)[None]])

    def diagnostics(theta, X, Y):
        x, D = outputs_and_jacobian(output_map, theta, X)
        g = grad_x_cost(x, Y)
        return cost(x, Y), operator_norm(D), rayleigh_quotient(D, g), standard_output_speed(D, g)

    @jax.jit
    def solve(y0, X, Y, s1):
        return diffrax.diffeqsolve(
            diffrax.ODETerm(field), diffrax.Tsit5(), t0=0.0, t1=s1, dt0=None, y0=y0, args=(X, Y),
            saveat=diffrax.SaveAt(dense=True, t1=True),
            stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
            max_steps=max_steps, throw=False)

    evaluate = jax.jit(lambda sol, s: sol.evaluate(s))
    evaluate_many = jax.jit(lambda sol, s: jax.vmap(sol.evaluate)(s))
    diag = jax.jit(jax.vmap(diagnostics, in_axes=(0, None, None)))
    opnorm_at = jax.jit(lambda sol, s, X: operator_norm(outputs_and_jacobian(output_map, sol.evaluate(s)[:-1], X)[1]))
    opnorm_many = jax.jit(lambda sol, s, X: jax.vmap(lambda t: operator_norm(
        outputs_and_jacobian(output_map, sol.evaluate(t)[:-1], X)[1]))(s))
    return solve, evaluate, evaluate_many, diag, opnorm_at, opnorm_many


def integrate_standard_arclength(output_map, theta0, X, Y, *, lam: float, s1: float, ts=None, n_save: int = 401,
                                 rtol: float = 1e-10, atol: float = 1e-12, max_steps: int = 200_000,
                                 event_tol: float = 1e-10) -> ArclengthOrbit:
    r"""Standard flow (1.9) with arc length ℓ (3.5) and the entries/exits of U = {‖D‖_op ≤ λ} (3.4).

    Solves the augmented system ∂_s θ = −Dᵀ∇_x C, ∂_s ℓ = |Dᵀ∇_x C|, ℓ(0) = 0, with
    diffrax (Tsit5, dense output).  The sign of ‖D[θ(s)]‖_op − λ is tracked on the
    saved grid and on every solver step; each sign change is located by Brent's method on
    the dense interpolant (an event located to `event_tol` in s).  Each maximal interval
    in U gives the data of Proposition 3.1: s_1 − s_0, ℓ_U = ℓ(s_1) − ℓ(s_0) and C(s_0).

    Args:
        output_map: `output_map(theta, X) -> x` (a stable function object).
        theta0: θ(0), shape `(K,)`.  X: inputs `(N, M)`.  Y: targets `(N, Q)`.
        lam: λ > 0 of (3.4).
        s1: final time.  ts: increasing times in [0, s1] to save at (default `n_save`
            equispaced); crossings are scanned on `ts` and every solver step.
        rtol, atol: step-size controller tolerances.  event_tol: tolerance in s of a crossing.

    Returns:
        An `ArclengthOrbit`.

    Raises:
        ValueError: bad shapes, non-finite data, λ ≤ 0, s1 ≤ 0, n_save < 2.
        RuntimeError: the solver failed (e.g. ran out of `max_steps`).

    References:
        Proposition 3.1, (3.4)–(3.6).
    """
    theta0, X, Y = validate_data(theta0, X, Y)
    if not (np.isfinite(lam) and lam > 0):
        raise ValueError(f"`lam` (λ of (3.4)) must be a positive finite number; got {lam!r}.")
    if not (np.isfinite(s1) and s1 > 0):
        raise ValueError(f"`s1` must be a positive finite time; got {s1!r}.")
    if int(n_save) < 2:
        raise ValueError(f"`n_save` must be ≥ 2 (the crossing scan needs a grid); got {n_save!r}.")
    ts = np.linspace(0.0, float(s1), int(n_save)) if ts is None else np.asarray(ts, dtype=np.float64)
    if ts.ndim != 1 or ts.size < 2 or np.any(np.diff(ts) <= 0) or ts[0] < 0 or ts[-1] > s1:
        raise ValueError(f"`ts` must be an increasing 1-D array of ≥ 2 times in [0, s1 = {s1}]; got shape {ts.shape}.")
    if output_map(theta0, X).shape != (Y.size,):
        raise ValueError(f"`output_map(theta0, X)` must have shape ({Y.size},) = (QN,) to match `Y` {Y.shape}.")

    solve, evaluate, evaluate_many, diag, opnorm_at, opnorm_many = _arclength_solver(output_map, float(rtol), float(atol), int(max_steps))
    y0 = jnp.concatenate([theta0, jnp.zeros((1,))])
    sol = solve(y0, X, Y, jnp.asarray(float(s1)))
    if sol.result != diffrax.RESULTS.successful:
        raise RuntimeError(f"`integrate_standard_arclength` failed before s1 = {s1}: {diffrax.RESULTS[sol.result]}. "
                           f"Raise `max_steps` (now {max_steps}) or loosen rtol/atol.")
    step_ts = np.asarray(sol.interpolation.ts)
    step_ts = step_ts[np.isfinite(step_ts)]
    grid = np.unique(np.concatenate([ts, step_ts]))
    ys = np.asarray(evaluate_many(sol, jnp.asarray(ts)))
    C, opn, rq, sp = (np.asarray(a) for a in diag(jnp.asarray(ys[:, :-1]), X, Y))
    f = np.asarray(opnorm_many(sol, jnp.asarray(grid), X)) - lam
    crossings = []
    for i in np.nonzero(np.sign(f[:-1]) * np.sign(f[1:]) < 0)[0]:
        g = lambda s: float(opnorm_at(sol, jnp.asarray(s), X)) - lam
        crossings.append(brentq(g, grid[i], grid[i + 1], xtol=event_tol, rtol=4 * np.finfo(float).eps))
    crossings = np.asarray(crossings)
    # maximal intervals inside U
    bounds = np.concatenate([[0.0], crossings, [float(s1)]])
    inside0 = f[0] <= 0
    ell = lambda s: float(evaluate(sol, jnp.asarray(s))[-1])
    cost_at = lambda s: float(cost(output_map(evaluate(sol, jnp.asarray(s))[:-1], X), Y))
    intervals = []
    for k in range(len(bounds) - 1):
        if (k % 2 == 0) == inside0:
            a, b = bounds[k], bounds[k + 1]
            intervals.append((a, b, ell(b) - ell(a), cost_at(a)))
    return ArclengthOrbit(s=ts, theta=ys[:, :-1], arclength=ys[:, -1], cost=C, opnorm=opn,
                          rayleigh=rq, speed=sp, crossings=crossings,
                          intervals=np.asarray(intervals, dtype=float).reshape(-1, 4), lam=float(lam),
                          C0=float(C[0]), n_steps=int(sol.stats["num_accepted_steps"]))


def proposition_3_1_ratio(interval, lam: float, N: int, C_ref: float) -> float:
    r"""(s_1 − s_0) / [(ℓ_U/λ)·sqrt(N/(2 C_ref))]: ≥ 1 is Proposition 3.1 (3.6).

    With `C_ref` = C_0 = C(0) this is (3.6) as stated; with C_ref = C(s_0) it is the sharper
    bound of the proof (3.9) (valid since C decreases, (1.10)).

    Args:
        interval: a row `(s_0, s_1, ℓ_U, C(s_0))` of `ArclengthOrbit.intervals`.
        lam: λ.  N: number of inputs.  C_ref: the cost in the bound.

    Returns:
        The ratio (inf when ℓ_U = 0).
    """
    s0, s1, ell_U = float(interval[0]), float(interval[1]), float(interval[2])
    if not (lam > 0 and C_ref > 0):
        raise ValueError(f"`lam` and `C_ref` must be > 0; got lam={lam!r}, C_ref={C_ref!r}.")
    bound = ell_U / lam * np.sqrt(N / (2.0 * C_ref))
    return float((s1 - s0) / bound) if bound > 0 else float("inf")


def bias_column_deviation(D, N: int, Q: int) -> float:
    r"""max |D[:, bias] − 1_N ⊗ 1_Q|: how far the output-bias columns of D are from their exact value.

    Zero in exact arithmetic for every θ (`network.output_bias_jacobian`); reverse-mode AD computes
    these entries as products with 1, so in float64 the deviation is 0 or one rounding.
    From this identity ‖D‖_op ≥ |D e_b| = √N for the bias column e_b, so
    U = {‖D‖_op ≤ λ} (3.4) is empty for λ < √N (`bias_column_norm_bound`).

    Args:
        D: Jacobian of an `adaptedflow.mlp` map, shape `(QN, K)` or `(T, QN, K)` (then the max
            over T).
        N: number of inputs.  Q: output dimension.

    Returns:
        The largest entrywise deviation (a float ≥ 0).
    """
    D = np.asarray(D, dtype=np.float64)
    if D.ndim == 2:
        D = D[None]
    if D.ndim != 3 or D.shape[1] != N * Q:
        raise ValueError(f"`D` must have shape (QN, K) or (T, QN, K) with QN = {N * Q}; got {D.shape}.")
    cols, expected = output_bias_jacobian(D.shape[2], N, Q)
    return float(np.max(np.abs(D[:, :, cols] - expected[None])))


class EquilibriumSearch(NamedTuple):
    r"""One standard orbit run to a stopping test, then polished by Newton's method (Lemma 3.2).

    Attributes:
        stop: the stop of `integrate_until` (``"converged"``: |∇_θC| ≤ `grad_stop` reached;
            ``"s_max"``: not within the longest time, reported).
        s_end: the time the orbit was followed.
        theta: the polished point θ_*, shape `(K,)`.
        cost: C(θ_*).  grad_norm: |∇_θC(θ_*)|.  residual: |x[θ_*] − y_ω|.
        singular_values: of D[θ_*], descending, shape `(min(QN, K),)`.
        QN: number of outputs.  N: number of inputs.
        max_abs_theta: max |θ_*| (large on orbits heading to an infimum at infinity).
    """

    stop: str
    s_end: float
    theta: np.ndarray
    cost: float
    grad_norm: float
    residual: float
    singular_values: np.ndarray
    QN: int
    N: int
    max_abs_theta: float

    def is_equilibrium(self, grad_tol: float, cost_min: float) -> bool:
        """|∇_θC| ≤ `grad_tol` and C > `cost_min`: a non-global equilibrium (to tolerance)."""
        return bool(self.grad_norm <= grad_tol and self.cost > cost_min)

    def rayleigh_bound(self) -> float:
        r"""N|∇_θC|/|x − y_ω|, an upper bound of σ_QN(D) at θ_* (proof of (3.10)).

        D^T(x − y_ω) = N∇_θC, so σ_QN(D) ≤ |Dᵀu|/|u| with u = x − y_ω (QN ≤ K)."""
        return float(self.N * self.grad_norm / self.residual)


def search_equilibrium(output_map, theta0, X, Y, *, grad_stop: float, s_first: float, s_max: float,
                       newton_tol: float = 1e-13, **kwargs) -> EquilibriumSearch:
    r"""Run the standard flow (1.9) until |∇_θC| ≤ `grad_stop` (or `s_max`), then Newton-polish.

    The orbit is followed with `adaptedflow.integrate_until` (a convergence run: doubling
    segments, the stopping test after each; an orbit still moving at `s_max` is reported
    with ``stop="s_max"``, never raised); its end point is then polished with
    `adaptedflow.paper.critical.newton_to_critical` to |∇_θC| ≤ `newton_tol` where Newton
    converges.

    Args:
        output_map, theta0, X, Y: as for `integrate_flow`; shapes `(K,)`, `(N, M)`, `(N, Q)`.
        grad_stop: the stopping test |∇_θC| ≤ grad_stop (> 0).
        s_first, s_max: first segment and longest time (0 < s_first ≤ s_max).
        newton_tol: Newton's stopping test.
        **kwargs: passed to `integrate_until` (rtol, atol, …).

    Returns:
        An `EquilibriumSearch`.

    References:
        Lemma 3.2, (3.10).
    """
    from ..integrate import integrate_until
    from .critical import cost_gradient, newton_to_critical

    if not (np.isfinite(grad_stop) and grad_stop > 0):
        raise ValueError(f"`grad_stop` must be a positive number; got {grad_stop!r}.")
    theta0, X, Y = validate_data(theta0, X, Y)
    grad = lambda t: float(np.linalg.norm(np.asarray(cost_gradient(output_map, jnp.asarray(t), X, Y))))
    orbit = integrate_until("standard", output_map, theta0, X, Y, s_first=s_first, s_max=s_max, n_save=2,
                            converged=lambda t: grad(t) <= grad_stop, **kwargs)
    th, _ = newton_to_critical(output_map, orbit.theta_end, X, Y, tol=newton_tol)
    x, D = outputs_and_jacobian(output_map, jnp.asarray(th), X)
    return EquilibriumSearch(
        stop=orbit.stop, s_end=float(orbit.s_end), theta=np.asarray(th), cost=float(cost(x, Y)),
        grad_norm=grad(th), residual=float(jnp.linalg.norm(x - Y.reshape(-1))),
        singular_values=np.linalg.svd(np.asarray(D), compute_uv=False), QN=int(Y.size), N=int(X.shape[0]),
        max_abs_theta=float(np.max(np.abs(th))))
