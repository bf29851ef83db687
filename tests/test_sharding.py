"""Data-parallel directions (adaptedflow.sharding): sharded over 4 host devices = the single-device ones."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import pytest

import adaptedflow as af

# Run in a fresh interpreter: the device count is fixed when JAX starts.  Each direction is
# computed twice in that process, on one device and with X, Y split by rows over four, by
# the same code; they differ only by the order of the sums over inputs (the all-reduce of
# each VJP), a few ulps per sum, amplified by the kernel's condition number (~1e2 here):
# 1e-12 relative leaves two orders of margin.
_SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp
    import adaptedflow as af
    from adaptedflow.kernels import DirectionOptions, compiled_direction, mlp_outputs_and_ntk

    out = {"devices": len(jax.devices())}
    widths, N = (3, 16, 16, 2), 12                      # K = 354 >= QN = 24; N divisible by 4
    X, _, Y = af.gaussian_clusters(jax.random.PRNGKey(0), N, widths[0], widths[-1])
    net = af.mlp(widths, "tanh")
    theta = af.init_params(jax.random.PRNGKey(1), widths)
    Xs, Ys = af.shard_data(X, Y)
    out["x_devices"] = len(Xs.sharding.device_set)
    out["x_shard_shapes"] = sorted({tuple(s.data.shape) for s in Xs.addressable_shards})
    out["y_shard_shapes"] = sorted({tuple(s.data.shape) for s in Ys.addressable_shards})
    out["x_equal"] = bool(jnp.array_equal(Xs, X))
    for method in ("structured", "matrix-free"):
        u1, _ = af.adapted_step_direction(net, theta, X, Y, method=method, cg_tol=1e-14)
        u4, info = af.adapted_step_direction(net, theta, Xs, Ys, method=method, cg_tol=1e-14)
        out[method] = float(jnp.linalg.norm(u4 - u1) / jnp.linalg.norm(u1))
        out[method + "_method"] = info.method
        options = DirectionOptions(method=method, cg_tol=1e-14).resolve(net, "adapted", theta.size, Y.size)[0]
        hlo = compiled_direction.lower(net, "adapted", options, theta, Xs, Ys).compile().as_text()
        out[method + "_collectives"] = sum(hlo.count(c) for c in ("all-reduce", "all-gather", "reduce-scatter"))
    G1 = mlp_outputs_and_ntk(net, theta, X)[1]
    G4 = jax.jit(lambda t, X: mlp_outputs_and_ntk(net, t, X)[1])(theta, Xs)
    out["kernel"] = float(jnp.max(jnp.abs(G4 - G1)) / jnp.max(jnp.abs(G1)))
    out["kernel_devices"] = len(G4.sharding.device_set)
    X13, _, Y13 = af.gaussian_clusters(jax.random.PRNGKey(2), 13, widths[0], widths[-1])
    try:
        af.shard_data(X13, Y13)
        out["uneven"] = "no error"
    except ValueError as err:
        out["uneven"] = str(err)
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def four_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_data_really_is_split_over_four_devices(four_devices):
    r = four_devices
    assert r["devices"] == 4 and r["x_devices"] == 4 and r["kernel_devices"] == 4
    assert r["x_shard_shapes"] == [[3, 3]] and r["y_shard_shapes"] == [[3, 2]]     # N/4 = 3 rows each
    assert r["x_equal"]
    # the partitioned programs communicate: each VJP's sum over inputs is an all-reduce
    assert r["structured_collectives"] > 0 and r["matrix-free_collectives"] > 0


@pytest.mark.parametrize("method", ["structured", "matrix-free"])
def test_sharded_direction_matches_one_device(four_devices, method):
    assert four_devices[method + "_method"] == method
    assert four_devices[method] <= 1e-12


def test_sharded_layerwise_kernel_matches_one_device(four_devices):
    assert four_devices["kernel"] <= 1e-12


def test_uneven_inputs_are_refused(four_devices):
    msg = four_devices["uneven"]
    assert "N = 13 inputs, not a multiple of the 4 devices" in msg and "N = 12 or 16" in msg


def test_one_device_changes_nothing():
    X, _, Y = af.gaussian_clusters(jax.random.PRNGKey(0), 5, 3, 2)
    device = jax.devices()[:1]
    Xs, Ys = af.shard_data(X, Y, devices=device)
    assert Xs is X and Ys is Y                                   # no copy, no new sharding
    theta = af.init_params(jax.random.PRNGKey(1), (3, 4, 2))
    assert af.replicate(theta, devices=device) is theta


def test_bad_input_is_refused():
    X, Y = jnp.ones((4, 3)), jnp.ones((4, 2))
    with pytest.raises(TypeError, match="float64 only"):
        af.shard_data(X.astype(jnp.float32), Y)
    with pytest.raises(ValueError, match=r"`Y` must have shape|`Y`"):
        af.shard_data(X, jnp.ones((5, 2)))
    with pytest.raises(TypeError, match="`devices` must hold JAX devices"):
        af.shard_data(X, Y, devices=["cpu"])
    with pytest.raises(ValueError, match="`devices` is empty"):
        af.shard_data(X, Y, devices=[])
