r"""Data parallelism: the N inputs split across the JAX devices present, over a 1-D mesh.

Every direction of (1.30) is a sum over inputs in its costly parts: the forward pass
x[θ] and its linearisation (N independent rows), the products D v and Dᵀa of
matrix-free CG (a JVP whose rows split with X, a VJP whose parameter gradient is a sum
over them), and the layer-wise kernel (1.25), whose QN × QN blocks of Jacobian products
split by rows.  Placing X and Y with a `jax.sharding.NamedSharding` over the axis
``"data"`` and θ replicated is enough: `jax.jit`'s SPMD partitioner splits that work and
inserts the collectives (an all-reduce for each VJP's sum over inputs, an all-gather
where a step needs the whole kernel).  The Cholesky factor of the QN × QN kernel is one
dense factorisation: it runs replicated, O((QN)³/3) flops on every device, and does not
speed up with more devices.

Usage::

    X, Y = adaptedflow.shard_data(X, Y)            # over jax.devices(); theta stays as it is
    u, info = adaptedflow.adapted_step_direction(net, theta, X, Y, method="matrix-free")

On one device `shard_data` returns X and Y as given (no copy, the same compiled code).
N must be a multiple of the number of devices: no padding is added, since padded rows
would enter the cost (1.7) and its normalisation 1/N.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .validation import as_float64, require_shape

#: The name of the mesh axis the inputs are split along.
DATA_AXIS = "data"


def _device_list(devices) -> list:
    """`devices` as a non-empty list of JAX devices (all of `jax.devices()` if None)."""
    if devices is None:
        return list(jax.devices())
    if isinstance(devices, jax.Device):
        return [devices]
    if not isinstance(devices, Sequence) and not isinstance(devices, np.ndarray):
        raise TypeError(f"`devices` must be a sequence of JAX devices or None; got {type(devices).__name__}.")
    out = list(np.asarray(devices, dtype=object).ravel())
    if not out:
        raise ValueError("`devices` is empty; pass at least one device, or None for `jax.devices()`.")
    bad = [d for d in out if not isinstance(d, jax.Device)]
    if bad:
        raise TypeError(f"`devices` must hold JAX devices (e.g. from `jax.devices()`); got {bad[0]!r}.")
    return out


def data_mesh(devices=None) -> Mesh:
    r"""The 1-D mesh over `devices` with the single axis `DATA_AXIS` (``"data"``).

    Args:
        devices: a sequence of JAX devices; None for all of `jax.devices()`.

    Returns:
        A `jax.sharding.Mesh` of shape `(len(devices),)`.
    """
    return Mesh(np.array(_device_list(devices), dtype=object), (DATA_AXIS,))


def data_sharding(devices=None) -> NamedSharding:
    r"""The sharding of an `(N, ·)` array split by rows over `data_mesh(devices)`: `P("data", None)`."""
    return NamedSharding(data_mesh(devices), PartitionSpec(DATA_AXIS, None))


def replicated_sharding(devices=None) -> NamedSharding:
    r"""The sharding of an array held whole on every device of `data_mesh(devices)` (θ): `P()`."""
    return NamedSharding(data_mesh(devices), PartitionSpec())


def shard_data(X, Y, devices=None):
    r"""Inputs X and targets Y split by rows (the N inputs) across `devices`, data parallel.

    The directions (1.30) by every method, `mlp_outputs_and_ntk` (1.25) and
    `linearize_outputs` (1.20) then run sharded when called on the result: the SPMD
    partitioner of `jax.jit` splits the per-input work and adds the collectives.  θ need
    not be placed (an uncommitted array, as `init_params` returns, is replicated); one
    committed to a single device must be replicated first (`replicate`).

    Args:
        X: inputs, shape `(N, M)`, float64.
        Y: targets, shape `(N, Q)`, float64.
        devices: a sequence of JAX devices; None for all of `jax.devices()`.

    Returns:
        `(X, Y)`: float64 JAX arrays of the same shapes and values, with sharding
        `data_sharding(devices)` (each device holds N/d consecutive rows).  On one device,
        X and Y as given (JAX float64 arrays are not copied).

    Raises:
        TypeError: float32/16 input, or `devices` that are not JAX devices.
        ValueError: X not 2-D, Y not `(N, Q)`, or N not a multiple of the number of devices
            (no padding: padded rows would change the cost (1.7)).
    """
    devices = _device_list(devices)
    X, Y = as_float64(X, "X"), as_float64(Y, "Y")
    require_shape(X, (None, None), "X", "Use `X[:, None]` for scalar inputs.")
    require_shape(Y, (X.shape[0], None), "Y", f"Targets are one row per input: (N, Q) with N = {X.shape[0]}.")
    if len(devices) == 1:
        return X, Y
    N, d = X.shape[0], len(devices)
    if N % d:
        raise ValueError(f"`X` has N = {N} inputs, not a multiple of the {d} devices: each device must hold N/{d} "
                         f"rows. Drop or add inputs (N = {N - N % d} or {N + d - N % d}), or pass "
                         f"`devices=jax.devices()[:k]` with k dividing N.")
    sharding = data_sharding(devices)
    return jax.device_put(X, sharding), jax.device_put(Y, sharding)


def replicate(tree, devices=None):
    r"""Every array of a pytree (θ, or a model's parameters) held whole on each of `devices`.

    Args:
        tree: a pytree of arrays, e.g. θ of shape `(K,)`.
        devices: as `shard_data`.

    Returns:
        The same pytree with sharding `replicated_sharding(devices)`; on one device, `tree`
        as given.
    """
    devices = _device_list(devices)
    if len(devices) == 1:
        return tree
    return jax.device_put(tree, replicated_sharding(devices))
