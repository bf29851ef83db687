"""Adapted descent in discrete time (adaptedflow.paper.discrete)."""

import time

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
    run = descent("adapted", af.identity_map, theta0, X, Y, step=frac * N, n_steps=_N_LONG)
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
    run = descent("adapted", af.identity_map, theta0, X, Y, step=h, n_steps=_N_LONG)
    C0 = run.costs[0]
    for d in range(1, 10):
        eps = C0 * 10.0 ** -d
        k_pred = stopping_steps(C0, eps, h, N)
        assert k_pred <= _N_LONG
        assert abs(first_step_below(run.costs, eps) - k_pred) <= 1


def test_h_equals_N_is_one_min_norm_gauss_newton_step(linear_problem, small_problem):
    X, Y, theta0 = linear_problem
    N = X.shape[0]
    run = descent("adapted", af.identity_map, theta0, X, Y, step=float(N), n_steps=1)
    np.testing.assert_allclose(run.thetas[1], Y.reshape(-1), atol=1e-14)
    assert run.costs[1] < 1e-28
    assert stopping_steps(run.costs[0], 1e-3 * run.costs[0], N, N) == 1
    # on a network, h = N is θ − D⁺(x − y_ω): the least-norm solution of the linearised equations
    p = small_problem
    Np = p["X"].shape[0]
    step = descent("adapted", p["net"], p["theta"], p["X"], p["Y"], step=float(Np), n_steps=1)
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
    run = descent("adapted", af.identity_map, theta0, X, Y, step=h, n_steps=_N_LONG, damping=lam)
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
    gd = descent("gd", p["net"], p["theta"], p["X"], p["Y"], step=0.5, n_steps=50,
                 test=(p["X"], p["Y"]))
    adam = descent("adam", p["net"], p["theta"], p["X"], p["Y"], step=1e-2, n_steps=50)
    assert gd.costs[-1] < gd.costs[0] and adam.costs[-1] < adam.costs[0]
    assert gd.costs.shape == (51,) and gd.thetas.shape == (51, p["theta"].shape[0])
    assert gd.train_accuracy == gd.test_accuracy
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


def test_interleaved_timing_is_round_robin_and_times_whole_runs(linear_problem):
    """Each output map sleeps `pause` seconds per call, on the host, and logs which run called it
    and when: the log shows the round-robin order (one warm-up pass, then repeat r of every run
    before repeat r + 1 of any), and every timing covers its whole run, ≥ (calls in it)·pause."""
    from jax.experimental import io_callback

    X, Y, theta0 = linear_problem
    pause, log = 2e-3, []

    def slow_identity(run):
        def host(_):
            log.append((run, time.perf_counter()))
            time.sleep(pause)
            return np.zeros((), np.float64)

        # the callback reads θ (without its tangent), so it runs once per evaluation, in the loop
        return lambda theta, X: theta + io_callback(host, jax.ShapeDtypeStruct((), jnp.float64),
                                                    jax.lax.stop_gradient(theta))

    steps, repeats = (4, 12), 2
    specs = [dict(method="gd", output_map=slow_identity(i), theta0=theta0, X=X, Y=Y, step=0.5, n_steps=n)
             for i, n in enumerate(steps)]
    secs = interleaved_run_seconds(specs, repeats=repeats)
    assert secs.shape == (len(steps), repeats)
    blocks = []                                           # consecutive calls by one run = one execution
    for run, stamp in log:
        if blocks and blocks[-1][0] == run:
            blocks[-1][1].append(stamp)
        else:
            blocks.append((run, [stamp]))
    assert [run for run, _ in blocks] == [0, 1] * (1 + repeats)       # warm-up pass, then round-robin
    calls = [len(blocks[i][1]) for i in range(2)]
    assert calls[0] >= steps[0] and calls[1] >= steps[1]              # ≥ one evaluation per step
    for r in range(repeats):
        for i in range(2):
            run, stamps = blocks[2 * (1 + r) + i]
            assert len(stamps) == calls[i]                             # the same run every time
            assert secs[i, r] >= calls[i] * pause                     # the whole run is timed
            assert secs[i, r] >= stamps[-1] - stamps[0] + pause
    common = dict(output_map=af.identity_map, theta0=theta0, X=X, Y=Y, n_steps=_N_LONG)
    with pytest.raises(ValueError, match="must be < 2N"):
        interleaved_run_seconds([dict(method="adapted", step=100.0, **common)])


@pytest.mark.parametrize("damping", [None, 1e-3])
def test_structured_and_dense_adapted_runs_agree(damping):
    """An `adaptedflow.mlp` runs on the layer-wise kernel; the same map wrapped in a
    lambda (not structured) runs on D: the iterates agree to rounding."""
    widths = (3, 12, 2)
    net, theta = af.mlp(widths), af.init_params(jax.random.PRNGKey(2), widths)
    X, _, Y = af.gaussian_clusters(jax.random.PRNGKey(3), 5, 3, 2)
    wrapped = lambda t, X: net(t, X)
    a = af.descent("adapted", net, theta, X, Y, step=1.0, n_steps=8, damping=damping)
    b = af.descent("adapted", wrapped, theta, X, Y, step=1.0, n_steps=8, damping=damping)
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
    run = descent("adapted", af.identity_map, theta0, X, Y, step=h, n_steps=_N_LONG)
    dev = rate_deviation(run.costs, h, N)
    assert dev[0] == 0.0
    keep = run.costs >= 1e-6 * run.costs[0]
    assert np.all(dev[keep] < 1e-10)


def test_rate_bound_dominates_deviation_on_network(small_problem):
    p = small_problem
    N = p["X"].shape[0]
    h = 0.05 * N
    run = descent("adapted", p["net"], p["theta"], p["X"], p["Y"], step=h, n_steps=30)
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
    run = descent("adapted", af.identity_map, theta0, X, Y, step=h, n_steps=20)
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
    run = descent("adapted", af.identity_map, theta0, X, Y, step=0.4 * N, n_steps=_N_LONG, damping=0.5)
    excess, band = damped_band_excess(af.identity_map, run, X, Y, floor=1e-10)
    assert excess.size > 5 and np.all(excess <= 1.0)
    np.testing.assert_allclose(band[0], [1 - 0.4 / 1.5] * 2)
    gd = descent("gd", af.identity_map, theta0, X, Y, step=0.1, n_steps=3)
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
    run = descent("adapted", gn.net, gn.theta0, gn.X, gn.Y, step=float(N), n_steps=1)
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
        run = descent("adapted", p["net"], p["theta"], p["X"], p["Y"], step=h, n_steps=10)
        rb = rate_bound(p["net"], run.thetas, p["X"], p["Y"], h, n_forward=sum(p["widths"]))
        d3 = second_order_deviation(run.costs, rb.predicted)
        assert d3[0] == 0.0 and np.all(d3 <= rb.third)
        assert np.max(d3) < np.max(rate_deviation(run.costs, h, N))
        devs.append(d3[1])
    # one step: the residual is O(h³), so doubling h multiplies it by about 8
    assert 4 < devs[1] / devs[0] < 16
    with pytest.raises(ValueError, match="`predicted` of shape"):
        second_order_deviation([1.0, 0.5], [0.7, 0.7])


# --------------------------------------------------------------------------- the chapter's analyses, one call each

from adaptedflow.numerics import EPS  # noqa: E402
from adaptedflow.paper.discrete import (  # noqa: E402
    RateBound,
    SmallStepRun,
    StepDefect,
    best_test_gap,
    damped_study,
    gauss_newton_check,
    linearised_stopping,
    network_stopping,
    race_names,
    race_runs,
    race_specs,
    rank_decay,
    small_step_runs,
    split_comparison,
    split_frequencies,
    step_cost_ratios,
    tune_baselines,
)


def test_step_defect_order_and_taylor_ratio_closed_form():
    hs = np.array([0.1, 0.2, 0.4])
    sd = StepDefect(measured=3 * hs**2 + hs**3, second=3 * hs**2, third=2 * hs**3, solve_residual=0.0, steps=hs)
    assert sd.taylor_ratio == pytest.approx(0.5, rel=1e-12)                 # |δ − h²A2| = h³ = ½·(2h³)
    pure = sd._replace(measured=3 * hs**2)
    assert pure.order == pytest.approx(2.0, rel=1e-12) and pure.taylor_ratio == 0.0


def test_small_step_runs_on_identity_model_follow_the_rate(linear_problem):
    X, Y, theta0 = linear_problem
    N = X.shape[0]
    small = small_step_runs(af.identity_map, theta0, X, Y, [0.2, 0.1], n_steps=20, n_forward=1)
    assert list(small) == [0.2, 0.1]
    for f, s in small.items():
        assert isinstance(s, SmallStepRun) and s.run.step == f * N and s.run.costs.shape == (21,)
        np.testing.assert_array_equal(s.deviation, rate_deviation(s.run.costs, f * N, N))
        assert s.deviation[0] == 0.0 and np.all(s.deviation < 1e-12)      # exact rate up to rounding
        assert np.all(s.bound.taylor < 1e-12)                               # x'' = x''' = 0
        assert 0.0 <= s.bound_ratio <= 1.0 and 0.0 <= s.second_order_ratio <= 1.0


def test_linearised_stopping_counts_closed_form(linear_problem):
    X, Y, theta0 = linear_problem
    C0 = float(af.cost(theta0, Y))
    eps = C0 * 10.0 ** -np.array([1.0, 2.0, 3.0])
    lin = linearised_stopping(theta0, X, Y, C0, eps, [0.5, 1.0])
    # h = N/2: C_k = 4^{−k}C_0, so k_* = ⌈d·log 10/log 4⌉ = 2, 4, 5; h = N: one Gauss–Newton step
    assert lin.rows == [(0.5, [2, 4, 5], [2, 4, 5]), (1.0, [1, 1, 1], [1, 1, 1])]
    assert lin.worst == 0


def test_network_stopping_on_exact_runs_is_within_the_margin(linear_problem):
    X, Y, theta0 = linear_problem
    N = X.shape[0]
    small = small_step_runs(af.identity_map, theta0, X, Y, [0.2], n_steps=20, n_forward=1)
    C0 = float(small[0.2].run.costs[0])
    eps = C0 * 10.0 ** -np.array([1.0, 2.0, 30.0])       # the last one is beyond the run: left out
    table = network_stopping(small, N, C0, eps)
    # (1 − 0.2)^{2k} ≤ 10^{−d}: k_* = ⌈d·log 10 / (−2 log 0.8)⌉ = 6, 11; L ≈ 0 gives the margin 1 + 1
    assert [r[2:] for r in table.rows] == [(6, 6, 2), (11, 11, 2)]
    np.testing.assert_allclose([r[1] for r in table.rows], [0.1, 0.01], rtol=1e-12)
    assert table.worst == 0.0


def test_rank_decay_fits_the_exponent_and_counts_singular_steps():
    costs = 4.0 ** -np.arange(12)                       # |x_k − y_ω| ∝ 2^{−k}
    ratio = 0.5 * np.sqrt(costs[:-1]) ** 1.5            # σ_min/σ_max ∝ |x_k − y_ω|^{1.5}
    bound = RateBound(*(np.zeros(1),) * 4, sigma_min=ratio * 3.0, sigma_max=np.full(11, 3.0),
                      log_width=np.zeros(12), predicted=np.zeros(11), third=np.zeros(12))
    run = SmallStepRun(run=_fake_run("adapted", costs), deviation=np.zeros(12), bound=bound,
                       second_order=np.zeros(12))
    rd = rank_decay(run, costs[0], QN=4)
    np.testing.assert_allclose(rd.ratio, ratio, rtol=1e-14)
    assert rd.exponent == pytest.approx(1.5, rel=1e-10)
    assert rd.n_singular == int(np.sum(ratio**2 < 4 * EPS)) == 0
    assert rank_decay(run, costs[0], QN=10**12).n_singular == int(np.sum(ratio**2 < 1e12 * EPS)) > 0


def test_damped_study_bands_and_counts(small_problem):
    p = small_problem
    N = p["X"].shape[0]
    _, _, smin, _ = taylor_coefficients(p["net"], p["theta"][None], p["X"], p["Y"])
    smin = float(smin[0])
    st = damped_study(p["net"], p["theta"], p["X"], p["Y"], [1.0], sigma_min=smin, h=0.5 * N, n_steps=8,
                      defect_steps=N * np.array([1e-3, 1e-2]))
    assert list(st.runs) == [0.0, 1.0]
    undamped, damped = st.runs[0.0], st.runs[1.0]
    assert undamped.damping == 0.0 and damped.damping == pytest.approx(smin**2, rel=1e-15)
    np.testing.assert_allclose(undamped.band, 0.5, rtol=1e-12)            # λ = 0: every mode contracts by 1 − h/N
    assert np.all(damped.band[:, 0] <= damped.band[:, 1]) and damped.band[0, 1] == pytest.approx(0.75, rel=1e-10)
    np.testing.assert_allclose(damped.rho, np.sqrt(damped.run.costs[1:] / damped.run.costs[:-1]), rtol=1e-15)
    assert damped.late_rho == damped.rho[-1]
    assert 0.0 < st.taylor_ratio <= 2.0
    assert st.n_inside <= st.n_widened <= st.n_steps == 16
    assert (st.worst_excess <= 1.0) == (st.n_widened == st.n_steps)


def test_gauss_newton_check_value():
    gn = gauss_newton_check(n_steps=2, target_decade=6)
    assert gn.run.costs.shape == (3,) and gn.problem.X.shape == (60, 13)
    assert gn.ratio == pytest.approx(1.4103683131313418, rel=1e-9)         # C_1 > C_0 where k_* = 1 is promised
    assert gn.steps_to_target == -1


def test_tune_baselines_flags_a_rate_at_the_edge_of_its_grid(linear_problem):
    X, Y, theta0 = linear_problem
    N = X.shape[0]
    tuned = tune_baselines(af.identity_map, theta0, X, Y, {"gd": [0.1 * N, float(N), 2.5 * N]}, n_steps=20)
    assert list(tuned) == ["gd"] and tuned["gd"].lr == float(N) and not tuned["gd"].at_edge
    # GD on C = |θ − y_ω|²/2N multiplies C by (1 − η/N)² per step: 2.25^20 at η = 2.5N, 0 after one step at η = N
    C0 = float(af.cost(theta0, Y))
    assert tuned["gd"].final[2] == pytest.approx(C0 * 2.25**20, rel=1e-10) and tuned["gd"].final[1] < 1e-28
    edge = tune_baselines(af.identity_map, theta0, X, Y, {"gd": [0.1 * N, float(N)]}, n_steps=20)
    assert edge["gd"].at_edge and edge["gd"].grid == (0.1 * N, float(N))


def test_race_specs_and_runs(linear_problem):
    X, Y, theta0 = linear_problem
    N = X.shape[0]
    specs = race_specs(N, [0.5, 1.0], 3, {"gd": 0.5, "adam": 0.01}, 4)
    assert specs == {"adapted h = 0.5N": dict(method="adapted", step=2.5, n_steps=3),
                     "adapted h = 1N": dict(method="adapted", step=5.0, n_steps=3),
                     "gradient descent η = 0.5": dict(method="gd", step=0.5, n_steps=4),
                     "Adam η = 0.01": dict(method="adam", step=0.01, n_steps=4)}
    runs = race_runs(specs, af.identity_map, theta0, X, Y, test=(X, Y))
    assert list(runs) == list(specs)
    a = runs["adapted h = 0.5N"]
    np.testing.assert_allclose(a.costs, a.costs[0] * 0.25 ** np.arange(4), rtol=1e-12)    # (1 − h/N)² = 1/4
    assert runs["Adam η = 0.01"].costs.shape == (5,) and runs["gradient descent η = 0.5"].method == "gd"


def test_race_names_step_cost_ratios_and_best_test_gap():
    runs = {"adapted a": _fake_run("adapted", [1.0, 1e-3, 1e-7, 1e-9], test=0.9),
            "adapted b": _fake_run("adapted", [1.0, 1e-1, 1e-3, 1e-4], test=0.95),
            "gd": _fake_run("gd", [1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01], test=0.92)}
    table = race_summary(runs, np.array([[3.0, 3.3], [3.0, 3.0], [0.6, 0.6]]), 1.0, [2])
    assert race_names(table) == (["adapted a", "adapted b"], ["gd"])
    np.testing.assert_allclose(step_cost_ratios(table), [1.05 / 0.1, 1.0 / 0.1], rtol=1e-12)
    tg = best_test_gap(table, 100)
    assert (tg.adapted, tg.baseline) == ("adapted b", "gd")
    assert tg.gap == pytest.approx(0.03, rel=1e-12)
    assert tg.band == accuracy_difference_band(0.95, 0.92, 100)
    with pytest.raises(ValueError, match="needs adapted runs"):
        step_cost_ratios({"gd": table["gd"]})


def test_split_frequencies_counts_its_splits():
    kw = dict(init_scale=1.0, h_fracs=[0.5], n_adapted=4, lrs={"gd": 0.25, "adam": 0.01}, n_baseline=6,
              target_decade=1)
    sf = split_frequencies([5, 6], 12, (3,), **kw)
    assert sf.splits[1] == split_comparison(6, 12, (3,), **kw)
    lost = [not (s["reached_adapted"] and s["k_adapted"] < s["k_baseline"]) for s in sf.splits]
    assert sf.n_lost == sum(lost)
    np.testing.assert_array_equal(sf.gaps, [s["test_adapted"] - s["test_baseline"] for s in sf.splits])
    np.testing.assert_array_equal(sf.bands, [accuracy_difference_band(s["test_adapted"], s["test_baseline"],
                                                                      s["n_test"]) for s in sf.splits])
    assert sf.n_better == int(np.sum(sf.gaps > sf.bands)) and sf.n_worse == int(np.sum(sf.gaps < -sf.bands))
    assert sf.n_reached_adapted == sum(s["reached_adapted"] for s in sf.splits)
    assert all(s["n_test"] == 178 - 12 for s in sf.splits)


def test_descent_compiles_once_per_equal_network_and_traces_step_and_damping(small_problem):
    """`compiled_run` is keyed on the network's value: a new `mlp(widths)`, a new step and a
    new damping reuse one compilation; a plain function of θ gives the same costs (dense path)."""
    from adaptedflow.descent import compiled_run

    p = small_problem
    a = descent("adapted", p["net"], p["theta"], p["X"], p["Y"], step=1.0, n_steps=4, damping=1e-3)
    before = compiled_run._cache_size()
    b = descent("adapted", af.mlp(p["widths"]), p["theta"], p["X"], p["Y"], step=2.0, n_steps=4, damping=1e-2)
    assert compiled_run._cache_size() == before and not np.array_equal(a.costs, b.costs)
    fmap = lambda theta, X: p["net"](theta, X)
    c = descent("adapted", fmap, p["theta"], p["X"], p["Y"], step=2.0, n_steps=4, damping=1e-2)
    np.testing.assert_allclose(c.costs, b.costs, rtol=1e-10)


# --- the direction options of adapted descent --------------------------------------------------


def test_descent_options_choose_the_direction_method(small_problem):
    """One adapted run by the kernel (auto), from D (dense) and by CG (matrix-free): the same costs."""
    p = small_problem
    kw = dict(step=2.0, n_steps=6)
    auto = descent("adapted", p["net"], p["theta"], p["X"], p["Y"], **kw)
    dense = descent("adapted", p["net"], p["theta"], p["X"], p["Y"], options=af.DirectionOptions(method="dense"), **kw)
    cg = descent("adapted", p["net"], p["theta"], p["X"], p["Y"],
                 options=af.DirectionOptions(method="matrix-free", cg_tol=1e-13), **kw)
    # κ(D Dᵀ) of this problem is ~1e3: the three solves agree to ~κ·eps per step, far inside 1e-10
    np.testing.assert_allclose(dense.costs, auto.costs, rtol=1e-10)
    np.testing.assert_allclose(cg.costs, auto.costs, rtol=1e-10)
    # the linearised rate (1 − h/N)² per step holds to first order: C_1/C_0 ≈ (1 − 2/6)²
    assert abs(auto.costs[1] / auto.costs[0] - (1 - 2 / 6) ** 2) < 0.05


def test_descent_options_errors(small_problem):
    p = small_problem
    args = (p["net"], p["theta"], p["X"], p["Y"])
    with pytest.raises(ValueError, match=r"damped adapted descent.*'matrix-free'"):
        descent("adapted", *args, step=1.0, n_steps=2, damping=1e-3, options=af.DirectionOptions(method="matrix-free"))
    with pytest.raises(ValueError, match=r"`options` applies to method='adapted' only"):
        descent("gd", *args, step=0.1, n_steps=2, options=af.DirectionOptions())
    with pytest.raises(TypeError, match=r"`options` must be a `DirectionOptions`"):
        descent("adapted", *args, step=1.0, n_steps=2, options={"method": "dense"})
    plain = lambda theta, X: p["net"](theta, X)                          # a user's own map
    with pytest.raises(ValueError, match=r"structured"):
        descent("adapted", plain, *args[1:], step=1.0, n_steps=2, options=af.DirectionOptions(method="structured"))


def _named_race():
    runs = {"adapted h = 0.25N": _fake_run("adapted", [1.0, 1e-3, 1e-7, 1e-9], test=0.9),
            "adapted h = 1N": _fake_run("adapted", [1.0, 1e-3, 1e-7, 1e-9], test=0.95),
            "gradient descent η = 0.25": _fake_run("gd", [1.0, 0.5, 0.2, 0.1, 0.05, 0.02, 0.01], test=0.92),
            "Adam η = 0.01": _fake_run("adam", [1.0, 0.5, 0.2, 0.1, 0.05, 0.005, 0.001], test=0.7)}
    seconds = np.array([[3.0, 3.0], [9.0, 9.0], [0.6, 0.6], [0.6, 0.6]])   # h = 1N: same steps, dearer
    return race_summary(runs, seconds, 1.0, [2, 6])


def test_race_label_and_every_run_row():
    from adaptedflow.paper.discrete import race_label, race_run_rows
    assert race_label("adapted h = 0.25N") == ("adapted descent", "h = 0.25N")
    assert race_label("gradient descent η = 0.25") == ("gradient descent", "η = 0.25")
    assert race_label("Adam η = 0.01") == ("Adam", "η = 0.01")
    with pytest.raises(ValueError, match="not a race run"):
        race_label("adapted")
    table = _named_race()
    columns, rows = race_run_rows(table, [2, 6])
    assert len(rows) == 4 and all(len(r) == len(columns) for r in rows)
    assert columns[3:5] == ["to C ≤ 1e-2·C_0", "to C ≤ 1e-6·C_0"]
    assert rows[0][:5] == ("adapted descent", "h = 0.25N", "1000000.0", "1 step, 1000.0 ms", "2 steps, 2000.0 ms")
    assert rows[2][4] == "not within 6 steps" and rows[3][5] == "1.0e-03"


def test_race_fastest_names_the_least_time_not_the_fewest_steps():
    from adaptedflow.paper.discrete import race_fastest, race_fastest_data, race_fastest_rows
    table = _named_race()
    table["adapted h = 1N"]["ks"][1] = 1                  # fewer steps to 1e-6, but each 3 times dearer
    table["adapted h = 1N"]["secs"][1] = 1 * table["adapted h = 1N"]["step"]
    fastest = race_fastest(table, [2, 6])
    loose, tight = fastest
    assert loose["overall"] == "Adam η = 0.01" and loose["methods"]["Adam"]["steps"] == 5
    assert tight["methods"]["adapted descent"]["fastest"] == "adapted h = 0.25N"
    assert tight["methods"]["adapted descent"]["fewest_steps"] == "adapted h = 1N"
    assert tight["methods"]["gradient descent"]["fastest"] is None and tight["overall"] == "adapted h = 0.25N"
    data = race_fastest_data(fastest)
    assert data["tight_target"] == "1e-6·C_0" and data["fastest_adapted"] == "h = 0.25N"
    assert data["fewest_steps_adapted"] == "h = 1N" and data["fewest_steps_adapted_k"] == 1
    assert data["fastest_overall"] == "adapted descent, h = 0.25N"
    assert data["fastest_adapted_ms"] == pytest.approx(2000.0)
    columns, rows = race_fastest_rows(fastest)
    assert columns[0] == "target" and columns[-1] == "fastest overall"
    assert rows[1][2] == "not reached" and rows[1][-1] == "adapted descent, h = 0.25N"
    assert rows[1][-2] == "h = 1N: 1 step"


def test_generalisation_reading_follows_the_two_standard_error_rule():
    from adaptedflow.paper.discrete import READINGS, generalisation_gap, generalisation_reading
    assert generalisation_reading(-0.076, 0.05) == "worse"
    assert generalisation_reading(-0.025, 0.05) == "none"
    assert generalisation_reading(0.05, 0.05) == "none" and generalisation_reading(0.06, 0.05) == "better"
    g = generalisation_gap(_named_race(), 100)
    assert g["adapted"] == "adapted descent, h = 1N" and g["baseline"] == "gradient descent, η = 0.25"
    assert g["gap"] == pytest.approx(0.03) and g["se"] == pytest.approx(g["band"] / 2)
    assert g["band"] == accuracy_difference_band(0.95, 0.92, 100)
    assert g["reading"] == "none" and g["reading_text"] == READINGS["none"]
    assert list(g["per_step"]) == ["h = 0.25N", "h = 1N"] and g["lowest"] == "h = 0.25N"
    low = g["per_step"]["h = 0.25N"]                      # 0.90 against 0.92: within 2 s.e. on 100 inputs
    assert low["gap"] == pytest.approx(-0.02) and low["reading"] == "none"
    assert g["worse_at"] == "none of the race's step sizes" and g["lowest_gap"] == low["gap"]
    table = _named_race()
    table["adapted h = 1N"]["test"] = 0.80                # now both below 0.92, one beyond 2 s.e.
    g = generalisation_gap(table, 100)
    assert g["adapted"] == "adapted descent, h = 0.25N" and g["lowest"] == "h = 1N"
    assert g["per_step"]["h = 1N"]["reading"] == "worse" and g["worse_at"] == "h = 1N"
    assert g["lowest_reading_text"] == READINGS["worse"]
    assert g["lowest_se"] == pytest.approx(accuracy_difference_band(0.80, 0.92, 100) / 2)


def test_findings_of_the_rate_checks_quote_their_numbers():
    from types import SimpleNamespace

    from adaptedflow.paper.discrete import damped_findings, rate_run_findings
    small = {0.02: SimpleNamespace(deviation=np.array([0.0, 4.4e-3]), second_order=np.array([0.0, 2.5e-4]),
                                   bound_ratio=0.17),
             0.05: SimpleNamespace(deviation=np.array([0.0, 1.1e-2]), second_order=np.array([0.0, 1.6e-3]),
                                   bound_ratio=0.12)}
    findings, data = rate_run_findings(small)
    assert "4.40e-03 at h = 0.02N, 1.10e-02 at h = 0.05N" in findings[0] and "0.17 of the bound" in findings[0]
    assert "^{" not in findings[0] and findings[1].endswith("2.5e-04 at h = 0.02N, 1.6e-03 at h = 0.05N")
    assert data == dict(max_dev={"0.02": 4.4e-3, "0.05": 1.1e-2}, max_dev_second_order={"0.02": 2.5e-4, "0.05": 1.6e-3},
                        max_dev_over_B=0.17)
    study = SimpleNamespace(runs={0.0: None, 1.0: None}, n_inside=3, n_widened=4, n_steps=4, worst_excess=0.4)
    (text,) = damped_findings(study, 0.5)
    assert text.startswith("along runs at h = 0.5N (λ/σ_min² ∈ [0.0, 1.0])") and "on 3/4 steps" in text


def test_descent_without_iterates_keeps_the_ends_and_the_same_costs():
    X, _, Y = af.gaussian_clusters(jax.random.PRNGKey(0), 6, 2, 2)
    widths = (2, 8, 2)
    net, theta0 = af.mlp(widths), af.init_params(jax.random.PRNGKey(1), widths)
    for method, step in (("adam", 1e-2), ("adapted", 0.5)):
        full = af.descent(method, net, theta0, X, Y, step=step, n_steps=7)
        ends = af.descent(method, net, theta0, X, Y, step=step, n_steps=7, keep_thetas=False)
        assert full.thetas.shape == (8, theta0.size) and ends.thetas.shape == (2, theta0.size)
        np.testing.assert_array_equal(ends.costs, full.costs)
        np.testing.assert_array_equal(ends.thetas, full.thetas[[0, -1]])
        assert ends.train_accuracy == full.train_accuracy
