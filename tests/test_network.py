import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptedflow as af
from adaptedflow.network import activation_function, flatten_params, unflatten_params


@pytest.mark.parametrize("widths", [(2, 3), (3, 5, 2), (4, 6, 5, 3), (1, 2, 2, 2, 1)])
def test_num_params_matches_formula_1_5(widths):
    expected = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True))
    assert af.num_params(widths) == expected
    assert af.init_params(jax.random.PRNGKey(0), widths).shape == (expected,)


def test_parameter_order_is_w1_b1_w2_b2():
    widths = (2, 3, 1)
    theta = jnp.arange(af.num_params(widths), dtype=jnp.float64)
    (W1, b1), (W2, b2) = unflatten_params(theta, widths)
    np.testing.assert_array_equal(W1, np.arange(6).reshape(3, 2))
    np.testing.assert_array_equal(b1, [6, 7, 8])
    np.testing.assert_array_equal(W2, [[9, 10, 11]])
    np.testing.assert_array_equal(b2, [12])


def test_outputs_are_stacked_per_sample_1_6():
    widths = (3, 4, 2)
    net = af.mlp(widths)
    theta = af.init_params(jax.random.PRNGKey(2), widths)
    X = jax.random.normal(jax.random.PRNGKey(3), (5, 3))
    x = net(theta, X)
    assert x.shape == (10,) and x.dtype == jnp.float64
    (W1, b1), (W2, b2) = unflatten_params(theta, widths)
    for j in range(5):
        xj = W2 @ jnp.tanh(W1 @ X[j] + b1) + b2
        np.testing.assert_allclose(x[2 * j:2 * j + 2], xj, rtol=1e-14)


def test_mlp_is_a_value_equal_and_hashed_by_its_configuration():
    a, b = af.mlp((2, 3, 1)), af.mlp([2, 3, 1])
    assert a == b and hash(a) == hash(b) and isinstance(a, af.MLP)
    assert a != af.mlp((2, 3, 1), "softplus") and a != af.mlp((2, 4, 1))
    assert a.widths == (2, 3, 1) and a.activation == "tanh" and a.num_params == af.num_params((2, 3, 1)) == 13
    assert len({a, b, af.mlp((2, 3, 1), "softplus")}) == 2
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.widths = (2, 5, 1)
    X = jnp.linspace(-1.0, 1.0, 6).reshape(3, 2)
    np.testing.assert_array_equal(a.sigma(X), jnp.tanh(X))
    np.testing.assert_array_equal(activation_function("softplus")(X), jax.nn.softplus(X))
    with pytest.raises(ValueError, match="`activation` must be one of"):
        activation_function("swish-ish")


@pytest.mark.parametrize("widths", [(2, 3), (3, 5, 2), (4, 6, 5, 3)])
def test_flatten_and_unflatten_are_inverse_1_5(widths):
    """θ → layers → θ exactly, and layers → θ → layers exactly (the order of (1.5))."""
    net = af.mlp(widths)
    theta = af.init_params(jax.random.PRNGKey(7), widths)
    layers = net.unflatten(theta)
    assert [(W.shape, b.shape) for W, b in layers] == [((o, i), (o,)) for i, o in zip(widths[:-1], widths[1:],
                                                                                         strict=True)]
    np.testing.assert_array_equal(net.flatten(layers), theta)
    np.testing.assert_array_equal(flatten_params(unflatten_params(theta, widths)), theta)
    again = net.unflatten(net.flatten(layers))
    for (W, b), (W2, b2) in zip(layers, again, strict=True):
        np.testing.assert_array_equal(W, W2)
        np.testing.assert_array_equal(b, b2)
    # a layer edited as a matrix: only its entries of θ change
    edited = [(W, b) for W, b in layers]
    edited[-1] = (layers[-1][0].at[0, 1].add(1.0), layers[-1][1])
    i = (af.num_params(widths[:-1]) if len(widths) > 2 else 0) + 1         # W_{L+1}[0, 1] in θ
    np.testing.assert_array_equal(np.flatnonzero(np.asarray(net.flatten(edited) != theta)), [i])


def test_flatten_checks_shapes_against_the_widths():
    net = af.mlp((2, 3, 1))
    layers = net.unflatten(jnp.arange(13.0))
    with pytest.raises(ValueError, match=r"widths \[2, 3, 1\], but `widths` is \[2, 4, 1\]"):
        flatten_params(layers, (2, 4, 1))
    with pytest.raises(ValueError, match="do not chain"):
        net.flatten([layers[0], (jnp.zeros((1, 4)), jnp.zeros(1))])
    with pytest.raises(ValueError, match=r"`b_1` shape \(M_1,\)"):
        net.flatten([(layers[0][0], jnp.zeros(2)), layers[1]])
    with pytest.raises(ValueError, match="at least one"):
        flatten_params([])


def test_relu_warns_and_bad_arguments_raise():
    with pytest.warns(UserWarning, match="Lipschitz"):
        af.mlp((2, 3, 1), "relu")
    with pytest.raises(ValueError, match="activation"):
        af.mlp((2, 3, 1), "swish-ish")
    with pytest.raises(ValueError, match="widths"):
        af.num_params((3,))
    with pytest.raises(ValueError, match="widths"):
        af.num_params((3, 0, 1))


def test_gaussian_clusters_shapes_and_labels():
    X, omega, Y = af.gaussian_clusters(jax.random.PRNGKey(0), 7, 3, 3)
    assert X.shape == (7, 3) and Y.shape == (7, 3) and X.dtype == jnp.float64
    np.testing.assert_array_equal(omega, np.arange(7) % 3)
    np.testing.assert_array_equal(Y, np.eye(3)[omega])
    X2, _, _ = af.gaussian_clusters(jax.random.PRNGKey(0), 7, 3, 3)
    np.testing.assert_array_equal(X, X2)


def test_stacked_targets_rejects_bad_labels():
    with pytest.raises(ValueError, match=r"0\.\.1"):
        af.stacked_targets(np.array([0, 2]), af.one_hot_labels(2))
    with pytest.raises(ValueError, match="non-empty"):
        af.stacked_targets(np.array([], dtype=int), af.one_hot_labels(2))
    with pytest.raises(TypeError, match="integers"):
        af.stacked_targets(np.array([0.0, 1.0]), af.one_hot_labels(2))


def test_importing_the_library_loads_no_plotting_config_optimiser_or_sklearn():
    """The library needs jax, numpy, scipy, diffrax and lineax only; the rest are extras."""
    import subprocess
    import sys

    code = ("import sys, adaptedflow; bad = [m for m in ('matplotlib', 'yaml', 'optax', 'sklearn') "
            "if m in sys.modules]; print(bad); assert not bad")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
