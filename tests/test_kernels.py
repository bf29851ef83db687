import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptedflow as af
from adaptedflow.kernels import adapted_step_direction, is_structured, mlp_outputs_and_ntk

CASES = [((3, 7, 2), 5, "tanh"), ((4, 16, 8, 3), 6, "softplus"), ((2, 5, 5, 5, 1), 4, "gelu"), ((3, 12, 1), 8, "sigmoid")]


@pytest.mark.parametrize("widths,N,act", CASES)
def test_structured_kernel_equals_D_Dt(widths, N, act):
    X, _, Y = af.gaussian_clusters(jax.random.PRNGKey(N), N, widths[0], widths[-1])
    net = af.mlp(widths, act)
    theta = af.init_params(jax.random.PRNGKey(1), widths)
    x, D = af.outputs_and_jacobian(net, theta, X)
    x2, G = mlp_outputs_and_ntk(net, theta, X)
    np.testing.assert_allclose(x2, x, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(G, D @ D.T, rtol=1e-12, atol=1e-13 * float(jnp.max(jnp.abs(G))))


@pytest.mark.parametrize("widths,N,act", CASES)
def test_three_methods_agree(widths, N, act):
    X, _, Y = af.gaussian_clusters(jax.random.PRNGKey(N), N, widths[0], widths[-1])
    net = af.mlp(widths, act)
    theta = af.init_params(jax.random.PRNGKey(2), widths)
    ref, info = adapted_step_direction(net, theta, X, Y, method="dense")
    assert info.method == "dense" and not bool(info.fallback)
    for method in ("structured", "matrix-free"):
        u, info = adapted_step_direction(net, theta, X, Y, method=method)
        assert float(jnp.linalg.norm(u - ref) / jnp.linalg.norm(ref)) <= 1e-10, method
        assert float(info.residual) <= 1e-11
    assert adapted_step_direction(net, theta, X, Y)[1].method == "structured"       # auto


def test_matrix_free_reports_iterations_with_and_without_preconditioning():
    X, _, Y = af.gaussian_clusters(jax.random.PRNGKey(0), 12, 3, 2)
    widths = (3, 32, 32, 2)
    net, theta = af.mlp(widths), af.init_params(jax.random.PRNGKey(3), widths)
    ref, _ = adapted_step_direction(net, theta, X, Y, method="dense")
    D = af.jacobian(net, theta, X)
    # CG stops on its recursive residual (cg_tol = 1e-12); the true residual drifts from it
    # by about QN·κ(D Dᵀ)·eps
    bound = 10 * 1e-12 + D.shape[0] * float(np.linalg.cond(np.asarray(D @ D.T))) * np.finfo(float).eps
    for precondition in (False, True):
        u, info = adapted_step_direction(net, theta, X, Y, method="matrix-free", precondition=precondition)
        assert 0 < int(info.iterations) < 10_000 and float(info.residual) <= bound
        assert float(jnp.linalg.norm(u - ref) / jnp.linalg.norm(ref)) <= 1e-10


def test_generic_maps_use_dense_and_refuse_structured():
    fmap = lambda theta, X: jnp.tanh(theta[:4] * theta[4:]) + 0.0 * X[0, 0]
    X, Y = jnp.zeros((2, 1)), jnp.asarray([[0.1, 0.2], [0.3, 0.4]])
    theta = jnp.linspace(0.1, 0.8, 8)
    assert not is_structured(fmap) and is_structured(af.mlp((1, 2, 2)))
    assert adapted_step_direction(fmap, theta, X, Y)[1].method == "dense"
    with pytest.raises(ValueError, match="structured"):
        adapted_step_direction(fmap, theta, X, Y, method="structured")
    with pytest.raises(ValueError, match="method"):
        adapted_step_direction(fmap, theta, X, Y, method="qr")


def test_structured_path_falls_back_on_duplicate_inputs():
    X, _, Y = af.gaussian_clusters(jax.random.PRNGKey(4), 4, 2, 2)
    X = X.at[1].set(X[0])                       # D D^T exactly singular
    widths = (2, 16, 2)
    net, theta = af.mlp(widths), af.init_params(jax.random.PRNGKey(5), widths)
    u, info = adapted_step_direction(net, theta, X, Y, method="structured")
    assert bool(info.fallback) and bool(jnp.all(jnp.isfinite(u)))


def test_integrator_structured_and_dense_orbits_agree():
    X, _, Y = af.gaussian_clusters(jax.random.PRNGKey(0), 5, 2, 2)
    widths = (2, 8, 2)
    net, theta = af.mlp(widths), af.init_params(jax.random.PRNGKey(6), widths)
    a = af.integrate_flow("adapted", net, theta, X, Y, s1=10.0, n_save=5, jacobian="structured")
    b = af.integrate_flow("adapted", net, theta, X, Y, s1=10.0, n_save=5, jacobian="dense")
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-9, atol=1e-11)
    with pytest.raises(ValueError, match="jacobian"):
        af.integrate_flow("adapted", net, theta, X, Y, s1=1.0, jacobian="sparse")
