r"""Theorems 2.1 and 2.3 at a practitioner's size (the chapter on the rate at scale).

* `cut_orbit`: one adapted orbit (2.4) integrated decade by decade, stopped by a located
  event at each C = C(0)·ratio and restarted there: saved points for the rate (2.6), the
  measured stopping times s_*(ε) of (2.17) and, with a clock passed in, the wall-clock
  time to each target.
* `piece_tolerances`: the integrator tolerances of those pieces, tapered towards the end.
* `join_orbits`: consecutive `Orbit` pieces as one.
* `fixed_step_solver`: Tsit5 with a fixed step and the direction by a chosen method of
  `adaptedflow.kernels` (the matrix-free stretch), compiled and bound to θ(0).

Nothing here reads a clock: a chapter that times passes its own (`timer`).
"""

from __future__ import annotations

from typing import Callable, NamedTuple, Sequence

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from ..cost import cost
from ..integrate import Orbit, integrate_flow
from ..kernels import DirectionOptions, direction_with_info


class CutOrbit(NamedTuple):
    r"""An adapted orbit cut at C = C(0)·ratio (see `cut_orbit`).

    Attributes:
        orbit: the joined `Orbit` (saved points of every piece, steps summed).
        times: measured s_*(C(0)·ratio), shape `(E,)`; `inf` where not reached.
        seconds: wall-clock seconds to each target by `timer`, shape `(E,)`; `inf` where
            not reached, NaN without a timer.
    """

    orbit: Orbit
    times: np.ndarray
    seconds: np.ndarray


def join_orbits(parts: Sequence[Orbit]) -> Orbit:
    r"""One `Orbit` from consecutive pieces (times already offset): saved arrays concatenated,
    steps summed; the end point and stop are those of the last piece, and rtol, atol the
    loosest of any piece, so that an error budget of the joined orbit
    (`integrate.output_error_budget`: every step at its largest allowed error) stays a bound."""
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])
    return parts[-1]._replace(s=cat("s"), theta=cat("theta"), x=cat("x"), cost=cat("cost"),
                              sigma_min=cat("sigma_min"), sigma_max=cat("sigma_max"),
                              n_steps=sum(p.n_steps for p in parts), rtol=max(p.rtol for p in parts),
                              atol=max(p.atol for p in parts))


def piece_tolerances(ratios, rtol: float, atol: float, taper: float = 0.0) -> np.ndarray:
    r"""The integrator tolerances of the pieces of `cut_orbit`, tapered towards the end.

    Piece k ends at C = C(0)·ratio_k and gets (rtol, atol)·(ratio_k/ratio_min)^taper: the
    last piece gets (rtol, atol), earlier ones looser.  The reason is the rate error's
    weighting.  Along the adapted flow the outputs obey ∂ₛx = −(x − y_ω)/N for every θ, so
    an output error δ committed while |x − y_ω| = ρ|x(0) − y_ω| contracts exactly as the
    residual does, and adds δ/ρ to every later relative residual error, that is 2δ/ρ to
    the relative error of C (`integrate.cost_error_budget`).  With ρ_k = sqrt(ratio_k), a
    tolerance ∝ ρ_k would spread the error evenly over the pieces (each contributing as
    much as the last); taper = 1/4, a tolerance ∝ sqrt(ρ_k), keeps the sum a geometric
    series dominated by the last pieces.  Measured on the digits (N = 100, Dopri8, warm
    restarts, tolerances 1e-15/1e-17 at the last piece, ten decades): taper 0 took 152
    steps for a rate error of 1.9e-10, taper 1/4 took 82 steps for 2.6e-8; cold restarts
    at a uniform 1e-14/1e-16 took 180 steps for 2.2e-8.

    Args:
        ratios: ε/C(0) of the cuts, decreasing, shape `(E,)`.
        rtol, atol: the last piece's tolerances (> 0).
        taper: the exponent, ≥ 0 (0: every piece gets rtol, atol).

    Returns:
        Shape `(E, 2)`: (rtol, atol) of each piece.
    """
    ratios = np.asarray(ratios, dtype=np.float64)
    if not (np.isfinite(taper) and taper >= 0):
        raise ValueError(f"`taper` must be a finite exponent ≥ 0; got {taper!r}.")
    if not (rtol > 0 and atol > 0):
        raise ValueError(f"`rtol` and `atol` must be > 0; got {rtol!r}, {atol!r}.")
    scale = (ratios / ratios.min()) ** taper
    return np.stack([rtol * scale, atol * scale], axis=1)


def cut_orbit(output_map, theta0, X, Y, ratios, *, n_save: int, rtol: float = 1e-10, atol: float = 1e-12,
              taper: float = 0.0, warm: bool = False, timer: Callable[[], float] | None = None,
              **kwargs) -> CutOrbit:
    r"""The adapted orbit (2.4) from θ(0), stopped at each C = C(0)·ratio and restarted there.

    Piece k runs from the event of ratio_{k−1} (ratio_0 = 1) with an ε-event at
    C(0)·ratio_k, `n_save` saved points over its predicted length (N/2) log(ratio_{k−1}/ratio_k)
    of (2.18), and gives up at twice that length.  The flow is autonomous, so the pieces
    are one orbit (to the integrator's tolerance); s_*(ε_k) is the sum of the event times.

    Tolerances: piece k integrates at `piece_tolerances(ratios, rtol, atol, taper)[k]`
    (the last piece at rtol, atol; earlier, looser ones where taper > 0, since their errors
    weigh less in the rate, see there).  Restarts: cold (the controller's own first step,
    which ramps up from a small one) or, with `warm`, from the step the previous piece last
    took (`Orbit.dt_last`).  On the digits at QN = 1000 (Dopri8) cold restarts at 1e-14
    took 180 steps for a rate error of 2.2e-8; warm restarts at 3e-15 took 118 steps for
    1.8e-8; warm at 1e-15 with taper 1/4, 82 steps for 2.6e-8.

    Args:
        output_map, theta0, X, Y: as for `integrate_flow` (X: `(N, M)`, Y: `(N, Q)`).
        ratios: ε/C(0), decreasing, each in (0, 1), shape `(E,)`.
        n_save: saved points per piece (the same for every piece: one compiled solver).
        rtol, atol: the integrator's tolerances on the last piece.
        taper: the exponent of `piece_tolerances` (0: the same tolerances on every piece).
        warm: restart each piece with the previous piece's last step.
        timer: a clock (e.g. `time.perf_counter`) read around each `integrate_flow` call;
            None for no timing.
        **kwargs: passed to `integrate_flow` (rank_rtol, on_rank_loss, solver, …).

    Returns:
        A `CutOrbit`; an orbit stopped otherwise (rank loss, give-up) ends the sweep there.
        Its `orbit.rtol`, `orbit.atol` are the loosest piece's (`join_orbits`).

    Raises:
        ValueError: `ratios` not decreasing in (0, 1); a bad `taper` or tolerance.
    """
    ratios = np.asarray(ratios, dtype=np.float64)
    if ratios.ndim != 1 or ratios.size == 0 or np.any(np.diff(ratios) >= 0) or not 0 < ratios.min() <= ratios.max() < 1:
        raise ValueError(f"`ratios` must decrease strictly in (0, 1); got {ratios}.")
    tolerances = piece_tolerances(ratios, rtol, atol, taper)
    N = X.shape[0]
    C0 = float(cost(output_map(theta0, X), Y))
    times, seconds = np.full(ratios.shape, np.inf), np.full(ratios.shape, np.inf if timer else np.nan)
    parts, s_done, theta, prev, clock, dt0 = [], 0.0, theta0, 1.0, 0.0, None
    for k, r in enumerate(ratios):
        length = 0.5 * N * np.log(prev / r)
        start = timer() if timer else 0.0
        o = integrate_flow("adapted", output_map, theta, X, Y, s1=2 * length, ts=np.linspace(0.0, length, n_save),
                           eps=float(r * C0), rtol=float(tolerances[k, 0]), atol=float(tolerances[k, 1]), dt0=dt0,
                           **kwargs)
        clock += (timer() - start) if timer else 0.0
        parts.append(o._replace(s=o.s + s_done))
        if o.stop != "eps":
            break
        s_done, theta, prev = s_done + o.s_end, jnp.asarray(o.theta_end), r
        if warm and np.isfinite(o.dt_last):
            dt0 = float(o.dt_last)
        times[k] = s_done
        if timer:
            seconds[k] = clock
    return CutOrbit(join_orbits(parts), times, seconds)


def fixed_step_solver(output_map, method: str, theta0, X, Y, *, h: float, n_steps: int) -> Callable[[], np.ndarray]:
    r"""Tsit5 with the fixed step h for the adapted flow (1.30), direction by `method`, compiled.

    Args:
        output_map: an `adaptedflow.mlp`.  method: ``"structured"`` or ``"matrix-free"``
            (`kernels.DirectionOptions`, other options at their defaults).
        theta0: θ(0), shape `(K,)`.  X: `(N, M)`.  Y: `(N, Q)`.
        h: the step in s; n_steps: the number of steps.

    Returns:
        A function of no arguments returning C at s = 0, h, …, n_steps·h, shape
        `(n_steps + 1,)`; compiled before it is returned, so a caller can time a call.
    """
    K, QN = int(theta0.shape[0]), int(Y.size)
    options = DirectionOptions(method=method).resolve(output_map, "adapted", K, QN)[0]
    field = lambda s, th, args: direction_with_info(output_map, "adapted", options, th, X, Y).u
    grid = jnp.asarray(h * np.arange(n_steps + 1))
    solve = jax.jit(lambda th: diffrax.diffeqsolve(
        diffrax.ODETerm(field), diffrax.Tsit5(), 0.0, float(h * n_steps), float(h), th,
        stepsize_controller=diffrax.ConstantStepSize(),
        saveat=diffrax.SaveAt(ts=grid, fn=lambda s, t, a: cost(output_map(t, X), Y))).ys)
    compiled = solve.lower(theta0).compile()
    return lambda: np.asarray(jax.block_until_ready(compiled(theta0)))
