"""Parameters as pytrees (`adaptedflow.pytrees`): equinox models and dicts of arrays through the
entry points, against the flat θ of `adaptedflow.mlp` built independently from the same weights."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import adaptedflow as af
from adaptedflow.network import flatten_params

N, M, Q, WIDTH = 5, 3, 2, 8          # QN = 10; K = 3·8+8 + 8·8+8 + 8·2+2 = 122 ≥ QN


@pytest.fixture(scope="module")
def data():
    X = jax.random.normal(jax.random.PRNGKey(1), (N, M), jnp.float64)
    Y = jax.random.normal(jax.random.PRNGKey(2), (N, Q), jnp.float64)
    return X, Y


def _eqx_mlp(key=0, **kw):
    kw = dict(dict(activation=jnp.tanh, dtype=jnp.float64), **kw)
    return eqx.nn.MLP(M, Q, WIDTH, 2, key=jax.random.PRNGKey(key), **kw)


def _af_theta(linears):
    """θ of (1.5) from equinox Linear layers, written out here (weight (out, in) = W_ℓ)."""
    return flatten_params([(lin.weight, lin.bias) for lin in linears])


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


# --------------------------------------------------------------------------------------------- the flat view

def test_flat_model_is_ravel_pytree_and_unravels_leading_axes(data):
    X, _ = data
    params = {"w": jnp.arange(6.0).reshape(3, 2), "b": (jnp.ones(2), jnp.array([[5.0]]))}
    fm = af.flat_model(lambda p, X: X[:, :2] @ p["w"][:2] + p["b"][0], params)
    assert np.array_equal(fm.theta0, ravel_pytree(params)[0])
    back = fm.unravel(jnp.stack([fm.theta0, 2 * fm.theta0]))          # (T, K) → leaves (T, *shape)
    assert back["w"].shape == (2, 3, 2) and back["b"][1].shape == (2, 1, 1)
    assert np.array_equal(back["w"][1], 2 * params["w"]) and np.array_equal(back["b"][0][0], params["b"][0])
    assert fm.output_map(fm.theta0, X).shape == (N * 2,)
    again = af.flat_model(fm.output_map.apply, params).output_map
    assert again == fm.output_map and hash(again) == hash(fm.output_map)          # a static jit argument


# --------------------------------------------------------------------------------------------- equinox MLP

@pytest.mark.parametrize("method", ["dense", "structured", "matrix-free", "auto"])
def test_eqx_mlp_direction_equals_af_mlp(data, method):
    X, Y = data
    model = _eqx_mlp()
    assert model.layers[0].weight.dtype == jnp.float64
    net, theta = af.mlp((M, WIDTH, WIDTH, Q)), _af_theta(model.layers)
    assert np.allclose(net(theta, X), jax.vmap(model)(X).reshape(-1), rtol=1e-14, atol=1e-14)
    ref, _ = af.adapted_step_direction(net, theta, X, Y, method="dense")
    u, info = af.adapted_step_direction(None, model, X, Y, method=method, cg_tol=1e-14)
    assert isinstance(u, eqx.nn.MLP) and u.activation is jnp.tanh            # the model's structure back
    err = _rel(_af_theta(u.layers), ref)
    assert err < 1e-12, err
    if method == "auto":
        assert info.method == "structured"
        assert info.reason == "equinox.nn.MLP (tanh): layer-wise kernel"
    else:
        assert info.method == method


def test_vmap_apply_is_the_plain_call_and_a_custom_apply_is_not(data):
    X, Y = data
    model = _eqx_mlp()
    _, info = af.adapted_step_direction(af.vmap_apply, model, X, Y)
    assert info.method == "structured"
    u, info = af.adapted_step_direction(lambda m, X: jax.vmap(m)(X), model, X, Y)
    assert info.method == "dense"
    assert info.reason.startswith("a custom `apply` (not known to be the row-wise call of a dense stack): "
                                  "no layer-wise kernel; D has QN·K = ")
    ref, _ = af.adapted_step_direction(af.mlp((M, WIDTH, WIDTH, Q)), _af_theta(model.layers), X, Y, method="dense")
    assert _rel(_af_theta(u.layers), ref) < 1e-12


def test_eqx_mlp_with_scan_is_recognised(data):
    X, Y = data
    model = eqx.nn.MLP(M, Q, 4, 3, activation=jax.nn.softplus, dtype=jnp.float64, scan=True,
                       key=jax.random.PRNGKey(3))
    view, reason = af.structured_view(None, model)
    assert reason == "equinox.nn.MLP (softplus)" and view.net == af.mlp((M, 4, 4, 4, Q), "softplus")
    first, hidden, last = model.layers
    linears = [first] + [jax.tree_util.tree_map(lambda a, k=k: a[k], hidden) for k in range(2)] + [last]
    theta = _af_theta(linears)
    assert np.array_equal(view.to_theta(model), theta)
    ref, _ = af.adapted_step_direction(view.net, theta, X, Y, method="dense")
    u, info = af.adapted_step_direction(None, model, X, Y, method="structured")
    assert _rel(view.to_theta(u), ref) < 1e-12


# --------------------------------------------------------------------------------------------- Sequential

def test_sequential_of_linear_is_recognised(data):
    X, Y = data
    k = jax.random.split(jax.random.PRNGKey(4), 3)
    lin = [eqx.nn.Linear(a, b, dtype=jnp.float64, key=kk) for a, b, kk in zip((M, 6, 5), (6, 5, Q), k, strict=True)]
    model = eqx.nn.Sequential([lin[0], eqx.nn.Lambda(jax.nn.sigmoid), lin[1], eqx.nn.Lambda(jax.nn.sigmoid), lin[2]])
    view, reason = af.structured_view(None, model)
    assert reason == "equinox.nn.Sequential (sigmoid)" and view.net == af.mlp((M, 6, 5, Q), "sigmoid")
    theta = _af_theta(lin)
    ref, _ = af.adapted_step_direction(view.net, theta, X, Y, method="dense")
    for method in ("structured", "dense"):
        u, info = af.adapted_step_direction(None, model, X, Y, method=method)
        assert isinstance(u, eqx.nn.Sequential)
        assert _rel(_af_theta([u.layers[0], u.layers[2], u.layers[4]]), ref) < 1e-12, method


# --------------------------------------------------------------------------------------------- fallbacks

@pytest.mark.parametrize("model, why", [
    (lambda: _eqx_mlp(final_activation=jax.nn.sigmoid), "final_activation ≠ identity"),
    (lambda: _eqx_mlp(activation=jax.nn.gelu), "activation gelu: not one of"),
    (lambda: _eqx_mlp(use_bias=False), "use_bias=False"),
    (lambda: eqx.nn.Sequential([eqx.nn.Linear(M, 4, dtype=jnp.float64, key=jax.random.PRNGKey(0)),
                                eqx.nn.Lambda(jnp.tanh),
                                eqx.nn.Linear(4, 4, dtype=jnp.float64, key=jax.random.PRNGKey(1)),
                                eqx.nn.Lambda(jax.nn.sigmoid),
                                eqx.nn.Linear(4, Q, dtype=jnp.float64, key=jax.random.PRNGKey(2))]),
     "different activations"),
])
def test_unrecognised_model_falls_back_with_its_reason(data, model, why):
    X, Y = data
    model = model()
    view, reason = af.structured_view(None, model)
    assert view is None and why in reason, reason
    u, info = af.adapted_step_direction(None, model, X, Y)
    assert info.method == "dense" and info.reason.startswith(f"{reason}: no layer-wise kernel; D has QN·K")
    ud, _ = af.adapted_step_direction(None, model, X, Y, method="matrix-free", cg_tol=1e-14)
    fm = af.flat_model(None, model)
    assert _rel(fm.output_map.ravel(ud), fm.output_map.ravel(u)) < 1e-10
    with pytest.raises(ValueError, match="`method='structured'` needs a dense stack.*" + why):
        af.adapted_step_direction(None, model, X, Y, method="structured")


def test_unrecognised_model_too_big_for_d_goes_matrix_free(data, monkeypatch):
    """Above `kernels.DENSE_MAX_ENTRIES` entries of D, auto does not form D for a model without the kernel."""
    import adaptedflow.kernels as km

    X, Y = data
    model = eqx.nn.Sequential([eqx.nn.Linear(M, 4, dtype=jnp.float64, key=jax.random.PRNGKey(0)),
                               eqx.nn.Lambda(jnp.tanh),
                               eqx.nn.Linear(4, 4, dtype=jnp.float64, key=jax.random.PRNGKey(1)),
                               eqx.nn.Lambda(jax.nn.sigmoid),
                               eqx.nn.Linear(4, Q, dtype=jnp.float64, key=jax.random.PRNGKey(2))])
    ud, _ = af.adapted_step_direction(None, model, X, Y, method="dense")
    monkeypatch.setattr(km, "DENSE_MAX_ENTRIES", 10)
    u, info = af.adapted_step_direction(None, model, X, Y, cg_tol=1e-14)
    assert info.method == "matrix-free" and "> 10 entries: matrix-free" in info.reason, info.reason
    fm = af.flat_model(None, model)
    assert _rel(fm.output_map.ravel(u), fm.output_map.ravel(ud)) < 1e-10


# --------------------------------------------------------------------------------------------- dict of arrays

def _dict_params(key=5):
    k = jax.random.split(jax.random.PRNGKey(key), 4)
    return {"hidden": {"W": jax.random.normal(k[0], (WIDTH, M), jnp.float64) / np.sqrt(M),
                       "b": 0.1 * jax.random.normal(k[1], (WIDTH,), jnp.float64)},
            "out": {"W": jax.random.normal(k[2], (Q, WIDTH), jnp.float64) / np.sqrt(WIDTH),
                    "b": 0.1 * jax.random.normal(k[3], (Q,), jnp.float64)}}


def _dict_apply(p, X):
    return jnp.tanh(X @ p["hidden"]["W"].T + p["hidden"]["b"]) @ p["out"]["W"].T + p["out"]["b"]     # (N, Q)


def _dict_theta(p):
    return flatten_params([(p["hidden"]["W"], p["hidden"]["b"]), (p["out"]["W"], p["out"]["b"])])


@pytest.mark.parametrize("stacked", [False, True])
@pytest.mark.parametrize("flow", ["adapted", "least-squares"])
def test_dict_model_direction_equals_flat(data, stacked, flow):
    X, Y = data
    p = _dict_params()
    apply = (lambda p, X: _dict_apply(p, X).reshape(-1)) if stacked else _dict_apply       # (QN,) or (N, Q)
    net = af.mlp((M, WIDTH, Q))
    ref, _ = af.adapted_step_direction(net, _dict_theta(p), X, Y, flow=flow, method="dense")
    u, info = af.adapted_step_direction(apply, p, X, Y, flow=flow)
    assert jax.tree_util.tree_structure(u) == jax.tree_util.tree_structure(p)
    assert info.method == "dense" and "custom `apply`" in info.reason
    assert _rel(_dict_theta(u), ref) < 1e-12


# --------------------------------------------------------------------------------------------- integrate, descent

def test_integrate_flow_with_pytrees_equals_flat(data):
    X, Y = data
    model = _eqx_mlp()
    net, theta = af.mlp((M, WIDTH, WIDTH, Q)), _af_theta(model.layers)
    kw = dict(s1=1.0, n_save=3, rtol=1e-10, atol=1e-12)
    flat = af.integrate_flow("adapted", net, theta, X, Y, **kw)
    orbit = af.integrate_flow("adapted", None, model, X, Y, **kw)
    assert orbit.jacobian == "structured" and orbit.params.layers[0].weight.shape == (3, WIDTH, M)
    saved = jax.vmap(lambda m: _af_theta(m.layers))(eqx.filter(orbit.params, eqx.is_array))
    assert np.max(np.abs(saved - flat.theta)) <= 1e-12 * np.max(np.abs(flat.theta))
    assert np.max(np.abs(_af_theta(orbit.params_end.layers) - flat.theta_end)) <= 1e-12 * np.max(np.abs(flat.theta))
    assert np.allclose(orbit.cost, flat.cost, rtol=1e-12, atol=0)


def test_integrate_flow_with_a_dict_model_equals_flat(data):
    X, Y = data
    p = _dict_params()
    kw = dict(s1=1.0, n_save=3, rtol=1e-10, atol=1e-12)
    flat = af.integrate_flow("standard", af.mlp((M, WIDTH, Q)), _dict_theta(p), X, Y, **kw)
    orbit = af.integrate_flow("standard", _dict_apply, p, X, Y, **kw)
    saved = jax.vmap(_dict_theta)(orbit.params)
    # Two roundings of one field: the orbits agree to the integrator's tolerances, not to eps.
    assert np.max(np.abs(saved - flat.theta)) <= 1e-8 * np.max(np.abs(flat.theta))
    assert np.array_equal(orbit.theta, jax.vmap(lambda t: ravel_pytree(t)[0])(orbit.params))


@pytest.mark.parametrize("method, step", [("adapted", float(N)), ("gd", 0.1)])
def test_descent_with_pytrees_equals_flat(data, method, step):
    X, Y = data
    model = _eqx_mlp()
    net, theta = af.mlp((M, WIDTH, WIDTH, Q)), _af_theta(model.layers)
    flat = af.descent(method, net, theta, X, Y, step=step, n_steps=3)
    run = af.descent(method, None, model, X, Y, step=step, n_steps=3)
    saved = jax.vmap(lambda m: _af_theta(m.layers))(eqx.filter(run.params, eqx.is_array))
    assert saved.shape == (4, theta.size)
    assert np.max(np.abs(saved - flat.thetas)) <= 1e-12 * np.max(np.abs(flat.thetas))
    assert np.allclose(run.costs, flat.costs, rtol=1e-12, atol=0)

    p = _dict_params()
    flat = af.descent(method, af.mlp((M, WIDTH, Q)), _dict_theta(p), X, Y, step=step, n_steps=3)
    run = af.descent(method, _dict_apply, p, X, Y, step=step, n_steps=3)
    assert np.max(np.abs(jax.vmap(_dict_theta)(run.params) - flat.thetas)) <= 1e-12 * np.max(np.abs(flat.thetas))


# --------------------------------------------------------------------------------------------- bad input

def test_float32_leaves_are_refused(data):
    X, Y = data
    with pytest.raises(TypeError, match=r"`params\.layers\[0\]\.weight` has dtype float32.*dtype=jnp.float64"):
        af.adapted_step_direction(None, _eqx_mlp(dtype=jnp.float32), X, Y)
    p = _dict_params()
    p["out"]["b"] = p["out"]["b"].astype(jnp.float32)
    with pytest.raises(TypeError, match=r"`params\['out'\]\['b'\]` has dtype float32"):
        af.integrate_flow("adapted", _dict_apply, p, X, Y, s1=1.0)


def test_bad_leaves_and_apply_are_refused(data):
    X, Y = data
    p = _dict_params()
    with pytest.raises(ValueError, match=r"must return outputs of shape \(N, Q\) = \(5, 2\) or \(QN,\) = \(10,\), "
                                         r"matching `Y`; got \(5, 8\)"):
        af.adapted_step_direction(lambda p, X: jnp.tanh(X @ p["hidden"]["W"].T), p, X, Y)
    with pytest.raises(ValueError, match="must return outputs of shape"):
        af.descent("adapted", lambda p, X: _dict_apply(p, X).T, p, X, Y, step=1.0, n_steps=1)
    with pytest.raises(TypeError, match="`params\\['n'\\]` is a int"):
        af.adapted_step_direction(_dict_apply, dict(p, n=3), X, Y)
    with pytest.raises(TypeError, match="`apply` is None, so `params` must be the model itself"):
        af.adapted_step_direction(None, p, X, Y)
    with pytest.raises(TypeError, match="takes the flat θ"):
        af.adapted_step_direction(af.mlp((M, WIDTH, Q)), p, X, Y)
