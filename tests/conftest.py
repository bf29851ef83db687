"""Shared fixtures. Importing adaptedflow switches JAX to float64 before any test runs."""

import os
import subprocess
import sys
from pathlib import Path

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


@pytest.fixture(autouse=True, scope="module")
def _free_compiled_programs():
    """Drop JAX's compiled programs after each test module.  One process runs every module,
    and each XLA CPU executable keeps about six memory mappings; the modules' programs
    together add up to about 66,000 mappings, past the kernel's limit per process
    (vm.max_map_count, 65,530 by default), where XLA aborts mid-compile.  Cleared after
    each module, the process stays below 22,000."""
    yield
    jax.clear_caches()


@pytest.fixture(scope="session")
def built_book():
    """Run the whole pipeline once: every chapter at fast parameters, then the strict HTML build.

    The network is blocked for it by proxies that point nowhere: the build must not need it.
    """
    root = Path(__file__).resolve().parents[1]
    nowhere = "http://127.0.0.1:9"
    env = dict(os.environ, HTTP_PROXY=nowhere, HTTPS_PROXY=nowhere, ALL_PROXY=nowhere, http_proxy=nowhere,
               https_proxy=nowhere, all_proxy=nowhere, NO_PROXY="", no_proxy="")
    proc = subprocess.run([sys.executable, "-m", "adaptedflow.book", "--no-cache"], cwd=root, capture_output=True,
                          text=True, env=env)
    print(proc.stdout[-6000:])
    assert proc.returncode == 0, f"`python -m adaptedflow.book` failed:\n{proc.stdout[-8000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout
