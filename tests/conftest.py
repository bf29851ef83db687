"""Shared fixtures. Importing adaptedflow switches JAX to float64 before any test runs."""

import jax
import numpy as np
import pytest

import adaptedflow as af


@pytest.fixture(scope="session")
def small_problem():
    """An over-parametrized tanh MLP problem: N = 6, Q = 2 (QN = 12), K = 2·8+8+8·8+8+8·2+2 = 114."""
    X, omega, Y = af.gaussian_clusters(jax.random.PRNGKey(0), 6, 2, 2)
    widths = (2, 8, 8, 2)
    net = af.mlp(widths)
    theta = af.init_params(jax.random.PRNGKey(1), widths)
    return dict(X=X, Y=Y, omega=omega, widths=widths, net=net, theta=theta)


@pytest.fixture
def rng():
    return np.random.default_rng(0)
