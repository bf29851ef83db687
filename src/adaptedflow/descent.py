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

Every run is one `jax.lax.scan` (`compiled_run`), compiled once per (output map, method,
shapes, number of steps) and reused for any step size, damping or learning rate (they are
traced arguments).  Nothing here reads a clock: runs are timed by
`adaptedflow.book.bench.interleaved_run_seconds`.  The Taylor analysis of the step and the race against
gradient descent and Adam are in `adaptedflow.paper.discrete`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .cost import cost, grad_x_cost, outputs_and_jacobian
from .kernels import DirectionOptions, direction_with_info, is_structured, linearize_outputs, structured_gram_solve
from .linalg import gram_solve
from .pytrees import is_flat_params, route_model
from .validation import as_float64, positive_int, require_shape, validate_data

#: The methods `descent` runs, with the update each implements.
METHODS = {
    "adapted": "θ ← θ − h D⁺ ∇_x C (explicit Euler of (1.30)); with `damping` λ: D⁺ → Dᵀ(D Dᵀ + λ1)⁻¹",
    "gd": "θ ← θ − η ∇_θ C = θ − η Dᵀ ∇_x C (explicit Euler of (1.9))",
    "adam": "optax.adam(η) on C[x[θ]] (Kingma & Ba 2015; needs optax, in the `bench` and `book` extras)",
}


class DescentRun(NamedTuple):
    r"""One run of a discrete optimiser from θ_0.

    Attributes:
        method: a key of `METHODS`.
        step: h (adapted descent) or the learning rate η (gd, adam).
        damping: λ of the damped variant (None: undamped; only for `"adapted"`).
        costs: C_k = C[x[θ_k]], k = 0..n, shape `(n + 1,)`.
        thetas: θ_k, shape `(n + 1, K)`; (θ_0, θ_n), shape `(2, K)`, for a run with `keep_thetas=False`.
        train_accuracy, test_accuracy: fraction of inputs whose largest output is at their
            label, at θ_n (NaN where no data were given).
        params: for a pytree model, θ_0..θ_n in the model's structure, every trained leaf
            with a leading axis of n + 1; `thetas` is then flat in `jax.tree_util` order
            (`adaptedflow.pytrees.flat_model`).  None for a flat θ_0.
    """

    method: str
    step: float
    damping: float | None
    costs: np.ndarray
    thetas: np.ndarray
    train_accuracy: float
    test_accuracy: float
    params: object = None


def check_step(h: float, N: int) -> float:
    r"""`h` as a float, checked to be a step of adapted descent: 0 < h < 2N.

    At h ≥ 2N the linearised output iteration x_{k+1} − y_ω = (1 − h/N)(x_k − y_ω) has
    factor ≤ −1 and does not converge.

    Raises:
        TypeError: `h` not a real number.  ValueError: h ≤ 0, h ≥ 2N or not finite.
    """
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


def check_damping(damping) -> float | None:
    """`damping` (λ ≥ 0 of D Dᵀ + λ1) as a float, or None for undamped; raises `ValueError` otherwise."""
    if damping is None:
        return None
    damping = float(damping)
    if not math.isfinite(damping) or damping < 0:
        raise ValueError(f"`damping` must be ≥ 0 (λ in D Dᵀ + λ1), or None for undamped; got {damping}.")
    return damping


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


def _optax():
    """optax, imported on first use (Adam only): it is not a dependency of the library."""
    try:
        import optax
    except ImportError as exc:
        raise ImportError("method='adam' needs optax, which the library does not require; install the `bench` "
                          "or `book` extra (`pip install 'adaptedflow[bench]'`) or `pip install optax`.") from exc
    return optax


def _run(theta0, X, Y, step, lam, *, method: str, output_map, n_steps: int, damped: bool,
         options: DirectionOptions | None = None, keep_thetas: bool = True):
    """`n_steps` steps of `method` from θ_0: `(costs (n+1,), thetas (n+1, K))`, or thetas (θ_0, θ_n)
    of shape (2, K) without `keep_thetas` (see `compiled_run`)."""

    def loss(theta):
        return cost(output_map(theta, X), Y)

    if method == "adapted" and not damped:
        def update(theta, state):                    # −D⁺∇ₓC by the method of `options` (`kernels`)
            u = direction_with_info(output_map, "adapted", options, theta, X, Y).u
            return theta + step * u, state, loss(theta)
        state0 = ()
    elif method == "adapted" and options.method == "structured":
        def update(theta, state):                    # layer-wise kernel of D Dᵀ + λ1: no D
            x, Dt, Dv = linearize_outputs(output_map, theta, X)
            alpha, _ = structured_gram_solve(output_map, theta, X, grad_x_cost(x, Y), Dt, Dv, lam)
            return theta - step * Dt(alpha), state, cost(x, Y)
        state0 = ()
    elif method == "adapted":
        def update(theta, state):
            x, D = outputs_and_jacobian(output_map, theta, X)
            return theta + step * damped_adapted_direction(D, grad_x_cost(x, Y), lam), state, cost(x, Y)
        state0 = ()
    elif method == "gd":
        def update(theta, state):
            c, grad = jax.value_and_grad(loss)(theta)
            return theta - step * grad, state, c
        state0 = ()
    else:
        optax = _optax()
        adam = optax.adam(step)

        def update(theta, state):
            c, grad = jax.value_and_grad(loss)(theta)
            upd, state = adam.update(grad, state, theta)
            return optax.apply_updates(theta, upd), state, c
        state0 = adam.init(theta0)

    def body(carry, _):
        theta, state = carry
        new, state, c = update(theta, state)
        return (new, state), ((c, theta) if keep_thetas else c)

    (theta_n, _), out = jax.lax.scan(body, (theta0, state0), None, length=n_steps)
    costs, thetas = out if keep_thetas else (out, theta0[None])
    costs = jnp.append(costs, loss(theta_n))
    thetas = jnp.concatenate([thetas, theta_n[None]], axis=0)
    return costs, thetas


#: One whole discrete run under `jax.jit`: `compiled_run(theta0, X, Y, step, damping, *, method,
#: output_map, n_steps, damped, options, keep_thetas) -> (costs (n+1,), thetas (n+1, K))`, C_k and θ_k,
#: k = 0..n (thetas only (θ_0, θ_n) without `keep_thetas`).
#: Static (keyword) arguments: `method` (a key of `METHODS`), `output_map`, `n_steps`, `damped`
#: (whether `damping` is used), `options` (resolved `DirectionOptions`, adapted only) and
#: `keep_thetas`; traced:
#: θ_0, X, Y, the step h or learning rate η, and λ.  Inputs are not checked here: `prepare_run`
#: checks them and builds both argument sets.
compiled_run = jax.jit(_run, static_argnames=("method", "output_map", "n_steps", "damped", "options",
                                              "keep_thetas"))


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


def _descent_options(method, output_map, options, damping, *, K: int, QN: int) -> DirectionOptions | None:
    """The resolved `DirectionOptions` of an adapted run (None for gd and adam)."""
    if options is not None and not isinstance(options, DirectionOptions):
        raise TypeError(f"`options` must be a `DirectionOptions`; got {type(options).__name__}.")
    if method != "adapted":
        if options is not None:
            raise ValueError(f"`options` applies to method='adapted' only; got options with {method!r}.")
        return None
    options = DirectionOptions() if options is None else options
    if damping is None:
        return options.resolve(output_map, "adapted", K, QN)[0]
    if options.method == "matrix-free":
        raise ValueError("damped adapted descent solves (D Dᵀ + λ1)α = ∇ₓC directly: `options.method` must be "
                         "'structured', 'dense' or 'auto'; got 'matrix-free'.")
    if options.method == "auto":                 # the kernel whenever there is one: D Dᵀ + λ1 is QN × QN
        return options.replace(method="structured" if is_structured(output_map) else "dense")
    if options.method == "structured" and not is_structured(output_map):
        raise ValueError("`options.method='structured'` needs an MLP made by `adaptedflow.mlp`; use 'dense'.")
    return options


def prepare_run(method: str, output_map, theta0, X, Y, *, step: float, n_steps: int,
                damping: float | None = None, options: DirectionOptions | None = None,
                keep_thetas: bool = True) -> tuple[tuple, dict]:
    r"""The checked arguments of one `compiled_run`: `(args, static)`, `compiled_run(*args, **static)`.

    Shared by `descent` and by timing harnesses that compile a run once and time it apart.
    Arguments as in `descent`.

    Returns:
        `args = (θ_0, X, Y, step, λ)` (traced) and `static = dict(method, output_map, n_steps,
        damped, options, keep_thetas)`, with `options` resolved for this problem (adapted) or None.

    Raises:
        ValueError: unknown method, bad step, damping, options, shapes or counts.
        TypeError: `options` that is not a `DirectionOptions`.
    """
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {sorted(METHODS)}; got {method!r}.")
    theta0, X, Y = validate_data(theta0, X, Y)
    N = X.shape[0]
    n_steps = positive_int(n_steps, "n_steps")
    damping = check_damping(damping)
    if method == "adapted":
        step = check_step(step, N)
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
    options = _descent_options(method, output_map, options, damping, K=theta0.shape[0], QN=Y.size)
    if method == "adam":
        _optax()                                 # a clear ImportError before tracing
    args = (theta0, X, Y, jnp.float64(step), jnp.float64(0.0 if damping is None else damping))
    static = dict(method=method, output_map=output_map, n_steps=n_steps, damped=damping is not None,
                  options=options, keep_thetas=bool(keep_thetas))
    return args, static


def descent(method: str, output_map, theta0, X, Y, *, step: float, n_steps: int, damping: float | None = None,
            test: tuple | None = None, options: DirectionOptions | None = None,
            keep_thetas: bool = True) -> DescentRun:
    r"""Run a discrete optimiser for `n_steps` steps from θ_0.

    Methods (`METHODS`): ``"adapted"``, θ_{k+1} = θ_k − h D⁺∇_x C (explicit Euler of (1.30);
    with `damping` λ, D⁺ → Dᵀ(D Dᵀ + λ1)⁻¹); ``"gd"``, θ_{k+1} = θ_k − η ∇_θ C (Euler of
    (1.9)); ``"adam"``, `optax.adam(η)`.  An undamped adapted step is the direction of
    `kernels.direction_with_info` by the method of `options` (``"auto"``: the layer-wise
    kernel for `adaptedflow.mlp` maps, no D formed, else D by reverse mode; ``"matrix-free"``:
    CG).  A damped step solves (D Dᵀ + λ1)α = ∇ₓC by the kernel or from D.

    The run is compiled once per (method, output map, n_steps, damped or not, options) and shapes;
    `step` and `damping` are traced.  It reads no clock: `adaptedflow.book.bench`'s
    `interleaved_run_seconds` times runs (compiled by the same `compiled_run`).

    Args:
        method: a key of `METHODS`.
        output_map: a stable `output_map(theta, X) -> x` (module-level function or `mlp(...)`).
            With a pytree `theta0`: the model's `apply(params, X) -> outputs` of shape
            `(N, Q)` or `(QN,)`, or None when `theta0` is the model itself, applied row-wise;
            a recognised dense stack (`adaptedflow.pytrees.structured_view`) gets the
            layer-wise kernel under ``"auto"`` or ``"structured"`` options.
        theta0: θ_0, shape `(K,)`; or any pytree of float64 arrays (then the run also holds
            `params` in that structure).
        X: training inputs, shape `(N, M)`.
        Y: training targets, shape `(N, Q)` (one-hot rows give the labels for accuracy).
        step: h for ``"adapted"`` (0 < h < 2N), the learning rate η > 0 otherwise.
        n_steps: number of steps n ≥ 1.
        damping: λ ≥ 0 for damped adapted descent; None (default) for undamped.
        test: optional `(X_test, Y_test)`, shapes `(N', M)`, `(N', Q)`, for test accuracy.
        options: `kernels.DirectionOptions` of the adapted direction (default: ``"auto"``);
            adapted only.
        keep_thetas: keep every θ_k (default); False keeps θ_0 and θ_n only, so `thetas`
            has shape `(2, K)`: a long run at scale (20,000 Adam steps at K = 85,002 would
            hold 13.6 GB of iterates).

    Returns:
        A `DescentRun`; `costs` has C_0..C_n.

    Raises:
        ValueError: unknown method, bad step, damping, options, shapes or counts.
        TypeError: `options` that is not a `DirectionOptions`.
    """
    if output_map is None or not is_flat_params(theta0):        # a pytree model: through its flat view
        kernel = getattr(options, "method", "auto") if method == "adapted" else "dense"
        route = route_model(output_map, theta0, X, Y, kernel)
        run = descent(method, route.output_map, route.theta0, X, Y, step=step, n_steps=n_steps, damping=damping,
                      test=test, options=options, keep_thetas=keep_thetas)
        return run._replace(thetas=route.to_tree_theta(run.thetas), params=route.to_params(run.thetas))
    args, static = prepare_run(method, output_map, theta0, X, Y, step=step, n_steps=n_steps,
                               damping=damping, options=options, keep_thetas=keep_thetas)
    costs, thetas = compiled_run(*args, **static)
    costs, thetas = np.asarray(costs), np.asarray(thetas)
    X, Y, step, damping = args[1], args[2], float(args[3]), None if damping is None else float(args[4])
    labels = np.argmax(np.asarray(Y), axis=1)
    train_acc = classification_accuracy(output_map, thetas[-1], X, labels)
    test_acc = float("nan")
    if test is not None:
        Xt, Yt = as_float64(test[0], "test[0]"), as_float64(test[1], "test[1]")
        require_shape(Xt, (None, X.shape[1]), "test[0]", "Test inputs need the training input dimension M.")
        require_shape(Yt, (Xt.shape[0], Y.shape[1]), "test[1]", "One target row per test input.")
        test_acc = classification_accuracy(output_map, thetas[-1], Xt, np.argmax(np.asarray(Yt), axis=1))
    return DescentRun(method=method, step=float(step), damping=damping, costs=costs, thetas=thetas,
                      train_accuracy=train_acc, test_accuracy=test_acc)

