"""Adapted descent in discrete time (adaptedflow.paper.discrete)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptedflow as af
from adaptedflow.book.bench import interleaved_run_seconds
from adaptedflow.descent import damped_adapted_direction, descent
from adaptedflow.paper.discrete import (
    damped_factors,
    discrete_cost,
    discrete_factor,
    first_step_below,
    step_defect,
    stopping_steps,
    taylor_coefficients,
)

_N_LONG = 250   # one compiled run for all identity-model tests; (1 − 0.05)^(2·250) ≈ 1e-11


def _doubled(theta, X):
    """An under-parametrized output map, K = QN/2."""
    return jnp.concatenate([theta, theta])


@pytest.fixture(scope="module")
def linear_problem():
    """The output-linearised model: identity output map, K = QN, D = 1."""
    X, omega, Y = af.gaussian_clusters(jax.random.PRNGKey(3), 5, 2, 2)
    theta0 = jax.random.normal(jax.random.PRNGKey(4), (10,), dtype=jnp.float64)
    return X, Y, theta0


@pytest.mark.parametrize("frac", [0.1, 0.5, 1.5])
def test_identity_model_rate_is_exact(linear_problem, frac):
    X, Y, theta0 = linear_problem
    N = X.shape[0]
    run = descent("adapted", af.identity_map, theta0, X, Y, step=frac * N, n_steps=_N_LONG, repeats=1)
    pred = discrete_cost(run.costs[0], frac * N, N, np.arange(_N_LONG + 1))
    # k steps of rounding, ≈ k·eps·|y_ω| in θ_k − y_ω, stay below 1e-10 relative while C_k ≥ 1e-6 C_0
    keep = pred >= 1e-6 * run.costs[0]
    assert keep.sum() >= 5
    np.testing.assert_allclose(run.costs[keep], pred[keep], rtol=1e-10)


@pytest.mark.parametrize("frac", [0.05, 0.3, 0.7, 1.3])
def test_stopping_steps_exact_within_one_on_identity_model(linear_problem, frac):
    X, Y, theta0 = linear_problem
    N = X.shape[0]
    h = frac * N
    run = descent("adapted", af.identity_map, theta0, X, Y, step=h, n_steps=_N_LONG, repeats=1)
    C0 = run.costs[0]
    for d in range(1, 10):
        eps = C0 * 10.0 ** -d
        k_pred = stopping_steps(C0, eps, h, N)
        assert k_pred <= _N_LONG
        assert abs(first_step_below(run.costs, eps) - k_pred) <= 1


def test_h_equals_N_is_one_min_norm_gauss_newton_step(linear_problem, small_problem):
    X, Y, theta0 = linear_problem
    N = X.shape[0]
    run = descent("adapted", af.identity_map, theta0, X, Y, step=float(N), n_steps=1, repeats=1)
    np.testing.assert_allclose(run.thetas[1], Y.reshape(-1), atol=1e-14)
    assert run.costs[1] < 1e-28
    assert stopping_steps(run.costs[0], 1e-3 * run.costs[0], N, N) == 1
    # on a network, h = N is θ − D⁺(x − y_ω): the least-norm solution of the linearised equations
    p = small_problem
    Np = p["X"].shape[0]
    step = descent("adapted", p["net"], p["theta"], p["X"], p["Y"], step=float(Np), n_steps=1, repeats=1)
    x, D = af.outputs_and_jacobian(p["net"], p["theta"], p["X"])
    delta = -np.linalg.pinv(np.asarray(D)) @ np.asarray(x - p["Y"].reshape(-1))
    np.testing.assert_allclose(step.thetas[1] - p["theta"], delta, rtol=1e-8, atol=1e-12)


def test_damping_to_zero_recovers_undamped_step(small_problem):
    p = small_problem
    x, D = af.outputs_and_jacobian(p["net"], p["theta"], p["X"])
    g = af.grad_x_cost(x, p["Y"])
    u0 = af.adapted_direction(D, g)
    np.testing.assert_allclose(damped_adapted_direction(D, g, 0.0), u0, rtol=1e-10, atol=1e-14)
    errs = [float(jnp.linalg.norm(damped_adapted_direction(D, g, lam) - u0)) for lam in (1e-6, 1e-8)]
    assert errs[1] < 2e-2 * errs[0]          # O(λ): a 100× smaller λ gives a ≈ 100× smaller change
    # each mode changes by σ/(σ² + λ) − 1/σ = −λ/(σ(σ² + λ)): |Δu| ≤ (λ/σ_min²)|u0|
    smin = float(af.singular_values(D)[-1])
    assert errs[1] <= 1e-8 / smin ** 2 * float(jnp.linalg.norm(u0))


def test_damped_identity_model_factor(linear_problem):
    X, Y, theta0 = linear_problem
    N, lam, h = X.shape[0], 0.5, 0.4 * X.shape[0]
    run = descent("adapted", af.identity_map, theta0, X, Y, step=h, n_steps=_N_LONG, damping=lam, repeats=1)
    q = damped_factors(np.ones(10), h, N, lam)
    np.testing.assert_allclose(q, 1 - 0.4 / 1.5)
    k = np.arange(30)
    np.testing.assert_allclose(run.costs[k], run.costs[0] * q[0] ** (2 * k), rtol=1e-12)


def test_step_defect_is_second_order(small_problem):
    p = small_problem
    N = p["X"].shape[0]
    hs = N * np.array([1e-3, 1e-2])
    sd = step_defect(p["net"], p["theta"], p["X"], p["Y"], hs)
    assert sd.solve_residual < 1e-9
    assert np.all(np.abs(sd.measured - sd.second) <= 2 * sd.third + 1e-13)
    A2, A3, smin, smax = taylor_coefficients(p["net"], p["theta"][None], p["X"], p["Y"])
    np.testing.assert_allclose(hs ** 2 * A2[0], sd.second, rtol=1e-10)
    assert 0 < smin[0] <= smax[0]


def test_gd_and_adam_decrease_cost(small_problem):
    p = small_problem
    gd = descent("gd", p["net"], p["theta"], p["X"], p["Y"], step=0.5, n_steps=50, repeats=1,
                 test=(p["X"], p["Y"]))
    adam = descent("adam", p["net"], p["theta"], p["X"], p["Y"], step=1e-2, n_steps=50, repeats=1)
    assert gd.costs[-1] < gd.costs[0] and adam.costs[-1] < adam.costs[0]
    assert gd.costs.shape == (51,) and gd.thetas.shape == (51, p["theta"].shape[0])
    assert gd.seconds[0] == 0 and gd.seconds[-1] > 0 and gd.train_accuracy == gd.test_accuracy
    np.testing.assert_allclose(gd.costs[0], af.cost(p["net"](p["theta"], p["X"]), p["Y"]), rtol=1e-14)


def test_closed_forms():
    assert discrete_factor(5.0, 10) == 0.5
    assert stopping_steps(1.0, 2.0, 1.0, 10) == 0
    assert stopping_steps(1.0, 0.25, 5.0, 10) == 1          # (1/2)^2 = 1/4
    assert stopping_steps(1.0, 0.2, 5.0, 10) == 2
    # small h: h·k_* → s_*(ε) (2.18)
    h = 1e-3
    np.testing.assert_allclose(h * stopping_steps(1.0, 1e-4, h, 10), af.stopping_time(1.0, 1e-4, 10), rtol=1e-3)
    assert first_step_below([3.0, 2.0, 1.0], 0.5) == -1


@pytest.mark.parametrize("h, match", [(0.0, "must be > 0"), (-1.0, "must be > 0"), (20.0, "must be < 2N"),
                                      (25.0, "does not converge"), (float("nan"), "must be > 0")])
def test_bad_step_raises(h, match):
    with pytest.raises(ValueError, match=match):
        discrete_factor(h, 10)


def test_bad_inputs_raise(linear_problem):
    X, Y, theta0 = linear_problem
    with pytest.raises(ValueError, match="`eps` must be > 0"):
        stopping_steps(1.0, 0.0, 1.0, 10)
    with pytest.raises(ValueError, match="`C0` must be > 0"):
        stopping_steps(0.0, 0.1, 1.0, 10)
    with pytest.raises(TypeError, match="`h` must be a real number"):
        discrete_factor("1", 10)
    with pytest.raises(ValueError, match="`method` must be one of"):
        descent("newton", af.identity_map, theta0, X, Y, step=1.0, n_steps=1)
    with pytest.raises(ValueError, match="`damping` must be ≥ 0"):
        descent("adapted", af.identity_map, theta0, X, Y, step=1.0, n_steps=1, damping=-1.0)
    with pytest.raises(ValueError, match="applies to method='adapted' only"):
        descent("gd", af.identity_map, theta0, X, Y, step=1.0, n_steps=1, damping=1.0)
    with pytest.raises(ValueError, match="`n_steps` must be a positive integer"):
        descent("gd", af.identity_map, theta0, X, Y, step=1.0, n_steps=0)
    with pytest.raises(ValueError, match="learning rate"):
        descent("adam", af.identity_map, theta0, X, Y, step=-1.0, n_steps=1)
    with pytest.raises(ValueError, match="`Y` must have shape"):
        descent("gd", af.identity_map, theta0, X, Y[:-1], step=1.0, n_steps=1)
    with pytest.raises(TypeError, match="float64 only"):
        descent("gd", af.identity_map, theta0.astype(jnp.float32), X, Y, step=1.0, n_steps=1)
    with pytest.raises(ValueError, match="needs K ≥ QN"):
        descent("adapted", _doubled, theta0[:5], X, Y, step=1.0, n_steps=1)


def test_interleaved_timing_shape(linear_problem):
    X, Y, theta0 = linear_problem
    common = dict(output_map=af.identity_map, theta0=theta0, X=X, Y=Y, n_steps=_N_LONG)
    secs = interleaved_run_seconds([dict(method="adapted", step=1.0, **common),
                                    dict(method="gd", step=0.5, **common)], repeats=2)
    assert secs.shape == (2, 2) and np.all(secs > 0)
    with pytest.raises(ValueError, match="must be < 2N"):
        interleaved_run_seconds([dict(method="adapted", step=100.0, **common)], repeats=1)


@pytest.mark.parametrize("damping", [None, 1e-3])
def test_structured_and_dense_adapted_runs_agree(damping):
    """An `adaptedflow.mlp` runs on the layer-wise kernel; the same map wrapped in a
    lambda (not structured) runs on D: the iterates agree to rounding."""
    widths = (3, 12, 2)
    net, theta = af.mlp(widths), af.init_params(jax.random.PRNGKey(2), widths)
    X, _, Y = af.gaussian_clusters(jax.random.PRNGKey(3), 5, 3, 2)
    wrapped = lambda t, X: net(t, X)
    a = af.descent("adapted", net, theta, X, Y, step=1.0, n_steps=8, damping=damping, repeats=1)
    b = af.descent("adapted", wrapped, theta, X, Y, step=1.0, n_steps=8, damping=damping, repeats=1)
    np.testing.assert_allclose(a.thetas, b.thetas, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.costs, b.costs, rtol=1e-9, atol=1e-300)


# --------------------------------------------------------------------------- rate bound, stopping margin, the race

from adaptedflow.descent import DescentRun  # noqa: E402
from adaptedflow.paper.discrete import (  # noqa: E402
    accuracy_difference_band,
    best_adapted,
    censored_steps,
    damped_band_excess,
    gauss_newton_counterexample,
    paired_time_ratios,
    race_markdown,
    race_rows,
    race_summary,
    rate_bound,
    rate_deviation,
    stopping_margin,
    tune_learning_rate,
    wine_problem,
)


def test_rate_deviation_is_zero_at_k0_and_tiny_on_identity_model(linear_problem):
    X, Y, theta0 = linear_problem
    N, h = X.shape[0], 0.3 * X.shape[0]
    run = descent("adapted", af.identity_map, theta0, X, Y, step=h, n_steps=_N_LONG, repeats=1)
    dev = rate_deviation(run.costs, h, N)
    assert dev[0] == 0.0
    keep = run.costs >= 1e-6 * run.costs[0]
    assert np.all(dev[keep] < 1e-10)


def test_rate_bound_dominates_deviation_on_network(small_problem):
    p = small_problem
    N = p["X"].shape[0]
    h = 0.05 * N
    run = descent("adapted", p["net"], p["theta"], p["X"], p["Y"], step=h, n_steps=30, repeats=1)
    rb = rate_bound(p["net"], run.thetas, p["X"], p["Y"], h, n_forward=sum(p["widths"]))
    dev = rate_deviation(run.costs, h, N)
    assert rb.taylor.shape == rb.total.shape == (31,) and rb.per_step.shape == (30,)
    assert rb.taylor[0] == 0.0 and rb.rounding[0] == 0.0 and np.all(np.diff(rb.taylor) >= 0)
    assert np.all(dev <= rb.total)
    assert np.all(np.abs(np.log(run.costs / discrete_cost(run.costs[0], h, N, np.arange(31))))
                  <= rb.log_width + 1e-15)
    assert np.all(rb.log_width >= np.log1p(rb.taylor) - 1e-15)
    assert np.all(rb.rounding[1:] > 0) and np.all(rb.rounding < 1e-10)


def test_rate_bound_on_identity_map_is_rounding_only(linear_problem):
    X, Y, theta0 = linear_problem
    N, h = X.shape[0], 0.2 * X.shape[0]
    run = descent("adapted", af.identity_map, theta0, X, Y, step=h, n_steps=20, repeats=1)
    rb = rate_bound(af.identity_map, run.thetas, X, Y, h, n_forward=1)
    assert np.all(rb.taylor < 1e-12)          # x'' = x''' = 0; only the solve residual remains
    assert np.all(rate_deviation(run.costs, h, N)[:21] <= rb.total + 1e-13)


def test_stopping_margin_closed_form():
    # L = 0: one step of rounding up only
    assert stopping_margin(0.0, 1.0, 10) == 1
    # (1 − h/N)^2 = 1/4 per step; log 4/(2 log 2) = 1 → 1 + 1
    assert stopping_margin(np.log(4.0), 5.0, 10) == 2
    with pytest.raises(ValueError, match="differ from N"):
        stopping_margin(0.1, 10.0, 10)
    with pytest.raises(ValueError, match="`log_width`"):
        stopping_margin(-1.0, 1.0, 10)


def test_damped_band_excess_is_zero_on_identity_model(linear_problem):
    X, Y, theta0 = linear_problem
    N = X.shape[0]
    run = descent("adapted", af.identity_map, theta0, X, Y, step=0.4 * N, n_steps=_N_LONG, damping=0.5, repeats=1)
    excess, band = damped_band_excess(af.identity_map, run, X, Y, floor=1e-10)
    assert excess.size > 5 and np.all(excess <= 1.0)
    np.testing.assert_allclose(band[0], [1 - 0.4 / 1.5] * 2)
    gd = descent("gd", af.identity_map, theta0, X, Y, step=0.1, n_steps=3, repeats=1)
    with pytest.raises(ValueError, match="adapted-descent run"):
        damped_band_excess(af.identity_map, gd, X, Y)


def test_wine_problem_is_a_deterministic_stratified_split():
    a, b = wine_problem(3, 60, (4,)), wine_problem(3, 60, (4,))
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(np.asarray(a.theta0), np.asarray(b.theta0))
    assert a.X.shape == (60, 13) and a.Y.shape == (60, 3) and a.X_test.shape == (118, 13)
    np.testing.assert_allclose(a.X.mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(a.Y.sum(0), [20, 24, 16])     # 59/71/48 of 178, rounded
    assert a.widths == (13, 4, 3) and a.theta0.shape == (af.num_params(a.widths),)
    assert not np.array_equal(wine_problem(4, 60, (4,)).X, a.X)
    with pytest.raises(ValueError, match="`n_train`"):
        wine_problem(0, 178)


def test_gauss_newton_counterexample_raises_the_cost():
    gn = gauss_newton_counterexample()
    N = gn.X.shape[0]
    run = descent("adapted", gn.net, gn.theta0, gn.X, gn.Y, step=float(N), n_steps=1, repeats=1)
    assert stopping_steps(run.costs[0], 1e-6 * run.costs[0], float(N), N) == 1
    assert run.costs[1] > run.costs[0]


def test_tune_learning_rate_counts_divergence_as_infinite(linear_problem):
    X, Y, theta0 = linear_problem
    # GD on C = |θ − y|²/2N has factor 1 − η/N per step: η = 2N diverges, η = N is exact in one step
    N = X.shape[0]
    lr, final = tune_learning_rate("gd", af.identity_map, theta0, X, Y, [0.1 * N, float(N), 2.5 * N], n_steps=20)
    assert lr == float(N) and final[2] > final[0] > final[1]
    with pytest.raises(ValueError, match="'gd' or 'adam'"):
        tune_learning_rate("adapted", af.identity_map, theta0, X, Y, [1.0], n_steps=2)


def test_censored_steps_and_accuracy_band():
    assert censored_steps([4.0, 2.0, 1.0], 1.5) == (2, True)
    assert censored_steps([4.0, 2.0, 1.0], 0.5) == (3, False)
    assert accuracy_difference_band(1.0, 1.0, 50) == 2 / 50
    np.testing.assert_allclose(accuracy_difference_band(0.9, 0.8, 100), 2 * np.sqrt(2 * 0.85 * 0.15 / 100))


def _fake_run(method, costs, train=1.0, test=0.9):
    costs = np.asarray(costs, dtype=float)
    return DescentRun(method=method, step=1.0, damping=None, costs=costs, thetas=np.zeros((costs.size, 1)),
                      seconds=np.zeros(costs.size), step_seconds=0.0, run_seconds=np.ones(1), compile_seconds=0.0,
                      train_accuracy=train, test_accuracy=test)


def test_race_summary_rows_and_paired_ratios():
    runs = {"adapted a": _fake_run("adapted", [1.0, 1e-3, 1e-7, 1e-9], test=0.9),
            "adapted b": _fake_run("adapted", [1.0, 1e-1, 1e-3, 1e-4], test=0.95),
            "gd": _fake_run("gd", [1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01], test=0.92)}
    seconds = np.array([[3.0, 3.3], [3.0, 3.0], [0.6, 0.6]])
    table = race_summary(runs, seconds, 1.0, [2, 6])
    assert table["adapted a"]["ks"] == [1, 2] and table["gd"]["ks"] == [6, -1]
    assert table["gd"]["censored"] == [6, 7] and table["gd"]["reached"] == [True, False]
    np.testing.assert_allclose(table["adapted a"]["step"], 1.05)
    assert best_adapted(table) == "adapted a"
    rows = race_rows(table, [2, 6], n_test=100)
    assert rows[0] == ("steps to C ≤ 1e-2·C_0", "1 (adapted a)", "6 (gd)", "adapted")
    assert rows[2][2] == "> 6 (gd)" and rows[2][3] == "adapted"
    assert rows[-1] == ("test accuracy at the end", "0.950 (adapted b)", "0.920 (gd)", "tie within 2 s.e.")
    md = race_markdown(rows, "toy")
    assert md.count("\n") == len(rows) + 2 and md.startswith("| toy | adapted")
    pr = paired_time_ratios(table, seconds, "adapted a", ["gd"], 0)
    np.testing.assert_allclose(pr, [(1 / 3 * 3.0) / 0.6, (1 / 3 * 3.3) / 0.6])
    with pytest.raises(ValueError, match="`seconds` must have shape"):
        race_summary(runs, seconds[:2], 1.0, [2])


def test_second_order_prediction_is_third_order_accurate(small_problem):
    from adaptedflow.paper.discrete import second_order_deviation
    p = small_problem
    N = p["X"].shape[0]
    devs = []
    for f in (0.02, 0.04):
        h = f * N
        run = descent("adapted", p["net"], p["theta"], p["X"], p["Y"], step=h, n_steps=10, repeats=1)
        rb = rate_bound(p["net"], run.thetas, p["X"], p["Y"], h, n_forward=sum(p["widths"]))
        d3 = second_order_deviation(run.costs, rb.predicted)
        assert d3[0] == 0.0 and np.all(d3 <= rb.third)
        assert np.max(d3) < np.max(rate_deviation(run.costs, h, N))
        devs.append(d3[1])
    # one step: the residual is O(h³), so doubling h multiplies it by about 8
    assert 4 < devs[1] / devs[0] < 16
    with pytest.raises(ValueError, match="`predicted` of shape"):
        second_order_deviation([1.0, 0.5], [0.7, 0.7])
