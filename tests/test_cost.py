import jax
import jax.numpy as jnp
import numpy as np

import adaptedflow as af


def test_cost_and_output_gradient_1_7_1_23(rng):
    Y = jnp.asarray(rng.normal(size=(4, 3)))
    x = jnp.asarray(rng.normal(size=12))
    r = np.asarray(x) - np.asarray(Y).reshape(-1)
    np.testing.assert_allclose(af.cost(x, Y), r @ r / 8, rtol=1e-15)
    np.testing.assert_allclose(af.grad_x_cost(x, Y), jax.grad(af.cost)(x, Y), rtol=1e-14)


def test_jacobian_matches_forward_mode(small_problem):
    p = small_problem
    x, D = af.outputs_and_jacobian(p["net"], p["theta"], p["X"])
    D_fwd = jax.jacfwd(lambda t: p["net"](t, p["X"]))(p["theta"])
    assert D.shape == (12, af.num_params(p["widths"]))
    np.testing.assert_allclose(D, D_fwd, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(x, p["net"](p["theta"], p["X"]), rtol=1e-15)


def test_chain_rule_1_21(small_problem):
    p = small_problem
    x, D = af.outputs_and_jacobian(p["net"], p["theta"], p["X"])
    g = jax.grad(lambda t: af.cost(p["net"](t, p["X"]), p["Y"]))(p["theta"])
    np.testing.assert_allclose(D.T @ af.grad_x_cost(x, p["Y"]), g, rtol=1e-12, atol=1e-15)


def test_ntk_gram_is_symmetric_psd(small_problem):
    p = small_problem
    G = af.ntk_gram(af.jacobian(p["net"], p["theta"], p["X"]))
    np.testing.assert_allclose(G, G.T, atol=1e-13)
    assert np.linalg.eigvalsh(np.asarray(G)).min() > -1e-10
