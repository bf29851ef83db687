r"""Benchmark: what one adapted direction (1.30) costs, by method and against the peers.

Run on demand (never in CI's timing assertions)::

    OPENBLAS_NUM_THREADS=1 python -m adaptedflow.bench            # QN ∈ {300, 1000, 3000}
    python -m adaptedflow.bench --quick                             # tiny sizes, a smoke run
    python -m adaptedflow.bench --size QN=1000                      # one size of either sweep

Each row is measured in a fresh subprocess (so its peak resident memory is its own):
the median wall time over `--repeats` runs after one compile-and-warm-up call, the peak
resident set size, and the ratio to one standard gradient (`jax.grad` of the cost) timed
in the same subprocess; for iterative methods the iterations; and for every direction
its relative difference from the structured one (a fast answer that is wrong is not a
win).  Rows: this package's ``structured``, ``dense`` and ``matrix-free`` directions (CG
with the Nyström preconditioner, and ``mf-jacobi`` / ``mf-none`` for the iteration
counts before and after), and the peers a user would otherwise reach for:
`jnp.linalg.pinv` and `jnp.linalg.lstsq` on jacrev's D, one `optimistix.GaussNewton` step
with ``jac="bwd"`` (timed at ``max_steps=1``, which computes one step; its accuracy is read
from ``max_steps=2``, since optimistix applies a step one iteration after computing it),
`lineax.LSMR` at rtol = atol = 1e-10 and at 1e-14 (the tolerance at which it matched
the others to ≤ 1e-10 at QN = 1000), and the Levenberg–Marquardt solvers: one step of
`optimistix.LevenbergMarquardt` (timed and read as GaussNewton's; its default QR of the
damped stack, skipped where that stack is too large, and with LSMR; its first step is
damped with λ = 1, which optimistix does not let a caller lower, so its accuracy is that
of the damped step, not of −D⁺r) and one `update` of `nlls_gram.LevenbergMarquardt` at
the smallest damping it allows (its Gram-space step −Jᵀ(J Jᵀ + λ)⁻¹r, by the Cholesky
factor of the QN × QN dual and by CG in residual space).  A peer that fails to import
gets its error as its row.  Every timed row also gets its ratio to the structured row
of its size (``x struct``; separate processes).  `neural-tangents` gets a row with the error its
import raises here (it is not a dependency: 0.6.5 was reported to import `jax.core.Jaxpr`,
gone from jax 0.10, and to pull in TensorFlow).
Set `OPENBLAS_NUM_THREADS` (and `XLA_FLAGS`) the same way for every run you compare:
LAPACK calls showed 10–50× spikes under load without it.

The book's chapters use the same module: chapter 11 the flop model (`direction_flops`,
`direction_cost_model`), the timing sweep (`time_direction_methods`) and its crossover
(`matrix_free_crossover`); chapter 10 the wall clock of its race (`interleaved_run_seconds`),
since nothing in `adaptedflow.paper` reads a clock.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import resource
import subprocess
import sys
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..cost import cost
from ..descent import compiled_run, prepare_run
from ..kernels import (
    DirectionOptions,
    adapted_step_direction,
    compiled_direction,
    direction_with_info,
    linearize_outputs,
    mlp_outputs_and_ntk,
)
from ..network import init_params, mlp
from ..problem import gaussian_clusters
from ..validation import positive_int


def direction_flops(widths, N: int) -> dict[str, float]:
    r"""Leading-order flop counts of one adapted direction (1.30), by method, for an MLP.

    With K parameters, QN outputs and hidden widths M_ℓ (a multiply–add counts 2):

    * dense: D by reverse mode, QN VJPs through the whole batch (≈ QN·4NK), the Gram
      D Dᵀ (2·QN²·K) and the Cholesky factor (QN³/3);
    * structured: the layer-wise kernel — per hidden layer δδᵀ (2·QN²·M_ℓ) and h hᵀ
      (2·N²·M_{ℓ−1}), for the output layer h_L h_Lᵀ only (its δ is e_q) — the back-
      propagated errors (QN·M_L + 2·QN·Σ_ℓ M_ℓ M_{ℓ+1} over consecutive hidden layers),
      the same Cholesky, one VJP (≈ 4NK);
    * one standard gradient: ≈ 6NK (forward and backward pass).

    Returns:
        Dict with keys ``"dense"``, ``"structured"``, ``"gram_dense"`` (D Dᵀ from D),
        ``"kernel"`` (the layer-wise kernel), ``"cholesky"``, ``"gradient"`` (flops),
        ``"K"``, ``"QN"``.
    """
    widths = tuple(int(w) for w in widths)
    K = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    Q = widths[-1]
    QN = Q * N
    chol = QN**3 / 3
    gram_dense = 2 * QN**2 * K
    dense = QN * 4 * N * K + gram_dense + chol
    kernel = sum(2 * QN**2 * m_out + 2 * N**2 * m_in for m_in, m_out in zip(widths[:-2], widths[1:-1], strict=True))
    kernel += 2 * N**2 * widths[-2]
    hidden = widths[1:-1]        # δ_L = W_out[q] ⊙ σ′ (QN·M_L), then one product per pair of hidden layers
    pairs = zip(hidden[:-1], hidden[1:], strict=True)
    backprop = (QN * hidden[-1] if hidden else 0) + 2 * QN * sum(a * b for a, b in pairs)
    return {"dense": float(dense), "structured": float(kernel + backprop + chol + 4 * N * K),
            "gram_dense": float(gram_dense), "kernel": float(kernel), "cholesky": float(chol),
            "gradient": float(6 * N * K), "K": K, "QN": QN}


def direction_cost_model(widths, N: int) -> dict[str, float]:
    r"""`direction_flops` with the ratios and sizes that say why a step costs what it costs.

    Adds to the flop counts: ``"gram_over_kernel"`` (forming D Dᵀ from D / forming it layer
    by layer), ``"cholesky_share"`` (the Cholesky factor's part of the structured total),
    ``"dense_over_structured"``, and the memory of D (8·QN·K bytes, ``"jacobian_mb"``) and of
    the kernel (8·(QN)² bytes, ``"kernel_mb"``), in MiB.

    Args:
        widths: the MLP's widths `(M, M_1, …, Q)`.  N: number of inputs.

    Returns:
        Dict: the keys of `direction_flops` and the five above.
    """
    f = direction_flops(widths, N)
    return {**f, "gram_over_kernel": f["gram_dense"] / f["kernel"], "cholesky_share": f["cholesky"] / f["structured"],
            "dense_over_structured": f["dense"] / f["structured"], "jacobian_mb": 8 * f["QN"] * f["K"] / 2**20,
            "kernel_mb": 8 * f["QN"] ** 2 / 2**20}


#: Named variants of `adapted_step_direction` for tables: name → (method, keyword arguments).
VARIANTS = {"structured": ("structured", {}), "dense": ("dense", {}),
            "matrix-free": ("matrix-free", {"precondition": "nystrom"}),
            "mf-jacobi": ("matrix-free", {"precondition": "jacobi"}),
            "mf-none": ("matrix-free", {"precondition": "none"})}


def time_direction_methods(widths, N: int, *, methods=("structured", "matrix-free", "dense"), repeats: int = 3,
                           key=None) -> dict:
    r"""Median wall seconds, XLA memory and accuracy of one adapted direction per method, in this process.

    Compiles each method once before timing; every time is the median of `repeats` runs,
    and one gradient is timed in the same process as the reference.  Memory is what the
    compiled direction allocates beyond its inputs and outputs (XLA's temporary buffers,
    `memory_analysis().temp_size_in_bytes`): D for dense, the kernel for structured, the
    sketch for Nyström.

    Args:
        methods: names of `VARIANTS`.

    Returns:
        Dict: ``K``, ``QN``, ``gradient`` (seconds), and per method: ``seconds``,
        ``iterations`` (CG), ``memory_mb`` and ``agreement`` (relative difference from
        the first method of `methods`).
    """
    unknown = sorted(set(methods) - set(VARIANTS))
    if unknown:
        raise ValueError(f"unknown methods {unknown}; choose from {sorted(VARIANTS)}.")
    key = jax.random.PRNGKey(0) if key is None else key
    widths = tuple(int(w) for w in widths)
    X, _, Y = gaussian_clusters(jax.random.fold_in(key, 0), N, widths[0], widths[-1])
    net = mlp(widths)
    theta = init_params(jax.random.fold_in(key, 1), widths)
    grad = jax.jit(jax.grad(lambda t: cost(net(t, X), Y)))

    def median_time(fn):
        jax.block_until_ready(fn())
        ts = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            ts.append(time.perf_counter() - t0)
        return float(np.median(ts))

    out = {"K": int(theta.size), "QN": int(widths[-1] * N), "gradient": median_time(lambda: grad(theta)),
           "seconds": {}, "iterations": {}, "agreement": {}, "memory_mb": {}}
    dirs = {}
    for name in methods:
        method, kw = VARIANTS[name]
        options = DirectionOptions(method=method, **kw)
        call = functools.partial(adapted_step_direction, net, theta, X, Y, options=options)
        out["seconds"][name] = median_time(functools.partial(lambda c: c()[0], call))
        u, info = call()
        dirs[name] = u
        out["iterations"][name] = int(info.iterations)
        resolved = options.resolve(net, "adapted", out["K"], out["QN"])[0]
        mem = compiled_direction.lower(net, "adapted", resolved, theta, X, Y).compile().memory_analysis()
        out["memory_mb"][name] = float(mem.temp_size_in_bytes) / 2**20
    ref = dirs[methods[0]]
    for name, u in dirs.items():
        out["agreement"][name] = float(jnp.linalg.norm(u - ref) / jnp.linalg.norm(ref))
    return out


class Crossover(NamedTuple):
    r"""Where the matrix-free direction overtakes the structured one, from a sweep over QN.

    Attributes:
        exponent_structured, exponent_matrix_free: p of t ∝ (QN)^p through the last two sizes.
        first_faster: the first QN of the sweep at which matrix-free was faster, or None.
        extrapolated: where the two power laws cross beyond the sweep (None if matrix-free was
            measured faster, or if structured grows no faster: no crossover in sight).
        kernel_gib: 8·(QN)² bytes at `extrapolated`, in GiB (None with it).
    """

    exponent_structured: float
    exponent_matrix_free: float
    first_faster: int | None
    extrapolated: float | None
    kernel_gib: float | None


def matrix_free_crossover(rows) -> Crossover:
    r"""The crossover QN of the matrix-free and the structured direction, measured or extrapolated.

    Fits t ∝ (QN)^p through the last two rows for each method; if matrix-free is never
    faster and its exponent is the smaller, the power laws cross at
    QN_× = QN_last·(t_mf/t_s)^{1/(p_s − p_mf)}.  Timing-derived: an order of magnitude.

    Args:
        rows: at least two results of `time_direction_methods` with ``"structured"`` and
            ``"matrix-free"`` timed, in increasing QN.

    Returns:
        A `Crossover`.
    """
    if len(rows) < 2:
        raise ValueError(f"`rows` must hold at least two sizes to fit an exponent; got {len(rows)}.")
    qn = np.array([r["QN"] for r in rows], float)
    t_s = np.array([r["seconds"]["structured"] for r in rows])
    t_m = np.array([r["seconds"]["matrix-free"] for r in rows])
    faster = t_m < t_s
    p_s = float(np.log(t_s[-1] / t_s[-2]) / np.log(qn[-1] / qn[-2]))
    p_m = float(np.log(t_m[-1] / t_m[-2]) / np.log(qn[-1] / qn[-2]))
    if faster.any():
        return Crossover(p_s, p_m, int(qn[np.argmax(faster)]), None, None)
    if p_s > p_m:
        cross = float(qn[-1] * (t_m[-1] / t_s[-1]) ** (1 / (p_s - p_m)))
        return Crossover(p_s, p_m, None, cross, 8 * cross**2 / 2**30)
    return Crossover(p_s, p_m, None, None, None)


def crossover_statement(cr: Crossover, rows, *, max_factor: float = 10.0) -> str:
    r"""What a `Crossover` supports, in short sentences (one per line, each under 100 characters).

    A crossover the sweep measured is reported as measured.  One extrapolated from the
    fitted power laws is labelled as an extrapolation, and given only if it lies at most
    `max_factor` times beyond the largest measured QN; farther out it is not shown.

    Args:
        cr: the result of `matrix_free_crossover` on `rows`.
        rows: the sweep it was computed from (results of `time_direction_methods`).
        max_factor: the farthest extrapolation given, as a multiple of the largest measured QN.

    Returns:
        The sentences, separated by newlines.
    """
    if max_factor < 1:
        raise ValueError(f"`max_factor` must be at least 1; got {max_factor!r}.")
    qn_max = max(int(r["QN"]) for r in rows)
    if cr.first_faster is not None:
        return f"Measured: matrix-free was faster than structured at QN = {cr.first_faster}, the first such size."
    measured = f"Measured: structured was faster at every size of the sweep (QN ≤ {qn_max})."
    if cr.extrapolated is None:
        return measured + "\nIts fitted exponent is no larger than matrix-free's: no crossover in sight."
    if cr.extrapolated > max_factor * qn_max:
        return (measured + f"\nThe fitted power laws cross only beyond {max_factor:g} × the largest measured QN: "
                "not shown.")
    return (measured + f"\nExtrapolated, not measured: the fitted power laws cross at QN ≈ {cr.extrapolated:.2g}"
            f"\n(where the kernel alone takes {cr.kernel_gib:.2g} GiB).")


def direction_time_summary(rows, methods=("structured", "matrix-free", "dense")) -> list[tuple]:
    r"""Per method, its time per direction in units of one gradient over a sweep, and where it was fastest.

    Args:
        rows: results of `time_direction_methods`, each with every method of `methods` timed.
        methods: the methods compared.

    Returns:
        One `(method, smallest ratio, largest ratio, sizes where fastest)` per method, the
        ratio being seconds per direction / seconds per gradient timed in the same process.
    """
    if not rows:
        raise ValueError("`rows` is empty: nothing to summarise.")
    fastest = [min(methods, key=lambda m: r["seconds"][m]) for r in rows]
    out = []
    for m in methods:
        ratios = [r["seconds"][m] / r["gradient"] for r in rows]
        out.append((m, min(ratios), max(ratios), fastest.count(m)))
    return out


def round_robin_seconds(fns, *, repeats: int = 5) -> np.ndarray:
    r"""Wall-clock seconds of zero-argument callables, timed round-robin so that load drift hits all alike.

    On a shared machine the load changes over seconds; timing each callable's repeats back to
    back lets that drift bias a comparison.  Here every callable is called once to compile and
    warm up (not timed), then repeat r of every callable is timed before repeat r + 1 of any.

    Args:
        fns: a sequence of callables `f() -> pytree of arrays` (waited on with
            `jax.block_until_ready`).
        repeats: timed repetitions of each, ≥ 1.

    Returns:
        Seconds, shape `(len(fns), repeats)`.
    """
    repeats = positive_int(repeats, "repeats")
    fns = list(fns)
    for fn in fns:
        jax.block_until_ready(fn())
    out = np.empty((len(fns), repeats))
    for r in range(repeats):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            jax.block_until_ready(fn())
            out[i, r] = time.perf_counter() - t0
    return out


def interleaved_run_seconds(specs, *, repeats: int = 5) -> np.ndarray:
    r"""Wall-clock seconds of whole `descent` runs, compiled first and timed by `round_robin_seconds`.

    Args:
        specs: a sequence of dicts of `descent` keyword arguments (`method`, `output_map`,
            `theta0`, `X`, `Y`, `step`, `n_steps`, optionally `damping`, `options`).
        repeats: timed repetitions of each run, ≥ 1.

    Returns:
        Seconds, shape `(len(specs), repeats)`; divide the median by `n_steps` for a step.
    """
    repeats = positive_int(repeats, "repeats")
    prepared = []
    for spec in specs:
        spec = dict(spec)
        try:
            args, static = prepare_run(spec.pop("method"), spec.pop("output_map"), spec.pop("theta0"),
                                       spec.pop("X"), spec.pop("Y"), step=spec.pop("step"),
                                       n_steps=spec.pop("n_steps"), damping=spec.pop("damping", None),
                                       options=spec.pop("options", None))
        except KeyError as err:
            raise ValueError(f"`specs` entries need descent's arguments; {err} is missing.") from None
        if spec:
            raise ValueError(f"`specs` entries take descent's arguments only; unknown keys {sorted(spec)}.")
        prepared.append(functools.partial(compiled_run.lower(*args, **static).compile(), *args))
    return round_robin_seconds(prepared, repeats=repeats)


def _interleaved_medians(fns: dict, repeats: int) -> dict[str, float]:
    """Median wall seconds of each zero-argument function (`round_robin_seconds`), by name."""
    seconds = round_robin_seconds(list(fns.values()), repeats=repeats)
    return {name: float(np.median(row)) for name, row in zip(fns, seconds, strict=True)}


#: Weight of the feedback that chains the iterations of `_in_loop`: x + 1e-200·y rounds to x in
#: float64 unless |x| < 1e-184·|y| (θ, α and the kernel's diagonal are far larger), and 1e-200·y
#: stays a normal number for |y| > 1e-108.
_CHAIN = 1e-200


def _in_loop(step, state, inner: int):
    """A zero-argument function running `inner` applications of `step` (state ↦ state) in one
    compiled loop, so that per-call costs (dispatch, and the fresh temporary buffers each call of a
    compiled function allocates and touches: at QN = 1000, ~18 of 62 ms for one direction called
    on its own) are paid once per `inner` evaluations, as inside the integrator's own loop.
    Each step must feed its result back into the state (see `_CHAIN`), so that XLA cannot hoist
    it out of the loop."""
    run = jax.jit(lambda s: jax.lax.fori_loop(0, inner, lambda _, s: step(s), s))
    return lambda: run(state)


def _throughput_problem(widths, N: int, seed: int, activation: str, X, Y):
    """`(net, theta, X, Y)`: an `adaptedflow.mlp`, θ0 from `init_params` and the data (Gaussian
    clusters from `seed` unless `X` and `Y` are given)."""
    widths = tuple(int(w) for w in widths)
    N = positive_int(N, "N")
    key = jax.random.PRNGKey(seed)
    if (X is None) != (Y is None):
        raise ValueError("`X` and `Y` go together: pass both (inputs (N, M), targets (N, Q)) or neither.")
    if X is None:
        X, _, Y = gaussian_clusters(jax.random.fold_in(key, 0), N, widths[0], widths[-1])
    X, Y = jnp.asarray(X, jnp.float64), jnp.asarray(Y, jnp.float64)
    if X.shape != (N, widths[0]) or Y.shape != (N, widths[-1]):
        raise ValueError(f"`X` must have shape (N, M) = ({N}, {widths[0]}) and `Y` (N, Q) = ({N}, {widths[-1]}); "
                         f"got {X.shape} and {Y.shape}.")
    return mlp(widths, activation), init_params(jax.random.fold_in(key, 1), widths), X, Y


#: The parts of one structured field evaluation that `field_throughput` times separately.
FIELD_PARTS = ("kernel", "cholesky", "vjp_jvp")


class FieldThroughput(NamedTuple):
    r"""Throughput of the structured adapted field (1.30) and where its time goes (`field_throughput`).

    Attributes:
        evaluations_per_second: 1 / `seconds_per_evaluation`.
        seconds_per_evaluation: median wall seconds of one field evaluation u = −Dᵀα, in a loop.
        part_seconds: median wall seconds of each part of `FIELD_PARTS`, each timed on its own:
            ``"kernel"`` (x and D Dᵀ layer by layer, (1.25)), ``"cholesky"`` (the factor of the
            QN × QN kernel) and ``"vjp_jvp"`` (the linearisation, the refinement steps' Dᵀ and D
            products and the final u = −Dᵀα).
        shares: the parts' and ``"other"``'s fractions of max(whole evaluation, sum of the parts);
            ``"other"`` = max(whole − sum of the parts, 0) holds the rest (triangular solves, ∇ₓC,
            the fallback tests).  They sum to 1.
        parts_over_whole: sum of the separately timed parts / the whole evaluation (above 1 when
            timing the parts alone loses what XLA shares between them in the whole).
        call_seconds: median wall seconds of one evaluation called on its own (one compiled call
            per evaluation, as `adapted_step_direction`), for comparison.
        refinements: refinement steps the evaluation took (each one VJP and one JVP).
        K, QN: parameters and outputs.  repeats: timed runs per median.  inner: evaluations per
            timed run.
    """

    evaluations_per_second: float
    seconds_per_evaluation: float
    part_seconds: dict
    shares: dict
    parts_over_whole: float
    call_seconds: float
    refinements: int
    K: int
    QN: int
    repeats: int
    inner: int


def _structured_field(net):
    """θ, X, Y ↦ u of (1.30) by the layer-wise kernel: what the integrator's vector field evaluates
    (the direction of `kernels.compiled_direction`, without the diagnostics it drops)."""
    options = DirectionOptions(method="structured")
    return lambda theta, X, Y: direction_with_info(net, "adapted", options, theta, X, Y).u


def _field_in_loop(net, theta, X, Y, inner: int):
    """`_in_loop` of the structured field, θ fed back: seconds per call / `inner` = per evaluation."""
    field = _structured_field(net)
    return _in_loop(lambda s: (s[0] + _CHAIN * field(*s), s[1], s[2]), (theta, X, Y), inner)


def field_throughput(widths, N: int, *, repeats: int = 5, inner: int = 5, seed: int = 0, activation: str = "tanh",
                     X=None, Y=None) -> FieldThroughput:
    r"""Structured adapted field evaluations (1.30) per second, and the shares of their parts.

    On `adaptedflow.mlp(widths, activation)` at θ0 = `init_params`, with QN = Q·N outputs,
    times one evaluation of u = −Dᵀα, (D Dᵀ)α = ∇ₓC, by the layer-wise kernel
    (``DirectionOptions(method="structured")``, the integrator's field), and separately its
    parts: the kernel D Dᵀ with x (`kernels.mlp_outputs_and_ntk`, (1.25)), the Cholesky
    factor of the QN × QN kernel (`jax.lax.linalg.cholesky`), and the products with D
    (`kernels.linearize_outputs`: the linearisation, then per refinement step one VJP and
    one JVP, then u = −Dᵀα).  **The parts are timed separately**, each its own compiled
    function, so their sum need not equal the whole: the shares are of max(whole, sum),
    with the rest as ``"other"``.

    Every piece runs `inner` times in one compiled loop, each iteration fed the previous
    one's result (so nothing is hoisted out), and seconds per call / `inner` is one
    evaluation, as the integrator pays it inside its own loop; `call_seconds` is one
    evaluation called on its own, which adds the per-call costs.  Every time is the median
    of `repeats` runs after one compile-and-warm-up call, all pieces timed round-robin so
    that load drift hits them alike.

    Args:
        widths: the MLP's widths `(M, M_1, …, Q)`, K ≥ QN.
        N: number of inputs.
        repeats: timed runs per median, ≥ 1.  inner: evaluations per timed run, ≥ 1.
        seed: the data (Gaussian clusters, unless `X`, `Y` are given) and θ0.
        activation: the MLP's activation.
        X, Y: optional data, shapes `(N, M)` and `(N, Q)`.

    Returns:
        A `FieldThroughput`.
    """
    repeats, inner = positive_int(repeats, "repeats"), positive_int(inner, "inner")
    net, theta, X, Y = _throughput_problem(widths, N, seed, activation, X, Y)
    K, QN = int(theta.size), int(Y.size)
    if K < QN:
        raise ValueError(f"the structured field (1.30) needs K ≥ QN; got K = {K}, QN = {QN}. Widen the network.")
    info = compiled_direction(net, "adapted", DirectionOptions(method="structured"), theta, X, Y)
    refinements = max(int(getattr(info, "refinements", 1)), 1)
    field = jax.jit(_structured_field(net))
    G = jax.block_until_ready(jax.jit(lambda t, X: mlp_outputs_and_ntk(net, t, X)[1])(theta, X))

    def kernel(state):                   # G is carried out of the step: formed in full, as the field needs it
        t, X, _ = state
        G = mlp_outputs_and_ntk(net, t, X)[1]
        return t + _CHAIN * G[-1, -1], X, G

    def cholesky(state):                 # as the field factors it: Gᵀ (the same matrix), no symmetrising
        G, c = state
        L = jax.lax.linalg.cholesky((G + c * jnp.eye(QN, dtype=G.dtype)).T, symmetrize_input=False)
        return G, _CHAIN * L[-1, -1]

    def products(state):
        t, X, a = state
        _, Dt, Dv = linearize_outputs(net, t, X)
        for _ in range(refinements):
            a = a + _CHAIN * Dv(Dt(a))
        return t - _CHAIN * Dt(a), X, a

    pieces = {"whole": _field_in_loop(net, theta, X, Y, inner),
              "kernel": _in_loop(kernel, (theta, X, G), inner),
              "cholesky": _in_loop(cholesky, (G, jnp.zeros((), G.dtype)), inner),
              "vjp_jvp": _in_loop(products, (theta, X, Y.reshape(-1)), inner),
              "call": lambda: field(theta, X, Y)}
    t = _interleaved_medians(pieces, repeats)
    call = t.pop("call")
    t = {name: v / inner for name, v in t.items()}
    whole = t.pop("whole")
    parts = sum(t.values())
    total = max(whole, parts)
    shares = {name: t[name] / total for name in FIELD_PARTS}
    shares["other"] = max(whole - parts, 0.0) / total
    return FieldThroughput(1.0 / whole, whole, t, shares, parts / whole, call, refinements, K, QN, repeats, inner)


class StepCost(NamedTuple):
    r"""What one accepted step of the adapted integrator costs, in field evaluations (`integrator_step_cost`).

    Attributes:
        seconds_per_step: median over repeats of the marginal seconds per accepted step,
            (long orbit − short orbit seconds) / (long − short accepted steps).
        seconds_per_evaluation: median seconds of one structured field evaluation, timed in a
            compiled loop (as `field_throughput`) after the orbits of each repeat.
        ratio: median over repeats of (seconds per step) / (seconds per evaluation), each
            repeat's times taken back to back.
        n_steps, n_steps_short: accepted steps of the long orbit (over [0, s1]) and the short
            one (over [0, s1/100]).
        orbit_seconds, short_seconds: median wall seconds of the two `integrate_flow` calls.
        s1: the span of the long orbit.  K, QN: parameters and outputs.  repeats: timed pairs.
    """

    seconds_per_step: float
    seconds_per_evaluation: float
    ratio: float
    n_steps: int
    n_steps_short: int
    orbit_seconds: float
    short_seconds: float
    s1: float
    K: int
    QN: int
    repeats: int


def integrator_step_cost(widths, N: int, *, s1: float = 2.0, rtol: float = 1e-11, atol: float = 1e-13,
                         n_save: int = 2, repeats: int = 3, evaluations: int = 5, seed: int = 0,
                         activation: str = "tanh", X=None, Y=None) -> StepCost:
    r"""Wall seconds of one accepted step of the adapted flow (1.30), in units of one field evaluation.

    Times `integrate_flow("adapted", …, jacobian="structured")` from θ0 = `init_params` over
    [0, `s1`] and over [0, `s1`/100] (s1 is traced: one compilation, by a first untimed short
    call), with the same number of saved times.  The difference of the two, per accepted
    step of difference, is the marginal cost of an accepted step: what an orbit pays once
    (the checks at θ0, the step-size selection at s = 0, the saves, the call) cancels.
    Each repeat times the two orbits, then `evaluations` field evaluations in one compiled
    loop (as `field_throughput`: an evaluation inside a loop, as the integrator's stages pay
    it), in the same process; the ratio (seconds per step) / (seconds per evaluation) is
    formed per repeat and its median reported, so load that drifts slowly cancels.  Tsit5
    evaluates 6 new stages per accepted step (the 7th is the next step's first, FSAL); the
    ratio adds to that the rank-loss event of every step and the stages of rejected steps.

    Args:
        widths: the MLP's widths `(M, M_1, …, Q)`, K ≥ QN.  N: number of inputs.
        s1: the span of s of the long orbit, > 0.  rtol, atol: the integrator's tolerances.
        n_save: saved times of each orbit (including 0 and its end), ≥ 1.
        repeats: timed pairs of orbits, ≥ 1.  evaluations: field evaluations per repeat, ≥ 1.
        seed, activation, X, Y: as `field_throughput`.

    Returns:
        A `StepCost`.

    Raises:
        ValueError: `s1` not positive and finite, or so short that both orbits take the same
            number of accepted steps.
    """
    from ..integrate import integrate_flow

    repeats = positive_int(repeats, "repeats")
    evaluations = positive_int(evaluations, "evaluations")
    if not np.isfinite(s1) or s1 <= 0:
        raise ValueError(f"`s1` must be a positive finite time; got {s1!r}.")
    net, theta, X, Y = _throughput_problem(widths, N, seed, activation, X, Y)
    K, QN = int(theta.size), int(Y.size)
    orbit = functools.partial(integrate_flow, "adapted", net, theta, X, Y, rtol=rtol, atol=atol,
                              n_save=positive_int(n_save, "n_save"), jacobian="structured")
    spans = (s1 / 100, s1)
    orbit(s1=spans[0])                               # compiles the solver
    fields = _field_in_loop(net, theta, X, Y, evaluations)
    jax.block_until_ready(fields())
    per_step, per_eval, ratios, seconds, counts = [], [], [], ([], []), ([], [])
    for _ in range(repeats):
        for span, n, out in zip(spans, counts, seconds, strict=True):
            t0 = time.perf_counter()
            n.append(int(orbit(s1=span).n_steps))
            out.append(time.perf_counter() - t0)
        if counts[1][-1] <= counts[0][-1]:
            raise ValueError(f"`s1` = {s1!r} is too short: the orbits over s1/100 and s1 both take {counts[1][-1]} "
                             "accepted steps. Take a longer span.")
        t0 = time.perf_counter()
        jax.block_until_ready(fields())
        per_eval.append((time.perf_counter() - t0) / evaluations)
        per_step.append((seconds[1][-1] - seconds[0][-1]) / (counts[1][-1] - counts[0][-1]))
        ratios.append(per_step[-1] / per_eval[-1])
    if len(set(counts[0])) > 1 or len(set(counts[1])) > 1:
        raise RuntimeError(f"the same orbits took different numbers of accepted steps: {counts}.")
    return StepCost(float(np.median(per_step)), float(np.median(per_eval)), float(np.median(ratios)), counts[1][0],
                    counts[0][0], float(np.median(seconds[1])), float(np.median(seconds[0])), float(s1), K, QN,
                    repeats)

OURS = VARIANTS          # this package's rows
SIZES = {  # (label, widths, N): QN = Q·N, K from the widths
    "full": [("QN=300", (16, 64, 64, 10), 30), ("QN=1000", (16, 256, 256, 10), 100),
             ("QN=1000,K=270k", (16, 512, 512, 10), 100), ("QN=3000", (16, 512, 512, 10), 300)],
    "quick": [("QN=40", (4, 32, 32, 4), 10), ("QN=120", (8, 64, 64, 6), 20)],
}
#: LSMR at its usual tolerance, and at the tolerance that matches the others to ≤ 1e-10
LSMR_TOLS = {"lineax-lsmr": 1e-10, "lineax-lsmr-tight": 1e-14}
#: optimistix's Levenberg–Marquardt with its default linear solver (QR of the damped stack [D; √λ·1],
#: (QN + K) × K) and with LSMR (matrix-free); nlls-gram's, by the Cholesky factor of the QN × QN dual
#: (its default for K > QN) and by CG in residual space (matrix-free)
LM_METHODS = ("optimistix-lm", "optimistix-lm-lsmr", "nlls-gram", "nlls-gram-cg")
METHODS = ("grad", *OURS, "pinv", "lstsq", "optimistix-gn", *LM_METHODS, *LSMR_TOLS)
SKIP_DENSE_ABOVE = 150e6          # QN·K entries: the peers that form D would need > 1.2 GB for it alone
#: peers that never form D (or, for optimistix-lm, form the larger (QN + K) × K stack instead)
MATRIX_FREE_PEERS = ("lineax-lsmr", "lineax-lsmr-tight", "optimistix-lm-lsmr", "nlls-gram-cg")


def _measure(method: str, widths: tuple, N: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    import adaptedflow as af

    Q = widths[-1]
    X, _, Y = af.gaussian_clusters(jax.random.PRNGKey(0), N, widths[0], Q)
    net = af.mlp(tuple(widths))
    theta = af.init_params(jax.random.PRNGKey(1), widths)
    K, QN = theta.size, Q * N
    loss = lambda t: af.cost(net(t, X), Y)
    grad = jax.jit(jax.grad(loss))
    iterations = None
    scale = 1.0                                          # peer output = scale · (−D⁺∇ₓC)
    if method == "grad":
        fn = lambda: grad(theta)
    elif method in OURS:
        name, kw = OURS[method]
        fn = lambda: af.adapted_step_direction(net, theta, X, Y, method=name, **kw)[0]
        if name == "matrix-free":
            iterations = int(af.adapted_step_direction(net, theta, X, Y, method=name, **kw)[1].iterations)
    else:
        if method == "optimistix-lm" and (QN + K) * K > SKIP_DENSE_ABOVE:     # QR of [D; √λ·1]
            return {"skipped": f"the damped stack [D; √λ·1] would have {(QN + K) * K / 1e6:.0f}M entries"}
        if QN * K > SKIP_DENSE_ABOVE and method not in MATRIX_FREE_PEERS:
            return {"skipped": f"D would have {QN * K / 1e6:.0f}M entries"}
        jac = jax.jit(jax.jacrev(lambda t: net(t, X)))
        res = jax.jit(lambda t: net(t, X) - Y.reshape(-1))
        if method == "pinv":
            fn = jax.jit(lambda: -jnp.linalg.pinv(jac(theta)) @ res(theta) / N)
        elif method == "lstsq":
            fn = jax.jit(lambda: -jnp.linalg.lstsq(jac(theta), res(theta) / N)[0])
        elif method == "optimistix-gn" or method.startswith("optimistix-lm"):
            import lineax as lx
            import optimistix as optx

            # residual r/√N (so its half-square is C): the Gauss–Newton step is −D⁺r = N·u.
            # optimistix computes the step in its first iteration (D by jacrev, the linear
            # solve) and applies it in the second, which computes the next step as well;
            # max_steps=1 returns θ unchanged.  So the time is that of max_steps=1 (one step
            # computed), and the accuracy is that of the step max_steps=2 applies.
            # Levenberg–Marquardt's first step is damped: λ = 1/(initial trust-region step size 1)
            # = 1, added to DᵀD/N; optimistix offers no argument to start lower, so its row's
            # accuracy is that of the step a user of the defaults gets, −(DᵀD/N + 1)⁻¹Dᵀ(x − y)/N,
            # not of −D⁺(x − y).
            if method == "optimistix-gn":
                solver = optx.GaussNewton(rtol=1e-12, atol=1e-12)
            else:
                linear_solver = (lx.LSMR(rtol=1e-10, atol=1e-10, max_steps=100_000) if method.endswith("lsmr")
                                 else lx.QR())
                solver = optx.LevenbergMarquardt(rtol=1e-12, atol=1e-12, linear_solver=linear_solver)

            def optx_steps(steps):
                return jax.jit(lambda: optx.least_squares(
                    lambda t, _: (net(t, X) - Y.reshape(-1)) / np.sqrt(N), solver, theta, max_steps=steps,
                    throw=False, options={"jac": "bwd"}).value - theta)

            fn, applied = optx_steps(1), optx_steps(2)
            scale = float(N)
        elif method.startswith("nlls-gram"):
            import nlls_gram

            # One `update` of nlls_gram.LevenbergMarquardt on the residual r/√N: the Gram-space
            # step −Jᵀ(J Jᵀ + λ1)⁻¹r with J = D/√N, i.e. N·u as λ → 0.  λ starts at init_damping,
            # clamped to the smallest normal float (the package's documented small-damping limit
            # is the minimum-norm Gauss–Newton step); no geodesic correction (a second solve).
            # The timed update also evaluates r at θ + step, to accept it or not; a rejected step
            # leaves θ and shows as rel. diff = 1.
            if method == "nlls-gram":
                linear_solver = nlls_gram.Cholesky()          # form="auto": the QN × QN dual for K > QN
            else:
                linear_solver = nlls_gram.GramCG(preconditioner=nlls_gram.IdentityPreconditioner(), tol=1e-12,
                                                 maxiter=100_000)
            lm = nlls_gram.LevenbergMarquardt(lambda t: (net(t, X) - Y.reshape(-1)) / np.sqrt(N),
                                              init_damping=1e-300, geodesic_acceleration=False,
                                              linear_solver=linear_solver)
            state = lm.init(theta)
            update = jax.jit(lambda: lm.update(theta, state)[0] - theta)
            fn, applied = update, update
            scale = float(N)
        elif method.startswith("lineax-lsmr"):
            import lineax as lx

            tol = LSMR_TOLS[method]
            op = lx.JacobianLinearOperator(lambda t, _: net(t, X), theta, jac="bwd")

            def lsmr():
                sol = lx.linear_solve(op, -res(theta) / N, lx.LSMR(rtol=tol, atol=tol, max_steps=100_000), throw=False)
                return sol.value, sol.stats["num_steps"]

            lsmr = jax.jit(lsmr)
            fn = lambda: lsmr()[0]
            iterations = int(lsmr()[1])
        else:
            raise ValueError(method)
    u = jax.block_until_ready(fn())
    jax.block_until_ready(grad(theta))
    times, gtimes = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
        t = time.perf_counter()
        jax.block_until_ready(grad(theta))
        gtimes.append(time.perf_counter() - t)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"K": int(K), "QN": int(QN), "seconds": float(np.median(times)),
           "ratio_to_grad": float(np.median(times) / np.median(gtimes)), "peak_mb": float(peak_mb),
           "iterations": iterations}
    if method == "optimistix-gn" or method in LM_METHODS:
        u = applied()
    if method != "grad":                                 # accuracy against the structured direction
        ref = af.adapted_step_direction(net, theta, X, Y, method="structured")[0]
        out["rel_diff"] = float(jnp.linalg.norm(u / scale - ref) / jnp.linalg.norm(ref))
    return out


def _all_sizes() -> list[tuple]:
    """Every `(label, widths, N)` of `SIZES`, full sweep first."""
    return [s for group in SIZES.values() for s in group]


def _neural_tangents_status() -> str:
    """Why neural-tangents has no timing row: the import error as raised here."""
    proc = subprocess.run([sys.executable, "-c", "import neural_tangents"], capture_output=True, text=True)
    if proc.returncode == 0:
        return "it imports, but has no row yet"
    last = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
    return f"`import neural_tangents` fails: {last[:110]}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m adaptedflow.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run, seconds)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--json", default=None, help="also write the rows to this file")
    parser.add_argument("--size", default=None,
                        help=f"only this size, by label ({', '.join(label for label, _, _ in _all_sizes())})")
    parser.add_argument("--one", nargs=3, metavar=("METHOD", "WIDTHS", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        method, widths, N = args.one
        print(json.dumps(_measure(method, tuple(json.loads(widths)), int(N), args.repeats)))
        return 0
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; choose from {', '.join(METHODS)}")
    env = dict(os.environ)
    env.setdefault("OPENBLAS_NUM_THREADS", "1")
    print(f"OPENBLAS_NUM_THREADS={env['OPENBLAS_NUM_THREADS']} XLA_FLAGS={env.get('XLA_FLAGS', '')!r}; "
          f"median of {args.repeats}; float64")
    print(f"{'size':<16} {'method':<18} {'K':>8} {'QN':>6} {'seconds':>9} {'x grad':>8} {'x struct':>8} "
          f"{'peak MB':>8} {'iters':>6} {'rel. diff':>9}")
    rows = []
    sizes = SIZES["quick" if args.quick else "full"]
    if args.size is not None:
        sizes = [s for s in _all_sizes() if s[0] == args.size]
        if not sizes:
            parser.error(f"unknown size {args.size!r}; choose from {', '.join(s[0] for s in _all_sizes())}")
    for label, widths, N in sizes:
        structured = None
        for method in methods:
            cmd = [sys.executable, "-m", "adaptedflow.bench", "--repeats", str(args.repeats),
                   "--one", method, json.dumps(list(widths)), str(N)]
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            try:
                row = json.loads(proc.stdout.strip().splitlines()[-1])
            except (ValueError, IndexError):
                last = (proc.stderr.strip().splitlines() or [""])[-1][:80]
                killed = " (SIGKILL: out of memory, most likely)" if proc.returncode == -9 else ""
                row = {"error": f"exit {proc.returncode}{killed} {last}".strip()}
            row.update(size=label, method=method)
            rows.append(row)
            if method == "structured" and "seconds" in row:
                structured = row["seconds"]
            if "seconds" in row:
                its = "" if row.get("iterations") is None else row["iterations"]
                diff = f"{row['rel_diff']:.1e}" if "rel_diff" in row else ""
                if structured is not None:
                    row["ratio_to_structured"] = row["seconds"] / structured
                ratio = f"{row['ratio_to_structured']:.2f}" if "ratio_to_structured" in row else ""
                print(f"{label:<16} {method:<18} {row['K']:>8} {row['QN']:>6} {row['seconds']:>9.4f} "
                      f"{row['ratio_to_grad']:>8.1f} {ratio:>8} {row['peak_mb']:>8.0f} {its:>6} {diff:>9}",
                      flush=True)
            else:
                print(f"{label:<16} {method:<18} {row.get('skipped') or row.get('error')}", flush=True)
        print(f"{label:<16} {'neural-tangents':<18} cannot run: {_neural_tangents_status()}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
