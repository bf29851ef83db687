r"""Numerical rank of the Jacobian and the idealised model of Proposition 2.2.

Three things live here:

* `rank_report`: the numerical rank of D from the SVD of D itself (never of D Dᵀ, which
  squares the condition number), with the default tolerance σ_max·max(QN, K)·eps and the
  gap σ_r/σ_{r+1}, so a structural rank loss (gap ~1e14 and more) is told apart from mere
  ill-conditioning (gap ~1).
* `sample_sphere`: i.i.d. unit vectors on S^{QN−1} for the measures of Proposition 2.2
  and its limits: uniform, a small open cap, a great subsphere, a moment curve.
* Column statistics of real Jacobians, (2.12): the normalised columns
  e_i = ∂_{θ_i}x / |∂_{θ_i}x|, their pairwise overlaps |⟨e_i, e_j⟩|, and a two-sample
  Kolmogorov–Smirnov statistic against the overlaps of i.i.d. uniform vectors.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from ..cost import jacobian
from ..network import init_params, mlp, num_params, output_bias_jacobian
from ..numerics import default_rank_rtol, safe_divide
from ..problem import one_hot_labels, stacked_targets
from ..validation import as_float64_matrix, positive_int

#: The sampling measures of `sample_sphere`, with what Proposition 2.2 predicts for K ≥ QN.
MEASURES = {
    "uniform": "normalised Gaussian: absolutely continuous, support the whole sphere → full rank a.s.",
    "cap": "uniform direction in a ball of radius `cap_radius` around a random centre, normalised: "
           "absolutely continuous on an open cap → full rank a.s. (until float64 cannot resolve the cap)",
    "subsphere": "uniform on the great subsphere S^(QN−2) = S^(QN−1) ∩ n^⊥ (a random n): singular, "
                 "charges a hyperplane → rank ≤ QN − 1 always",
    "moment-curve": "t ~ U[0, 2π) on the trigonometric moment curve (cos kt, sin kt)_k / norm: singular, "
                    "but meets every hyperplane in finitely many points → full rank a.s.",
}


class RankReport(NamedTuple):
    r"""The numerical rank of a matrix and how clearly it is determined.

    Attributes:
        rank: r = #{i : σ_i > tol}.
        singular_values: σ_1 ≥ … ≥ σ_min(QN,K), shape `(min(QN, K),)`.
        tol: the absolute threshold σ_max·rtol.
        gap: σ_r/σ_{r+1} (`inf` if r = min(QN, K) or σ_{r+1} = 0; `nan` if r = 0).
        ratio: σ_min/σ_max over all min(QN, K) singular values (λ_min/λ_max of D Dᵀ is its square).
        full: r == min(QN, K).
    """

    rank: int
    singular_values: np.ndarray
    tol: float
    gap: float
    ratio: float
    full: bool


def rank_report(D, rtol: float | None = None) -> RankReport:
    r"""Numerical rank of D from its own singular values, with the gap σ_r/σ_{r+1}.

    Args:
        D: shape `(QN, K)` (any 2-D float64 matrix).
        rtol: relative threshold; singular values ≤ rtol·σ_max count as zero. Default
            `numerics.default_rank_rtol(D.shape)` = max(QN, K)·eps, the size of the rounding
            error of a backward-stable SVD relative to σ_max.

    Returns:
        A `RankReport`.

    Raises:
        TypeError: D is not float64.  ValueError: D not 2-D, empty or not finite; rtol ≤ 0.
    """
    D = _as_matrix(D)
    rtol = default_rank_rtol(D.shape) if rtol is None else float(rtol)
    if not rtol > 0:
        raise ValueError(f"`rtol` must be > 0; got {rtol!r}.")
    s = np.linalg.svd(D, compute_uv=False)
    tol = float(s[0] * rtol)
    r = int(np.sum(s > tol))
    n = s.size
    if r == 0:
        gap = float("nan")
    elif r == n or s[r] == 0:
        gap = float("inf")
    else:
        gap = float(s[r - 1] / s[r])
    ratio = float(s[-1] / s[0]) if s[0] > 0 else 0.0
    return RankReport(rank=r, singular_values=s, tol=tol, gap=gap, ratio=ratio, full=r == n)


_as_matrix = as_float64_matrix


def moment_curve(t, dim: int) -> np.ndarray:
    r"""Points on the trigonometric moment curve in S^{dim−1}, one row per t.

    For dim = 2m: (cos t, sin t, cos 2t, sin 2t, …, cos mt, sin mt)/√m; for dim = 2m + 1 a
    constant 1/√2 comes first and the norm is √(m + 1/2).  A hyperplane ⟨a, v(t)⟩ = 0 is the
    zero set of a trigonometric polynomial of degree ≤ m, at most 2m points of [0, 2π): the
    curve's law charges no hyperplane although it is singular on the sphere.

    Args:
        t: parameters, shape `(n,)`.
        dim: the ambient dimension QN ≥ 2.

    Returns:
        Unit vectors, shape `(n, dim)`.
    """
    if not isinstance(dim, (int, np.integer)) or dim < 2:
        raise ValueError(f"`dim` must be an integer ≥ 2; got {dim!r}.")
    t = np.asarray(t, dtype=np.float64).ravel()
    m = dim // 2
    kt = t[:, None] * np.arange(1, m + 1, dtype=np.float64)[None, :]
    v = np.stack([np.cos(kt), np.sin(kt)], axis=-1).reshape(t.shape[0], 2 * m)
    if dim % 2:
        v = np.concatenate([np.full((t.shape[0], 1), 1 / np.sqrt(2.0)), v], axis=1)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def sample_sphere(key, n: int, dim: int, measure: str = "uniform", *, cap_radius: float = 0.1,
                  batch: tuple[int, ...] = ()) -> np.ndarray:
    r"""n i.i.d. unit vectors on S^{dim−1} from one of the measures in `MEASURES`.

    The family {e_i} of (2.12) in the idealised setting of Proposition 2.2 is one draw with
    n = K, dim = QN.  Every measure draws its own random geometry (cap centre, subsphere
    normal) from `key` as well, independently for each of the `batch` draws.

    Args:
        key: a `jax.random` key.
        n: number of vectors (K).
        dim: dimension of the ambient space (QN ≥ 2).
        measure: a key of `MEASURES`.
        cap_radius: for `"cap"`: the radius ρ of the ball around the centre c; the cap has
            angular radius arctan ρ.  Below ~eps/2 the perturbation is lost when added
            to c: float64 cannot resolve the cap.
        batch: leading shape of independent draws (trials), e.g. `(300,)`.

    Returns:
        Unit vectors as rows, float64 NumPy array of shape `batch + (n, dim)` (drawn with a
        NumPy generator seeded from `key`).

    Raises:
        ValueError: unknown measure, n < 1, dim < 2, cap_radius ≤ 0.
    """
    if measure not in MEASURES:
        raise ValueError(f"`measure` must be one of {sorted(MEASURES)}; got {measure!r}.")
    n = positive_int(n, "n")
    if not isinstance(dim, (int, np.integer)) or dim < 2:
        raise ValueError(f"`dim` must be an integer ≥ 2 (S^{{dim−1}}); got {dim!r}.")
    batch = tuple(int(b) for b in batch)
    rng = _numpy_rng(key)
    if measure == "moment-curve":
        t = rng.uniform(0.0, 2 * np.pi, size=batch + (n,))
        return moment_curve(t.reshape(-1), dim).reshape(batch + (n, dim))
    z = rng.standard_normal(batch + (n, dim))
    u = z / np.linalg.norm(z, axis=-1, keepdims=True)
    if measure == "uniform":
        return u
    if measure == "subsphere":
        normal = rng.standard_normal(batch + (1, dim))
        normal = normal / np.linalg.norm(normal, axis=-1, keepdims=True)
        z = z - np.sum(z * normal, axis=-1, keepdims=True) * normal
        return z / np.linalg.norm(z, axis=-1, keepdims=True)
    if not cap_radius > 0:
        raise ValueError(f"`cap_radius` must be > 0; got {cap_radius!r}.")
    c = rng.standard_normal(batch + (1, dim))
    c = c / np.linalg.norm(c, axis=-1, keepdims=True)
    radius = cap_radius * rng.uniform(size=batch + (n, 1)) ** (1.0 / dim)
    p = c + radius * u
    return p / np.linalg.norm(p, axis=-1, keepdims=True)


def _numpy_rng(key) -> np.random.Generator:
    """A NumPy generator seeded from a `jax.random` key: deterministic in the key, no hidden state.

    Thousands of tiny draws are far cheaper in NumPy than as eagerly dispatched JAX ops.
    """
    data = np.asarray(jax.random.key_data(key) if jnp.issubdtype(key.dtype, jax.dtypes.prng_key) else key)
    return np.random.default_rng(data.astype(np.uint64).ravel().tolist())


def rank_trials(key, n_trials: int, dim: int, K: int, measure: str = "uniform", *, cap_radius: float = 0.1,
                rtol: float | None = None) -> dict[str, np.ndarray]:
    r"""Proposition 2.2 by simulation: the rank of [e_1 … e_K] ∈ R^{QN×K} over independent trials.

    Args:
        key: a `jax.random` key.
        n_trials: number of trials.  dim: QN.  K: vectors per trial.
        measure, cap_radius: see `sample_sphere`.
        rtol: rank tolerance (default max(QN, K)·eps, see `rank_report`).

    Returns:
        `{"rank", "full", "gap", "ratio"}`, each of shape `(n_trials,)`: the numerical rank,
        whether it is min(QN, K), the gap σ_r/σ_{r+1}, and σ_min/σ_max.
    """
    n_trials = positive_int(n_trials, "n_trials")
    E = np.swapaxes(np.asarray(sample_sphere(key, K, dim, measure, cap_radius=cap_radius, batch=(n_trials,))), 1, 2)
    rtol = default_rank_rtol((dim, K)) if rtol is None else float(rtol)
    s = np.linalg.svd(E, compute_uv=False)                       # (n_trials, min(QN, K)), one batched call
    rank = np.sum(s > rtol * s[:, :1], axis=1)
    n = s.shape[1]
    nxt = np.concatenate([s, np.zeros((n_trials, 1))], axis=1)   # σ_{r+1} := 0 when r = min(QN, K)
    rows = np.arange(n_trials)
    with np.errstate(divide="ignore", invalid="ignore"):
        gap = np.where(rank == 0, np.nan, s[rows, np.maximum(rank - 1, 0)] / nxt[rows, rank])
    return dict(rank=rank, full=rank == n, gap=gap, ratio=s[:, -1] / s[:, 0])


def normalized_columns(D) -> tuple[np.ndarray, np.ndarray]:
    r"""The unit vectors e_i = ∂_{θ_i}x / |∂_{θ_i}x| of (2.12) and the norms |∂_{θ_i}x|.

    Args:
        D: Jacobian, shape `(QN, K)`.

    Returns:
        `(E, norms)`: shape `(QN, K)` and `(K,)`.  A zero column (a parameter that does not
        move x, e.g. a weight behind a dead unit) gives a zero column of E and norm 0.
    """
    D = _as_matrix(D)
    norms = np.linalg.norm(D, axis=0)
    E = np.asarray(safe_divide(D, norms))
    return E, norms


def column_overlaps(E) -> np.ndarray:
    r"""|⟨e_i, e_j⟩| for all pairs i < j of the columns of `E` (shape `(QN, K)`): shape `(K(K−1)/2,)`."""
    E = _as_matrix(E, "E")
    G = np.abs(E.T @ E)
    i, j = np.triu_indices(E.shape[1], k=1)
    return G[i, j]


def output_bias_columns(widths: Sequence[int], N: int) -> tuple[np.ndarray, np.ndarray]:
    r"""The columns of D that belong to the output bias b_{L+1}: their indices and their value.

    ∂x_j/∂(b_{L+1})_k = e_k for every input j, so these Q columns do not depend on θ or on
    the inputs: the normalised column is (e_k, e_k, …, e_k)/√N ∈ S^{QN−1}, the same for every
    θ (a deterministic column, nothing like an i.i.d. draw), and the Q of them are mutually
    orthogonal.

    Args:
        widths: `(M, M_1, …, M_L, Q)`.  N: number of inputs.

    Returns:
        `(indices, E_bias)`: shape `(Q,)` indices into θ (the last Q entries, (1.5)), and the
        normalised columns, shape `(QN, Q)`.
    """
    widths = tuple(widths)
    N = positive_int(N, "N")
    idx, cols = output_bias_jacobian(num_params(widths), N, widths[-1])
    return idx, cols / math.sqrt(N)


def ks_two_sample(a, b, alpha: float = 1e-3) -> tuple[float, float]:
    r"""The two-sample Kolmogorov–Smirnov statistic sup|F_a − F_b| and its critical value.

    The critical value c(α)·√((n_a + n_b)/(n_a n_b)), c(α) = √(−½ log(α/2)), is the
    asymptotic level-α threshold for *independent* samples; overlaps of one matrix's
    columns are weakly dependent, so read it as a scale, not an exact test.

    Args:
        a, b: 1-D samples.  alpha: the level.

    Returns:
        `(statistic, critical_value)`.
    """
    a = np.sort(np.asarray(a, dtype=np.float64).ravel())
    b = np.sort(np.asarray(b, dtype=np.float64).ravel())
    if a.size == 0 or b.size == 0:
        raise ValueError(f"`a` and `b` must be non-empty; got sizes {a.size}, {b.size}.")
    if not 0 < alpha < 1:
        raise ValueError(f"`alpha` must be in (0, 1); got {alpha!r}.")
    grid = np.concatenate([a, b])
    Fa = np.searchsorted(a, grid, side="right") / a.size
    Fb = np.searchsorted(b, grid, side="right") / b.size
    crit = math.sqrt(-0.5 * math.log(alpha / 2)) * math.sqrt((a.size + b.size) / (a.size * b.size))
    return float(np.max(np.abs(Fa - Fb))), crit


def structural_orthogonal_pairs(widths: Sequence[int]) -> int:
    r"""The number of column pairs of D that are orthogonal for *every* θ and every input.

    The output layer x_j = W_{L+1} x_j^{(L)} + b_{L+1} (1.4): the M_L + 1 parameters of output
    row k (W_{L+1}[k, :] and (b_{L+1})_k) move only the k-th component of each x_j, so
    their columns are supported on disjoint coordinates for different k.  That gives
    (M_L + 1)²·Q(Q−1)/2 pairs with ⟨e_i, e_j⟩ = 0 exactly, (2.12) — an event of probability
    zero for i.i.d. vectors from any absolutely continuous measure.

    Args:
        widths: `(M, M_1, …, M_L, Q)`.
    """
    widths = tuple(widths)
    num_params(widths)   # validates
    m_last, Q = widths[-2], widths[-1]
    return (m_last + 1) ** 2 * Q * (Q - 1) // 2


def init_params_batch(key, widths: Sequence[int], n: int, *, scale: float = 1.0) -> jax.Array:
    r"""n independent θ from the law of `adaptedflow.init_params`, in one random call.

    W_ℓ ~ N(0, scale²/M_{ℓ−1}) entrywise and b_ℓ ~ N(0, 0.1·scale²), laid out as (1.5).  The
    draws differ from n calls of `init_params` (one normal array is rescaled here), but
    have the same distribution, at a fraction of the cost of `vmap(init_params)`.

    Args:
        key: a `jax.random` key.  widths: `(M, M_1, …, M_L, Q)`.  n: number of draws.

    Returns:
        Shape `(n, K)`, float64.
    """
    widths = tuple(widths)
    K = num_params(widths)
    n = positive_int(n, "n")
    sd = np.concatenate([np.concatenate([np.full(a * b, scale / math.sqrt(a)), np.full(b, scale * math.sqrt(0.1))])
                         for a, b in zip(widths[:-1], widths[1:], strict=False)])
    return jax.random.normal(key, (int(n), K), dtype=jnp.float64) * jnp.asarray(sd)


#: Default factor c of the conditioning cap: a draw is certified full rank when
#: σ_min/σ_max ≥ c·max(QN, K)·eps (see `rank_certificates`).
CERTIFY_FACTOR = 10.0
#: A numerical rank loss whose gap σ_r/σ_{r+1} is at least this is structural: the lost
#: singular value sits at rounding level (≲ max(QN, K)·eps·σ_1 ≈ 1e-14σ_1) next to genuine
#: ones (≳ 1e-4σ_1).  Ill-conditioning gives gaps of order 1 to 1e5.
STRUCTURAL_GAP = 1e10


class RankCertificates(NamedTuple):
    r"""How float64 decides rank QN over a pool of trials of `rank_trials`.

    Attributes:
        n: number of trials pooled.
        certified: trials with σ_min/σ_max ≥ c·max(QN, K)·eps: the backward error of the
            SVD (≤ max(QN, K)·eps·σ_max, Weyl's inequality) cannot close that gap, so the
            stored float64 matrix has rank min(QN, K) exactly.
        uncertified: n − certified: draws above the conditioning cap κ > 1/(c·max(QN, K)·eps),
            where float64 cannot decide the rank.
        rank_deficient: trials whose numerical rank (threshold max(QN, K)·eps) is below full.
        structural: rank-deficient trials with gap ≥ `structural_gap` (a lost direction at
            rounding level: what a measure charging a hyperplane produces).
        max_gap: the largest gap σ_r/σ_{r+1} among rank-deficient trials (0 if none).
        min_ratio: the smallest σ_min/σ_max over the pool.
    """

    n: int
    certified: int
    uncertified: int
    rank_deficient: int
    structural: int
    max_gap: float
    min_ratio: float


def rank_certificates(trials: Sequence[tuple[dict, int, int]], *, factor: float = CERTIFY_FACTOR,
                      structural_gap: float = STRUCTURAL_GAP) -> RankCertificates:
    r"""Pool trials of `rank_trials` and count how many float64 certifies as full rank.

    A probability-one statement (Proposition 2.2, (2.13)) is a statement in exact
    arithmetic; in float64 a draw's rank is decided only where its conditioning allows.
    The computed singular values of E ∈ R^{QN×K} are those of E + ΔE with
    ‖ΔE‖₂ ≲ max(QN, K)·eps·σ_max (a backward-stable SVD), so σ_min/σ_max ≥
    c·max(QN, K)·eps with c > 1 certifies σ_min(E) > 0 (Weyl).  Draws above this cap are
    counted apart; among them, a *structural* loss (gap ≥ `structural_gap`) is what a
    violation of (2.13) would look like, ill-conditioning (small gap) is not.

    Args:
        trials: `(result, dim, K)` triples, `result` a dict returned by `rank_trials`
            with `dim` = QN and `K` vectors.
        factor: c, the margin of the certificate over the backward error (> 1).
        structural_gap: the gap from which a rank loss counts as structural.

    Returns:
        A `RankCertificates`.

    Raises:
        ValueError: `trials` empty, `factor` ≤ 1.
    """
    trials = list(trials)
    if not trials:
        raise ValueError("`trials` must hold at least one (result, dim, K) triple.")
    if not factor > 1:
        raise ValueError(f"`factor` must be > 1 (the certificate must beat the backward error); got {factor!r}.")
    n = cert = deficient = structural = 0
    max_gap, min_ratio = 0.0, math.inf
    for res, dim, K in trials:
        ratio = np.asarray(res["ratio"])
        full = np.asarray(res["full"], dtype=bool)
        gap = np.asarray(res["gap"])
        n += ratio.size
        cert += int(np.sum(ratio >= factor * default_rank_rtol((dim, K))))
        deficient += int(np.sum(~full))
        structural += int(np.sum(~full & (gap >= structural_gap)))
        if np.any(~full):
            max_gap = max(max_gap, float(np.nanmax(gap[~full])))
        min_ratio = min(min_ratio, float(np.min(ratio)))
    return RankCertificates(n=n, certified=cert, uncertified=n - cert, rank_deficient=deficient,
                            structural=structural, max_gap=max_gap, min_ratio=min_ratio)


def max_relative_sigma_min(trials: Sequence[tuple[dict, int, int]]) -> float:
    r"""max over trials of (σ_min/σ_max) / (max(QN, K)·eps): ≤ 1 iff every trial lost numerical rank.

    Args:
        trials: `(result, dim, K)` triples from `rank_trials`.

    Returns:
        The largest σ_min/σ_max in units of the rank threshold of its shape (a float ≥ 0).
    """
    trials = list(trials)
    if not trials:
        raise ValueError("`trials` must hold at least one (result, dim, K) triple.")
    return max(float(np.max(np.asarray(res["ratio"]))) / default_rank_rtol((dim, K)) for res, dim, K in trials)


def structural_orthogonal_pair_indices(widths: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    r"""The column pairs (i, j) of D counted by `structural_orthogonal_pairs`.

    Output row k of the last layer, x_j = W_{L+1}x_j^{(L)} + b_{L+1} (1.4), has the
    parameters W_{L+1}[k, :] and (b_{L+1})_k, laid out as in (1.5); their columns of D are
    supported on the coordinates (x_j)_k, j = 1…N.  Every pair from two different rows
    k ≠ k' is orthogonal for every θ and every input.

    Args:
        widths: `(M, M_1, …, M_L, Q)`.

    Returns:
        `(I, J)`: index arrays into θ, each of shape `((M_L + 1)²·Q(Q−1)/2,)`, with I < J.
    """
    widths = tuple(widths)
    K = num_params(widths)
    m_last, Q = widths[-2], widths[-1]
    base = K - (m_last * Q + Q)                      # first entry of W_{L+1}
    rows = [np.concatenate([base + k * m_last + np.arange(m_last), [base + Q * m_last + k]]) for k in range(Q)]
    I, J = [], []
    for k in range(Q):
        for kk in range(k + 1, Q):
            a, b = np.meshgrid(rows[k], rows[kk], indexing="ij")
            I.append(a.ravel())
            J.append(b.ravel())
    if not I:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    I, J = np.concatenate(I), np.concatenate(J)
    return np.minimum(I, J), np.maximum(I, J)


def fraction_below_quantile(values, reference, q: float = 0.05) -> tuple[int, int]:
    r"""How many of `values` lie below the q-quantile of `reference`: (k, n).

    If `values` had the law of `reference`, k/n would estimate q.  Used to compare
    λ_min/λ_max of real Jacobians with the i.i.d. model (2.13).

    Args:
        values: 1-D sample, shape `(n,)`.  reference: 1-D sample.  q: the quantile in (0, 1).

    Returns:
        `(k, n)`.
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    r = np.asarray(reference, dtype=np.float64).ravel()
    if v.size == 0 or r.size == 0:
        raise ValueError(f"`values` and `reference` must be non-empty; got sizes {v.size}, {r.size}.")
    if not 0 < q < 1:
        raise ValueError(f"`q` must lie in (0, 1); got {q!r}.")
    return int(np.sum(v < np.quantile(r, q))), int(v.size)


# ---------------------------------------------------------------------------------------------
# the analyses of chapter 04 (one call each)


def rank_table(key, cases: Sequence[tuple[str, float | None]], K_values: Sequence[int], n_trials: int,
               dim: int) -> dict:
    r"""`rank_trials` for every measure case and every K: the idealised model of Proposition 2.2.

    Case c (a `(measure, cap_radius)` pair; radius None for the measures without one) and K
    use the key fold_in(key, 1000·c + K).

    Args:
        key: a `jax.random` key.  cases: `(measure, radius)` pairs, measures from `MEASURES`.
        K_values: numbers of vectors.  n_trials: trials per cell.  dim: QN.

    Returns:
        `{(measure, radius, K): rank_trials(...) dict}`, each entry of shape `(n_trials,)`.

    References:
        Proposition 2.2, (2.12)–(2.13).
    """
    table = {}
    for c, (measure, radius) in enumerate(cases):
        for K in K_values:
            table[measure, radius, K] = rank_trials(jax.random.fold_in(key, 1000 * c + K), n_trials, dim, K, measure,
                                                    cap_radius=radius or 0.1)
    return table


def rank_table_rows(table: dict, cases: Sequence[tuple[str, float | None]],
                    K_values: Sequence[int]) -> list[tuple[str, int, float, float, float]]:
    r"""The rows of chapter 04's table of `rank_table`: one per case and K, in that order.

    Args:
        table: the output of `rank_table`.  cases: its `(measure, radius)` pairs.  K_values: its K.

    Returns:
        `(label, K, full, ratio, gap)` per row: label the measure (``"cap ρ=1e-08"`` for a cap),
        full the fraction of trials with full numerical rank, ratio the median σ_min/σ_max, and
        gap the median gap σ_r/σ_{r+1} over the rank-deficient trials (NaN when every trial
        has full rank): ~1 for ill-conditioning, ≳ 1e10 for a structural rank loss.

    References:
        Proposition 2.2, (2.13).
    """
    rows = []
    for measure, radius in cases:
        label = measure if radius is None else f"cap ρ={radius:g}"
        for K in K_values:
            t = table[measure, radius, K]
            lost = ~np.asarray(t["full"])
            gap = float(np.median(np.asarray(t["gap"])[lost])) if lost.any() else math.nan
            rows.append((label, int(K), float(np.mean(t["full"])), float(np.median(t["ratio"])), gap))
    return rows


_batched_jacobian = jax.jit(jax.vmap(jacobian, in_axes=(None, 0, 0)), static_argnums=0)


def real_jacobian_conditioning(key, nets: Sequence[tuple[int, ...]], n_draws: int, N: int) -> dict:
    r"""Numerical rank and λ_min/λ_max of D Dᵀ for random (θ, X) of tanh MLPs: (2.13) in practice.

    Network a of `nets` draws θ by `init_params_batch`(fold_in(key, 7000 + a)) and inputs
    X ~ N(0, 1) of shape (n_draws, N, M) from fold_in(key, 8000 + a).

    Args:
        key: a `jax.random` key.  nets: widths `(M, …, Q)`.  n_draws: draws per network.  N: inputs.

    Returns:
        `{widths: {"K": int, "full": bool array (n_draws,), "lam": λ_min/λ_max of D Dᵀ (n_draws,)}}`;
        λ_min/λ_max = (σ_min/σ_max)² of `rank_report`.
    """
    n_draws = positive_int(n_draws, "n_draws")
    real = {}
    for a, widths in enumerate(nets):
        thetas = init_params_batch(jax.random.fold_in(key, 7000 + a), widths, n_draws)
        Xs = jax.random.normal(jax.random.fold_in(key, 8000 + a), (n_draws, N, widths[0]), dtype=np.float64)
        reps = [rank_report(D) for D in np.asarray(_batched_jacobian(mlp(widths), thetas, Xs))]
        real[widths] = dict(K=num_params(widths), full=np.array([r.full for r in reps]),
                            lam=np.array([r.ratio for r in reps]) ** 2)
    return real


class ColumnStatistics(NamedTuple):
    r"""How the normalised columns e_i of one real Jacobian differ from i.i.d. unit vectors (2.12).

    Attributes:
        overlaps: |⟨e_i, e_j⟩| over all pairs, shape `(K(K−1)/2,)`.
        overlaps_iid: the same for K i.i.d. uniform unit vectors of R^{QN}.
        bias_deviation: max |e_i − (e_k, …, e_k)/√N| over the output-bias columns.
        n_zero: pairs with overlap exactly 0.  n_structural: `structural_orthogonal_pairs(widths)`.
        structural_overlap: max |⟨e_i, e_j⟩| over the structurally orthogonal pairs.
        ks, ks_critical: two-sample KS statistic of the overlaps and its level-1e-3 critical value.
        ks_nonzero: the KS statistic of the non-zero overlaps.
    """

    overlaps: np.ndarray
    overlaps_iid: np.ndarray
    bias_deviation: float
    n_zero: int
    n_structural: int
    structural_overlap: float
    ks: float
    ks_critical: float
    ks_nonzero: float


def column_statistics(key, widths: Sequence[int], N: int) -> ColumnStatistics:
    r"""Column statistics (2.12) of D at one random (θ, X) of the MLP `widths`, against i.i.d. vectors.

    With k = fold_in(key, 9000): X ~ N(0, 1) of shape (N, M) from fold_in(k, 0), θ =
    `init_params`(k), and K i.i.d. uniform vectors of S^{QN−1} from fold_in(k, 1).

    Args:
        key: a `jax.random` key.  widths: `(M, …, Q)`.  N: number of inputs.

    Returns:
        A `ColumnStatistics`.
    """
    widths = tuple(widths)
    K, QN = num_params(widths), widths[-1] * positive_int(N, "N")
    kD = jax.random.fold_in(key, 9000)
    X = jax.random.normal(jax.random.fold_in(kD, 0), (N, widths[0]), dtype=np.float64)
    E, _ = normalized_columns(jacobian(mlp(widths), init_params(kD, widths), X))
    ov = column_overlaps(E)
    ov_iid = column_overlaps(sample_sphere(jax.random.fold_in(kD, 1), K, QN).T)
    idx, E_bias = output_bias_columns(widths, N)
    I, J = structural_orthogonal_pair_indices(widths)
    ks, ks_crit = ks_two_sample(ov, ov_iid)
    ks_nz, _ = ks_two_sample(ov[ov > 0], ov_iid)
    struct_overlap = float(np.max(np.abs(np.sum(E[:, I] * E[:, J], axis=0))))
    return ColumnStatistics(ov, ov_iid, float(np.max(np.abs(E[:, idx] - E_bias))), int(np.sum(ov == 0.0)),
                            structural_orthogonal_pairs(widths), struct_overlap, ks, ks_crit, ks_nz)


def adapted_orbit_outcomes(key, widths: Sequence[int], n_orbits: int, N: int, eps_rel: float,
                           rank_rtol: float) -> list[str]:
    r"""How `n_orbits` adapted orbits (1.30) of the MLP `widths` end by s_*(ε): rank kept or lost (2.1).

    Orbit i of hidden width h = widths[1] uses k = fold_in(key, 100·h + i): X ~ N(0, 1)
    (fold 0), one-hot targets of uniform labels (fold 3), θ(0) = `init_params` (fold 1).  Each
    runs to s_* = (N/2)·log(1/eps_rel) (2.18) with the rank-loss event σ_QN/σ_1 < `rank_rtol`
    (`regimes.orbit_outcome`).

    Args:
        key: a `jax.random` key.  widths: `(M, M_1, Q)`.  n_orbits: number of orbits.
        N: inputs.  eps_rel: ε as a fraction of C(0).  rank_rtol: the rank-loss threshold.

    Returns:
        One outcome of `orbit_outcome` per orbit (``"s1"``: rank QN kept up to s_*).
    """
    from .regimes import orbit_outcome

    widths = tuple(widths)
    M, h, Q = widths[0], widths[1], widths[-1]
    net = mlp(widths)
    outs = []
    for i in range(positive_int(n_orbits, "n_orbits")):
        k = jax.random.fold_in(key, 100 * h + i)
        Xo = jax.random.normal(jax.random.fold_in(k, 0), (N, M), dtype=np.float64)
        Yo = stacked_targets(np.asarray(jax.random.randint(jax.random.fold_in(k, 3), (N,), 0, Q)), one_hot_labels(Q))
        theta0 = init_params(jax.random.fold_in(k, 1), widths)
        s_star = 0.5 * N * np.log(1 / eps_rel)          # (2.18) with ε = eps_rel · C(0)
        outs.append(orbit_outcome("adapted", net, theta0, Xo, Yo, s1=s_star, n_save=51, rtol=1e-10, atol=1e-12,
                                  rank_rtol=rank_rtol, max_steps=20000)[1])
    return outs
