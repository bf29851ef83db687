"""Every bad input gets a clear error that names the problem and the fix (never a silent
wrong number, a NaN plot or a hang). One row per bad input: the call, the error type, and
a pattern the message must contain."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptedflow as af
from adaptedflow.book import claims

X, OMEGA, Y = af.gaussian_clusters(jax.random.PRNGKey(0), 6, 2, 2)
WIDTHS = (2, 8, 8, 2)
NET = af.mlp(WIDTHS)
THETA = af.init_params(jax.random.PRNGKey(1), WIDTHS)
C0 = float(af.cost(NET(THETA, X), Y))


def _integrate(**change):
    kw = dict(flow="adapted", output_map=NET, theta0=THETA, X=X, Y=Y, s1=1.0)
    kw.update(change)
    return af.integrate_flow(**kw)


def _under_parametrized_problem():
    Xb, _, Yb = af.gaussian_clusters(jax.random.PRNGKey(0), 20, 2, 2)     # QN = 40 > K = 17
    return dict(output_map=af.mlp((2, 3, 2)), theta0=af.init_params(jax.random.PRNGKey(1), (2, 3, 2)), X=Xb, Y=Yb)


def _duplicate_inputs():
    Xd = X.at[1].set(X[0])
    return dict(X=Xd, Y=Y.at[1].set(Y[0][::-1]))


CASES = {
    "X not 2-D": (lambda: _integrate(X=np.zeros(6)), ValueError, r"`X` must have shape \(\*, \*\).*X\[:, None\]"),
    "Y rows differ from N": (lambda: _integrate(Y=np.zeros((5, 2))), ValueError, r"`Y` must have shape \(6, \*\)"),
    "Q of Y differs from the network": (lambda: _integrate(Y=np.zeros((6, 3))), ValueError, "output width Q"),
    "theta0 not 1-D": (lambda: _integrate(theta0=np.zeros((2, 57))), ValueError, r"`theta0` must have shape \(\*,\)"),
    "theta0 of the wrong length": (lambda: _integrate(theta0=np.zeros(10)), ValueError,
                                   r"widths \[2, 8, 8, 2\] takes `theta0` of shape \(114,\).*init_params"),
    "inputs of the wrong dimension": (lambda: _integrate(X=np.zeros((6, 3))), ValueError, r"`X` of shape \(N, 2\)"),
    "N = 0": (lambda: _integrate(X=np.zeros((0, 2)), Y=np.zeros((0, 2))), ValueError, r"N = 0"),
    "labels outside 0..Q-1": (lambda: af.stacked_targets(np.array([0, 1, 2]), af.one_hot_labels(2)), ValueError,
                              r"0\.\.1"),
    "non-integer labels": (lambda: af.stacked_targets(np.array([0.0, 1.0]), af.one_hot_labels(2)), TypeError,
                           "integers"),
    "N = 0 for the data generator": (lambda: af.gaussian_clusters(jax.random.PRNGKey(0), 0, 2, 2), ValueError,
                                     "`N` must be a positive integer"),
    "K < QN given to the over-parametrized flow": (
        lambda: af.integrate_flow("adapted", s1=1.0, **_under_parametrized_problem()), ValueError,
        r"K = 17 < QN = 40.*adapted-under"),
    "K > QN given to the under-parametrized flow": (lambda: _integrate(flow="adapted-under"), ValueError,
                                                    r"K ≤ QN.*flow='adapted'"),
    "unknown flow": (lambda: _integrate(flow="natural"), ValueError, "`flow` must be one of"),
    "rank lost at the start": (lambda: _integrate(**_duplicate_inputs()), af.RankLossError,
                               r"σ_min = .*rank_rtol = 1\.0e-07.*least-squares"),
    "NaN in the data": (lambda: _integrate(X=X.at[0, 0].set(jnp.nan)), ValueError, "`X` has 1 non-finite"),
    "inf in theta0": (lambda: _integrate(theta0=THETA.at[3].set(jnp.inf)), ValueError, "`theta0` has 1 non-finite"),
    "float32 parameters": (lambda: _integrate(theta0=np.asarray(THETA, dtype=np.float32)), TypeError,
                           r"float64 only.*astype\('float64'\)"),
    "float32 inputs": (lambda: _integrate(X=np.asarray(X, dtype=np.float32)), TypeError, "`X` has dtype float32"),
    "eps ≤ 0 for the event": (lambda: _integrate(eps=0.0), ValueError, "`eps` must be > 0"),
    "eps ≥ C(0) for the stopping time": (
        lambda: af.first_passage_time("adapted", NET, THETA, X, Y, 2 * C0, s1=1.0), ValueError,
        r"s_\*\(eps\) = 0 \(2\.21\)"),
    "eps ≤ 0 for the stopping-time formula": (lambda: af.stopping_time(1.0, -1e-3, 4), ValueError, "`eps` must be > 0"),
    "negative horizon": (lambda: _integrate(s1=-1.0), ValueError, "`s1` must be a positive"),
    "save times out of order": (lambda: _integrate(ts=[0.0, 0.5, 0.2]), ValueError, "increasing"),
    "unknown rank-loss policy": (lambda: _integrate(on_rank_loss="ignore"), ValueError, "on_rank_loss"),
    "unknown Jacobian method": (lambda: _integrate(jacobian="sparse"), ValueError, "`jacobian` must be"),
    "solver out of steps": (lambda: _integrate(flow="standard", s1=50.0, max_steps=3), RuntimeError, "max_steps"),
    "bad widths": (lambda: af.mlp((3,)), ValueError, "`widths` must list at least two"),
    "unknown activation": (lambda: af.mlp((2, 3, 1), "swish-ish"), ValueError, "`activation` must be one of"),
    "unknown direction method": (lambda: af.adapted_step_direction(NET, THETA, X, Y, method="qr"), ValueError,
                                 "`method` must be one of"),
    "unknown preconditioner": (lambda: af.adapted_step_direction(NET, THETA, X, Y, method="matrix-free",
                                                                 precondition="ilu"), ValueError,
                               "`precondition` must be one of"),
    "NaN theta to a direction": (lambda: af.adapted_step_direction(NET, THETA.at[0].set(jnp.nan), X, Y), ValueError,
                                 "theta"),
    "float32 theta to a direction": (lambda: af.adapted_step_direction(NET, THETA.astype("float32"), X, Y), TypeError,
                                     "float64"),
    "kernel cannot resolve the cut-off": (lambda: af.adapted_step_direction(NET, THETA, X, Y, flow="least-squares",
                                                                            method="structured", pinv_rtol=1e-12),
                                          ValueError, "cannot tell"),
    "malformed claim id": (lambda: claims.check("Theorem 2.1", 0.0, 1.0, statement="s", quantity="q", kind="bound"),
                           ValueError, "`claim_id` must look like"),
    "claim of no kind": (lambda: claims.check("thm-2.1", 0.0, 1.0, statement="s", quantity="q", kind="true"),
                         ValueError, "`kind` must be one of"),
    "claim of an unregistered statement": (lambda: claims.check("thm-9.9", 0.0, 1.0, statement="s", quantity="q",
                                                            kind="bound"), ValueError, "no statement"),
    "frequency with k > n": (lambda: claims.check_frequency("thm-2.1", 5, 3, at_most=0.5, statement="s", quantity="q"),
                             ValueError, "0 ≤ k ≤ n"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gets_a_clear_error(name):
    call, error, pattern = CASES[name]
    with pytest.raises(error, match=pattern):
        call()


def test_rank_loss_along_the_orbit_is_reported_not_integrated():
    fmap = lambda theta, X: jnp.stack([theta[0] ** 2, theta[1]])          # D = diag(2θ₁, 1)
    with pytest.raises(af.RankLossError, match=r"rank loss at s = 0\.69.*σ_min = .*rank_rtol = 1\.0e-06"):
        af.integrate_flow("adapted", fmap, jnp.asarray([1.0, 0.5]), jnp.zeros((1, 1)), jnp.asarray([[-1.0, 0.0]]),
                          s1=10.0, rank_rtol=1e-6)


def test_non_smooth_activation_warns():
    with pytest.warns(UserWarning, match="no Lipschitz derivative"):
        af.mlp((2, 3, 1), "relu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        af.mlp((2, 3, 1), "tanh")


def test_adam_without_optax_names_the_extra(monkeypatch):
    """optax is not a dependency of the library: method='adam' says which extra provides it."""
    import sys

    monkeypatch.setitem(sys.modules, "optax", None)                 # `import optax` now raises ImportError
    with pytest.raises(ImportError, match=r"needs optax.*`bench` or `book` extra"):
        af.descent("adam", NET, THETA, X, Y, step=1e-2, n_steps=2)
