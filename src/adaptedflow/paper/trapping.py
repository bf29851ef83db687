r"""Trapping of the standard flow (§3): Rayleigh quotient, arc length, the sets U = {‖D‖_op ≤ λ}.

The standard flow (1.9) seen in the output layer is ∂_s x = −D Dᵀ ∇_x C (1.25), (3.1): its
speed is governed by the Rayleigh quotient of the neural tangent kernel D Dᵀ at ∇_x C,
not by ‖D‖.  `integrate_standard_arclength` solves the standard flow augmented with its
arc length ℓ(s) = ∫_0^s |∂_s θ| (3.5) and locates, by root finding on the solver's dense
output, every entry into and exit from U = {θ : ‖D[θ]‖_op ≤ λ} (3.4), which is what
Proposition 3.1 (3.6) needs.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import brentq

from ..cost import cost, grad_x_cost, outputs_and_jacobian
from ..flows import adapted_direction
from ..network import init_params, mlp, num_params, output_bias_jacobian
from ..numerics import EPS
from ..validation import positive_int, validate_data


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
    return float(np.sqrt(positive_int(N, "N")))


@dataclasses.dataclass(frozen=True)
class MLPWithoutOutputBias:
    r"""The MLP output map of `adaptedflow.mlp` with b_{L+1} = 0 removed from θ (K = K_mlp − Q).

    θ lists W_1, b_1, …, W_{L+1} in the order of (1.5), without the final Q biases.  A
    frozen value, equal (and equally hashed) for equal `(widths, activation)`, so solvers
    compiled for it are reused.  It is not an `adaptedflow.MLP`: the structured kernel,
    which assumes the output bias, does not apply to it.

    Attributes:
        widths: `(M, M_1, …, M_L, Q)`.  activation: as in `adaptedflow.mlp`.
    """

    widths: tuple[int, ...]
    activation: str = "tanh"

    def __post_init__(self):
        object.__setattr__(self, "widths", mlp(self.widths, self.activation).widths)

    def __call__(self, theta: jax.Array, X: jax.Array) -> jax.Array:
        """x[θ] of shape `(QN,)` for θ of shape `(K_mlp − Q,)` and X of shape `(N, M)`."""
        Q = self.widths[-1]
        full = mlp(self.widths, self.activation)
        return full(jnp.concatenate([theta, jnp.zeros((Q,), dtype=theta.dtype)]), X)

    @property
    def num_params(self) -> int:
        """K = K_mlp − Q, the length of θ."""
        return num_params(self.widths) - self.widths[-1]

    @property
    def __name__(self) -> str:
        """A readable name, e.g. ``mlp[2, 3, 1]_tanh_no_output_bias``."""
        return mlp(self.widths, self.activation).__name__ + "_no_output_bias"


def mlp_without_output_bias(widths: tuple[int, ...], activation: str = "tanh") -> MLPWithoutOutputBias:
    r"""The output map of an MLP without output bias b_{L+1}, as a `MLPWithoutOutputBias` value.

    Args:
        widths: tuple `(M, M_1, …, M_L, Q)`.
        activation: as in `adaptedflow.mlp`.

    Returns:
        `output_map(theta, X) -> x`, `theta` of shape `(K_mlp − Q,)`, `x` of shape `(QN,)`.
    """
    return MLPWithoutOutputBias(tuple(widths), activation)


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


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _solve_arclength(output_map, rtol: float, atol: float, max_steps: int, y0, X, Y, s1):
    """Tsit5 with dense output on (θ, ℓ); compiled once per output map and tolerances."""
    def field(s, y, args):
        X, Y = args
        x, D = outputs_and_jacobian(output_map, y[:-1], X)
        v = -D.T @ grad_x_cost(x, Y)
        return jnp.concatenate([v, jnp.linalg.norm(v)[None]])

    return diffrax.diffeqsolve(
        diffrax.ODETerm(field), diffrax.Tsit5(), t0=0.0, t1=s1, dt0=None, y0=y0, args=(X, Y),
        saveat=diffrax.SaveAt(dense=True, t1=True),
        stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
        max_steps=max_steps, throw=False)


_evaluate = jax.jit(lambda sol, s: sol.evaluate(s))
_evaluate_many = jax.jit(lambda sol, s: jax.vmap(sol.evaluate)(s))


@functools.partial(jax.jit, static_argnums=0)
def _arclength_diagnostics(output_map, thetas, X, Y):
    def one(theta):
        x, D = outputs_and_jacobian(output_map, theta, X)
        g = grad_x_cost(x, Y)
        return cost(x, Y), operator_norm(D), rayleigh_quotient(D, g), standard_output_speed(D, g)

    return jax.vmap(one)(thetas)


@functools.partial(jax.jit, static_argnums=0)
def _opnorm_at(output_map, sol, s, X):
    return operator_norm(outputs_and_jacobian(output_map, sol.evaluate(s)[:-1], X)[1])


@functools.partial(jax.jit, static_argnums=0)
def _opnorm_many(output_map, sol, s, X):
    return jax.vmap(lambda t: operator_norm(outputs_and_jacobian(output_map, sol.evaluate(t)[:-1], X)[1]))(s)


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

    y0 = jnp.concatenate([theta0, jnp.zeros((1,))])
    sol = _solve_arclength(output_map, float(rtol), float(atol), int(max_steps), y0, X, Y, jnp.asarray(float(s1)))
    if sol.result != diffrax.RESULTS.successful:
        raise RuntimeError(f"`integrate_standard_arclength` failed before s1 = {s1}: {diffrax.RESULTS[sol.result]}. "
                           f"Raise `max_steps` (now {max_steps}) or loosen rtol/atol.")
    step_ts = np.asarray(sol.interpolation.ts)
    step_ts = step_ts[np.isfinite(step_ts)]
    grid = np.unique(np.concatenate([ts, step_ts]))
    ys = np.asarray(_evaluate_many(sol, jnp.asarray(ts)))
    C, opn, rq, sp = (np.asarray(a) for a in _arclength_diagnostics(output_map, jnp.asarray(ys[:, :-1]), X, Y))
    f = np.asarray(_opnorm_many(output_map, sol, jnp.asarray(grid), X)) - lam
    crossings = []
    for i in np.nonzero(np.sign(f[:-1]) * np.sign(f[1:]) < 0)[0]:
        g = lambda s: float(_opnorm_at(output_map, sol, jnp.asarray(s), X)) - lam
        crossings.append(brentq(g, grid[i], grid[i + 1], xtol=event_tol, rtol=4 * EPS))
    crossings = np.asarray(crossings)
    # maximal intervals inside U
    bounds = np.concatenate([[0.0], crossings, [float(s1)]])
    inside0 = f[0] <= 0
    ell = lambda s: float(_evaluate(sol, jnp.asarray(s))[-1])
    cost_at = lambda s: float(cost(output_map(_evaluate(sol, jnp.asarray(s))[:-1], X), Y))
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


# ---------------------------------------------------------------------------------------------
# the analyses of chapter 06 (one call each)


class TrappingExample(NamedTuple):
    r"""The trapping example of §3: labels orthogonal to every affine function of the inputs.

    Attributes:
        X: inputs, shape `(N, 2)`.  Y: targets, shape `(N, 1)`, with |y|² = N (C(θ = 0) = 1/2).
        widths: `(2, M_1, 1)`.  output_map: `mlp_without_output_bias(widths)`.
        theta0: θ(0), shape `(K,)`, K = K_mlp − 1.
        affine_residual: |Aᵀy| with A = [1, X] (zero up to rounding).
    """

    X: jax.Array
    Y: jax.Array
    widths: tuple
    output_map: object
    theta0: jax.Array
    affine_residual: float


def trapping_example(key, N: int, hidden: int, init_scale: float) -> TrappingExample:
    r"""Data and θ(0) on which the standard flow (1.9) stalls: a near-linear net and non-affine labels.

    X ~ N(0, 1) of shape (N, 2) from `key`; y ~ N(0, 1_N) from fold_in(key, 1), projected
    off the affine functions [1, X] of the inputs and scaled to |y|² = N; a tanh MLP
    (2, hidden, 1) without output bias, θ(0) = `init_params`(fold_in(key, 2), scale=init_scale)
    without its last entry.  At small `init_scale` the network is almost affine in its
    inputs, so it can hardly lower the cost at first (the plateau of Proposition 3.1).

    Args:
        key: a `jax.random` key.  N: number of inputs (≥ 4).  hidden: hidden width.
        init_scale: scale of θ(0).

    Returns:
        A `TrappingExample`.
    """
    N, hidden = positive_int(N, "N"), positive_int(hidden, "hidden")
    X = jax.random.normal(key, (N, 2), dtype=jnp.float64)
    A = np.c_[np.ones(N), np.asarray(X)]                     # affine functions of the inputs
    y = np.asarray(jax.random.normal(jax.random.fold_in(key, 1), (N,), dtype=jnp.float64))
    y = y - A @ np.linalg.lstsq(A, y, rcond=None)[0]        # labels ⟂ affine functions
    y = y * np.sqrt(N) / np.linalg.norm(y)                   # |y|² = N, so C(θ=0) = 1/2
    widths = (2, hidden, 1)
    net = mlp_without_output_bias(widths)
    theta0 = init_params(jax.random.fold_in(key, 2), widths, scale=init_scale)[:net.num_params]
    return TrappingExample(X, jnp.asarray(y[:, None]), widths, net, theta0, float(np.linalg.norm(A.T @ y)))


class OrbitDiagnostics(NamedTuple):
    r"""Spectral quantities of D along saved θ of an orbit (see `orbit_diagnostics`).

    Attributes:
        D: Jacobians, shape `(T, QN, K)`.  opnorm: ‖D‖_op (3.4), shape `(T,)`.
        rayleigh: the quotient ρ of (3.1), shape `(T,)`.
        adapted_speed: |D·(adapted direction)| = |∂_s x| of the adapted flow (1.31), shape `(T,)`.
    """

    D: np.ndarray
    opnorm: np.ndarray
    rayleigh: np.ndarray
    adapted_speed: np.ndarray


def orbit_diagnostics(output_map, thetas, X, Y) -> OrbitDiagnostics:
    r"""‖D‖_op, the Rayleigh quotient ρ (3.1) and the adapted output speed at each saved θ.

    Args:
        output_map: `output_map(theta, X) -> x`.  thetas: saved θ as rows, shape `(T, K)`.
        X: inputs `(N, M)`.  Y: targets `(N, Q)`.

    Returns:
        An `OrbitDiagnostics` (NumPy arrays).
    """
    x, D = jax.vmap(lambda t: outputs_and_jacobian(output_map, t, X))(jnp.asarray(thetas))
    g = jax.vmap(grad_x_cost, in_axes=(0, None))(x, Y)
    speed = jax.vmap(lambda D, g: jnp.linalg.norm(D @ adapted_direction(D, g)))(D, g)
    return OrbitDiagnostics(np.asarray(D), np.asarray(jax.vmap(operator_norm)(D)),
                            np.asarray(jax.vmap(rayleigh_quotient)(D, g)), np.asarray(speed))


def lemma_3_2_problems(X, Y) -> dict:
    r"""Two problems with non-global equilibria (Lemma 3.2): XOR on [2, 1, 1], duplicated inputs on [2, 8, 1].

    XOR: the four corners of [−1, 1]² with labels ξ₁ξ₂.  Duplicates: the first six inputs of
    `X` with the second set equal to the first, and the first two labels of `Y[:, 0]` set to
    +1 and −1 (the same input with two labels: C > 0 at every θ).

    Args:
        X: inputs, shape `(N, 2)`, N ≥ 6.  Y: targets, shape `(N, 1)`.

    Returns:
        `{name: (widths, X, Y)}` with shapes `(4, 2)`, `(4, 1)` and `(6, 2)`, `(6, 1)`.
    """
    X_xor = jnp.array([[-1.0, -1.0], [-1.0, 1.0], [1.0, -1.0], [1.0, 1.0]])
    Xd = np.array(X[:6])
    Xd[1] = Xd[0]
    yd = np.array(np.asarray(Y)[:6, 0])
    yd[0], yd[1] = 1.0, -1.0
    return {"XOR [2,1,1]": ((2, 1, 1), X_xor, (X_xor[:, 0] * X_xor[:, 1])[:, None]),
            "duplicate [2,8,1]": ((2, 8, 1), jnp.asarray(Xd), jnp.asarray(yd[:, None]))}


def equilibrium_searches(problems: dict, key, n_inits: int, *, grad_stop: float, s_first: float, s_max: float,
                         keep_grad: float = 1e-9, keep_cost: float = 1e-6, rank_rtol: float = 1e-8) -> list[dict]:
    r"""`search_equilibrium` from `n_inits` random θ(0) per problem, with the keep test and the rank.

    θ(0) = `init_params`(fold_in(key, 100 + i), widths) for init i.

    Args:
        problems: `{name: (widths, X, Y)}` (e.g. `lemma_3_2_problems`).  key: a `jax.random` key.
        n_inits: inits per problem.  grad_stop, s_first, s_max: as in `search_equilibrium`.
        keep_grad, keep_cost: an end point is kept as a non-global equilibrium when
            |∇_θC| ≤ keep_grad and C > keep_cost.
        rank_rtol: the numerical rank of D[θ_*] counts σ_k > rank_rtol·σ_1.

    Returns:
        One dict per run with keys name, i, e (the `EquilibriumSearch`), kept (bool), rank (int).

    References:
        Lemma 3.2, (3.10).
    """
    n_inits = positive_int(n_inits, "n_inits")
    rows = []
    for name, (w, Xp, Yp) in problems.items():
        for i in range(n_inits):
            e = search_equilibrium(mlp(w), init_params(jax.random.fold_in(key, 100 + i), w), Xp, Yp,
                                   grad_stop=grad_stop, s_first=s_first, s_max=s_max)
            rows.append(dict(name=name, i=i, e=e, kept=e.is_equilibrium(keep_grad, keep_cost),
                             rank=int(np.sum(e.singular_values > rank_rtol * e.singular_values[0]))))
    return rows
