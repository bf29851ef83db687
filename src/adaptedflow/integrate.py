r"""Integration of the flows of `adaptedflow.flows` with diffrax, with events.

`integrate_flow` solves ∂_s θ = F(θ) for any flow in `FLOWS` with an adaptive
Runge–Kutta method (Tsit5 by default) and saves, at requested times s, the parameters,
the outputs x[θ(s)], the cost C(s) and the extreme singular values of D[θ(s)] (the rank
condition (2.1) along the orbit).  Two events can end the solve, each located in time by
bisection on the solver's dense output:

* ``eps``: the first s with C(s) = ε; this is the stopping time s_*(ε) of (2.17).
* rank loss: the first s with log(σ_min(D)/σ_max(D)) = log(`rank_rtol`), for the flows
  that need full rank (`"adapted"`, `"adapted-under"`).  The orbit is then reported, or a
  `RankLossError` raised, instead of integrating an ill-posed field.

The singular values come from one of two sources (`sigma`): the SVD of D (``"svd"``), or,
for an `adaptedflow.mlp` with K ≥ QN, the kernel D Dᵀ read through D without forming it
(``"kernel"``, `kernels.kernel_extreme_singular_values`).  On the structured path
(``jacobian="structured"``) nothing forms D: not the field, not the saves, not the event.

The solve is one `jax.jit` function whose static arguments are the flow, the output map
(an `MLP` compares by value, so equal networks share the compiled solver), `max_steps`,
`pinv_rtol` and the Jacobian method; θ0, the data, the saved times, s1, ε and the
tolerances rtol, atol and `rank_rtol` are traced, so a new tolerance does not recompile.
"""

from __future__ import annotations

from typing import NamedTuple

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import optimistix as optx  # a dependency of diffrax itself, not an extra

from .cost import cost, grad_x_cost, outputs_and_jacobian
from .flows import FLOWS, check_regime, direction
from .kernels import (
    CERTIFY_SAFETY,
    DirectionOptions,
    choose_method,
    direction_with_info,
    is_structured,
    kernel_extreme_singular_values,
    kernel_rank_floor,
    kernel_ratio_certainly_above,
    mlp_outputs_and_ntk,
)
from .numerics import default_rank_rtol
from .pytrees import is_flat_params, route_model
from .validation import RankLossError, positive_int, validate_data


class _TimeBisection(optx.Bisection):
    """Bisection that stops on the width of the bracket in s alone.

    `optx.Bisection` also waits for |event value| < atol, which a steep event function
    (log σ_min/σ_max near a rank loss changes like 1/σ_min) may never meet before the
    bracket reaches the float spacing; an event *time* needs only the bracket."""

    def terminate(self, fn, y, args, options, state, tags):
        del fn, args, options, tags
        return jnp.abs(state.lower - state.upper) < self.atol + self.rtol * jnp.abs(y), optx.RESULTS.successful


#: Tolerance (relative and absolute, in s) of the root finder locating the events.
#: It cannot be much tighter: near C = ε the cost is a difference of nearly equal outputs,
#: so C carries a relative rounding error ≈ eps·|x|/|x − y_ω| and s_* an error
#: ≈ (N/2)·eps·|x|/|x − y_ω|; at C = 1e-9·C(0) that is ~1e-11, and a tolerance of 1e-13
#: made Newton fail to terminate in a prototype.
_EVENT_TOL = 1e-10

#: Flows whose field is undefined when D loses rank; they get a rank-loss event.
_NEEDS_FULL_RANK = ("adapted", "adapted-under")

#: The Runge–Kutta methods `integrate_flow` offers (`solver`), all with dense output for the
#: events: Tsit5 (order 5, 6 new stages per step) and Dopri8 (order 8, 12 new stages), which
#: takes far fewer steps at the tight tolerances of the rate checks.
SOLVERS = {"tsit5": diffrax.Tsit5, "dopri8": diffrax.Dopri8}

#: Where saved singular values and the rank event come from (`integrate_flow`'s `sigma`).
SIGMA_SOURCES = ("auto", "svd", "kernel")

#: With ``sigma="auto"``, an `adaptedflow.mlp` whose D would take more than this many bytes
#: gets its singular values from the kernel even off the structured path (the standard flow
#: at scale): D at QN = 1000, K = 85,002 is 680 MB, and its SVD asked XLA for 58 GB.
SVD_MAX_BYTES = 2**28

#: The smallest σ_min/σ_max the rank event's logarithm is taken of (it is then finite).
_RATIO_FLOOR = 1e-300


class Orbit(NamedTuple):
    r"""A solved orbit θ(s).  Saved arrays have T rows, one per saved time reached.

    Attributes:
        s: saved times, shape `(T,)`.
        theta: θ(s), shape `(T, K)`.
        x: outputs x[θ(s)], shape `(T, QN)`.
        cost: C[x[θ(s)]], shape `(T,)`.
        sigma_min, sigma_max: smallest (the QN-th, or K-th when K < QN) and largest
            singular values of D[θ(s)], shape `(T,)`, from the SVD of D or from the kernel
            (`sigma_source`).
        s_end: where the solve ended (s1, the ε-event time, or the rank-loss time).
        theta_end: θ(s_end), shape `(K,)`; cost_end: C(s_end).
        stop: `"s1"`, `"eps"` or `"rank-loss"`.
        n_steps: accepted steps of the integrator.
        flow: the flow's name; rtol, atol: the integrator's tolerances.
        sigma_source: ``"svd"`` or ``"kernel"``: where `sigma_min`, `sigma_max` and the
            rank event came from.  jacobian: how the field got D (``"structured"``,
            ``"dense"``); rank_rtol: the rank event's threshold.
        dt_last: the length of the last accepted step before the final one (an event or
            s1 may shorten that), NaN after fewer than two steps: pass it as `dt0` to
            continue the orbit from `theta_end` without the step-size ramp of a cold start.
        params, params_end: for a pytree model, θ(s) and θ(s_end) in the model's
            structure: every trained leaf with a leading axis of T saved times (`params`),
            and as at θ0 (`params_end`); `theta` and `theta_end` are then flat in
            `jax.tree_util` order (`adaptedflow.pytrees.flat_model`).  None for a flat θ0.
    """

    s: np.ndarray
    theta: np.ndarray
    x: np.ndarray
    cost: np.ndarray
    sigma_min: np.ndarray
    sigma_max: np.ndarray
    s_end: float
    theta_end: np.ndarray
    cost_end: float
    stop: str
    n_steps: int
    flow: str
    rtol: float
    atol: float
    sigma_source: str = "svd"
    jacobian: str = "dense"
    rank_rtol: float = float("nan")
    dt_last: float = float("nan")
    params: object = None
    params_end: object = None


def extreme_singular_values(output_map, theta, X, source: str = "svd"):
    r"""(σ_min, σ_max) of D[θ] (1.20): the min(QN, K)-th and the largest singular value.

    ``"svd"`` takes the SVD of D; ``"kernel"`` never forms D (an `adaptedflow.mlp` with
    K ≥ QN; `kernels.kernel_extreme_singular_values`): σ_max from the kernel D Dᵀ's
    largest eigenvalue, σ_min by Rayleigh–Ritz through D on the kernel's smallest
    eigenvectors.  Either way the singular vectors are held constant under
    differentiation, so a derivative through the result is that of the singular values.

    Returns:
        `(sigma_min, sigma_max)`, scalars.
    """
    if source == "kernel":
        return kernel_extreme_singular_values(output_map, theta, X)
    D = outputs_and_jacobian(output_map, theta, X)[1]
    Vt = jax.lax.stop_gradient(jnp.linalg.svd(jax.lax.stop_gradient(D), full_matrices=False)[2])
    return jnp.linalg.norm(D @ Vt[-1]), jnp.linalg.norm(D @ Vt[0])


def rank_event_value(output_map, theta, X, rank_rtol, source: str = "svd"):
    r"""log(σ_min(D)/σ_max(D)) − log(`rank_rtol`): positive while the rank condition (2.1)
    holds with margin `rank_rtol`, zero at the rank-loss time the integrator locates.

    From the kernel, far from the threshold only the sign matters: where one shifted
    Cholesky factorisation certifies σ_min/σ_max ≥ 1.8·t with t = max(`rank_rtol`,
    10·sqrt(QN·eps)) (`kernels.kernel_ratio_certainly_above`, tested at 2t), the value is
    log(1.8·t/`rank_rtol`) > 0 — no larger than the true value, with its sign.  Elsewhere the
    extreme singular values are measured (`kernels.kernel_extreme_singular_values`), σ_min
    through D where the kernel's own estimate is below 1e3·`rank_rtol`.  Bisection, which
    locates the event, reads only signs; near the root the value is the measured one.  The
    certificate costs about 0.75 of a field evaluation at QN = 1000 (the kernel and one
    factorisation), the measurement about 3."""
    if source == "kernel":
        G = mlp_outputs_and_ntk(output_map, theta, X)[1]
        t = jnp.maximum(rank_rtol, 10 * kernel_rank_floor(G.shape[0]))
        certain = kernel_ratio_certainly_above(G, 2 * t)

        def measured():
            smin, smax = kernel_extreme_singular_values(output_map, theta, X, through_d_below=1e3 * rank_rtol)
            return jnp.log(jnp.maximum(smin / smax, _RATIO_FLOOR)) - jnp.log(rank_rtol)

        return jax.lax.cond(certain, lambda: jnp.log(2 * CERTIFY_SAFETY * t / rank_rtol), measured)
    else:
        smin, smax = extreme_singular_values(output_map, theta, X, source)
    return jnp.log(jnp.maximum(smin / smax, _RATIO_FLOOR)) - jnp.log(rank_rtol)


def sigma_source(sigma: str, output_map, flow: str, jacobian: str, K: int, QN: int) -> str:
    r"""Where the singular values come from: ``"kernel"`` or ``"svd"`` (see `integrate_flow`)."""
    if sigma not in SIGMA_SOURCES:
        raise ValueError(f"`sigma` must be one of {SIGMA_SOURCES}; got {sigma!r}.")
    kernel_ok = is_structured(output_map) and K >= QN
    if sigma == "kernel" and not kernel_ok:
        raise ValueError(f"`sigma='kernel'` needs an MLP made by `adaptedflow.mlp` with K ≥ QN; got K = {K}, "
                         f"QN = {QN}{'' if is_structured(output_map) else ' and another output map'}. Use 'svd'.")
    if sigma != "auto":
        return sigma
    if kernel_ok and (jacobian == "structured" or 8 * K * QN > SVD_MAX_BYTES):
        return "kernel"
    return "svd"


def _vector_field(flow, output_map, jacobian, pinv_rtol):
    """∂ₛθ = F(θ) for diffrax; the Jacobian is materialised only where the flow needs it."""
    if flow == "standard":                       # −Dᵀ∇ₓC is one vector–Jacobian product
        def field(s, theta, args):
            X, Y = args[0], args[1]
            x, vjp = jax.vjp(lambda t: output_map(t, X), theta)
            return -vjp(grad_x_cost(x, Y))[0]
    elif jacobian == "structured":               # layer-wise kernel, u = −Dᵀα by one VJP
        options = DirectionOptions(method="structured", pinv_rtol=pinv_rtol)

        def field(s, theta, args):
            return direction_with_info(output_map, flow, options, theta, args[0], args[1]).u
    else:
        def field(s, theta, args):
            X, Y = args[0], args[1]
            x, D = outputs_and_jacobian(output_map, theta, X)
            return direction(flow, D, grad_x_cost(x, Y), rank_rtol=pinv_rtol)
    return field


def _event_names(flow: str, with_eps: bool) -> tuple[str, ...]:
    """The events of a solve, in the order of the final save's ``events``."""
    return (("eps",) if with_eps else ()) + (("rank-loss",) if flow in _NEEDS_FULL_RANK else ())


def _solve(theta0, X, Y, ts, s1, eps, rtol, atol, rank_rtol, dt0, *, flow, output_map, max_steps, with_eps, pinv_rtol,
           jacobian, sigma, solver="tsit5"):
    """One diffrax solve: `(ts, ys, result, n_accepted_steps, last_full_step)` (see `compiled_solve`).

    `dt0` is the first step, or NaN for the controller's own choice (Hairer's algorithm,
    two field evaluations); both take the same compiled code.  `last_full_step` is the
    length of the last accepted step before the final one (which an event or s1 may
    shorten), NaN after fewer than two steps: a warm start for a continuation.

    The events (`conds`) are combined into one, their minimum, which first
    crosses zero where the earliest of them does; the final save holds each one's value,
    in the order of `_event_names`, so the caller can tell which it was."""
    field = _vector_field(flow, output_map, jacobian, pinv_rtol)

    def save(s, theta, args):
        X, Y = args[0], args[1]
        x = output_map(theta, X)
        smin, smax = extreme_singular_values(output_map, theta, X, sigma)
        return dict(theta=theta, x=x, cost=cost(x, Y), sigma_min=smin, sigma_max=smax)

    conds = {}
    if with_eps:
        conds["eps"] = lambda y, args: cost(output_map(y, args[0]), args[1]) - args[2]
    if flow in _NEEDS_FULL_RANK:
        conds["rank-loss"] = lambda y, args: rank_event_value(output_map, y, args[0], args[3], sigma)
    names = _event_names(flow, with_eps)

    def save_final(s, theta, args):
        return dict(save(s, theta, args), events=jnp.stack([conds[n](theta, args) for n in names])
                    if names else jnp.zeros((0,), theta.dtype))

    event = None
    if conds:
        # One scalar event function, the minimum of the conditions (each > 0 before its
        # event), located by bisection on the dense output: a bracket is guaranteed (the
        # function changed sign over the step), and no derivative of σ or C is needed.
        def cond_fn(t, y, args, **kwargs):
            return jnp.min(jnp.stack([conds[n](y, args) for n in names]))

        event = diffrax.Event(cond_fn, root_finder=_TimeBisection(rtol=_EVENT_TOL, atol=_EVENT_TOL))
    term, rk = diffrax.ODETerm(field), SOLVERS[solver]()
    controller = diffrax.PIDController(rtol=rtol, atol=atol)
    args = (X, Y, eps, rank_rtol)

    def select_first_step():
        tnext = controller.init(term, 0.0, s1, theta0, None, args, rk.func, rk.error_order(term))[0]
        return jnp.asarray(tnext, theta0.dtype)

    first = jax.lax.cond(jnp.isnan(dt0), select_first_step, lambda: jnp.minimum(dt0, s1).astype(theta0.dtype))
    sol = diffrax.diffeqsolve(
        term,
        rk,
        t0=0.0,
        t1=s1,
        dt0=first,
        y0=theta0,
        args=args,
        saveat=diffrax.SaveAt(subs=[diffrax.SubSaveAt(ts=ts, fn=save), diffrax.SubSaveAt(t1=True, fn=save_final),
                                    diffrax.SubSaveAt(steps=True, fn=lambda s, theta, args: s)]),
        stepsize_controller=controller,
        event=event,
        max_steps=max_steps,
        throw=False,
    )
    n = sol.stats["num_accepted_steps"]
    ends = sol.ys[2]                  # the end of every accepted step; unused rows are inf
    previous = lambda k: jnp.where(k >= 0, ends[jnp.maximum(k, 0)], 0.0)
    last_full = jnp.where(n >= 2, previous(n - 2) - previous(n - 3), jnp.nan)
    return sol.ts[:2], sol.ys[:2], sol.result, n, last_full


#: The integrator's solve under `jax.jit`.  Static (keyword) arguments: `flow`, `output_map`,
#: `max_steps`, `with_eps`, `pinv_rtol`, `jacobian`, `sigma`, `solver`; traced: θ0, X, Y, the saved times, s1, ε,
#: rtol, atol, `rank_rtol` and the first step, so new tolerances reuse the compiled solver.
compiled_solve = jax.jit(_solve, static_argnames=("flow", "output_map", "max_steps", "with_eps", "pinv_rtol",
                                                  "jacobian", "sigma", "solver"))


_compiled_extremes = jax.jit(lambda output_map, source, theta, X: extreme_singular_values(output_map, theta, X, source),
                             static_argnums=(0, 1))


def _validate(flow, output_map, theta0, X, Y):
    if flow not in FLOWS:
        raise ValueError(f"`flow` must be one of {sorted(FLOWS)}; got {flow!r}.")
    theta0, X, Y = validate_data(theta0, X, Y)
    if is_structured(output_map):
        widths, K = output_map.widths, output_map.num_params
        if theta0.shape[0] != K or X.shape[1] != widths[0]:
            raise ValueError(
                f"the MLP with widths {list(widths)} takes `theta0` of shape ({K},) (K of (1.5)) and `X` of shape "
                f"(N, {widths[0]}); got {theta0.shape} and {X.shape}. Use `af.init_params(key, {tuple(widths)})`."
            )
    try:
        x0 = output_map(theta0, X)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"`output_map` cannot be evaluated on `theta0` of shape {theta0.shape} and `X` of shape "
            f"{X.shape}: {exc}"
        ) from exc
    if x0.shape != (Y.size,):
        raise ValueError(
            f"`output_map(theta0, X)` has shape {x0.shape} but `Y` of shape {Y.shape} needs outputs of "
            f"shape ({Y.size},) = (QN,). Check the output width Q of the network against `Y`."
        )
    check_regime(flow, theta0.shape[0], Y.size)
    return theta0, X, Y


def _rank_message(flow, s, smin, smax, rank_rtol, QN, K):
    which = QN if flow == "adapted" else K
    eq = "(1.30)" if flow == "adapted" else "(5.2)"
    return (
        f"rank loss at s = {s:.6g}: the {which}-th (smallest) singular value of D is "
        f"σ_min = {smin:.3e}, σ_min/σ_max = {smin / smax:.3e} < rank_rtol = {rank_rtol:.1e}. "
        f"`flow={flow!r}` {eq} needs rank D = {which}; use `flow='least-squares'` (4.6) to continue "
        f"through rank loss, or pass `on_rank_loss='stop'` to keep the orbit up to s."
    )


def integrate_flow(flow: str, output_map, theta0, X, Y, *, s1: float, ts=None, n_save: int = 201,
                   eps: float | None = None, rtol: float = 1e-12, atol: float = 1e-14,
                   max_steps: int = 100_000, rank_rtol: float = 1e-7, pinv_rtol: float | None = None,
                   on_rank_loss: str = "raise", jacobian: str = "auto", sigma: str = "auto",
                   solver: str = "tsit5", dt0: float | None = None) -> Orbit:
    r"""Integrate ∂_s θ = F(θ), θ(0) = θ0, for a flow of `FLOWS` on [0, s1].

    Args:
        flow: `"standard"` (1.9), `"adapted"` (1.30), `"adapted-under"` (5.2) or
            `"least-squares"` (4.6).
        output_map: `output_map(theta, X) -> x`, e.g. `adaptedflow.mlp(widths)`.  With a
            pytree `theta0`: the model's `apply(params, X) -> outputs` of shape `(N, Q)` or
            `(QN,)`, or None when `theta0` is the model itself, applied row-wise; a
            recognised dense stack (`adaptedflow.pytrees.structured_view`) gets the
            layer-wise kernel under `jacobian="auto"` or ``"structured"``.
        theta0: θ(0), shape `(K,)`, float64; or any pytree of float64 arrays (then the
            orbit also holds `params` and `params_end` in that structure).
        X: inputs, shape `(N, M)`.  Y: targets y_{ω(j)}, shape `(N, Q)`.
        s1: final time.
        ts: times to save at, increasing in [0, s1]; default `n_save` equispaced times.
        eps: if given, stop at the first s with C(s) ≤ eps (event with root finding).
        rtol, atol: tolerances of the adaptive step-size controller on θ.  The
            absolute tolerance bounds what can be resolved as C → 0: keep it tight.  They
            are traced, as are θ0, the data, `ts` (for a given number of times), `s1`,
            `eps` and `rank_rtol`: a new value reuses the compiled solver.  A new flow,
            output map (an `MLP` compares by value), `max_steps`, `pinv_rtol` or
            `jacobian` compiles once more.
        max_steps: the most steps the solver may take before giving up (then an error).
        rank_rtol: for `"adapted"` / `"adapted-under"`, stop where σ_min(D)/σ_max(D)
            falls to `rank_rtol`, located in time by root finding (tolerance 1e-10 in s).
            The default 1e-7 keeps κ(D) ≤ 1e7; above κ = `linalg.KAPPA_SWITCH` the
            direction's Cholesky solve refines to convergence (error ≈ κ·eps, reported in
            `DirectionInfo.refinements`).  Both sources of σ resolve this threshold: the
            SVD of D, and the kernel read through D (its Rayleigh quotients |Dᵀv| do not
            square κ, unlike eigenvalues of D Dᵀ, which stop at sqrt(QN·eps) ≈ 4.7e-7 at
            QN = 1000).
        pinv_rtol: the pseudo-inverse cut-off of `"least-squares"` (default max(QN,K)·eps).
        on_rank_loss: `"raise"` (default) raises `RankLossError`; `"stop"` returns the
            orbit up to the rank loss with `stop="rank-loss"`.
        jacobian: how the adapted fields get D: `"structured"` (the layer-wise kernel
            D Dᵀ of `adaptedflow.kernels`, no D formed; its rank test resolves
            σ_min/σ_max down to ≈ sqrt(QN·eps)), `"dense"` (D by reverse mode, rank from
            the SVD of D), or `"auto"`: the choice of `kernels.choose_method` —
            structured for `adaptedflow.mlp` maps with K ≥ QN ((1.30), and (4.6) when
            `pinv_rtol` ≥ 10·sqrt(QN·eps)), dense otherwise.  The standard flow (1.9)
            is one VJP either way.
        sigma: where the saved σ_min, σ_max and the rank event come from: ``"svd"`` (the
            SVD of D), ``"kernel"`` (an `adaptedflow.mlp` with K ≥ QN: extreme singular
            vectors from the kernel, singular values |Dᵀv| measured through D; no D
            formed), or ``"auto"``: the kernel on the structured path and wherever D
            would exceed `SVD_MAX_BYTES` (256 MB), the SVD otherwise.
        solver: ``"tsit5"`` (default) or ``"dopri8"`` (`SOLVERS`), the adaptive Runge–Kutta
            method; at rtol ≈ 1e-12 the order-8 method needs far fewer field evaluations
            and rank-event evaluations (one per accepted step).
        dt0: the first step in s; None (default) for the controller's choice (Hairer's
            initial-step algorithm).  A continuation may pass the previous piece's
            `Orbit.dt_last`: a cold start begins with a small step and grows it by at most
            10× per step, about ten extra Dopri8 steps per restart at rtol 1e-14 on the
            digits; those extra steps are also extra accuracy, so a warm continuation needs
            a tighter tolerance for the same error (`paper.scale.cut_orbit`, `warm`).

    Returns:
        An `Orbit`.

    Raises:
        ValueError: bad shapes, non-finite data, a flow that does not fit K and QN,
            eps ≤ 0.
        RankLossError: rank lost at θ0, or along the orbit with `on_rank_loss="raise"`.
        RuntimeError: the solver hit `max_steps` or produced non-finite values.
    """
    if output_map is None or not is_flat_params(theta0):        # a pytree model: through its flat view
        kernel = "auto" if jacobian == "auto" or (sigma == "kernel" and jacobian == "dense") else jacobian
        route = route_model(output_map, theta0, X, Y, kernel)
        orbit = integrate_flow(flow, route.output_map, route.theta0, X, Y, s1=s1, ts=ts, n_save=n_save, eps=eps,
                               rtol=rtol, atol=atol, max_steps=max_steps, rank_rtol=rank_rtol, pinv_rtol=pinv_rtol,
                               on_rank_loss=on_rank_loss, jacobian=jacobian, sigma=sigma, solver=solver, dt0=dt0)
        return orbit._replace(theta=route.to_tree_theta(orbit.theta), theta_end=route.to_tree_theta(orbit.theta_end),
                              params=route.to_params(orbit.theta), params_end=route.to_params(orbit.theta_end))
    theta0, X, Y = _validate(flow, output_map, theta0, X, Y)
    K, QN = theta0.shape[0], Y.size
    if on_rank_loss not in ("raise", "stop"):
        raise ValueError(f"`on_rank_loss` must be 'raise' or 'stop'; got {on_rank_loss!r}.")
    if not np.isfinite(s1) or s1 <= 0:
        raise ValueError(f"`s1` must be a positive finite time; got {s1!r}.")
    if eps is not None and not eps > 0:
        raise ValueError(f"`eps` must be > 0 (C ≥ 0, so C ≤ eps ≤ 0 means an exact zero); got {eps!r}.")
    max_steps = positive_int(max_steps, "max_steps")
    ts = np.linspace(0.0, s1, positive_int(n_save, "n_save")) if ts is None else np.asarray(ts, dtype=np.float64)
    if ts.ndim != 1 or ts.size == 0 or np.any(np.diff(ts) <= 0) or ts[0] < 0 or ts[-1] > s1:
        raise ValueError("`ts` must be a non-empty increasing 1-D array of times in [0, s1].")
    if not (np.isfinite(rank_rtol) and 0 < rank_rtol < 1):
        raise ValueError(f"`rank_rtol` must be in (0, 1); got {rank_rtol!r}.")
    if jacobian not in ("auto", "dense", "structured"):
        raise ValueError(f"`jacobian` must be 'auto', 'dense' or 'structured'; got {jacobian!r}.")
    if solver not in SOLVERS:
        raise ValueError(f"`solver` must be one of {sorted(SOLVERS)}; got {solver!r}.")
    if dt0 is not None and not (np.isfinite(dt0) and dt0 > 0):
        raise ValueError(f"`dt0` must be a positive finite step or None; got {dt0!r}.")
    if jacobian == "structured" and not is_structured(output_map):
        raise ValueError("`jacobian='structured'` needs an MLP made by `adaptedflow.mlp`; use 'dense'.")
    pinv_rtol = default_rank_rtol((QN, K)) if pinv_rtol is None else float(pinv_rtol)
    if flow == "standard":
        jacobian = "dense"                      # one VJP per evaluation; no D, no kernel
    elif jacobian == "auto":
        jacobian = choose_method(output_map, flow, "auto", K, QN, pinv_rtol)[0]
    else:
        jacobian = choose_method(output_map, flow, jacobian, K, QN, pinv_rtol)[0]
    source = sigma_source(sigma, output_map, flow, jacobian, K, QN)
    if flow in _NEEDS_FULL_RANK:
        smin, smax = (float(v) for v in _compiled_extremes(output_map, source, theta0, X))
        if not smin >= rank_rtol * smax:
            raise RankLossError("at θ0, " + _rank_message(flow, 0.0, smin, smax, rank_rtol, QN, K))
    f64 = lambda v: jnp.asarray(v, dtype=jnp.float64)
    names = _event_names(flow, eps is not None)
    ts_out, ys, result, n_steps, dt_last = compiled_solve(
        theta0, X, Y, jnp.asarray(ts), f64(s1), f64(0.0 if eps is None else eps), f64(rtol), f64(atol),
        f64(rank_rtol), f64(np.nan if dt0 is None else dt0), flow=flow, output_map=output_map,
        max_steps=max_steps, with_eps=eps is not None, pinv_rtol=pinv_rtol, jacobian=jacobian, sigma=source,
        solver=solver)
    saved, final = ys
    s_end = float(ts_out[1][-1])
    stop = "s1"
    if result == diffrax.RESULTS.event_occurred:       # the event whose function is (closest to) zero
        stop = names[int(np.argmin(np.asarray(final["events"][-1])))]
    if not (result == diffrax.RESULTS.successful or result == diffrax.RESULTS.event_occurred):
        msg = str(diffrax.RESULTS[result]).rstrip(".")
        raise RuntimeError(
            f"`integrate_flow` ({flow}) failed at s = {s_end:.6g} before s1 = {s1}: {msg}. "
            f"If the solver ran out of steps, raise `max_steps` (now {max_steps}) or loosen rtol/atol."
        )
    reached = np.asarray(ts_out[0]) <= s_end * (1 + 1e-15)
    saved = {k: np.asarray(v)[reached] for k, v in saved.items()}
    theta_end = np.asarray(final["theta"][-1])
    cost_end = float(final["cost"][-1])
    if not (np.all(np.isfinite(saved["cost"])) and np.isfinite(cost_end) and np.all(np.isfinite(theta_end))):
        raise RuntimeError(f"`integrate_flow` ({flow}) produced non-finite values before s = {s_end:.6g}.")
    if stop == "rank-loss" and on_rank_loss == "raise":
        smin, smax = float(final["sigma_min"][-1]), float(final["sigma_max"][-1])
        raise RankLossError(_rank_message(flow, s_end, smin, smax, rank_rtol, QN, K))
    return Orbit(s=np.asarray(ts_out[0])[reached], theta=saved["theta"], x=saved["x"], cost=saved["cost"],
                 sigma_min=saved["sigma_min"], sigma_max=saved["sigma_max"], s_end=s_end,
                 theta_end=theta_end, cost_end=cost_end, stop=stop, n_steps=int(n_steps), flow=flow,
                 rtol=float(rtol), atol=float(atol), sigma_source=source, jacobian=jacobian,
                 rank_rtol=float(rank_rtol), dt_last=float(dt_last))


def first_passage_times(flow: str, output_map, theta0, X, Y, eps, *, s1: float, **kwargs) -> np.ndarray:
    r"""Measured stopping times s_*(ε) of (2.17) for several thresholds, in one sweep.

    The flow is autonomous, so the orbit is integrated once: from θ(0) to the event
    C = ε_1, restarted there to the event C = ε_2 < ε_1, and so on; each s_*(ε_k) is
    the sum of the event times of the segments.  Every event is located by bisection
    on the solver's dense output.

    Args:
        eps: thresholds, shape `(E,)`, each with 0 < ε < C(0) (any order).
        s1: give up at s = s1: thresholds not reached by then get `inf`.
        **kwargs: passed to `integrate_flow` (tolerances, `rank_rtol`, …).

    Returns:
        s_*(ε) for each ε, shape `(E,)`, in the order given.

    Raises:
        ValueError: some ε ≤ 0, or ε ≥ C(0) (then s_*(ε) = 0 by (2.21): nothing to measure).
    """
    theta0, Xa, Ya = _validate(flow, output_map, theta0, X, Y)
    eps = np.atleast_1d(np.asarray(eps, dtype=np.float64))
    C0 = float(cost(output_map(theta0, Xa), Ya))
    if eps.ndim != 1 or not np.all((eps > 0) & (eps < C0)):
        raise ValueError(
            f"every `eps` must satisfy 0 < eps < C(0) = {C0:.6g}; got {eps}. "
            f"For eps ≥ C(0), s_*(eps) = 0 (2.21)."
        )
    order = np.argsort(-eps)
    times = np.full(eps.shape, np.inf)
    s_done, theta = 0.0, theta0
    for k in order:
        if s_done >= s1:
            break
        if float(cost(output_map(theta, Xa), Ya)) <= eps[k]:   # an equal threshold, met already
            times[k] = s_done
            continue
        orbit = integrate_flow(flow, output_map, theta, Xa, Ya, s1=s1 - s_done, eps=float(eps[k]),
                               n_save=2, **kwargs)
        if orbit.stop != "eps":
            break
        s_done += orbit.s_end
        theta = jnp.asarray(orbit.theta_end)
        times[k] = s_done
    return times


def first_passage_time(flow: str, output_map, theta0, X, Y, eps: float, *, s1: float, **kwargs) -> float:
    r"""The measured stopping time s_*(ε) = inf{s ≥ 0 : C[x[θ(s)]] ≤ ε} of (2.17).

    One integration, stopped by a diffrax event located by bisection on the dense
    solution; `first_passage_times` measures many thresholds in one sweep.

    Args:
        eps: the threshold ε, with 0 < ε < C(0).
        s1: give up at s1: returns `inf` if C(s) > ε on [0, s1].
        **kwargs: passed to `integrate_flow` (tolerances, `rank_rtol`, …).

    Raises:
        ValueError: ε ≤ 0, or ε ≥ C(0) (then s_*(ε) = 0 by (2.21): nothing to measure).
    """
    return float(first_passage_times(flow, output_map, theta0, X, Y, [eps], s1=s1, **kwargs)[0])


def integrate_until(flow: str, output_map, theta0, X, Y, *, converged, s_first: float, s_max: float,
                    n_save: int = 101, **kwargs) -> Orbit:
    r"""Integrate a flow until a stated stopping test holds, or until `s_max`.

    A *convergence* claim runs to a test, never for a fixed horizon: the orbit is solved
    on [0, s_first], then on segments that double in length ([s_first, 3 s_first], …),
    and after each segment `converged(theta)` is evaluated at its end point.  The flows
    are autonomous, so restarting a segment from its end point continues the same orbit
    (to the integrator's tolerance).

    Args:
        flow, output_map, theta0, X, Y: as for `integrate_flow`.
        converged: the stopping test, `converged(theta) -> bool` (e.g. |∇_θC| ≤ tol, or
            |P_r∇ₓC| ≤ tol).
        s_first: length of the first segment (> 0).
        s_max: the longest time the orbit is followed; an orbit that has not passed the
            test by then is returned with ``stop="s_max"``: reported, not raised.
        n_save: saved points per segment.
        **kwargs: passed to `integrate_flow` (rtol, atol, eps, rank_rtol, on_rank_loss, …).

    Returns:
        An `Orbit` over the whole time, whose `stop` is ``"converged"`` (the test held at
        `s_end`), ``"s_max"`` (it never held), or the stop of the last segment when an
        event ended it early (``"eps"`` or ``"rank-loss"``).  `n_steps` is summed.

    Raises:
        ValueError: s_first or s_max not positive and finite, or s_first > s_max.
    """
    if not (np.isfinite(s_first) and np.isfinite(s_max) and 0 < s_first <= s_max):
        raise ValueError(f"need 0 < s_first ≤ s_max < ∞; got s_first = {s_first!r}, s_max = {s_max!r}.")
    parts: list[Orbit] = []
    offset, length, theta, n_steps = 0.0, float(s_first), theta0, 0
    stop = "s_max"
    if converged(np.asarray(theta0)):
        length = 0.0                                   # already there: one tiny segment for the arrays
    while True:
        seg_len = min(length, s_max - offset) if length > 0 else min(s_first, s_max) * 1e-12
        orbit = integrate_flow(flow, output_map, theta, X, Y, s1=seg_len, n_save=n_save, **kwargs)
        parts.append(orbit._replace(s=orbit.s + offset))
        n_steps += orbit.n_steps
        offset += orbit.s_end
        theta = orbit.theta_end
        if orbit.stop != "s1":
            stop = orbit.stop
            break
        if converged(np.asarray(theta)):
            stop = "converged"
            break
        if offset >= s_max * (1 - 1e-12):
            break
        length *= 2.0
    cat = lambda name: np.concatenate([getattr(parts[0], name)] + [getattr(p, name)[1:] for p in parts[1:]])
    last = parts[-1]
    return last._replace(s=cat("s"), theta=cat("theta"), x=cat("x"), cost=cat("cost"),
                         sigma_min=cat("sigma_min"), sigma_max=cat("sigma_max"), s_end=offset,
                         stop=stop, n_steps=n_steps)


def output_error_budget(orbit: Orbit, scale: float) -> float:
    r"""A bound on the integrator's error in the outputs along an orbit whose output
    dynamics contracts (the comparison model (1.11), the adapted flows (1.31), (4.7)),
    relative to `scale` (usually |x(0) − y_ω|).

    The step-size controller keeps each step's error estimate e in θ at an RMS norm
    ≤ 1 against atol + rtol·|θ|, so |e|₂ ≤ √K (atol + rtol·max|θ|).  That moves the
    outputs by at most σ_max(D)|e|₂.  In the output layer the flow is
    ∂_s x = −(x − y_ω)/N (or its projection), a contraction for *every* θ, so an
    output error committed at one step does not grow later: the errors of the
    `n_steps` steps add up at most.  Second-order terms (the change of D across a step)
    are neglected.

    Returns:
        n_steps · max σ_max(D) · √K · (atol + rtol·max|θ|) / scale.
    """
    K = orbit.theta.shape[1]
    theta_max = float(np.max(np.abs(orbit.theta)))
    sigma = float(np.max(orbit.sigma_max))
    return orbit.n_steps * sigma * np.sqrt(K) * (orbit.atol + orbit.rtol * theta_max) / float(scale)


def cost_error_budget(output_error, floor):
    r"""The relative error of C(s) implied by a relative output error τ, while
    C ≥ floor·C(0) along the comparison decay (arrays broadcast).

    With r = |x − y_ω| = |x(0) − y_ω|e^{−s/N} and an output error δ ≤ τ|x(0) − y_ω|,
    |C/C_exact − 1| = |2⟨r, δ⟩ + |δ|²|/|r|² ≤ 2τ/ρ + τ²/ρ², ρ = |r|/|x(0) − y_ω| ≥ sqrt(floor).

    Returns:
        2τ/√floor + τ²/floor.
    """
    rho = np.sqrt(np.asarray(floor, dtype=np.float64))
    return 2.0 * output_error / rho + (output_error / rho) ** 2
