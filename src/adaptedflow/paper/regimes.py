r"""The under-parametrized (§5) and borderline (§6) regimes: identities and constructions.

Under-parametrized, K < QN, rank D = K (Theorem 5.1): the adapted flow is the
continuous-time Gauss–Newton field ∂_s θ = −(DᵀD)⁻¹Dᵀ∇_x C (5.2), which moves the outputs
by ∂_s x = −P̃∇_x C (5.3) with P̃ = D(DᵀD)⁻¹Dᵀ the orthoprojector onto range(D) (5.4).
The functions here return the *residuals* of those identities at one θ, so that a
chapter can measure them along an orbit and compare them with a derived tolerance.

Borderline, K = QN (§6): D is square, D⁺ = D⁻¹ = (DᵀD)⁻¹Dᵀ (6.1), (6.3), and every
formula for the adapted direction gives the same vector (6.2).  `borderline_directions`
evaluates each formula by its own numerical route; `borderline_sizes` finds networks
with K = QN.

All diagnostics are computed in float64 with NumPy from a Jacobian `D` (get it with
`adaptedflow.outputs_and_jacobian`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..cost import cost, outputs_and_jacobian
from ..flows import adapted_direction, adapted_under_direction
from ..integrate import integrate_flow
from ..network import num_params
from ..validation import RankLossError, as_float64_matrix, require_finite

#: The package's two adapted fields, jitted once per shape: called eagerly, their
#: `lax.cond` (the Cholesky fallback of `gram_solve`) would be traced and compiled anew
#: at every call.
_adapted_jit = jax.jit(adapted_direction)
_adapted_under_jit = jax.jit(adapted_under_direction)
_outputs_and_jacobian_jit = jax.jit(outputs_and_jacobian, static_argnums=0)


_as_matrix = as_float64_matrix


def _as_vector(v, n: int, name: str) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    if v.shape != (n,):
        raise ValueError(f"`{name}` must have shape ({n},) to match `D`; got {v.shape}.")
    require_finite(v, name)
    return v


def _require_under(D: np.ndarray) -> None:
    QN, K = D.shape
    if K > QN:
        raise ValueError(f"`D` must be under-parametrized or borderline, K ≤ QN (5.1); got shape (QN, K) = "
                         f"{D.shape}. For K > QN use the over-parametrized projector D⁺D (1.28).")


def condition_number(D) -> float:
    r"""cond(D) = σ_max(D)/σ_min(D) over the min(QN, K) singular values, from the SVD of D itself.

    Returns `inf` when σ_min = 0.  This (not cond(DᵀD) = cond(D)²) sets the accuracy of a
    backward-stable solve with D.
    """
    s = np.linalg.svd(_as_matrix(D), compute_uv=False)
    return float(s[0] / s[-1]) if s[-1] > 0 else float("inf")


def range_projector(D) -> np.ndarray:
    r"""P̃ = D(DᵀD)⁻¹Dᵀ (5.4), the orthoprojector onto range(D), computed as U Uᵀ from the thin SVD.

    The SVD route never forms DᵀD, so P̃ is accurate to ~eps even when cond(D) is large.

    Args:
        D: Jacobian, shape `(QN, K)` with K ≤ QN and rank K.

    Returns:
        P̃, shape `(QN, QN)`, symmetric, P̃² = P̃, trace K.

    Raises:
        ValueError: K > QN, or D not 2-D / not finite.
    """
    D = _as_matrix(D)
    _require_under(D)
    U = np.linalg.svd(D, full_matrices=False)[0]
    return U @ U.T


def gauss_newton_projector(D) -> np.ndarray:
    r"""P̃ by the formula (5.4) as written, D (DᵀD)⁻¹ Dᵀ with a dense solve of the normal equations.

    Its error is ~cond(D)²·eps (DᵀD squares the condition number); compare with
    `range_projector`.  Shape `(QN, QN)`.
    """
    D = _as_matrix(D)
    _require_under(D)
    return D @ np.linalg.solve(D.T @ D, D.T)


def projector_defects(P) -> tuple[float, float]:
    r"""(‖P² − P‖₂, ‖P − Pᵀ‖₂): how far `P`, shape `(n, n)`, is from an orthoprojector (5.4)."""
    P = _as_matrix(P, "P")
    if P.shape[0] != P.shape[1]:
        raise ValueError(f"`P` must be square; got shape {P.shape}.")
    return float(np.linalg.norm(P @ P - P, 2)), float(np.linalg.norm(P - P.T, 2))


class UnderIdentities(NamedTuple):
    r"""Residuals of Theorem 5.1's identities at one θ (all relative, dimensionless).

    Attributes:
        gn_vs_pinv: |v_GN − v_SVD| / |v_SVD|, v_GN = −(DᵀD)⁻¹Dᵀ∇_x C (5.2) by the
            package's Cholesky solve, v_SVD = −D⁺∇_x C by the SVD (4.6).
        output_velocity: |D v_GN + P̃∇_x C| / |∇_x C|, the chain rule (5.3).
        cost_rate: |⟨∇_x C, D v_GN⟩ + |P̃∇_x C|²| / |∇_x C|², i.e. ∂_s C = −|P̃∇_x C|² (5.12).
        idempotent, symmetric: ‖P̃² − P̃‖₂ and ‖P̃ − P̃ᵀ‖₂ for P̃ from (5.4) as written.
        tangential: |P̃∇_x C| / |∇_x C| (→ 0 at a critical point, (5.6)).
        cond: cond(D) from its SVD.
    """

    gn_vs_pinv: float
    output_velocity: float
    cost_rate: float
    idempotent: float
    symmetric: float
    tangential: float
    cond: float


def under_identities(D, grad_x) -> UnderIdentities:
    r"""Evaluate the identities of Theorem 5.1 ((5.2)–(5.4), (5.12)) at one θ.

    Args:
        D: Jacobian D[θ], shape `(QN, K)`, K ≤ QN, rank K.
        grad_x: ∇_x C[x[θ]] (1.23), shape `(QN,)`, nonzero.

    Returns:
        An `UnderIdentities` of relative residuals.  Expected sizes: ~cond(D)·eps for the
        SVD-based ones, ~cond(D)²·eps for those through the normal equations.

    Raises:
        ValueError: K > QN, a shape mismatch, or ∇_x C = 0.
    """
    D = _as_matrix(D)
    _require_under(D)
    g = _as_vector(grad_x, D.shape[0], "grad_x")
    gnorm = float(np.linalg.norm(g))
    if gnorm == 0:
        raise ValueError("`grad_x` is zero: θ is a global minimizer and the relative residuals are undefined.")
    U, s, Vt = np.linalg.svd(D, full_matrices=False)
    v_svd = -Vt.T @ ((U.T @ g) / s)
    v_gn = np.asarray(_adapted_under_jit(D, g))
    Pg = U @ (U.T @ g)
    Dv = D @ v_gn
    P_formula = gauss_newton_projector(D)
    idem, sym = projector_defects(P_formula)
    return UnderIdentities(
        gn_vs_pinv=float(np.linalg.norm(v_gn - v_svd) / np.linalg.norm(v_svd)),
        output_velocity=float(np.linalg.norm(Dv + Pg) / gnorm),
        cost_rate=float(abs(g @ Dv + Pg @ Pg) / gnorm**2),
        idempotent=idem,
        symmetric=sym,
        tangential=float(np.linalg.norm(Pg) / gnorm),
        cond=float(s[0] / s[-1]),
    )


def metric_gradient_residual(D, grad_x, V) -> float:
    r"""Proposition 5.3: max over v of |g(u, v) − dC(v)| / (|D u|·|D v|), g = DᵀD (5.15).

    u = (DᵀD)⁻¹Dᵀ∇_x C = −∂_s θ is the g-gradient of C (5.16)–(5.17); dC(v) = ⟨∇_θ C, v⟩ =
    ⟨∇_x C, D v⟩ (1.21).  The residual is zero in exact arithmetic for every v.

    Args:
        D: shape `(QN, K)`, K ≤ QN, rank K.
        grad_x: ∇_x C, shape `(QN,)`.
        V: test vectors as columns, shape `(K, n)`.

    Returns:
        The largest relative residual over the n columns (a float ≥ 0).
    """
    D = _as_matrix(D)
    _require_under(D)
    g = _as_vector(grad_x, D.shape[0], "grad_x")
    V = np.asarray(V, dtype=np.float64)
    if V.ndim != 2 or V.shape[0] != D.shape[1]:
        raise ValueError(f"`V` must have shape (K, n) = ({D.shape[1]}, n), one test vector per column; "
                         f"got {V.shape}.")
    u = -np.asarray(_adapted_under_jit(D, g))
    Du, DV = D @ u, D @ V
    g_uv = Du @ DV                      # g(u, v) = uᵀ DᵀD v
    dC = g @ DV                         # dC(v) = ∇_x Cᵀ D v
    scale = np.linalg.norm(Du) * np.linalg.norm(DV, axis=0)
    return float(np.max(np.abs(g_uv - dC) / scale))


def critical_residuals(D, x, y) -> tuple[float, float]:
    r"""At a (near-)critical point of (5.2): the residuals of (5.6) and (5.7).

    Args:
        D: shape `(QN, K)`, K ≤ QN.  x: outputs, shape `(QN,)`.  y: targets y_ω, shape `(QN,)`.

    Returns:
        `(tangential, cost_split)`: |P̃(x − y_ω)| / |x − y_ω| (zero at a critical point, (5.6)),
        and |C − |P̃^⊥(x − y_ω)|²/2N| / C (5.7), which equals tangential² exactly since
        |x − y_ω|² = |P̃ r|² + |P̃^⊥ r|² (so (5.7) holds to second order in (5.6)'s residual).
        N is not needed: both sides of (5.7) carry the same 1/2N.
    """
    P = range_projector(D)
    n = P.shape[0]
    r = _as_vector(x, n, "x") - _as_vector(y, n, "y")
    rr = float(r @ r)
    if rr == 0:
        raise ValueError("`x` equals `y`: C = 0, a global minimum, and the relative residuals are undefined.")
    Pr = P @ r
    Pperp_r = r - Pr
    return float(np.linalg.norm(Pr) / np.sqrt(rr)), float(abs(rr - Pperp_r @ Pperp_r) / rr)


# --------------------------------------------------------------------------------------------
# Borderline K = QN (§6)
# --------------------------------------------------------------------------------------------

def borderline_size(widths: Sequence[int]) -> int:
    r"""The number of inputs N with K = QN for `widths` = (M, M_1, …, M_L, Q) (§6).

    Raises:
        ValueError: Q does not divide K (1.5), so no N gives the borderline case.
    """
    widths = tuple(widths)
    K = num_params(widths)
    Q = widths[-1]
    if K % Q:
        raise ValueError(f"`widths` {list(widths)} give K = {K} parameters, not a multiple of Q = {Q}: no N "
                         f"gives K = QN. Change a hidden width (see `borderline_sizes`).")
    return K // Q


def borderline_sizes(Q: int, *, max_M: int = 4, max_width: int = 4, depths: Sequence[int] = (1, 2),
                     max_N: int = 40) -> list[tuple[tuple[int, ...], int]]:
    r"""Networks with K = QN exactly: every `(widths, N)` with Q | K and N ≤ `max_N`.

    Hidden layers have equal width h ≤ `max_width`; input width M ≤ `max_M`.

    Returns:
        A list of `((M, h, …, h, Q), N)`, sorted by N, e.g. `((3, 2, 2), 7)` (K = QN = 14).
    """
    if not isinstance(Q, (int, np.integer)) or Q < 1:
        raise ValueError(f"`Q` must be a positive integer; got {Q!r}.")
    out = []
    for L in depths:
        for M in range(1, max_M + 1):
            for h in range(1, max_width + 1):
                w = (M, *([h] * L), int(Q))
                K = num_params(w)
                if K % Q == 0 and K // Q <= max_N:
                    out.append((w, K // Q))
    return sorted(out, key=lambda t: (t[1], t[0]))


#: The routes to the borderline adapted direction compared by `borderline_directions`.
BORDERLINE_FORMULAS = {
    "adapted (1.30)": "−Dᵀ(DDᵀ)⁻¹∇_x C, Cholesky of DDᵀ + one refinement step (the package's field)",
    "adapted-under (5.2)": "−(DᵀD)⁻¹Dᵀ∇_x C, Cholesky of DᵀD + one refinement step (the package's field)",
    "inverse (6.1)": "−D⁻¹∇_x C, LU with partial pivoting",
    "pseudo-inverse (4.6)": "−D⁺∇_x C from the SVD of D",
    "normal equations (6.3)": "−(DᵀD)⁻¹Dᵀ∇_x C, one dense solve of DᵀD, no refinement",
}


def borderline_directions(D, grad_x) -> dict[str, np.ndarray]:
    r"""The borderline adapted direction (6.2) by each route of `BORDERLINE_FORMULAS`.

    In exact arithmetic all are equal: D⁺ = D⁻¹ = (DᵀD)⁻¹Dᵀ for square invertible D
    (6.1), (6.3).  Backward-stable routes (LU, SVD, refined Cholesky) agree to
    ~cond(D)·eps; the plain normal equations to ~cond(D)²·eps.

    Args:
        D: square Jacobian, shape `(K, K)` (K = QN).
        grad_x: ∇_x C, shape `(K,)`.

    Returns:
        `{name: ∂_s θ}`, each of shape `(K,)`.

    Raises:
        ValueError: D not square.
    """
    D = _as_matrix(D)
    if D.shape[0] != D.shape[1]:
        raise ValueError(f"`D` must be square in the borderline case K = QN (§6); got shape {D.shape}. "
                         f"Choose widths with `borderline_sizes`.")
    g = _as_vector(grad_x, D.shape[0], "grad_x")
    U, s, Vt = np.linalg.svd(D)
    return {
        "adapted (1.30)": np.asarray(_adapted_jit(D, g)),
        "adapted-under (5.2)": np.asarray(_adapted_under_jit(D, g)),
        "inverse (6.1)": -np.linalg.solve(D, g),
        "pseudo-inverse (4.6)": -Vt.T @ ((U.T @ g) / s),
        "normal equations (6.3)": -np.linalg.solve(D.T @ D, D.T @ g),
    }


def relative_spread(directions: dict[str, np.ndarray], reference: str = "pseudo-inverse (4.6)") -> dict[str, float]:
    r"""|d − d_ref| / |d_ref| for each direction in `directions` against `directions[reference]`."""
    if reference not in directions:
        raise ValueError(f"`reference` must be one of {sorted(directions)}; got {reference!r}.")
    ref = directions[reference]
    n = float(np.linalg.norm(ref))
    return {k: float(np.linalg.norm(v - ref) / n) for k, v in directions.items()}


# --------------------------------------------------------------------------------------------
# Orbits that may leave the full-rank region
# --------------------------------------------------------------------------------------------

#: Outcomes reported by `orbit_outcome`.
OUTCOMES = ("s1", "eps", "rank-loss", "rank-loss at start", "stalled")


def orbit_outcome(flow: str, output_map, theta0, X, Y, **kwargs):
    r"""Integrate a flow with `integrate_flow(..., on_rank_loss="stop")` and classify the orbit.

    The adapted fields (1.30), (5.2) blow up like 1/σ_min(D) where D loses rank; an orbit
    running into the singular set is stopped by the rank-loss event.  Near a fold of
    x[·], σ_min ∝ (s_† − s)^{1/2}, so before the event fires the step size may have to
    shrink below what float64 resolves in s; the solver then runs out of steps.  Both are
    counted here instead of being raised.

    Args:
        flow, output_map, theta0, X, Y: as for `adaptedflow.integrate_flow`.
        **kwargs: passed to `integrate_flow` (`s1` is required; `on_rank_loss` is set).

    Returns:
        `(orbit, outcome)`: the `Orbit` (None for the last two outcomes) and one of
        `OUTCOMES`: `"s1"` / `"eps"` (reached the end), `"rank-loss"` (the event fired at
        s = `orbit.s_end`), `"rank-loss at start"` (D[θ0] already below `rank_rtol`),
        `"stalled"` (the solver hit `max_steps`, the stiff approach to rank loss).
    """
    if "on_rank_loss" in kwargs:
        raise ValueError("`orbit_outcome` sets `on_rank_loss='stop'` itself; do not pass it.")
    return _with_outcome(lambda: integrate_flow(flow, output_map, theta0, X, Y, on_rank_loss="stop", **kwargs))


def _with_outcome(solve):
    """Run `solve()` (an integration with ``on_rank_loss="stop"``) and classify how it
    ended: `(orbit, orbit.stop)`, or `(None, "rank-loss at start")` / `(None, "stalled")`."""
    try:
        orbit = solve()
    except RankLossError:
        return None, "rank-loss at start"
    except RuntimeError as exc:
        if "maximum number of" in str(exc) or "max_steps" in str(exc):
            return None, "stalled"
        raise
    return orbit, orbit.stop


@functools.partial(jax.jit, static_argnums=0)
def _newton_step(output_map, theta, X, Y):
    loss = lambda t: cost(output_map(t, X), Y)
    g = jax.grad(loss)(theta)
    H = jax.hessian(loss)(theta)
    return theta - jnp.linalg.solve(H, g)


def newton_critical_point(output_map, theta, X, Y, *, n_iter: int = 8) -> tuple[np.ndarray, np.ndarray]:
    r"""Locate the critical point near θ by Newton's method on ∇_θ C = Dᵀ∇_x C = 0.

    With rank D = K, ∇_θ C = 0 iff P̃(x − y_ω) = 0, so these are exactly the equilibria
    (5.6) of (5.2).  Newton converges quadratically from a point close enough (e.g. θ(s₁)
    of a converging orbit), unlike full Gauss–Newton steps, which can diverge at a
    critical point with a large residual.  Use it to find the limit θ_* of an orbit and
    measure (5.6)–(5.7) at θ_* itself.

    Args:
        output_map: `output_map(theta, X) -> x`.
        theta: starting point, shape `(K,)`, K ≤ QN.
        X: inputs, shape `(N, M)`.  Y: targets, shape `(N, Q)`.
        n_iter: Newton steps (all are taken; the history shows the convergence).

    Returns:
        `(theta_star, tangential)`: the last iterate, shape `(K,)`, and |P̃(x − y_ω)|/|x − y_ω|
        at each iterate, shape `(n_iter + 1,)`.
    """
    if not isinstance(n_iter, (int, np.integer)) or n_iter < 1:
        raise ValueError(f"`n_iter` must be a positive integer; got {n_iter!r}.")
    theta = jnp.asarray(theta, dtype=jnp.float64)
    X = jnp.asarray(X, dtype=jnp.float64)
    Y = jnp.asarray(Y, dtype=jnp.float64)
    y = Y.reshape(-1)
    hist = []
    for k in range(n_iter + 1):
        x, D = _outputs_and_jacobian_jit(output_map, theta, X)
        hist.append(critical_residuals(D, x, y)[0])
        if k < n_iter:
            theta = _newton_step(output_map, theta, X, Y)
    return np.asarray(theta), np.asarray(hist)


def crossing_time(s, values, level: float) -> float:
    r"""The first s where `values` (shape `(T,)`, sampled at times `s`) falls to ≤ `level`.

    Interpolates log(values) linearly between the two bracketing samples (exact for an
    exponential decay); returns `inf` if `values` stays above `level`.
    """
    s = np.asarray(s, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if s.shape != v.shape or s.ndim != 1:
        raise ValueError(f"`s` and `values` must be 1-D of equal length; got {s.shape} and {v.shape}.")
    if not level > 0:
        raise ValueError(f"`level` must be > 0 (a log-interpolation); got {level!r}.")
    below = np.nonzero(v <= level)[0]
    if below.size == 0:
        return float("inf")
    k = int(below[0])
    if k == 0:
        return float(s[0])
    a, b = np.log(v[k - 1]), np.log(v[k])
    return float(s[k - 1] + (s[k] - s[k - 1]) * (a - np.log(level)) / (a - b))


def tangential_residual(output_map, theta, X, Y) -> tuple[float, float]:
    r"""|P̃(x − y_ω)|/|x − y_ω| at θ, the residual of (5.6), and its rounding floor.

    The floor is QN·cond(D)·eps·(|x| + |y_ω|)/|x − y_ω|: r = x − y_ω is a difference of
    vectors of sizes |x|, |y_ω|, and P̃ from the SVD is accurate to cond(D)·eps
    (`range_projector`); a residual at the floor is zero to rounding.

    Args:
        output_map: `output_map(theta, X) -> x`.  theta: shape `(K,)`, K ≤ QN.
        X: inputs, shape `(N, M)`.  Y: targets, shape `(N, Q)`.

    Returns:
        `(tangential, floor)`, two floats.
    """
    theta = jnp.asarray(theta, dtype=jnp.float64)
    x, D = _outputs_and_jacobian_jit(output_map, theta, jnp.asarray(X, dtype=jnp.float64))
    x, D = np.asarray(x), np.asarray(D)
    y = np.asarray(Y, dtype=np.float64).reshape(-1)
    tang = critical_residuals(D, x, y)[0]
    s = np.linalg.svd(D, compute_uv=False)
    floor = D.shape[0] * (s[0] / s[-1]) * _EPS * (np.linalg.norm(x) + np.linalg.norm(y)) / np.linalg.norm(x - y)
    return float(tang), float(floor)


_EPS = float(np.finfo(np.float64).eps)

#: Outcomes reported by `orbit_until_outcome`.
UNTIL_OUTCOMES = ("converged", "s_max", "eps", "rank-loss", "rank-loss at start", "stalled")


def orbit_until_outcome(flow: str, output_map, theta0, X, Y, *, converged, s_first: float, s_max: float,
                        **kwargs):
    r"""`integrate_until` with the rank-loss event on, classifying the orbit as `orbit_outcome` does.

    A *convergence* run: the orbit is followed until `converged(theta)` holds (checked
    at the ends of segments of doubling length), a rank loss stops it, or `s_max` is
    reached, which is reported (outcome ``"s_max"``), never raised.

    Args:
        flow, output_map, theta0, X, Y: as for `adaptedflow.integrate_flow`.
        converged: the stopping test, `converged(theta) -> bool`.
        s_first: length of the first segment.  s_max: the longest time followed.
        **kwargs: passed to `integrate_until` (rtol, atol, rank_rtol, max_steps, n_save).

    Returns:
        `(orbit, outcome)`: the `Orbit` (None for the last two outcomes) and one of
        `UNTIL_OUTCOMES`.
    """
    from ..integrate import integrate_until

    if "on_rank_loss" in kwargs:
        raise ValueError("`orbit_until_outcome` sets `on_rank_loss='stop'` itself; do not pass it.")
    return _with_outcome(lambda: integrate_until(flow, output_map, theta0, X, Y, converged=converged,
                                                 s_first=s_first, s_max=s_max, on_rank_loss="stop", **kwargs))


#: A critical point θ_* of (5.2) for the data of `reference_critical_point` (the limit of a
#: converged Gauss–Newton orbit, polished by Newton), K = 12 entries laid out as (1.5).
_REFERENCE_THETA_STAR = (
    -0.538178299407781, -0.49794080161452026, 0.02683350258011148, -0.45433632379921707, 0.18191396561573453,
    0.24988795560538007, -0.47184378971427776, 0.1674750166013277, 0.8898045882840044, -0.8647370039567857,
    0.04752270320438824, -0.18002436590493986,
)


def reference_critical_point(*, n_newton: int = 3):
    r"""A fixed under-parametrized critical point, the same for every reader: (widths, X, Y, θ_*).

    The student MLP (2, 2, 2) (K = 12) fits N = 20 inputs X ~ N(0, I₂) labelled by a teacher
    MLP (2, 8, 2) plus noise 0.05·N(0, I) (QN = 40 > K), all drawn from `PRNGKey(0)` as in
    the under-parametrized chapter; θ_* is stored as literal numbers (the limit of an orbit
    of (5.2)) and polished by `n_newton` Newton steps on ∇_θC = 0, so it satisfies (5.6) to
    the rounding floor with rank D = K, C_* ≈ 7.41e-3 > 0 (Remark 5.2).

    Args:
        n_newton: Newton steps applied to the stored θ_* (≥ 1).

    Returns:
        `(widths, X, Y, theta_star)`: `(2, 2, 2)`, X shape `(20, 2)`, Y shape `(20, 2)`,
        θ_* shape `(12,)`.
    """
    from ..network import init_params, mlp

    widths, teacher, N, noise = (2, 2, 2), (2, 8, 2), 20, 0.05
    key = jax.random.PRNGKey(0)
    X = jax.random.normal(jax.random.fold_in(key, 0), (N, 2), dtype=jnp.float64)
    y = (mlp(teacher)(init_params(jax.random.fold_in(key, 1), teacher), X)
         + noise * jax.random.normal(jax.random.fold_in(key, 2), (2 * N,), dtype=jnp.float64))
    theta, _ = newton_critical_point(mlp(widths), np.asarray(_REFERENCE_THETA_STAR), X, y.reshape(N, 2),
                                     n_iter=n_newton)
    return widths, np.asarray(X), np.asarray(y.reshape(N, 2)), theta
