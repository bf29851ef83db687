import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptedflow as af
from adaptedflow.network import unflatten_params


@pytest.mark.parametrize("widths", [(2, 3), (3, 5, 2), (4, 6, 5, 3), (1, 2, 2, 2, 1)])
def test_num_params_matches_formula_1_5(widths):
    expected = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
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


def test_mlp_is_cached_per_configuration():
    assert af.mlp((2, 3, 1)) is af.mlp((2, 3, 1))
    assert af.mlp((2, 3, 1)) is not af.mlp((2, 3, 1), "softplus")


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
