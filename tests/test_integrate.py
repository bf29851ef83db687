import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptedflow as af


def test_comparison_model_through_identity_map(rng):
    X = jnp.zeros((4, 1))
    Y = jnp.asarray(rng.normal(size=(4, 2)))
    x0 = jnp.asarray(rng.normal(size=8))
    o = af.integrate_flow("standard", af.identity_map, x0, X, Y, s1=20.0, n_save=11)
    np.testing.assert_allclose(o.x, af.comparison_outputs(x0, Y, o.s), rtol=1e-10, atol=1e-12)
    assert o.stop == "s1" and o.s_end == pytest.approx(20.0)


def test_adapted_flow_rate_theorem_2_1(small_problem):
    p = small_problem
    N = p["X"].shape[0]
    o = af.integrate_flow("adapted", p["net"], p["theta"], p["X"], p["Y"], s1=N * np.log(1e4), n_save=21)
    np.testing.assert_allclose(o.cost, af.comparison_cost(o.cost[0], o.s, N), rtol=1e-8)
    np.testing.assert_allclose(o.x, af.comparison_outputs(o.x[0], p["Y"], o.s), atol=1e-10)
    assert np.all(o.sigma_min > 0) and np.all(o.sigma_min <= o.sigma_max)


def test_stopping_time_events_theorem_2_3(small_problem):
    p = small_problem
    N = p["X"].shape[0]
    C0 = float(af.cost(p["net"](p["theta"], p["X"]), p["Y"]))
    eps = C0 * np.array([1e-2, 1e-1, 1e-5])                          # any order
    s = af.first_passage_times("adapted", p["net"], p["theta"], p["X"], p["Y"], eps, s1=200.0)
    np.testing.assert_allclose(s, af.stopping_time(C0, eps, N), rtol=1e-8)
    one = af.first_passage_time("adapted", p["net"], p["theta"], p["X"], p["Y"], eps[0], s1=200.0)
    np.testing.assert_allclose(one, s[0], rtol=1e-8)
    assert af.first_passage_time("adapted", p["net"], p["theta"], p["X"], p["Y"], 1e-8 * C0, s1=1.0) == np.inf


def _duplicate_input_problem():
    """Two copies of one input with different labels: rank D ≤ QN − Q everywhere (§4)."""
    X, omega, Y = af.gaussian_clusters(jax.random.PRNGKey(4), 4, 2, 2)
    X = X.at[1].set(X[0])
    Y = Y.at[1].set(Y[0][::-1])
    widths = (2, 6, 2)
    return X, Y, af.mlp(widths), af.init_params(jax.random.PRNGKey(5), widths)


def test_rank_loss_at_start_names_singular_value_and_tolerance():
    X, Y, net, theta = _duplicate_input_problem()
    with pytest.raises(af.RankLossError, match=r"σ_min = .*rank_rtol = 1\.0e-07.*least-squares"):
        af.integrate_flow("adapted", net, theta, X, Y, s1=1.0)


def test_least_squares_flow_through_structural_rank_loss_4_7():
    X, Y, net, theta = _duplicate_input_problem()
    N = X.shape[0]
    y = np.asarray(Y)
    C_min = np.sum((y[0] - y[1]) ** 2) / (4 * N)          # the best any x with x_0 = x_1 can do
    o = af.integrate_flow("least-squares", net, theta, X, Y, s1=30.0, n_save=7, pinv_rtol=1e-10)
    np.testing.assert_allclose(o.cost - C_min, (o.cost[0] - C_min) * np.exp(-2 * o.s / N), rtol=1e-6)


def test_rank_loss_along_the_orbit_stops_or_raises():
    # x(θ) = (θ₁², θ₂) with target (−1, 0): θ₁ reaches 0 in finite time and D = diag(2θ₁, 1) loses rank.
    fmap = lambda theta, X: jnp.stack([theta[0] ** 2, theta[1]])
    X, Y, theta0 = jnp.zeros((1, 1)), jnp.asarray([[-1.0, 0.0]]), jnp.asarray([1.0, 0.5])
    o = af.integrate_flow("adapted", fmap, theta0, X, Y, s1=10.0, on_rank_loss="stop", rank_rtol=1e-6)
    assert o.stop == "rank-loss"
    assert o.s_end == pytest.approx(np.log(2), rel=1e-4)     # θ₁² = 2e^{−s} − 1 hits 0 at s = log 2
    with pytest.raises(af.RankLossError, match=r"rank loss at s = 0\.69"):
        af.integrate_flow("adapted", fmap, theta0, X, Y, s1=10.0, rank_rtol=1e-6)


def test_over_parametrized_flow_refuses_K_below_QN():
    X, _, Y = af.gaussian_clusters(jax.random.PRNGKey(0), 20, 2, 2)   # QN = 40
    widths = (2, 3, 2)                                                 # K = 17
    theta = af.init_params(jax.random.PRNGKey(1), widths)
    with pytest.raises(ValueError, match=r"K = 17 < QN = 40.*adapted-under"):
        af.integrate_flow("adapted", af.mlp(widths), theta, X, Y, s1=1.0)


def test_stopping_time_rejects_eps_outside_0_C0(small_problem):
    p = small_problem
    C0 = float(af.cost(p["net"](p["theta"], p["X"]), p["Y"]))
    with pytest.raises(ValueError, match=r"\(2\.21\)"):
        af.first_passage_time("adapted", p["net"], p["theta"], p["X"], p["Y"], 2 * C0, s1=1.0)
    with pytest.raises(ValueError, match="0 < eps"):
        af.first_passage_time("adapted", p["net"], p["theta"], p["X"], p["Y"], -1.0, s1=1.0)


def test_solver_running_out_of_steps_is_an_error(small_problem):
    p = small_problem
    with pytest.raises(RuntimeError, match="max_steps"):
        af.integrate_flow("standard", p["net"], p["theta"], p["X"], p["Y"], s1=50.0, max_steps=3)


def test_new_tolerances_and_equal_networks_reuse_the_compiled_solver(small_problem):
    """rtol, atol, rank_rtol, s1 and ε are traced and the network compares by value: one
    compilation serves them all; the tolerances still take effect."""
    from adaptedflow.integrate import compiled_solve

    p = small_problem
    widths = p["net"].widths
    run = lambda net, **kw: af.integrate_flow("adapted", net, p["theta"], p["X"], p["Y"], s1=2.0, n_save=5,
                                              eps=1e-12, **kw)
    first = run(p["net"])
    before = compiled_solve._cache_size()
    loose = run(af.mlp(widths), rtol=1e-6, atol=1e-8, rank_rtol=1e-6)
    tight = run(af.mlp(widths), rtol=1e-11, atol=1e-13)
    assert compiled_solve._cache_size() == before
    assert loose.n_steps < first.n_steps and (loose.rtol, loose.atol) == (1e-6, 1e-8)
    np.testing.assert_allclose(tight.cost, first.cost, rtol=1e-8)


def test_a_plain_function_output_map_integrates_like_the_mlp(small_problem):
    p = small_problem
    fmap = lambda theta, X: p["net"](theta, X)
    a = af.integrate_flow("adapted", p["net"], p["theta"], p["X"], p["Y"], s1=2.0, n_save=3, jacobian="dense")
    b = af.integrate_flow("adapted", fmap, p["theta"], p["X"], p["Y"], s1=2.0, n_save=3)
    np.testing.assert_array_equal(a.theta, b.theta)


def test_integrate_until_stops_at_its_test_and_reports_slow_orbits(rng):
    """The comparison model x(s) = y + e^{−s/N}(x0 − y): |x − y| ≤ tol first holds at
    s = N log(|x0 − y|/tol); segments double from s_first, so the stop lies in one segment."""
    X = jnp.zeros((4, 1))
    Y = jnp.asarray(rng.normal(size=(4, 2)))
    x0 = jnp.asarray(rng.normal(size=8))
    tol = 1e-6 * float(np.linalg.norm(x0 - Y.ravel()))
    test = lambda th: float(np.linalg.norm(th - np.asarray(Y).ravel())) <= tol
    o = af.integrate_until("standard", af.identity_map, x0, X, Y, converged=test, s_first=1.0, s_max=1e4)
    s_hit = 4 * np.log(1e6)                                   # N = 4
    assert o.stop == "converged" and s_hit <= o.s_end <= 2 * s_hit + 1
    np.testing.assert_allclose(o.x, af.comparison_outputs(x0, Y, o.s), rtol=1e-9, atol=1e-11)
    assert np.all(np.diff(o.s) > 0)
    slow = af.integrate_until("standard", af.identity_map, x0, X, Y, converged=test, s_first=1.0, s_max=10.0)
    assert slow.stop == "s_max" and slow.s_end == pytest.approx(10.0)
    with pytest.raises(ValueError):
        af.integrate_until("standard", af.identity_map, x0, X, Y, converged=test, s_first=5.0, s_max=1.0)


def test_error_budgets_bound_the_measured_errors(small_problem):
    """The step-size controller's budget τ bounds the output error of an adapted orbit, and
    2τ/√f + τ²/f the relative error of C down to C = f·C(0) (chapters 01–03)."""
    p = small_problem
    N = p["X"].shape[0]
    f = 1e-8
    o = af.integrate_flow("adapted", p["net"], p["theta"], p["X"], p["Y"], s1=0.5 * N * np.log(1 / f), n_save=41)
    scale = float(np.linalg.norm(o.x[0] - np.asarray(p["Y"]).ravel()))
    tau = af.output_error_budget(o, scale)
    err_x = np.max(np.linalg.norm(o.x - af.comparison_outputs(o.x[0], p["Y"], o.s), axis=1)) / scale
    err_C = np.max(np.abs(o.cost / af.comparison_cost(o.cost[0], o.s, N) - 1))
    assert 0 < err_x <= tau and err_C <= af.cost_error_budget(tau, f)
    assert tau == pytest.approx(o.n_steps * np.max(o.sigma_max) * np.sqrt(o.theta.shape[1])
                                * (o.atol + o.rtol * np.max(np.abs(o.theta))) / scale)
    np.testing.assert_allclose(af.cost_error_budget(np.array([1e-9, 1e-8]), np.array([1e-4, 1e-6])),
                               [2e-7 + 1e-14, 2e-5 + 1e-10], rtol=1e-12)


# --- the integrator at scale: events located in time, no D on the structured path ---------------


def test_rank_loss_time_is_root_found_to_1e_8():
    # D = diag(2θ₁, 1): σ_min/σ_max = 2θ₁ reaches rank_rtol where θ₁² = rank_rtol²/4, and θ₁² = 2e^{−s} − 1,
    # so the rank-loss time is s = log(2 / (1 + rank_rtol²/4)); a yes/no test would stop at a step's end.
    fmap = lambda theta, X: jnp.stack([theta[0] ** 2, theta[1]])
    X, Y, theta0 = jnp.zeros((1, 1)), jnp.asarray([[-1.0, 0.0]]), jnp.asarray([1.0, 0.5])
    for rtol in (1e-2, 1e-6):
        o = af.integrate_flow("adapted", fmap, theta0, X, Y, s1=10.0, on_rank_loss="stop", rank_rtol=rtol)
        exact = np.log(2.0 / (1.0 + rtol**2 / 4))
        assert o.stop == "rank-loss" and o.sigma_source == "svd"
        assert abs(o.s_end - exact) <= 1e-8 * exact, (rtol, o.s_end, exact)


def test_structured_and_dense_rank_loss_times_agree():
    # Along this orbit σ_min/σ_max first falls (5.667e-3 → 5.664e-3) and then rises: a threshold in between
    # is crossed once, at a time both sources of σ (SVD of D; the kernel read through D) must locate alike.
    widths, N = (2, 6, 1), 5
    X, _, Y = af.gaussian_clusters(jax.random.PRNGKey(3), N, 2, 1)
    net, th = af.mlp(widths, "tanh"), af.init_params(jax.random.PRNGKey(4), widths)
    kw = dict(s1=5.0, n_save=3, on_rank_loss="stop", rank_rtol=5.666e-3, rtol=1e-12, atol=1e-14)
    dense = af.integrate_flow("adapted", net, th, X, Y, jacobian="dense", sigma="svd", **kw)
    struct = af.integrate_flow("adapted", net, th, X, Y, jacobian="structured", **kw)
    assert dense.stop == struct.stop == "rank-loss"
    assert struct.sigma_source == "kernel" and struct.jacobian == "structured"
    assert abs(struct.s_end - dense.s_end) <= 1e-8 * dense.s_end, (struct.s_end, dense.s_end)


def _walk_jaxpr(jaxpr, prims, shapes):
    for eqn in jaxpr.eqns:
        prims.add(eqn.primitive.name)
        if eqn.primitive.name == "svd":       # an SVD, and of what
            prims.add(("svd",) + tuple(eqn.invars[0].aval.shape))
        shapes.update(tuple(getattr(v.aval, "shape", ())) for v in eqn.outvars)
        for p in eqn.params.values():
            for sub in p if isinstance(p, (list, tuple)) else [p]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    _walk_jaxpr(inner, prims, shapes)


@pytest.mark.parametrize("jacobian", ["structured", "dense"])
def test_structured_solve_forms_no_jacobian_and_no_svd(jacobian):
    # The whole compiled solve (field, saves, rank event, eps event): on the structured path no array of
    # D's shape (QN, K) or (K, QN) and no SVD of D (only of the b × b factors of Rayleigh–Ritz blocks, b = 2Q + 2);
    # the dense path, as a control, has both.
    from adaptedflow.integrate import _solve

    widths, N = (3, 40, 2), 10
    X, _, Y = af.gaussian_clusters(jax.random.PRNGKey(0), N, 3, 2)
    net, th = af.mlp(widths), af.init_params(jax.random.PRNGKey(1), widths)
    K, QN = th.shape[0], Y.size
    sigma = "kernel" if jacobian == "structured" else "svd"
    f = lambda th: _solve(th, X, Y, jnp.linspace(0, 1, 5), 1.0, 1e-3, 1e-10, 1e-12, 1e-7, jnp.nan, flow="adapted",
                          output_map=net, max_steps=100, with_eps=True, pinv_rtol=1e-10, jacobian=jacobian, sigma=sigma)
    prims, shapes = set(), set()
    _walk_jaxpr(jax.make_jaxpr(f)(th).jaxpr, prims, shapes)
    formed = {(QN, K), (K, QN)} & shapes
    svds = {p[1:] for p in prims if isinstance(p, tuple)}
    if jacobian == "structured":
        b = 2 * widths[-1] + 2
        assert svds <= {(b, b)} and not formed, (svds, formed)
    else:
        assert (QN, K) in svds and formed


def test_sigma_auto_uses_the_kernel_where_D_would_not_fit():
    from adaptedflow.integrate import SVD_MAX_BYTES, sigma_source

    net = af.mlp((64, 256, 256, 10))
    K, QN = net.num_params, 1000
    assert 8 * K * QN > SVD_MAX_BYTES
    assert sigma_source("auto", net, "standard", "dense", K, QN) == "kernel"
    assert sigma_source("auto", net, "adapted", "structured", K, QN) == "kernel"
    assert sigma_source("auto", af.mlp((2, 3, 1)), "standard", "dense", 13, 4) == "svd"
    with pytest.raises(ValueError, match="K ≥ QN"):
        sigma_source("kernel", af.mlp((2, 3, 1)), "adapted-under", "dense", 13, 40)
    with pytest.raises(ValueError, match="`sigma` must be one of"):
        sigma_source("eig", net, "adapted", "structured", K, QN)


def test_a_continuation_from_dt_last_skips_the_cold_start(small_problem):
    # A solve restarted at θ(s1) with the step the previous piece last took (`Orbit.dt_last`) follows the
    # same orbit as a cold start (Hairer's first step, then growth by ≤ 10× per step) in fewer steps.
    p = small_problem
    kw = dict(s1=2.0, n_save=2, rtol=1e-12, atol=1e-14)
    a = af.integrate_flow("adapted", p["net"], p["theta"], p["X"], p["Y"], **kw)
    assert 0 < a.dt_last < 2.0
    cold = af.integrate_flow("adapted", p["net"], a.theta_end, p["X"], p["Y"], **kw)
    warm = af.integrate_flow("adapted", p["net"], a.theta_end, p["X"], p["Y"], dt0=a.dt_last, **kw)
    assert warm.n_steps < cold.n_steps, (warm.n_steps, cold.n_steps)
    np.testing.assert_allclose(warm.cost_end, cold.cost_end, rtol=1e-9)
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="`dt0`"):
            af.integrate_flow("adapted", p["net"], p["theta"], p["X"], p["Y"], dt0=bad, **kw)


def test_dopri8_and_tsit5_give_the_same_orbit(small_problem):
    p = small_problem
    kw = dict(s1=2.0, n_save=5, rtol=1e-12, atol=1e-14)
    a = af.integrate_flow("adapted", p["net"], p["theta"], p["X"], p["Y"], **kw)
    b = af.integrate_flow("adapted", p["net"], p["theta"], p["X"], p["Y"], solver="dopri8", **kw)
    np.testing.assert_allclose(b.cost, a.cost, rtol=1e-9)
    assert b.n_steps < a.n_steps
    with pytest.raises(ValueError, match="`solver` must be one of"):
        af.integrate_flow("adapted", p["net"], p["theta"], p["X"], p["Y"], solver="euler", **kw)
