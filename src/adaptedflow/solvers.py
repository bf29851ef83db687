r"""Adapted descent as an optimistix least-squares solver: the minimum-norm Gauss–Newton step.

For residuals r(θ) ∈ R^{QN} with Jacobian D = ∂r/∂θ (QN × K, K ≥ QN, rank QN) the step of
(1.30), written for ½|r|² instead of C = |x − y|²/(2N), is

    δθ = −D⁺ r = −Dᵀα,   (D Dᵀ + λ1) α = r,

the least-norm solution of the linearised equations r + D δθ = 0 (λ = 0), or its damped
(Levenberg–Marquardt, dual form) variant (λ > 0).  Unlike `optx.GaussNewton`, which solves
the K-dimensional least-squares problem D δθ = −r, the solve here is in the QN-dimensional
output space, with the kernel D Dᵀ of (1.25): QN × QN whatever K is.  Since ∇ₓC = r/N, a
step of size s is adapted descent (`adaptedflow.descent`) with h = s·N.

`AdaptedGaussNewton` follows optimistix's split into a descent (`AdaptedDescent`, the
direction −Dᵀα) and a search (default `optx.LearningRate(step_size)`), so optimistix's line
searches (e.g. `optx.BacktrackingArmijo`) compose with it.  The Gram solve is one of
`GRAM_METHODS`:

* ``"structured"``: the layer-wise kernel of `adaptedflow.kernels` (no D formed), for a
  residual built by `residual` (an `adaptedflow.mlp` and flat θ) or `model_residual` (a
  dense stack that `adaptedflow.pytrees.structured_view` recognises: `equinox.nn.MLP`, a
  `Sequential` of `Linear` layers); the solver learns the network from its `residual` argument;
* ``"dense"``: D formed from QN vector–Jacobian products, then G = D Dᵀ;
* ``"cg"``: matrix-free conjugate gradients (`lineax.CG`) on a ↦ D(Dᵀa) through the Jacobian operator.

The structured and dense paths solve G α = r by Cholesky with refinement through D itself
(`linalg.gram_matrix_solve_info`).  ``"auto"`` takes structured where the residual is
recognised, else dense for D of at most `DENSE_MAX_ENTRIES` entries, else CG.  The choice is
in the solution's `stats` (``"gram_method"``, an index into `GRAM_METHODS`), with the last
step's solve diagnostics; `AdaptedGaussNewton.gram_path` gives it with its reason.

Example (an over-parametrised `equinox.nn.MLP` fit, solved to |r| ≈ 0):

    >>> import adaptedflow as af, equinox as eqx, jax, jax.numpy as jnp, optimistix as optx
    >>> X = jax.random.normal(jax.random.PRNGKey(0), (8, 2))
    >>> Y = jnp.sin(X[:, :1])
    >>> model = eqx.nn.MLP(2, 1, 16, 1, activation=jnp.tanh, key=jax.random.PRNGKey(1))
    >>> fn, params = af.model_residual(model, X, Y)
    >>> solver = af.AdaptedGaussNewton(rtol=1e-12, atol=1e-12, residual=fn)
    >>> sol = optx.least_squares(fn, solver, params, max_steps=50)
    >>> bool(jnp.linalg.norm(fn(sol.value, None)) < 1e-10), af.GRAM_METHODS[sol.stats["gram_method"]]
    (True, 'structured')
    >>> solver.gram_path(params, Y.size)
    ('structured', 'equinox.nn.MLP (tanh): layer-wise kernel')
    >>> fitted = eqx.combine(sol.value, eqx.partition(model, eqx.is_inexact_array)[1])
"""

from __future__ import annotations

import math
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx
from jax.flatten_util import ravel_pytree

from .kernels import DENSE_MAX_ENTRIES, structured_gram_solve_info
from .linalg import gram_matrix_solve_info
from .network import MLP
from .numerics import safe_divide
from .pytrees import structured_view


def _verbose_callable(verbose) -> Callable:
    """`verbose` (a bool or a callable `**kwargs -> None`) as the callable optimistix's solvers
    hold, read by optimistix's own public `GaussNewton` (so it follows optimistix's rules)."""
    return optx.GaussNewton(rtol=1.0, atol=1.0, verbose=verbose).verbose


GRAM_METHODS = ("auto", "structured", "dense", "cg")



# ----------------------------------------------------------------------------- residuals


class FunctionResidual(eqx.Module):
    r"""r(θ) = (apply(θ, X) − Y) flattened to `(QN,)`, rows ordered as (1.6); made by `residual`."""

    apply: Callable = eqx.field(static=True)
    X: jax.Array
    Y: jax.Array

    def __call__(self, params, args=None):
        return (self.apply(params, self.X).reshape(self.Y.shape) - self.Y).reshape(-1)


class ModelResidual(eqx.Module):
    r"""r(p) = (model(X) − Y) flattened to `(QN,)` for model = combine(p, static) applied to each
    row of X; made by `model_residual`."""

    static: Any = eqx.field(static=True)
    X: jax.Array
    Y: jax.Array

    def __call__(self, params, args=None):
        model = eqx.combine(params, self.static)
        return (jax.vmap(model)(self.X).reshape(self.Y.shape) - self.Y).reshape(-1)


def _check_data(X, Y):
    X, Y = jnp.asarray(X), jnp.asarray(Y)
    if X.ndim != 2:
        raise ValueError(f"`X` must be 2-D (N, M); got shape {X.shape}. Use `X[:, None]` for one feature.")
    if Y.ndim != 2 or Y.shape[0] != X.shape[0]:
        raise ValueError(f"`Y` must be 2-D (N, Q) with N = {X.shape[0]} rows like `X`; got shape {Y.shape}.")
    for name, a in (("X", X), ("Y", Y)):
        if a.dtype != jnp.float64:
            raise TypeError(f"`{name}` must be float64; got {a.dtype}. Use `jnp.asarray({name}, jnp.float64)`.")
    return X, Y


def residual(apply: Callable, X, Y) -> FunctionResidual:
    r"""The residual r(θ) = x[θ] − y_ω of (1.23), for `optx.least_squares(r, solver, θ0)`.

    Args:
        apply: `apply(params, X) -> outputs` of shape `(N, Q)` or `(QN,)`; an `adaptedflow.mlp`
            (with params θ of shape `(K,)`) lets `AdaptedGaussNewton(residual=...)` use the
            layer-wise kernel.
        X: inputs, shape `(N, M)`.  Y: targets, shape `(N, Q)`; float64.

    Returns:
        A callable `r(params, args=None)` of shape `(QN,)`, rows ordered as (1.6).

    Raises:
        TypeError: `apply` not callable, or X, Y not float64.
        ValueError: X, Y of the wrong shapes.
    """
    if not callable(apply):
        raise TypeError(f"`apply` must be a function apply(params, X); got {type(apply).__name__}.")
    X, Y = _check_data(X, Y)
    return FunctionResidual(apply, X, Y)


def model_residual(model, X, Y) -> tuple[ModelResidual, Any]:
    r"""The residual of an equinox model applied to each input row, and its trainable part.

    The model's floating-point arrays are the parameters (`eqx.partition(model,
    eqx.is_inexact_array)`); the rest is kept in the residual.  A dense stack that
    `adaptedflow.pytrees.structured_view` recognises (e.g. an `equinox.nn.MLP` with an
    activation of `adaptedflow.mlp`) lets `AdaptedGaussNewton(residual=...)` use the
    layer-wise kernel.

    Args:
        model: an `equinox.Module` mapping a row of X, shape `(M,)`, to outputs, shape `(Q,)`.
        X: inputs, shape `(N, M)`.  Y: targets, shape `(N, Q)`; float64.

    Returns:
        `(r, params)`: `r(params, args=None)` of shape `(QN,)`, and the parameters (a pytree,
        the y0 of `optx.least_squares`); `eqx.combine(params, static)` rebuilds the model.

    Raises:
        TypeError: `model` not an `equinox.Module`, or X, Y not float64.
        ValueError: X, Y of the wrong shapes.
    """
    if not isinstance(model, eqx.Module):
        raise TypeError(f"`model` must be an `equinox.Module`; got {type(model).__name__}. "
                        "For a function apply(params, X) use `residual(apply, X, Y)`.")
    X, Y = _check_data(X, Y)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    return ModelResidual(static, X, Y), params


def residual_view(fn, y) -> tuple[MLP | None, Callable | None, str]:
    r"""The `adaptedflow.mlp` behind a residual, if there is one: `(net, to_theta, reason)`.

    `to_theta(y)` maps the solver's y to θ of shape `(K,)` in the layer order (1.5), so that
    the kernel of `kernels.mlp_outputs_and_ntk(net, to_theta(y), X)` is D Dᵀ of `fn`.

    Returns:
        `(net, to_theta, reason)`, or `(None, None, reason)` saying why not.
    """
    if isinstance(fn, FunctionResidual):
        if not isinstance(fn.apply, MLP):
            return None, None, "`residual` of a function that is not an adaptedflow.mlp"
        if not (isinstance(y, jax.Array | jax.ShapeDtypeStruct) and y.ndim == 1):
            return None, None, "y is not a flat θ of shape (K,)"
        return fn.apply, (lambda t: t), "adaptedflow.mlp residual: layer-wise kernel"
    if isinstance(fn, ModelResidual):
        # recognised on a concrete model of y's shapes (the view's index maps are built with numpy)
        with jax.ensure_compile_time_eval():
            shapes = jax.tree_util.tree_map(lambda a: np.zeros(a.shape, a.dtype), y)
            view, why = structured_view(None, eqx.combine(shapes, fn.static))
        if view is None:
            return None, None, why
        return view.net, (lambda p: view.to_theta(eqx.combine(p, fn.static))), f"{why}: layer-wise kernel"
    return None, None, "residual not given (or not made by `residual`/`model_residual`)"


def resolve_gram(gram: str, fn, y, QN: int) -> tuple[str, str]:
    r"""The Gram method for residual `fn` at y with QN residuals, and why (``"auto"`` resolved).

    Raises:
        ValueError: ``"structured"`` for a residual `residual_view` does not recognise.
    """
    net, _, why = residual_view(fn, y)
    if gram == "structured":
        if net is None:
            raise ValueError(f"`gram='structured'` cannot apply: {why}. Use 'dense' or 'cg'.")
        return "structured", "requested"
    if gram != "auto":
        return gram, "requested"
    if net is not None:
        return "structured", why
    K = ravel_pytree(y)[0].size
    if QN * K <= DENSE_MAX_ENTRIES:
        return "dense", f"{why}; D has QN·K = {QN * K} ≤ {DENSE_MAX_ENTRIES} entries"
    return "cg", f"{why}; D has QN·K = {QN * K} > {DENSE_MAX_ENTRIES} entries: matrix-free"


# ----------------------------------------------------------------------------- the descent


class _AdaptedState(eqx.Module):
    direction: Any          # −Dᵀα, same structure as y
    result: optx.RESULTS
    fallback: jax.Array     # the Cholesky solve fell back to the eigendecomposition
    iterations: jax.Array   # CG iterations (0 for the direct solves)
    gram_residual: jax.Array  # |(D Dᵀ + λ)α − r| / |r|


class AdaptedDescent(optx.AbstractDescent):
    r"""The minimum-norm Gauss–Newton direction −Dᵀ(D Dᵀ + λ1)⁻¹r of (1.30), for `AdaptedGaussNewton`.

    `step(s)` returns s·(−Dᵀα).  y may be any pytree of float64 arrays; the Jacobian
    operator of `FunctionInfo.ResidualJac` supplies D v (`mv`) and Dᵀa (`transpose().mv`).

    Attributes:
        method: one of `GRAM_METHODS` (``"auto"`` resolved per call by `resolve_gram`).
        damping: λ ≥ 0.
        cg_tol, cg_maxiter: CG's relative residual tolerance and iteration cap.
        residual: the residual (`residual`/`model_residual`), needed for ``"structured"``.
    """

    method: str = eqx.field(static=True, default="auto")
    damping: float = eqx.field(static=True, default=0.0)
    cg_tol: float = eqx.field(static=True, default=1e-12)
    cg_maxiter: int = eqx.field(static=True, default=10_000)
    residual: Any = None

    def init(self, y, f_info_struct):
        zero = jnp.zeros((), jnp.int32)
        return _AdaptedState(y, optx.RESULTS.successful, jnp.zeros((), bool), zero,
                             jnp.zeros((), jnp.result_type(float)))

    def query(self, y, f_info, state):
        del state
        r, unravel_r = ravel_pytree(f_info.residual)
        _, unravel_y = ravel_pytree(y)
        J = f_info.jac
        JT = J.transpose()
        Dt = lambda a: ravel_pytree(JT.mv(unravel_r(a)))[0]          # a ↦ Dᵀa, (QN,) → (K,)
        Dv = lambda v: ravel_pytree(J.mv(unravel_y(v)))[0]           # v ↦ D v, (K,) → (QN,)
        method = resolve_gram(self.method, self.residual, y, r.shape[0])[0]
        lam = self.damping
        Kmv = lambda a: Dv(Dt(a)) + lam * a                          # a ↦ (D Dᵀ + λ1) a
        no, zero = jnp.zeros((), bool), jnp.zeros((), jnp.int32)
        if method == "structured":
            net, to_theta, _ = residual_view(self.residual, y)
            sol = structured_gram_solve_info(net, to_theta(y), self.residual.X, r, Dt, Dv,
                                             damping=lam if lam > 0 else None)
            alpha, fallback, iters = sol.alpha, sol.fallback, zero
        elif method == "dense":
            D = jax.vmap(Dt)(jnp.eye(r.shape[0], dtype=r.dtype))       # rows Dᵀe_i: D itself, (QN, K)
            G = D @ D.T + lam * jnp.eye(r.shape[0], dtype=r.dtype)
            sol = gram_matrix_solve_info(G, r, Kmv)
            alpha, fallback, iters = sol.alpha, sol.fallback, zero
        else:
            op = lx.FunctionLinearOperator(Kmv, jax.eval_shape(lambda: r), lx.positive_semidefinite_tag)
            sol = lx.linear_solve(op, r, lx.CG(rtol=self.cg_tol, atol=0.0, max_steps=self.cg_maxiter), throw=False)
            alpha, fallback, iters = sol.value, no, sol.stats["num_steps"].astype(jnp.int32)
        res = safe_divide(jnp.linalg.norm(Kmv(alpha) - r), jnp.linalg.norm(r))
        result = optx.RESULTS.where(jnp.isfinite(res) & jnp.all(jnp.isfinite(alpha)), optx.RESULTS.successful,
                                    optx.RESULTS.nonlinear_divergence)
        direction = unravel_y(-Dt(alpha))
        return _AdaptedState(direction, result, fallback, iters, res)

    def step(self, step_size, state):
        return jax.tree_util.tree_map(lambda d: step_size * d, state.direction), state.result


# ----------------------------------------------------------------------------- the solver


def _check_nonnegative(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"`{name}` must be a real number; got {type(value).__name__}.")
    value = float(value)
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"`{name}` must be finite and ≥ 0; got {value!r}.")
    return value


class AdaptedGaussNewton(optx.AbstractGaussNewton):
    r"""Minimise ½|r(θ)|² by minimum-norm Gauss–Newton steps θ ← θ − s·Dᵀ(D Dᵀ + λ1)⁻¹ r, (1.30).

    An optimistix least-squares solver (`optx.least_squares(fn, solver, y0, args)`) for the
    over-parametrised case K ≥ QN: each step solves a QN × QN system with the kernel D Dᵀ
    (1.25) instead of the K-dimensional least-squares problem of `optx.GaussNewton`.  With
    s = 1, λ = 0 it is Newton's method on r(θ) = 0 by the least-norm solution of each
    linearisation; s = h/N is adapted descent with step h (`adaptedflow.descent`).

    Args:
        rtol, atol: optimistix's Cauchy termination tolerances (on the change of y and of r).
        norm: the norm of that test (default `optx.max_norm`).
        step_size: s > 0, the learning rate of the default search `optx.LearningRate(s)`.
        damping: λ ≥ 0 (0: the undamped step D⁺r).
        gram: one of `GRAM_METHODS`: how (D Dᵀ + λ1)α = r is solved (see the module docstring).
        residual: the `fn` given to `optx.least_squares` when made by `residual` or
            `model_residual`: it tells the solver the network, for ``"structured"``.
        search: any optimistix search (e.g. `optx.BacktrackingArmijo()`); replaces the
            default `LearningRate(step_size)`, so `step_size` must then stay 1.
        cg_tol, cg_maxiter: CG's relative residual tolerance (> 0) and iteration cap (≥ 1).
        verbose: as for `optx.GaussNewton`.

    The solution's `stats` carry ``"gram_method"`` (the path taken, an index into
    `GRAM_METHODS`; `gram_path(y0, QN)` gives it with its reason before any solve), and
    ``"gram_fallback"``, ``"gram_iterations"`` and ``"gram_residual"`` of the last direction
    (see `AdaptedDescent`).

    Raises:
        ValueError: a negative or non-finite `damping`, a `step_size` ≤ 0, an unknown `gram`,
            ``"structured"`` for a residual it does not recognise, or both `search` and a
            `step_size` ≠ 1.
        TypeError: a `search` that is not an `optx.AbstractSearch`; non-numeric options.

    References:
        (1.30) and its discrete form, chapter 10 of the book.
    """

    rtol: float
    atol: float
    norm: Callable
    descent: AdaptedDescent
    search: optx.AbstractSearch
    verbose: Callable

    def __init__(self, rtol: float, atol: float, norm: Callable = optx.max_norm, *, step_size: float = 1.0,
                 damping: float = 0.0, gram: str = "auto", residual=None, search=None, cg_tol: float = 1e-12,
                 cg_maxiter: int = 10_000, verbose=False):
        step_size = _check_nonnegative(step_size, "step_size")
        if step_size == 0:
            raise ValueError("`step_size` must be > 0; got 0.0.")
        damping = _check_nonnegative(damping, "damping")
        if gram not in GRAM_METHODS:
            raise ValueError(f"`gram` must be one of {GRAM_METHODS}; got {gram!r}.")
        cg_tol = _check_nonnegative(cg_tol, "cg_tol")
        if cg_tol == 0:
            raise ValueError("`cg_tol` must be > 0; got 0.0.")
        if isinstance(cg_maxiter, bool) or not isinstance(cg_maxiter, int) or cg_maxiter < 1:
            raise ValueError(f"`cg_maxiter` must be an integer ≥ 1; got {cg_maxiter!r}.")
        if search is None:
            search = optx.LearningRate(step_size)
        elif not isinstance(search, optx.AbstractSearch):
            raise TypeError(f"`search` must be an optimistix search (e.g. `optx.BacktrackingArmijo()`); "
                            f"got {type(search).__name__}.")
        elif step_size != 1.0:
            raise ValueError(f"Give either `search` or `step_size`, not both; got step_size={step_size!r}. "
                             f"Use `optx.LearningRate({step_size!r})` as the search, or drop `step_size`.")
        if residual is not None and not isinstance(residual, FunctionResidual | ModelResidual):
            raise TypeError("`residual` must be made by `adaptedflow.residual` or `adaptedflow.model_residual`; "
                            f"got {type(residual).__name__}.")
        if gram == "structured" and residual is None:
            raise ValueError("`gram='structured'` needs `residual=` (the fn made by `residual` or "
                             "`model_residual`) to know the network; use 'dense' or 'cg' otherwise.")
        self.rtol, self.atol, self.norm = rtol, atol, norm
        self.search = search
        self.verbose = _verbose_callable(verbose)
        self.descent = AdaptedDescent(method=gram, damping=damping, cg_tol=cg_tol, cg_maxiter=cg_maxiter,
                                      residual=residual)

    def postprocess(self, fn, y, aux, args, options, state, tags, result):
        QN = ravel_pytree(state.f_info.residual)[0].size
        method = self.gram_path(y, QN)[0]
        d = state.descent_state
        return y, aux, {"gram_method": jnp.asarray(GRAM_METHODS.index(method)), "gram_fallback": d.fallback,
                        "gram_iterations": d.iterations, "gram_residual": d.gram_residual}

    def gram_path(self, y, QN: int) -> tuple[str, str]:
        r"""`(method, reason)`: the Gram method this solver takes for y with QN residuals, and why.

        `GRAM_METHODS[sol.stats["gram_method"]]` is the same method, read from a solution."""
        return resolve_gram(self.descent.method, self.descent.residual, y, QN)




class SolvePath(eqx.Module):
    r"""The iterates of an optimistix least-squares solver, one per solver step (`least_squares_path`).

    Attributes:
        ys: y_0, …, y_n stacked on a leading axis of length n + 1 (each leaf of y gains it).
        residuals: r(y_0), …, r(y_n) flattened, shape `(n + 1, QN)`.
        accepted: whether the search accepted each step, shape `(n + 1,)` (the first True).
    """

    ys: Any
    residuals: jax.Array
    accepted: jax.Array


def least_squares_path(fn, solver, y0, args=None, *, n_steps: int) -> SolvePath:
    r"""Run `n_steps` steps of an optimistix least-squares `solver` on r = `fn(y, args)` and keep them.

    `optx.least_squares` returns the last iterate only; this drives the same
    `solver.init`/`solver.step` (no termination test, a fixed number of steps, under one
    `jax.lax.scan`), so that every iterate and residual is kept.  An optimistix Gauss–Newton
    solver returns from step j the point it evaluated at step j − 1, so n + 1 solver steps
    give y_0, …, y_n.

    Args:
        fn: `fn(y, args) -> r`, any pytree of residuals (no aux).
        solver: an `optx.AbstractLeastSquaresSolver` (e.g. `AdaptedGaussNewton`, `optx.GaussNewton`).
        y0: the initial point, any pytree of float64 arrays.
        args: passed to `fn`.
        n_steps: n ≥ 0.

    Returns:
        A `SolvePath`.

    Raises:
        TypeError: `solver` not an optimistix least-squares solver.
        ValueError: `n_steps` not an integer ≥ 0.
    """
    if not isinstance(solver, optx.AbstractLeastSquaresSolver):
        raise TypeError(f"`solver` must be an optimistix least-squares solver; got {type(solver).__name__}.")
    if isinstance(n_steps, bool) or not isinstance(n_steps, int) or n_steps < 0:
        raise ValueError(f"`n_steps` must be an integer ≥ 0; got {n_steps!r}.")
    return _path(fn, solver, y0, args, n_steps)


@eqx.filter_jit
def _path(fn, solver, y0, args, n_steps):
    f = lambda y, a: (fn(y, a), None)
    f_struct, aux_struct = jax.eval_shape(f, y0, args)
    tags, options = frozenset(), {}
    state = solver.init(f, y0, args, options, f_struct, aux_struct, tags)
    dynamic, static = eqx.partition(state, eqx.is_array)

    def body(carry, _):
        y, dyn = carry
        y, st, _ = solver.step(f, y, args, options, eqx.combine(dyn, static), tags)
        new_dyn, _ = eqx.partition(st, eqx.is_array)
        out = (y, ravel_pytree(st.f_info.residual)[0], st.num_steps_since_acceptance == 0)
        return (y, new_dyn), out

    _, (ys, res, acc) = jax.lax.scan(body, (y0, dynamic), None, length=n_steps + 1)
    return SolvePath(ys, res, acc)
