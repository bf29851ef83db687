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

The analyses the two chapters run are built from these: for §5 `teacher_student_problem`,
`under_orbits`, `identities_along_orbits`, `largest_cost_rise`, `critical_limit` (the limit
θ_* located by `critical.newton_to_critical`) and `race_to_critical_cost`; for §6
`borderline_problems`, `borderline_formula_spreads`, `borderline_orbits` and
`near_teacher_orbits`.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..cost import cost, grad_x_cost, outputs_and_jacobian
from ..flows import adapted_direction, adapted_under_direction
from ..integrate import Orbit, integrate_flow, integrate_until
from ..network import init_params, mlp, num_params
from ..numerics import EPS
from ..problem import one_hot_labels, stacked_targets
from ..validation import RankLossError, as_float64_matrix, positive_int, require_finite
from .critical import newton_to_critical

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
    Q = positive_int(Q, "Q")
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
    floor = D.shape[0] * (s[0] / s[-1]) * EPS * (np.linalg.norm(x) + np.linalg.norm(y)) / np.linalg.norm(x - y)
    return float(tang), float(floor)



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
    from ..network import mlp

    n_newton = positive_int(n_newton, "n_newton")
    widths = (2, 2, 2)
    X, Y = teacher_student_problem(jax.random.PRNGKey(0), (2, 8, 2), N=20, noise=0.05)
    theta, _ = newton_to_critical(mlp(widths), np.asarray(_REFERENCE_THETA_STAR), X, Y, step="solve", tol=None,
                                  max_iter=n_newton)
    return widths, np.asarray(X), np.asarray(Y), theta


# --------------------------------------------------------------------------------------------
# The analyses of the under-parametrized chapter (§5)
# --------------------------------------------------------------------------------------------

def teacher_student_problem(key, teacher: Sequence[int], *, N: int, noise: float) -> tuple[jax.Array, jax.Array]:
    r"""Teacher–student data: N inputs X ~ N(0, I_M), labels from a random teacher MLP plus Gaussian noise.

    X is drawn from `fold_in(key, 0)`, the teacher's θ from `init_params(fold_in(key, 1),
    teacher)`, the noise from `fold_in(key, 2)`.  With noise > 0 no student reaches C = 0
    when K < QN (Remark 5.2).

    Args:
        key: PRNG key.  teacher: the teacher's widths `(M, …, Q)`.
        N: number of inputs.  noise: standard deviation of the label noise.

    Returns:
        `(X, Y)`: shapes `(N, M)` and `(N, Q)`.
    """
    teacher = tuple(teacher)
    N = positive_int(N, "N")
    M, Q = teacher[0], teacher[-1]
    X = jax.random.normal(jax.random.fold_in(key, 0), (N, M), dtype=jnp.float64)
    y = (mlp(teacher)(init_params(jax.random.fold_in(key, 1), teacher), X)
         + noise * jax.random.normal(jax.random.fold_in(key, 2), (Q * N,), dtype=jnp.float64))
    return X, y.reshape(N, Q)


class UnderOrbits(NamedTuple):
    r"""Orbits of (5.2) from random initialisations, each classified by `orbit_until_outcome`.

    Attributes:
        theta0s: the initial points, each of shape `(K,)`.
        runs: `(orbit, outcome)` per initial point (orbit None where none was produced).
        lost: indices of orbits that lost rank K ("rank-loss", "rank-loss at start", "stalled").
        converged: indices of orbits that passed the stopping test.
        slow: indices of orbits still moving at `s_max`.
    """

    theta0s: list
    runs: list
    lost: list
    converged: list
    slow: list


def under_orbits(widths: Sequence[int], X, Y, key, n_orbits: int, *, arrive_tol: float, s_first: float,
                 s_max: float, n_save: int = 21, **kwargs) -> UnderOrbits:
    r"""Follow (5.2) from `n_orbits` random θ(0) until |P̃(x − y_ω)|/|x − y_ω| ≤ `arrive_tol`, a rank loss, or `s_max`.

    θ(0) number i is `init_params(fold_in(key, 10 + i), widths)`.  Each orbit is followed
    over segments of doubling length from `s_first` (`orbit_until_outcome`), the stopping
    test (5.6) checked with `tangential_residual` at each segment's end.

    Args:
        widths: the student MLP, K < QN.  X: inputs `(N, M)`.  Y: targets `(N, Q)`.
        key: PRNG key.  n_orbits: number of initialisations.
        arrive_tol, s_first, s_max: the stopping test, first segment and longest time.
        n_save: saved points per segment.
        **kwargs: passed on to `integrate_until` (rtol, atol, rank_rtol, max_steps).

    Returns:
        An `UnderOrbits`.

    References:
        Theorem 5.1, (5.2), (5.6).
    """
    net = mlp(widths)
    arrived_at = lambda th: tangential_residual(net, th, X, Y)[0] <= arrive_tol  # noqa: E731
    theta0s = [init_params(jax.random.fold_in(key, 10 + i), widths) for i in range(positive_int(n_orbits, "n_orbits"))]
    runs = [orbit_until_outcome("adapted-under", net, t0, X, Y, converged=arrived_at, s_first=s_first, s_max=s_max,
                                n_save=n_save, **kwargs) for t0 in theta0s]
    outs = [out for _, out in runs]
    return UnderOrbits(theta0s=theta0s, runs=runs,
                       lost=[i for i, out in enumerate(outs) if out in ("rank-loss", "rank-loss at start", "stalled")],
                       converged=[i for i, out in enumerate(outs) if out == "converged"],
                       slow=[i for i, out in enumerate(outs) if out == "s_max"])


_outputs_and_jacobians_jit = jax.jit(jax.vmap(outputs_and_jacobian, in_axes=(None, 0, None)), static_argnums=0)


class IdentityResiduals(NamedTuple):
    r"""The worst residual of each identity of Theorem 5.1 and Proposition 5.3 along orbits, over its bound.

    Attributes:
        worst: `{name: max residual / bound}` for "gn_vs_pinv", "output_velocity", "cost_rate",
            "projector", "metric" (see `identities_along_orbits`).
        max_cond: the largest cond(D) met.
    """

    worst: dict
    max_cond: float


def identities_along_orbits(output_map, runs, X, Y, key, n_test_vectors: int, *, every: int = 6) -> IdentityResiduals:
    r"""`under_identities` and `metric_gradient_residual` at every `every`-th saved point of each orbit.

    Each residual is divided by its rounding bound: QN·cond(D)²·eps for those measured in the
    output space ((5.3), (5.4), (5.12)), times (1 + |∇ₓC|/|P̃∇ₓC|) for the two that compare
    parameter vectors ((5.2) against D⁺, and g(u, v) = dC(v) of (5.15)–(5.17)): the
    least-squares sensitivity of u = (DᵀD)⁻¹Dᵀ∇ₓC.

    Args:
        output_map: the network.  runs: `(orbit, outcome)` pairs (`UnderOrbits.runs`; None orbits skipped).
        X, Y: the data.  key: PRNG key; orbit i uses `normal(fold_in(key, i), (K, n_test_vectors))`.
        n_test_vectors: random v per orbit for Proposition 5.3.  every: stride over the saved points.

    Returns:
        An `IdentityResiduals`.

    References:
        Theorem 5.1, (5.2)–(5.4); Remark 5.2, (5.12); Proposition 5.3, (5.15)–(5.17).
    """
    worst = dict(gn_vs_pinv=0.0, output_velocity=0.0, cost_rate=0.0, projector=0.0, metric=0.0)
    max_cond = 0.0
    for i, (o, _) in enumerate(runs):
        if o is None:
            continue
        xs, Ds = _outputs_and_jacobians_jit(output_map, jnp.asarray(o.theta[::every]), X)
        for x, D in zip(np.asarray(xs), np.asarray(Ds), strict=True):
            QN, K = D.shape
            ids = under_identities(D, grad_x_cost(x, Y))
            bound = QN * ids.cond**2 * EPS
            ls_bound = bound * (1 + 1 / ids.tangential)        # least-squares sensitivity
            V = np.asarray(jax.random.normal(jax.random.fold_in(key, i), (K, n_test_vectors)))
            for name, val, b in (("gn_vs_pinv", ids.gn_vs_pinv, ls_bound),
                                 ("output_velocity", ids.output_velocity, bound),
                                 ("cost_rate", ids.cost_rate, bound),
                                 ("projector", max(ids.idempotent, ids.symmetric), bound),
                                 ("metric", metric_gradient_residual(D, grad_x_cost(x, Y), V), ls_bound)):
                worst[name] = max(worst[name], val / b)
            max_cond = max(max_cond, ids.cond)
    return IdentityResiduals(worst=worst, max_cond=max_cond)


def largest_cost_rise(runs, rtol: float, N: int) -> float:
    r"""The largest increase of C between saved times along any orbit, over that orbit's integrator bound (5.12).

    The bound of an orbit is n_steps·rtol·|θ|_∞·max σ_max(D)·|x(0) − y_ω|/N, the accumulated
    local errors moved through C (|x(0) − y_ω| = √(2N·C(0))).

    Args:
        runs: `(orbit, outcome)` pairs (orbits that are None or have one saved point are skipped).
        rtol: the integrator's relative tolerance.  N: number of inputs.

    Returns:
        max over orbits of (max increase of C) / bound, at least 0.

    References:
        Remark 5.2, (5.12).
    """
    ratio = 0.0
    for o, _ in runs:
        if o is None or len(o.cost) < 2:
            continue
        b = o.n_steps * rtol * np.max(np.abs(o.theta)) * np.max(o.sigma_max) * np.sqrt(2 * o.cost[0] / N)
        ratio = max(ratio, float(np.max(np.diff(o.cost))) / b)
    return ratio


class CriticalLimit(NamedTuple):
    r"""(5.6)–(5.7) at the limit θ_* of an orbit, located by Newton's method.

    Attributes:
        theta: θ_*, shape `(K,)`.
        tangential_start: |P̃(x − y_ω)|/|x − y_ω| at the starting point.
        tangential: the same at θ_* (the residual of (5.6)).  floor: its rounding floor.
        split: |C − |P̃^⊥(x − y_ω)|²/2N| / C at θ_* (the residual of (5.7)).
        cond: cond(D) at θ_*.  QN: number of outputs.
        cost: C_* = C(θ_*).  cost_resolution: eps·|y_ω|²/2N, the float64 resolution of C.
        distance: |θ_start − θ_*|/|θ_*|.
    """

    theta: np.ndarray
    tangential_start: float
    tangential: float
    floor: float
    split: float
    cond: float
    QN: int
    cost: float
    cost_resolution: float
    distance: float


def critical_limit(output_map, theta_start, X, Y, *, n_newton: int) -> CriticalLimit:
    r"""Locate the critical point θ_* near `theta_start` and measure (5.6)–(5.7) there.

    With rank D = K, ∇_θC = 0 iff P̃(x − y_ω) = 0, so the zeros of ∇_θC are exactly the
    equilibria (5.6) of (5.2): `n_newton` full Newton steps (`newton_to_critical` with
    ``step="solve"``) from a converged θ reach θ_* to rounding.

    Args:
        output_map: the network, K < QN.  theta_start: shape `(K,)`.  X: `(N, M)`.  Y: `(N, Q)`.
        n_newton: Newton steps (all taken).

    Returns:
        A `CriticalLimit`.

    References:
        Theorem 5.1, (5.6)–(5.7); Remark 5.2.
    """
    theta_star, _ = newton_to_critical(output_map, theta_start, X, Y, step="solve", tol=None, max_iter=n_newton)
    x, D = outputs_and_jacobian(output_map, jnp.asarray(theta_star), X)
    x, D, y = np.asarray(x), np.asarray(D), np.asarray(Y).reshape(-1)
    tang, floor = tangential_residual(output_map, theta_star, X, Y)
    sv = np.linalg.svd(D, compute_uv=False)
    N = int(np.shape(Y)[0])
    return CriticalLimit(theta=theta_star, tangential_start=tangential_residual(output_map, theta_start, X, Y)[0],
                         tangential=tang, floor=floor, split=critical_residuals(D, x, y)[1], cond=sv[0] / sv[-1],
                         QN=y.size, cost=float(cost(x, Y)), cost_resolution=EPS * float(y @ y) / (2 * N),
                         distance=np.linalg.norm(theta_star - theta_start) / np.linalg.norm(theta_star))


class Race(NamedTuple):
    r"""The standard flow against an orbit of (5.2) from the same θ(0).

    Attributes:
        standard: the standard flow's orbit, to s = `horizon`·s_end of the (5.2) orbit.
        t_adapted: first s where the (5.2) orbit has C ≤ level (`crossing_time`).
        t_standard: the same for the standard flow (`inf` if never).
    """

    standard: Orbit
    t_adapted: float
    t_standard: float


def race_to_critical_cost(output_map, theta0, orbit: Orbit, X, Y, level: float, *, horizon: float = 20.0) -> Race:
    r"""Integrate the standard flow (1.9) from θ(0) and compare first passages below `level` with an orbit of (5.2).

    The standard flow is saved at 0 and 200 geometric times from 10⁻² to `horizon`·s_end
    (rtol 1e-10, atol 1e-12, at most 200 000 steps); both first-passage times are
    log-interpolated (`crossing_time`).

    Args:
        output_map: the network.  theta0: the common θ(0), shape `(K,)`.
        orbit: the (5.2) orbit from θ(0).  X, Y: the data.  level: the cost level, e.g. C_*(1 + 10⁻⁶).
        horizon: the standard flow runs to `horizon` times the (5.2) orbit's s_end.

    Returns:
        A `Race`.

    References:
        (1.9), (5.2), Remark 5.2.
    """
    s_std = horizon * orbit.s_end
    ts = np.concatenate([[0.0], np.geomspace(1e-2, s_std, 200)])
    so = integrate_flow("standard", output_map, theta0, X, Y, s1=s_std, ts=ts, rtol=1e-10, atol=1e-12,
                        max_steps=200_000)
    return Race(standard=so, t_adapted=crossing_time(orbit.s, orbit.cost, level),
                t_standard=crossing_time(so.s, so.cost, level))


# --------------------------------------------------------------------------------------------
# The analyses of the borderline chapter (§6)
# --------------------------------------------------------------------------------------------

#: The kinds of labels of `borderline_problems`, in order.
LABEL_KINDS = ("random one-hot", "independent teacher", "near teacher")


class BorderlineProblem(NamedTuple):
    r"""One initialisation of a borderline network and its three kinds of labels.

    Attributes:
        X: inputs, shape `(N, M)`.  theta0: θ(0), shape `(K,)`.
        labels: `{kind: Y}` for each of `LABEL_KINDS`, Y of shape `(N, Q)`.
        teacher: ξ, shape `(K,)`: the independent teacher's θ, and the direction of the near one.
    """

    X: jax.Array
    theta0: jax.Array
    labels: dict
    teacher: jax.Array


def borderline_problems(key, widths: Sequence[int], n: int, *, teacher_distance: float) -> list[BorderlineProblem]:
    r"""`n` random problems with K = QN (§6): inputs, θ(0), and three kinds of labels.

    For i < n, with k = fold_in(key, i): X ~ N(0, I_M) from fold_in(k, 0), N = K/Q
    (`borderline_size`); θ(0) and ξ by `init_params` from fold_in(k, 1) and fold_in(k, 2);
    the labels are random one-hot classes (fold_in(k, 3)), the outputs x[ξ] of an
    independent teacher, and the outputs x[θ(0) + teacher_distance·ξ] of a near teacher.

    Args:
        key: PRNG key.  widths: a borderline network, Q | K.  n: number of problems.
        teacher_distance: the near teacher's distance from θ(0) in units of ξ.

    Returns:
        A list of `n` `BorderlineProblem`.

    References:
        §6, (6.1)–(6.4).
    """
    widths = tuple(widths)
    N, M, Q = borderline_size(widths), widths[0], widths[-1]
    outputs = jax.jit(mlp(widths))
    problems = []
    for i in range(positive_int(n, "n")):
        k = jax.random.fold_in(key, i)
        X = jax.random.normal(jax.random.fold_in(k, 0), (N, M), dtype=np.float64)
        theta0 = init_params(jax.random.fold_in(k, 1), widths)
        xi = init_params(jax.random.fold_in(k, 2), widths)
        omega = np.asarray(jax.random.randint(jax.random.fold_in(k, 3), (N,), 0, Q))
        labels = {"random one-hot": stacked_targets(omega, one_hot_labels(Q)),
                  "independent teacher": outputs(xi, X).reshape(N, Q),
                  "near teacher": outputs(theta0 + teacher_distance * xi, X).reshape(N, Q)}
        problems.append(BorderlineProblem(X=X, theta0=theta0, labels=labels, teacher=xi))
    return problems


class FormulaSpreads(NamedTuple):
    r"""The five routes of `BORDERLINE_FORMULAS` against the SVD, at each problem and kind of labels.

    Attributes:
        stable: |d_LU − d_SVD|/|d_SVD| / (QN·cond(D)·eps), one per (problem, labels).
        gram: the largest spread of the three Gram routes (1.30), (5.2), (6.3) / (QN·cond(D)²·eps).
        rows: `(cond(D), relative_spread(...))` per (problem, labels).
    """

    stable: list
    gram: list
    rows: list


def borderline_formula_spreads(output_map, problems) -> FormulaSpreads:
    r"""Compare every route to the borderline direction (6.2) with the SVD pseudo-inverse, at each θ(0).

    Backward-stable routes (LU, SVD) agree to ~QN·cond(D)·eps; routes through a Gram matrix
    (condition number cond(D)²) to ~QN·cond(D)²·eps.

    Args:
        output_map: a borderline network (K = QN).  problems: `BorderlineProblem`s.

    Returns:
        A `FormulaSpreads`, entries ordered problem by problem, labels in `LABEL_KINDS` order.

    References:
        §6, (6.1)–(6.3).
    """
    stable, gram, rows = [], [], []
    for p in problems:
        x, D = outputs_and_jacobian(output_map, p.theta0, p.X)
        QN = D.shape[0]
        c = condition_number(D)
        for Y in p.labels.values():
            sp = relative_spread(borderline_directions(D, grad_x_cost(x, Y)))
            stable.append(sp["inverse (6.1)"] / (QN * c * EPS))
            gram.append(max(sp["adapted (1.30)"], sp["adapted-under (5.2)"], sp["normal equations (6.3)"])
                        / (QN * c**2 * EPS))
            rows.append((c, sp))
    return FormulaSpreads(stable=stable, gram=gram, rows=rows)


def borderline_orbits(output_map, problems, **kwargs) -> dict[str, list]:
    r"""The adapted flow (2.4) from each θ(0) with each kind of labels, classified by `orbit_outcome`.

    Args:
        output_map: a borderline network.  problems: `BorderlineProblem`s.
        **kwargs: passed to `integrate_flow` (s1, ts, rtol, atol, rank_rtol, max_steps).

    Returns:
        `{kind: [(orbit, outcome), …]}`, one entry per problem, kinds in `LABEL_KINDS` order.

    References:
        §6, (2.4), (6.4).
    """
    orbits = {kind: [] for kind in problems[0].labels}
    for p in problems:
        for kind, Y in p.labels.items():
            orbits[kind].append(orbit_outcome("adapted", output_map, p.theta0, p.X, Y, **kwargs))
    return orbits


class NearTeacher(NamedTuple):
    r"""Converged near-teacher orbits of (2.4) against (2.7) and (6.4), and against orbits of (5.2).

    Attributes:
        distance: the teacher distance finally used (smaller than asked if none converged).
        output_deviation: per orbit, max_s |x(s) − (2.7)|/|x(0) − y_ω|.
        rate_deviation: per orbit, max_s |C/(C(0)e^{−2s/N}) − 1|.
        agreement: for the first `n_pairs` orbits, max_s |x_(2.4) − x_(5.2)|/|x(0) − y_ω|.
        steps: solver steps of every orbit integrated (both flows).
        conds: per orbit of (2.4), max_s cond(D).
    """

    distance: float
    output_deviation: list
    rate_deviation: list
    agreement: list
    steps: list
    conds: list


def near_teacher_orbits(output_map, problems, near_orbits, *, teacher_distance: float, n_pairs: int = 2,
                        **kwargs) -> NearTeacher:
    r"""Check (6.4) and the coincidence of (2.4) and (5.2) on the near-teacher orbits that converged.

    If none converged, the teacher of the first problem is moved closer to θ(0), halving
    its distance (at most 10 times) until the orbit of (2.4) reaches `s1`: the inverse
    function theorem guarantees that this ends.  From the first `n_pairs` converged
    orbits (5.2) is integrated too, on the same save grid.

    Args:
        output_map: a borderline network.  problems: `BorderlineProblem`s.
        near_orbits: `(orbit, outcome)` per problem for the near-teacher labels (`borderline_orbits`).
        teacher_distance: the distance the near teacher was drawn at.
        n_pairs: orbits also integrated with (5.2).
        **kwargs: passed to `integrate_flow` (s1, ts, rtol, atol, rank_rtol, max_steps).

    Returns:
        A `NearTeacher`.

    References:
        §6, (2.7), (6.2), (6.4).
    """
    from ..comparison import comparison_cost, comparison_outputs

    near_ok = [(p.X, p.theta0, p.labels["near teacher"], o)
               for p, (o, out) in zip(problems, near_orbits, strict=True) if o is not None and out == "s1"]
    distance = teacher_distance
    outputs = jax.jit(output_map)
    while not near_ok and distance > teacher_distance / 2**10:     # the inverse function theorem: small enough works
        distance /= 2
        X, theta0 = problems[0].X, problems[0].theta0
        N = X.shape[0]
        Y = outputs(theta0 + distance * problems[0].teacher, X).reshape(N, -1)
        o, out = orbit_outcome("adapted", output_map, theta0, X, Y, **kwargs)
        if out == "s1":
            near_ok.append((X, theta0, Y, o))
    agree, dev_out, dev_rate, steps, conds = [], [], [], [], []
    for j, (X, theta0, Y, o) in enumerate(near_ok):
        y = np.asarray(Y).reshape(-1)
        r0 = np.linalg.norm(o.x[0] - y)
        dev_out.append(np.max(np.linalg.norm(o.x - comparison_outputs(o.x[0], Y, o.s), axis=1)) / r0)
        dev_rate.append(np.max(np.abs(o.cost / comparison_cost(o.cost[0], o.s, X.shape[0]) - 1)))
        steps.append(o.n_steps)
        conds.append(float(np.max(o.sigma_max / o.sigma_min)))
        if j < n_pairs:
            u = integrate_flow("adapted-under", output_map, theta0, X, Y, **kwargs)
            agree.append(np.max(np.linalg.norm(u.x - o.x, axis=1)) / r0)
            steps.append(u.n_steps)
    return NearTeacher(distance=distance, output_deviation=dev_out, rate_deviation=dev_rate, agreement=agree,
                       steps=steps, conds=conds)
