r"""Adapted descent in discrete time, and the optimisers it is compared with.

Explicit Euler with step h on the adapted flow (1.30) is *adapted descent*,

    θ_{k+1} = θ_k − h D[θ_k]⁺ ∇_x C[x[θ_k]],

and in the output layer, by Taylor's theorem and D D⁺ = 1 (1.27),

    x_{k+1} − y_ω = (1 − h/N)(x_k − y_ω) + ½ h² x''[v_k, v_k] + O(h³),   v_k = −D⁺∇_x C,

so C_k ≈ (1 − h/N)^{2k} C_0, the discrete form of (2.6).  At h = N the step is
θ_{k+1} = θ_k − D⁺(x_k − y_ω): the minimum-norm Gauss–Newton step, which puts the
*linearised* outputs on the targets.  The damped (Levenberg–Marquardt / Tikhonov) variant
replaces D⁺ by Dᵀ(D Dᵀ + λ1)⁻¹; in the output layer it contracts the component of
x − y_ω along an eigenvector of D Dᵀ with eigenvalue σ² by 1 − (h/N)·σ²/(σ² + λ).

Every run is one `jax.lax.scan`, compiled once per (output map, method, shapes, number of
steps) and reused for any step size, damping or learning rate (they are traced
arguments).  Wall-clock times are medians over repeats of the compiled run, compile time
excluded and reported apart.
"""

from __future__ import annotations

import functools
import math
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ._checks import as_float64, require_shape, validate_data
from .cost import cost, outputs_and_jacobian
from .flows import adapted_direction
from .kernels import _vjp_jvp, is_structured, structured_gram_solve
from .linalg import gram_solve

#: The methods `descent` runs, with the update each implements.
METHODS = {
    "adapted": "θ ← θ − h D⁺ ∇_x C (explicit Euler of (1.30)); with `damping` λ: D⁺ → Dᵀ(D Dᵀ + λ1)⁻¹",
    "gd": "θ ← θ − η ∇_θ C = θ − η Dᵀ ∇_x C (explicit Euler of (1.9))",
    "adam": "optax.adam(η) on C[x[θ]] (Kingma & Ba 2015)",
}


class DescentRun(NamedTuple):
    r"""One run of a discrete optimiser from θ_0.

    Attributes:
        method: a key of `METHODS`.
        step: h (adapted descent) or the learning rate η (gd, adam).
        damping: λ of the damped variant (None: undamped; only for `"adapted"`).
        costs: C_k = C[x[θ_k]], k = 0..n, shape `(n + 1,)`.
        thetas: θ_k, shape `(n + 1, K)`.
        seconds: wall-clock seconds to reach step k, k·(median run time)/n, shape `(n + 1,)`.
        step_seconds: median run time / n (every step costs the same: fixed shapes).
        run_seconds: the wall-clock time of each timed repeat of the whole run, shape `(repeats,)`.
        compile_seconds: time to trace and compile the run (not in `seconds`).
        train_accuracy, test_accuracy: fraction of inputs whose largest output is at their
            label, at θ_n (NaN where no data were given).
    """

    method: str
    step: float
    damping: float | None
    costs: np.ndarray
    thetas: np.ndarray
    seconds: np.ndarray
    step_seconds: float
    run_seconds: np.ndarray
    compile_seconds: float
    train_accuracy: float
    test_accuracy: float


# --------------------------------------------------------------------------- validation

def _check_step(h: float, N: int) -> float:
    if isinstance(h, bool) or not isinstance(h, (int, float, np.integer, np.floating)):
        raise TypeError(f"`h` must be a real number; got {type(h).__name__}.")
    h = float(h)
    if not math.isfinite(h) or h <= 0:
        raise ValueError(f"`h` must be > 0 (a step forward along the flow); got h = {h}.")
    if h >= 2 * N:
        raise ValueError(
            f"`h` must be < 2N = {2 * N}: the linearised iteration x_{{k+1}} − y_ω = (1 − h/N)(x_k − y_ω) "
            f"has factor 1 − h/N = {1 - h / N:.3g} ≤ −1 and does not converge; got h = {h}. "
            f"Use h = N = {N} for the Gauss–Newton step."
        )
    return h


def _check_positive_int(n, name: str) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"`{name}` must be a positive integer; got {n!r}.")
    return int(n)


def _check_damping(damping) -> float | None:
    if damping is None:
        return None
    damping = float(damping)
    if not math.isfinite(damping) or damping < 0:
        raise ValueError(f"`damping` must be ≥ 0 (λ in D Dᵀ + λ1), or None for undamped; got {damping}.")
    return damping


def _check_data(theta0, X, Y):
    return validate_data(theta0, X, Y)


# --------------------------------------------------------------------------- closed forms

def discrete_factor(h: float, N: int) -> float:
    r"""The linearised output contraction 1 − h/N of adapted descent (Euler on (1.11)).

    Args:
        h: step, 0 < h < 2N.
        N: number of training inputs.

    Returns:
        1 − h/N ∈ (−1, 1); 0 at h = N (one Gauss–Newton step).

    Raises:
        ValueError: h ≤ 0 or h ≥ 2N (the linearised iteration does not converge).
    """
    N = _check_positive_int(N, "N")
    return 1.0 - _check_step(h, N) / N


def discrete_cost(C0: float, h: float, N: int, k) -> np.ndarray:
    r"""C_k = (1 − h/N)^{2k} C_0: the discrete rate, exact for the identity output map.

    Args:
        C0: initial cost C_0 ≥ 0.
        h: step, 0 < h < 2N.
        N: number of training inputs.
        k: step indices, any shape.

    Returns:
        Array of the shape of `k`.
    """
    q = discrete_factor(h, N)
    return float(C0) * (q * q) ** np.asarray(k, dtype=np.float64)


def stopping_steps(C0: float, eps: float, h: float, N: int) -> int:
    r"""k_*(ε) = min{k ≥ 0 : (1 − h/N)^{2k} C_0 ≤ ε}, the discrete analogue of (2.18).

    k_* = ⌈log(ε/C_0) / (2 log|1 − h/N|)⌉ for 0 < ε < C_0, 0 for ε ≥ C_0, and 1 at h = N.
    As h → 0, h·k_* → s_*(ε) = (N/2) log(C_0/ε) (2.18).

    Args:
        C0: initial cost, > 0.
        eps: target cost, > 0.
        h: step, 0 < h < 2N.
        N: number of training inputs.

    Raises:
        ValueError: `eps` ≤ 0 (the rate never reaches 0 for h ≠ N), `C0` ≤ 0, or a bad `h`.
    """
    q = discrete_factor(h, N)
    C0, eps = float(C0), float(eps)
    if not C0 > 0:
        raise ValueError(f"`C0` must be > 0; got {C0}. At C_0 = 0, θ_0 is already a global minimizer.")
    if not eps > 0:
        raise ValueError(f"`eps` must be > 0: C_k = (1 − h/N)^(2k) C_0 > 0 for every k when h ≠ N; got {eps}.")
    if eps >= C0:
        return 0
    if q == 0.0:
        return 1
    return int(math.ceil(math.log(eps / C0) / (2.0 * math.log(abs(q)))))


def damped_factors(sigma, h: float, N: int, damping: float) -> np.ndarray:
    r"""Per-mode linearised factors 1 − (h/N)·σ_i²/(σ_i² + λ) of damped adapted descent.

    x_{k+1} − y_ω ≈ (1 − (h/N) D Dᵀ(D Dᵀ + λ1)⁻¹)(x_k − y_ω): the component of x_k − y_ω
    along the left singular vector of D with singular value σ_i is multiplied by this
    factor.  λ = 0 gives 1 − h/N for every mode; damping slows the modes with σ_i² ≲ λ most.

    Args:
        sigma: singular values of D, shape `(QN,)` (σ_i > 0 unless λ > 0).
        h: step, 0 < h < 2N.
        N: number of training inputs.
        damping: λ ≥ 0.

    Returns:
        Shape `(QN,)`.
    """
    q = discrete_factor(h, N)
    lam = _check_damping(damping)
    if lam is None:
        raise ValueError("`damping` must be a number λ ≥ 0 here; got None. Use 0.0 for undamped.")
    s2 = np.asarray(sigma, dtype=np.float64) ** 2
    return 1.0 - (1.0 - q) * s2 / (s2 + lam)


def first_step_below(costs, eps: float) -> int:
    r"""The measured stopping step: min{k : C_k ≤ ε}, or −1 if the run never gets there.

    Args:
        costs: C_k, shape `(n + 1,)`.
        eps: target cost.
    """
    costs = np.asarray(costs, dtype=np.float64)
    if costs.ndim != 1:
        raise ValueError(f"`costs` must be 1-D (n + 1,); got shape {costs.shape}.")
    hit = np.nonzero(costs <= eps)[0]
    return int(hit[0]) if hit.size else -1


# --------------------------------------------------------------------------- directions

def damped_adapted_direction(D: jax.Array, grad_x: jax.Array, damping) -> jax.Array:
    r"""−Dᵀ(D Dᵀ + λ1)⁻¹ ∇_x C: the Levenberg–Marquardt (Tikhonov) damped adapted field.

    Solved as the Gram system of the stacked matrix A = [D, √λ·1] (A Aᵀ = D Dᵀ + λ1) with
    `gram_solve` (Cholesky plus one refinement step), so λ = 0 gives `adapted_direction`
    exactly.  In the output layer the linearised step is D u = −D Dᵀ(D Dᵀ + λ1)⁻¹ ∇_x C:
    an eigen-direction of D Dᵀ with eigenvalue σ² is moved by the fraction σ²/(σ² + λ).

    Args:
        D: Jacobian, shape `(QN, K)`.
        grad_x: ∇_x C, shape `(QN,)`.
        damping: λ ≥ 0, a scalar (may be traced).

    Returns:
        Shape `(K,)`, in range(Dᵀ).
    """
    n = D.shape[0]
    A = jnp.concatenate([D, jnp.sqrt(damping) * jnp.eye(n, dtype=D.dtype)], axis=1)
    alpha, _ = gram_solve(A, grad_x)
    return -D.T @ alpha


# --------------------------------------------------------------------------- compiled runs

@functools.lru_cache(maxsize=64)
def _compiled_run(method: str, output_map, n_steps: int, damped: bool):
    """A jitted `run(theta0, X, Y, step, damping) -> (costs (n+1,), thetas (n+1, K))`."""

    def loss(theta, X, Y):
        return cost(output_map(theta, X), Y)

    if method == "adapted" and is_structured(output_map):
        def update(theta, state, X, Y, h, lam):      # layer-wise kernel: no D (`kernels`)
            x, Dt, Dv = _vjp_jvp(output_map, theta, X)
            g = (x - Y.reshape(-1)) / Y.shape[0]
            alpha, _ = structured_gram_solve(output_map, theta, X, g, Dt, Dv, lam if damped else None)
            return theta - h * Dt(alpha), state, cost(x, Y)
        init_state = lambda theta, step: ()
    elif method == "adapted":
        def update(theta, state, X, Y, h, lam):
            x, D = outputs_and_jacobian(output_map, theta, X)
            g = (x - Y.reshape(-1)) / Y.shape[0]
            v = damped_adapted_direction(D, g, lam) if damped else adapted_direction(D, g)
            return theta + h * v, state, cost(x, Y)
        init_state = lambda theta, step: ()
    elif method == "gd":
        def update(theta, state, X, Y, lr, lam):
            c, grad = jax.value_and_grad(loss)(theta, X, Y)
            return theta - lr * grad, state, c
        init_state = lambda theta, step: ()
    else:
        import optax

        def update(theta, state, X, Y, lr, lam):
            c, grad = jax.value_and_grad(loss)(theta, X, Y)
            upd, state = optax.adam(lr).update(grad, state, theta)
            return optax.apply_updates(theta, upd), state, c
        init_state = lambda theta, lr: optax.adam(lr).init(theta)

    @jax.jit
    def run(theta0, X, Y, step, lam):
        def body(carry, _):
            theta, state = carry
            new, state, c = update(theta, state, X, Y, step, lam)
            return (new, state), (c, theta)

        (theta_n, _), (costs, thetas) = jax.lax.scan(body, (theta0, init_state(theta0, step)), None,
                                                      length=n_steps)
        costs = jnp.append(costs, loss(theta_n, X, Y))
        thetas = jnp.concatenate([thetas, theta_n[None]], axis=0)
        return costs, thetas

    return run


def classification_accuracy(output_map, theta, X, labels) -> float:
    r"""Fraction of inputs j whose largest output component is at their label ω(j).

    Args:
        output_map: `output_map(theta, X) -> x`, shape `(QN,)`.
        theta: shape `(K,)`.
        X: inputs, shape `(N, M)`.
        labels: ω(j) ∈ {0..Q−1}, shape `(N,)`.
    """
    labels = np.asarray(labels)
    x = np.asarray(output_map(jnp.asarray(theta), jnp.asarray(X))).reshape(labels.shape[0], -1)
    return float(np.mean(np.argmax(x, axis=1) == labels))


def descent(method: str, output_map, theta0, X, Y, *, step: float, n_steps: int, damping: float | None = None,
            test: tuple | None = None, repeats: int = 3) -> DescentRun:
    r"""Run a discrete optimiser for `n_steps` steps from θ_0, timed.

    Methods (`METHODS`): ``"adapted"``, θ_{k+1} = θ_k − h D⁺∇_x C (explicit Euler of (1.30);
    with `damping` λ, D⁺ → Dᵀ(D Dᵀ + λ1)⁻¹); ``"gd"``, θ_{k+1} = θ_k − η ∇_θ C (Euler of
    (1.9)); ``"adam"``, `optax.adam(η)`.  Each adapted step builds D Dᵀ once: by the
    layer-wise kernel of `adaptedflow.kernels` for `adaptedflow.mlp` maps (no D formed;
    u = −Dᵀα is one VJP), else from D by reverse mode.

    The run is compiled once per (method, output map, n_steps, damped or not) and shapes;
    `step` and `damping` are traced.  It is timed `repeats` times after compiling; the
    median is reported.

    Args:
        method: a key of `METHODS`.
        output_map: a stable `output_map(theta, X) -> x` (module-level function or `mlp(...)`).
        theta0: θ_0, shape `(K,)`.
        X: training inputs, shape `(N, M)`.
        Y: training targets, shape `(N, Q)` (one-hot rows give the labels for accuracy).
        step: h for ``"adapted"`` (0 < h < 2N), the learning rate η > 0 otherwise.
        n_steps: number of steps n ≥ 1.
        damping: λ ≥ 0 for damped adapted descent; None (default) for undamped.
        test: optional `(X_test, Y_test)`, shapes `(N', M)`, `(N', Q)`, for test accuracy.
        repeats: timed repetitions (the median is reported), ≥ 1.

    Returns:
        A `DescentRun`; `costs` has C_0..C_n.

    Raises:
        ValueError: unknown method, bad step, damping, shapes or counts.
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {sorted(METHODS)}; got {method!r}.")
    theta0, X, Y = _check_data(theta0, X, Y)
    N = X.shape[0]
    n_steps = _check_positive_int(n_steps, "n_steps")
    repeats = _check_positive_int(repeats, "repeats")
    damping = _check_damping(damping)
    if method == "adapted":
        step = _check_step(step, N)
        QN = int(np.asarray(output_map(theta0, X)).shape[0])
        if damping is None and theta0.shape[0] < QN:
            raise ValueError(
                f"undamped adapted descent needs K ≥ QN (D Dᵀ invertible, (1.26)); got K = {theta0.shape[0]} < "
                f"QN = {QN}. Pass `damping=λ > 0`, or use an under-parametrized method."
            )
    else:
        if damping is not None:
            raise ValueError(f"`damping` applies to method='adapted' only; got damping={damping} with {method!r}.")
        step = float(step)
        if not math.isfinite(step) or step <= 0:
            raise ValueError(f"`step` (the learning rate η) must be > 0; got {step}.")
    run = _compiled_run(method, output_map, n_steps, damping is not None)
    args = (theta0, X, Y, jnp.float64(step), jnp.float64(0.0 if damping is None else damping))
    t0 = time.perf_counter()
    compiled = run.lower(*args).compile()
    compile_seconds = time.perf_counter() - t0
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        costs, thetas = jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    step_seconds = float(np.median(times)) / n_steps
    costs, thetas = np.asarray(costs), np.asarray(thetas)
    labels = np.argmax(np.asarray(Y), axis=1)
    train_acc = classification_accuracy(output_map, thetas[-1], X, labels)
    test_acc = float("nan")
    if test is not None:
        Xt, Yt = as_float64(test[0], "test[0]"), as_float64(test[1], "test[1]")
        require_shape(Xt, (None, X.shape[1]), "test[0]", "Test inputs need the training input dimension M.")
        require_shape(Yt, (Xt.shape[0], Y.shape[1]), "test[1]", "One target row per test input.")
        test_acc = classification_accuracy(output_map, thetas[-1], Xt, np.argmax(np.asarray(Yt), axis=1))
    return DescentRun(method=method, step=float(step), damping=damping, costs=costs, thetas=thetas,
                      seconds=step_seconds * np.arange(n_steps + 1), step_seconds=step_seconds,
                      run_seconds=np.asarray(times),
                      compile_seconds=compile_seconds, train_accuracy=train_acc, test_accuracy=test_acc)


# --------------------------------------------------------------------------- the O(h²) term

def _directional_derivatives(output_map, theta, X, v):
    """x'[v], x''[v, v], x'''[v, v, v] by nested forward-mode AD (no finite differences)."""
    f = lambda t: output_map(t, X)
    d1 = lambda t: jax.jvp(f, (t,), (v,))[1]
    d2 = lambda t: jax.jvp(d1, (t,), (v,))[1]
    d3 = lambda t: jax.jvp(d2, (t,), (v,))[1]
    return d1(theta), d2(theta), d3(theta)


class StepDefect(NamedTuple):
    r"""The departure of one adapted-descent step from its linearisation, relative to |x_k − y_ω|.

    Attributes:
        measured: undamped, |x_{k+1} − y_ω − (1 − h/N)(x_k − y_ω)| / |x_k − y_ω|; damped,
            |x_{k+1} − x_k − h D v| / |x_k − y_ω|; shape `(H,)` (one per h).
        second: h²·|½ x''[v, v]| / |x_k − y_ω|, the predicted leading term, shape `(H,)`.
        third: h³·|(1/6) x'''[v, v, v]| / |x_k − y_ω|, the next Taylor term, shape `(H,)`.
        solve_residual: |x'[v] + ∇_x C| / |∇_x C|, how well D v = −∇_x C (1.31) is solved
            (≈ eps·κ(D)²); NaN for the damped direction, where D v ≠ −∇_x C by design.
    """

    measured: np.ndarray
    second: np.ndarray
    third: np.ndarray
    solve_residual: float


def step_defect(output_map, theta, X, Y, hs, *, damping: float | None = None) -> StepDefect:
    r"""Measure the O(h²) term of x_{k+1} − y_ω = (1 − h/N)(x_k − y_ω) + O(h²) at θ_k = `theta`.

    With v = −D⁺∇_x C (or its damped form) and θ_{k+1} = θ + h v, Taylor's theorem gives
    x_{k+1} = x_k + h x'[v] + ½h² x''[v, v] + (1/6)h³ x'''[v, v, v] + O(h⁴), and
    x'[v] = D v = −∇_x C = −(x_k − y_ω)/N (1.31) when undamped.  The derivatives are
    computed by forward-mode AD, the step by evaluating the network.

    Args:
        output_map: `output_map(theta, X) -> x`.
        theta: θ_k, shape `(K,)`.
        X: inputs, shape `(N, M)`; Y: targets, shape `(N, Q)`.
        hs: steps, shape `(H,)`, each 0 < h < 2N.
        damping: λ for the damped direction, or None.

    Returns:
        A `StepDefect`.
    """
    theta, X, Y = _check_data(theta, X, Y)
    N = X.shape[0]
    hs = np.asarray([_check_step(h, N) for h in np.atleast_1d(np.asarray(hs, dtype=np.float64))])
    damping = _check_damping(damping)
    x, D = outputs_and_jacobian(output_map, theta, X)
    r = x - Y.reshape(-1)
    g = r / N
    v = adapted_direction(D, g) if damping is None else damped_adapted_direction(D, g, damping)
    d1, d2, d3 = _directional_derivatives(output_map, theta, X, v)
    nr = float(jnp.linalg.norm(r))
    y = Y.reshape(-1)
    # undamped: the rate's own linearisation y_ω + (1 − h/N)(x_k − y_ω); damped: x_k + h D v
    lin = (lambda h: y + (1.0 - h / N) * r) if damping is None else (lambda h: x + h * d1)
    measured = np.array([float(jnp.linalg.norm(output_map(theta + h * v, X) - lin(h))) for h in hs]) / nr
    a2 = float(jnp.linalg.norm(0.5 * d2)) / nr
    a3 = float(jnp.linalg.norm(d3 / 6.0)) / nr
    res = float(jnp.linalg.norm(d1 + g) / jnp.linalg.norm(g)) if damping is None else float("nan")
    return StepDefect(measured=measured, second=hs ** 2 * a2, third=hs ** 3 * a3, solve_residual=res)


@functools.lru_cache(maxsize=16)
def _compiled_taylor(output_map):
    # one compilation for both: at λ = 0 the damped solve is the undamped one (same Gram matrix)
    def one(theta, X, Y, lam):
        x, D = outputs_and_jacobian(output_map, theta, X)
        r = x - Y.reshape(-1)
        g = r / Y.shape[0]
        v = damped_adapted_direction(D, g, lam)
        _, d2, d3 = _directional_derivatives(output_map, theta, X, v)
        nr = jnp.linalg.norm(r)
        s = jnp.linalg.svd(D, compute_uv=False)
        return jnp.linalg.norm(0.5 * d2) / nr, jnp.linalg.norm(d3 / 6.0) / nr, s[-1], s[0]

    @jax.jit
    def along(thetas, X, Y, lam):
        return jax.lax.map(lambda t: one(t, X, Y, lam), thetas)

    return along


def taylor_coefficients(output_map, thetas, X, Y, *, damping: float | None = None):
    r"""The Taylor coefficients of one adapted-descent step, at each θ_k of an orbit.

    For v_k = −D⁺∇_x C (or the damped direction), x[θ_k + h v_k] = x_k + h D v_k + h² a_k
    + h³ b_k + O(h⁴) with a_k = ½ x''[v_k, v_k], b_k = (1/6) x'''[v_k, v_k, v_k] (forward-mode
    AD).  The relative one-step defect of the rate is therefore h²·A2_k + O(h³), with the
    coefficients below.  Also returns the extreme singular values of D[θ_k].

    Args:
        output_map: `output_map(theta, X) -> x`.
        thetas: θ_k, shape `(T, K)`.
        X: shape `(N, M)`; Y: shape `(N, Q)`.
        damping: λ ≥ 0 for the damped direction, or None.

    Returns:
        `(A2, A3, sigma_min, sigma_max)`, each shape `(T,)`: A2 = |a_k|/|x_k − y_ω|,
        A3 = |b_k|/|x_k − y_ω|.
    """
    X, Y = as_float64(X, "X"), as_float64(Y, "Y")
    thetas = as_float64(thetas, "thetas")
    require_shape(thetas, (None, None), "thetas", "Pass θ_k as rows; use `theta[None]` for one point.")
    damping = _check_damping(damping)
    out = _compiled_taylor(output_map)(thetas, X, Y, jnp.float64(damping or 0.0))
    return tuple(np.asarray(o) for o in out)


def interleaved_run_seconds(specs, *, repeats: int = 5) -> np.ndarray:
    r"""Wall-clock seconds of whole runs, timed round-robin so that load drift hits all alike.

    On a shared machine the load changes over seconds; timing each run's repeats back to
    back lets that drift bias a comparison.  Here repeat r of every run is timed before
    repeat r + 1 of any, after every run has been compiled (compile time excluded).

    Args:
        specs: a sequence of dicts of `descent` keyword arguments (`method`, `output_map`,
            `theta0`, `X`, `Y`, `step`, `n_steps`, optionally `damping`).
        repeats: timed repetitions of each run, ≥ 1.

    Returns:
        Seconds, shape `(len(specs), repeats)`; divide the median by `n_steps` for a step.
    """
    repeats = _check_positive_int(repeats, "repeats")
    prepared = []
    for spec in specs:
        spec = dict(spec)
        method = spec.pop("method")
        output_map = spec.pop("output_map")
        theta0, X, Y = _check_data(spec.pop("theta0"), spec.pop("X"), spec.pop("Y"))
        n_steps = _check_positive_int(spec.pop("n_steps"), "n_steps")
        damping = _check_damping(spec.pop("damping", None))
        step = float(spec.pop("step"))
        if spec:
            raise ValueError(f"`specs` entries take descent's arguments only; unknown keys {sorted(spec)}.")
        if method not in METHODS:
            raise ValueError(f"`method` must be one of {sorted(METHODS)}; got {method!r}.")
        if method == "adapted":
            step = _check_step(step, X.shape[0])
        elif not (math.isfinite(step) and step > 0):
            raise ValueError(f"`step` (the learning rate η) must be > 0; got {step}.")
        run = _compiled_run(method, output_map, n_steps, damping is not None)
        args = (theta0, X, Y, jnp.float64(step), jnp.float64(0.0 if damping is None else damping))
        compiled = run.lower(*args).compile()
        jax.block_until_ready(compiled(*args))
        prepared.append((compiled, args))
    out = np.empty((len(prepared), repeats))
    for r in range(repeats):
        for i, (compiled, args) in enumerate(prepared):
            t0 = time.perf_counter()
            jax.block_until_ready(compiled(*args))
            out[i, r] = time.perf_counter() - t0
    return out
