r"""Parameters as pytrees: the flat view θ ∈ R^K of a model, and the dense stacks the layer-wise kernel knows.

The flows of this package are written for a flat θ ∈ R^K and an output map
`output_map(theta, X) -> x` with x ∈ R^{QN} ordered as (1.6).  A model in the JAX
ecosystem is instead a pytree of arrays `params` (a dict, an `equinox.Module`, …) and an
`apply(params, X)` returning outputs of shape `(N, Q)` (or already stacked, `(QN,)`).
This module turns one into the other:

* `flat_model(apply, params)` gives a `FlatModel`: θ0 (the leaves raveled and
  concatenated in `jax.tree_util` order, as `jax.flatten_util.ravel_pytree`), the flat
  output map `PytreeMap` (a frozen, hashable value: a static argument of `jax.jit`) and
  `unravel` back to the pytree, for any leading axes (orbits, descent runs).
* `structured_view(apply, params)` recognises the dense stacks whose kernel D Dᵀ has the
  layer structure of `adaptedflow.kernels` — `equinox.nn.MLP`, `equinox.nn.Sequential`
  of `equinox.nn.Linear` with one elementwise activation (`equinox.nn.Lambda`) between
  them, and a single `equinox.nn.Linear` — and gives the equivalent
  `adaptedflow.mlp(widths, activation)` with the map between the model's leaves and the
  flat θ of (1.5); otherwise it says why not.

How the model is applied.  `apply=None` means `params` is itself the model, called
row by row: outputs `jax.vmap(params)(X)`; `vmap_apply` is the same call as a function.
Only these two are known to be the plain call of the model, so only with them is a
model recognised as a dense stack: a custom `apply` may do anything with the
parameters, and gets the dense and matrix-free methods.

Leaves.  For an `equinox.Module` the trained parameters are its floating-point arrays
(`equinox.is_inexact_array`); everything else (activations, sizes, integer buffers) is
held fixed, as `equinox` does.  For any other pytree every leaf must be an array.
Either way each trained leaf must be float64: float32 is refused, not upcast.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from typing import Any, Callable, NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from .network import ACTIVATIONS, MLP, activation_function, num_params


def vmap_apply(model, X: jax.Array) -> jax.Array:
    r"""The row-wise call of a model, `jax.vmap(model)(X)`: outputs of shape `(N, Q)`.

    Passing it (or `apply=None`) as `apply` says that the outputs are the model applied
    to each input x_j, which is what lets `structured_view` recognise a dense stack.

    Args:
        model: a callable pytree taking one input of shape `(M,)` (e.g. `equinox.nn.MLP`).
        X: inputs, shape `(N, M)`.

    Returns:
        Shape `(N, Q)`.
    """
    return jax.vmap(model)(X)


def is_plain_call(apply) -> bool:
    """Whether `apply` is known to be the row-wise call of the model (`None` or `vmap_apply`)."""
    return apply is None or apply is vmap_apply


def is_flat_params(params) -> bool:
    """Whether `params` is a flat θ for the flat API: an array, or a list/tuple of numbers.

    Anything else (a dict, a tuple of arrays, an `equinox.Module`, …) is a pytree."""
    if isinstance(params, (jax.Array, np.ndarray, np.generic, float, int)):
        return True
    if isinstance(params, (list, tuple)):
        leaves = jax.tree_util.tree_leaves(params)
        return len(leaves) > 0 and all(isinstance(v, (float, int, np.generic)) for v in leaves)
    return False


class _Static:
    """The fixed (non-trained) part of a model, compared by value where it can be.

    Hashable leaves (functions, sizes, None) are compared as they are; array leaves
    (e.g. integer buffers) by shape, dtype and bytes."""

    def __init__(self, static):
        self.tree = static
        leaves, self.treedef = jax.tree_util.tree_flatten(static)
        self.key = (self.treedef, tuple(_hashable(v) for v in leaves))

    def __eq__(self, other):
        return isinstance(other, _Static) and self.key == other.key

    def __hash__(self):
        return hash(self.key)


def _hashable(v):
    if isinstance(v, (jax.Array, np.ndarray)):
        a = np.asarray(v)
        return ("array", a.shape, str(a.dtype), a.tobytes())
    try:
        hash(v)
    except TypeError:
        return ("id", id(v))
    return v


@dataclasses.dataclass(frozen=True)
class PytreeMap:
    r"""The output map θ ↦ x[θ] ∈ R^{QN} of a pytree model, on the flat θ ∈ R^K.

    `theta` is unraveled into the model's trained leaves (in `jax.tree_util` order, each
    reshaped row-major), joined to its fixed part, and `apply(params, X)` (or
    `jax.vmap(params)(X)` when `apply` is None) is reshaped to `(QN,)`: an `(N, Q)`
    output becomes (1.6), x = (x_1, …, x_N).  Frozen and compared by value (the same
    `apply` object, tree structure, leaf shapes and fixed part), so it can be a static
    argument of `jax.jit`.  Make one with `flat_model`.

    Attributes:
        apply: `apply(params, X)`, or None for the row-wise call.
        treedef: structure of the trained leaves.
        shapes: their shapes, in `jax.tree_util` order.
        static: the fixed part (`equinox.Module`s), or None.
    """

    apply: Callable | None
    treedef: Any
    shapes: tuple[tuple[int, ...], ...]
    static: _Static | None = None

    @property
    def num_params(self) -> int:
        """K, the total size of the trained leaves."""
        return sum(math.prod(s) for s in self.shapes)

    @property
    def __name__(self) -> str:
        name = "vmap" if self.apply is None else getattr(self.apply, "__name__", type(self.apply).__name__)
        return f"pytree[{name}, K={self.num_params}]"

    def unravel(self, theta: jax.Array):
        r"""θ of shape `(..., K)` → the model's pytree, every trained leaf of shape `(..., *shape)`.

        Leading axes are kept (a saved orbit `(T, K)` gives leaves `(T, *shape)`)."""
        lead, leaves, i = theta.shape[:-1], [], 0
        for shape in self.shapes:
            n = math.prod(shape)
            leaves.append(theta[..., i:i + n].reshape(lead + shape))
            i += n
        tree = jax.tree_util.tree_unflatten(self.treedef, leaves)
        return tree if self.static is None else eqx.combine(tree, self.static.tree)

    def ravel(self, params) -> jax.Array:
        """The model's trained leaves as θ of shape `(K,)` (the inverse of `unravel`)."""
        leaves = jax.tree_util.tree_leaves(_trained(params))
        return jnp.concatenate([jnp.ravel(v) for v in leaves]) if leaves else jnp.zeros((0,), jnp.float64)

    def outputs(self, theta: jax.Array, X: jax.Array) -> jax.Array:
        """The model's outputs as `apply` returns them (`(N, Q)` or `(QN,)`), for θ of shape `(K,)`."""
        params = self.unravel(theta)
        return jax.vmap(params)(X) if self.apply is None else self.apply(params, X)

    def __call__(self, theta: jax.Array, X: jax.Array) -> jax.Array:
        r"""x[θ] of shape `(QN,)`, ordered as (1.6), for θ of shape `(K,)` and X of shape `(N, M)`."""
        return jnp.reshape(self.outputs(theta, X), (-1,))


class FlatModel(NamedTuple):
    r"""The flat view of a pytree model (`flat_model`).

    Attributes:
        output_map: the flat output map θ ↦ x[θ], a `PytreeMap`.
        theta0: the model's parameters as θ, shape `(K,)`, float64 (the order of
            `jax.flatten_util.ravel_pytree`).
        unravel: θ of shape `(..., K)` → the pytree (leading axes kept).
    """

    output_map: PytreeMap
    theta0: jax.Array
    unravel: Callable


def _trained(params):
    """The trained part of `params`: the inexact arrays of an `equinox.Module`, else `params`."""
    if isinstance(params, eqx.Module):
        return eqx.filter(params, eqx.is_inexact_array)
    return params


def _check_leaves(params) -> None:
    """Every trained leaf a float64 array (TypeError naming the leaf otherwise)."""
    module = isinstance(params, eqx.Module)
    pairs = jax.tree_util.tree_flatten_with_path(_trained(params))[0]
    if not pairs:
        raise ValueError("`params` has no floating-point array leaves: there are no parameters to move.")
    for path, leaf in pairs:
        where = f"`params{jax.tree_util.keystr(path)}`"
        if not isinstance(leaf, (jax.Array, np.ndarray)):
            raise TypeError(f"{where} is a {type(leaf).__name__}; every leaf of `params` must be a float64 array "
                            "(wrap numbers in `jnp.asarray(..., dtype=jnp.float64)`).")
        dtype = np.dtype(leaf.dtype)
        if not np.issubdtype(dtype, np.floating) or dtype.itemsize != 8:
            kind = "float64 only" if np.issubdtype(dtype, np.floating) else "float64 arrays only"
            fix = (f"Pass `params` with {where}.astype('float64')" if not module else
                   "Build the model with `dtype=jnp.float64`, or cast it with "
                   "`jax.tree_util.tree_map(lambda a: a.astype('float64'), model)`")
            raise TypeError(f"{where} has dtype {dtype}; adaptedflow computes in {kind}. {fix}.")


def flat_model(apply, params) -> FlatModel:
    r"""The flat view of the model `(apply, params)`: θ0 ∈ R^K, θ ↦ x[θ] and θ ↦ params.

    Args:
        apply: `apply(params, X) -> outputs` of shape `(N, Q)` or `(QN,)`; or None, when
            `params` is the model itself, applied row-wise (`jax.vmap(params)(X)`, see
            `vmap_apply`).
        params: a pytree of float64 arrays (a dict, a tuple, an `equinox.Module`, …).

    Returns:
        A `FlatModel` `(output_map, theta0, unravel)`.

    Raises:
        TypeError: a trained leaf that is not a float64 array; `apply` None with a
            `params` that is not callable; `apply` an `adaptedflow.mlp` (it takes the flat θ).
        ValueError: `params` without any floating-point array.

    Example:
        >>> fm = flat_model(lambda p, X: X @ p["w"] + p["b"], {"w": w, "b": b})
        >>> fm.output_map(fm.theta0, X)          # shape (QN,)
    """
    if isinstance(apply, MLP):
        raise TypeError("`apply` is an `adaptedflow.mlp`, which takes the flat θ of (1.5): pass θ as a 1-D array, "
                        "not a pytree.")
    if apply is None and not callable(params):
        raise TypeError(f"`apply` is None, so `params` must be the model itself, callable on one input (e.g. an "
                        f"`equinox.nn.MLP`); got a {type(params).__name__}. Pass `apply(params, X)`.")
    if apply is not None and not callable(apply):
        raise TypeError(f"`apply` must be a function `apply(params, X)` or None; got {type(apply).__name__}.")
    _check_leaves(params)
    trained = _trained(params)
    static = _Static(eqx.filter(params, eqx.is_inexact_array, inverse=True)) if isinstance(params, eqx.Module) \
        else None
    leaves, treedef = jax.tree_util.tree_flatten(trained)
    theta0, _ = ravel_pytree(trained)
    fmap = PytreeMap(apply, treedef, tuple(tuple(int(d) for d in v.shape) for v in leaves), static)
    return FlatModel(fmap, jnp.asarray(theta0, jnp.float64), fmap.unravel)


def check_outputs(output_map, theta: jax.Array, X: jax.Array, Y: jax.Array) -> None:
    r"""Check, without running it, that the model's outputs fit Y: shape `(N, Q)` or `(QN,)`, float64.

    Raises:
        ValueError: outputs of another size.  TypeError: outputs that are not float64.
    """
    N, Q = Y.shape
    call = output_map.outputs if isinstance(output_map, PytreeMap) else output_map
    try:
        out = jax.eval_shape(call, theta, X)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"`apply(params, X)` failed on X of shape {tuple(X.shape)}: {exc}") from exc
    shape = tuple(getattr(out, "shape", ()))
    if shape not in ((N, Q), (N * Q,)):
        raise ValueError(f"`apply(params, X)` must return outputs of shape (N, Q) = ({N}, {Q}) or (QN,) = ({N * Q},), "
                         f"matching `Y`; got {shape}.")
    if np.dtype(out.dtype) != np.float64:
        raise TypeError(f"`apply(params, X)` returned dtype {out.dtype}; adaptedflow computes in float64 only.")


# ---------------------------------------------------------------------------------------------
# Dense stacks the layer-wise kernel knows

def _activation_names() -> dict[int, str]:
    """id → name of the functions that are an `adaptedflow.network` activation, by identity."""
    names = {id(activation_function(name)): name for name in ACTIVATIONS}
    for f, name in ((jnp.tanh, "tanh"), (jax.nn.tanh, "tanh"), (jax.lax.tanh, "tanh"), (np.tanh, "tanh"),
                    (jax.nn.softplus, "softplus"), (jax.nn.sigmoid, "sigmoid"), (jax.lax.logistic, "sigmoid"),
                    (jax.nn.relu, "relu")):
        names.setdefault(id(f), name)
    return names


def activation_name(fn) -> str | None:
    r"""The name of σ in `adaptedflow.network.ACTIVATIONS` that `fn` is, by identity, or None.

    `jnp.tanh` (= `jax.nn.tanh`), `jax.lax.tanh`, `jax.nn.softplus`, `jax.nn.sigmoid`,
    `jax.nn.relu`, `functools.partial(jax.nn.gelu, approximate=False)` and the functions
    of `adaptedflow.network.activation_function` are known; `jax.nn.gelu` itself is the
    tanh approximation, which is not one of them."""
    name = _activation_names().get(id(fn))
    if name is None and isinstance(fn, functools.partial) and fn.func is jax.nn.gelu and not fn.args \
            and fn.keywords == {"approximate": False}:
        name = "gelu"
    return name


def _describe(fn) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__


def _is_identity(fn) -> bool:
    """Whether `fn` is `equinox.nn.MLP`'s default `final_activation` (the identity) or `jax.nn.identity`."""
    default = inspect.signature(eqx.nn.MLP.__init__).parameters["final_activation"].default
    return fn is default or fn is getattr(jax.nn, "identity", object())


def _linear_layers(linears, where: str) -> tuple[list | None, str]:
    """`[(W, b), …]` of chained `equinox.nn.Linear` layers, or (None, why not)."""
    layers = []
    for i, lin in enumerate(linears):
        if not isinstance(lin, eqx.nn.Linear):
            return None, f"{where}: layer {i} is a {type(lin).__name__}, not an equinox.nn.Linear"
        if lin.in_features == "scalar" or lin.out_features == "scalar":
            return None, f"{where}: layer {i} has a 'scalar' input or output (inputs are rows of X (N, M))"
        if not lin.use_bias or lin.bias is None:
            return None, f"{where}: layer {i} has no bias (use_bias=False)"
        layers.append((lin.weight, lin.bias))
    for i in range(1, len(layers)):
        if layers[i][0].shape[-1] != layers[i - 1][0].shape[-2]:
            return None, f"{where}: layers {i - 1} and {i} do not chain"
    return layers, ""


def _mlp_layers(model) -> tuple[list | None, Any, str]:
    """`(layers, activation, why)` of an `equinox.nn.MLP`; layers None with `why` if unknown."""
    where = f"equinox.nn.MLP(depth={model.depth})"
    if model.in_size == "scalar" or model.out_size == "scalar":
        return None, None, f"{where} with a 'scalar' in_size or out_size (inputs and outputs are rows)"
    if not (model.use_bias and model.use_final_bias):
        return None, None, f"{where} with use_bias=False or use_final_bias=False: the kernel needs a bias per layer"
    if not _is_identity(model.final_activation):
        return None, None, f"{where} with final_activation ≠ identity ({_describe(model.final_activation)})"
    if model.scan and model.depth >= 2:
        first, hidden, last = model.layers
        linears = [first] + [jax.tree_util.tree_map(lambda a, k=k: a[k], hidden) for k in range(model.depth - 1)] \
            + [last]
    else:
        linears = list(model.layers)
    layers, why = _linear_layers(linears, where)
    return layers, model.activation, why


def _sequential_layers(model) -> tuple[list | None, Any, str]:
    """`(layers, activation, why)` of an `equinox.nn.Sequential` (Linear, Lambda(σ), Linear, …, Linear)."""
    where = "equinox.nn.Sequential"
    parts = list(model.layers)
    if len(parts) % 2 == 0:
        return None, None, f"{where} of {len(parts)} layers: expected Linear, Lambda(σ), …, Linear (odd length)"
    acts = parts[1::2]
    for i, act in zip(range(1, len(parts), 2), acts, strict=True):
        if not isinstance(act, eqx.nn.Lambda):
            return None, None, f"{where}: layer {i} is a {type(act).__name__}, not an equinox.nn.Lambda(σ)"
    fns = [a.fn for a in acts]
    if any(f is not fns[0] for f in fns[1:]):
        return None, None, f"{where} with different activations between layers: the kernel takes one σ"
    layers, why = _linear_layers(parts[0::2], where)
    return layers, (fns[0] if fns else None), why


@dataclasses.dataclass(frozen=True, eq=False)
class StructuredView:
    r"""A recognised dense stack: the model as `adaptedflow.mlp(widths, activation)`.

    Attributes:
        net: the equivalent `MLP`: `net(to_theta(params), X)` equals the model's outputs
            (1.6), and its layer-wise kernel is the model's D Dᵀ.
        description: what was recognised, e.g. ``"equinox.nn.MLP (tanh)"``.
        model: the model's own flat view (`PytreeMap`), whose θ is in `jax.tree_util` order.
        order: shape `(K,)`, integers: θ of (1.5) is `theta_tree[order]`.
    """

    net: MLP
    description: str
    model: PytreeMap
    order: np.ndarray

    def to_theta(self, params) -> jax.Array:
        r"""The model's parameters as θ ∈ R^K in the layer order of (1.5), for `net`."""
        return self.model.ravel(params)[self.order]

    def to_params(self, theta: jax.Array):
        r"""θ of shape `(..., K)` in the order of (1.5) → the model's pytree (leading axes kept)."""
        inverse = np.argsort(self.order)
        return self.model.unravel(theta[..., inverse])

    def tree_theta(self, theta):
        r"""θ of shape `(..., K)` in the order of (1.5) → the model's flat θ (`jax.tree_util` order)."""
        return np.asarray(theta)[..., np.argsort(self.order)]


def structured_view(apply, params) -> tuple[StructuredView | None, str]:
    r"""Whether the model `(apply, params)` is a dense stack the layer-wise kernel knows, and why.

    Recognised, with `apply` None or `vmap_apply` (the plain row-wise call; a custom
    `apply` is never recognised):

    * `equinox.nn.MLP` with an activation of `adaptedflow.network.ACTIVATIONS` (identified
      by identity, see `activation_name`), the default identity `final_activation`,
      biases on every layer and vector (not ``"scalar"``) input and output;
    * `equinox.nn.Sequential` of `equinox.nn.Linear` layers with the same
      `equinox.nn.Lambda(σ)` between consecutive ones (and none after the last);
    * a single `equinox.nn.Linear` with a bias.

    An `equinox.nn.Linear` weight has shape `(out, in)`, the orientation of W_ℓ in (1.5),
    so the map to θ of (1.5) only reorders leaves (W_ℓ row-major, then b_ℓ, layer by layer).

    Args:
        apply: as for `flat_model`.  params: the model (a pytree of float64 arrays).

    Returns:
        `(view, reason)`: a `StructuredView` and a description such as
        ``"equinox.nn.MLP (tanh)"``, or `(None, why not)`, e.g.
        ``"equinox.nn.MLP(depth=2) with final_activation ≠ identity (sigmoid)"``.

    Raises:
        TypeError, ValueError: as `flat_model`, for leaves that are not float64 arrays.
    """
    if not is_plain_call(apply):
        return None, "a custom `apply` (not known to be the row-wise call of a dense stack)"
    if isinstance(params, eqx.nn.MLP):
        layers, act, why = _mlp_layers(params)
        kind = "equinox.nn.MLP"
    elif isinstance(params, eqx.nn.Sequential):
        layers, act, why = _sequential_layers(params)
        kind = "equinox.nn.Sequential"
    elif isinstance(params, eqx.nn.Linear):
        layers, why = _linear_layers([params], "equinox.nn.Linear")
        act, kind = None, "equinox.nn.Linear"
    else:
        return None, f"a {type(params).__name__}: not an equinox.nn.MLP, Sequential of Linear or Linear"
    if layers is None:
        return None, why
    if len(layers) == 1:
        name = "tanh"                                           # no hidden layer: σ never applied
    else:
        name = activation_name(act)
        if name is None:
            return None, (f"{kind} with activation {_describe(act)}: not one of {sorted(ACTIVATIONS)} "
                          "(identified by identity)")
    widths = (int(layers[0][0].shape[1]),) + tuple(int(W.shape[0]) for W, _ in layers)
    fm = flat_model(None, params)
    K = fm.output_map.num_params
    if K != num_params(widths):
        return None, f"{kind} has {K} trained parameters besides its layers' weights and biases"
    # The same extraction applied to a model whose leaves hold their own flat indices.
    index_model = fm.unravel(jnp.arange(K))
    index_layers = {"equinox.nn.MLP": lambda m: _mlp_layers(m)[0], "equinox.nn.Sequential":
                    lambda m: _sequential_layers(m)[0], "equinox.nn.Linear":
                    lambda m: _linear_layers([m], "")[0]}[kind](index_model)
    order = np.concatenate([np.asarray(part).reshape(-1) for W, b in index_layers for part in (W, b)])
    if sorted(order.tolist()) != list(range(K)):
        return None, f"{kind}: its layers do not cover its parameters once each"
    description = f"{kind} ({name})" if len(layers) > 1 else f"{kind} (no hidden layer)"
    return StructuredView(MLP(widths, name), description, fm.output_map, order), description


# ---------------------------------------------------------------------------------------------
# The entry points' adaptation

class ModelRoute(NamedTuple):
    r"""How an entry point runs a pytree model on the flat machinery (`route_model`).

    Attributes:
        output_map: the flat output map given to the flat code: the recognised stack's
            `MLP` (the layer-wise kernel applies) or the model's `PytreeMap`.
        theta0: the parameters in `output_map`'s layout, shape `(K,)`.
        to_params: θ of shape `(..., K)` in that layout → the model's pytree.
        to_tree_theta: θ of shape `(..., K)` in that layout → the flat θ in `jax.tree_util`
            order (that of `flat_model` and `jax.flatten_util.ravel_pytree`).
        view: the `StructuredView`, or None.
        reason: the recognition's description, or why the model is not a known stack.
    """

    output_map: Any
    theta0: jax.Array
    to_params: Callable
    to_tree_theta: Callable
    view: StructuredView | None
    reason: str


def route_model(apply, params, X, Y, method: str) -> ModelRoute:
    r"""Check the model `(apply, params)` against X, Y and choose the flat map for `method`.

    The recognised stack's `MLP` is used when `method` is ``"auto"`` or ``"structured"``
    (the kernel is then available to ``"auto"``); otherwise, and for a model that is not
    recognised, the model's own `PytreeMap`.

    Args:
        apply, params: as for `flat_model`.  X: shape `(N, M)`.  Y: shape `(N, Q)`.
        method: the requested method (``"auto"``, ``"structured"``, ``"dense"``, …).

    Raises:
        TypeError, ValueError: as `flat_model` and `check_outputs`; ``"structured"`` for a
            model that is not a recognised stack.
    """
    from .validation import validate_data

    fm = flat_model(apply, params)
    theta0, X, Y = validate_data(fm.theta0, X, Y, "params")
    check_outputs(fm.output_map, theta0, X, Y)
    view, reason = structured_view(apply, params)
    if method == "structured" and view is None:
        raise ValueError(f"`method='structured'` needs a dense stack the layer-wise kernel knows (equinox.nn.MLP, "
                         f"equinox.nn.Sequential of Linear and Lambda(σ), equinox.nn.Linear, applied row-wise with "
                         f"`apply=None`); got {reason}. Use 'dense' or 'matrix-free'.")
    if view is not None and method in ("auto", "structured"):
        return ModelRoute(view.net, view.to_theta(params), view.to_params, view.tree_theta, view, reason)
    return ModelRoute(fm.output_map, theta0, fm.unravel, np.asarray, view, reason)


def explain_method(method: str, reason: str, route: ModelRoute) -> str:
    """The `DirectionInfo.reason` of a pytree model: the flat code's `reason` with the recognition in it."""
    if method == "structured":
        why = f"{route.reason}: layer-wise kernel"
        return why if reason != "requested" else f"requested; {why}"
    if reason == "requested":
        return reason
    if route.view is None:          # the flat code's reason names the size test that chose dense or matrix-free
        return f"{route.reason}: " + reason.removeprefix("not an adaptedflow.mlp: ")
    return f"{route.reason}; {reason}"
