"""`AdaptedGaussNewton`: the minimum-norm Gauss–Newton step of (1.30) as an optimistix solver."""

import equinox as eqx
import jax
import jax.numpy as jnp
import lineax as lx
import numpy as np
import optimistix as optx
import pytest
from jax.flatten_util import ravel_pytree

import adaptedflow as af
from adaptedflow.solvers import residual_view

TARGET = 1e-10


def _teacher_problem(N=8, widths=(2, 16, 1), seed=0):
    """An over-parametrised fit whose minimiser is known: targets made by a teacher θ* (r(θ*) = 0)."""
    net = af.mlp(widths)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(seed), 3)
    X = jax.random.normal(k1, (N, widths[0]), jnp.float64)
    theta_star = af.init_params(k2, widths)
    Y = net(theta_star, X).reshape(N, widths[-1])
    theta0 = af.init_params(k3, widths)
    return net, X, Y, theta0


def _first_below(path, tol=TARGET):
    norms = np.linalg.norm(np.asarray(path.residuals), axis=1)
    hit = np.nonzero(norms <= tol)[0]
    return (int(hit[0]) if hit.size else -1), norms


def _min_norm_step(fn, y, lam=0.0):
    """−Dᵀ(D Dᵀ + λ1)⁻¹r from a dense D of the flattened problem, in numpy (independent of the solver)."""
    flat, unravel = ravel_pytree(y)
    r = np.asarray(fn(y, None))
    D = np.asarray(jax.jacobian(lambda t: fn(unravel(t), None))(flat))
    if lam == 0.0:
        return -np.linalg.pinv(D) @ r
    return -D.T @ np.linalg.solve(D @ D.T + lam * np.eye(len(r)), r)


@pytest.fixture(scope="module")
def teacher():
    net, X, Y, theta0 = _teacher_problem()
    return af.residual(net, X, Y), theta0


def test_reaches_zero_in_no_more_steps_than_gauss_newton(teacher):
    fn, theta0 = teacher
    n = 12
    adapted = af.AdaptedGaussNewton(rtol=1e-14, atol=1e-14, residual=fn)
    assert adapted.gram_path(theta0, 8)[0] == "structured"
    gn = optx.GaussNewton(rtol=1e-14, atol=1e-14, linear_solver=lx.Normal(lx.Cholesky()))
    lm = optx.LevenbergMarquardt(rtol=1e-14, atol=1e-14)
    k_ad, r_ad = _first_below(af.least_squares_path(fn, adapted, theta0, n_steps=n))
    k_gn, r_gn = _first_below(af.least_squares_path(fn, gn, theta0, n_steps=n))
    k_lm, r_lm = _first_below(af.least_squares_path(fn, lm, theta0, n_steps=n))
    print(f"steps to |r| ≤ {TARGET:g}: adapted {k_ad}, GaussNewton(Normal(Cholesky)) {k_gn}, "
          f"LevenbergMarquardt {k_lm}; final |r|: {r_ad[-1]:.1e}, {r_gn[-1]:.1e}, {r_lm[-1]:.1e}")
    assert k_ad >= 1 and (k_gn < 0 or k_ad <= k_gn)
    assert k_ad <= (k_lm if k_lm >= 0 else n + 1)
    assert r_ad[-1] <= TARGET
    # and through optx.least_squares itself
    sol = optx.least_squares(fn, adapted, theta0, max_steps=50)
    assert float(jnp.linalg.norm(fn(sol.value, None))) <= TARGET
    assert af.GRAM_METHODS[int(sol.stats["gram_method"])] == "structured"


def test_first_step_is_the_minimum_norm_step(teacher):
    fn, theta0 = teacher
    expected = _min_norm_step(fn, theta0)
    for gram in ("structured", "dense", "cg"):
        path = af.least_squares_path(fn, af.AdaptedGaussNewton(0.0, 0.0, residual=fn, gram=gram), theta0, n_steps=1)
        step = np.asarray(path.ys[1] - path.ys[0])
        assert np.linalg.norm(step - expected) <= 1e-9 * np.linalg.norm(expected), gram


def test_damping_and_step_size(teacher):
    fn, theta0 = teacher
    lam, s = 0.3, 0.25
    expected = s * _min_norm_step(fn, theta0, lam)
    for gram in ("structured", "dense", "cg"):
        solver = af.AdaptedGaussNewton(0.0, 0.0, residual=fn, gram=gram, damping=lam, step_size=s)
        path = af.least_squares_path(fn, solver, theta0, n_steps=1)
        step = np.asarray(path.ys[1] - path.ys[0])
        assert np.linalg.norm(step - expected) <= 1e-10 * np.linalg.norm(expected), gram


def test_dict_params_and_dense_path():
    N, M, H = 6, 3, 10
    k = jax.random.split(jax.random.PRNGKey(3), 4)
    X = jax.random.normal(k[0], (N, M))
    Y = jax.random.normal(k[1], (N, 2))
    params = {"W": jax.random.normal(k[2], (H, M)), "v": {"out": jax.random.normal(k[3], (2, H)) / 3}}
    apply = lambda p, X: jnp.tanh(X @ p["W"].T) @ p["v"]["out"].T
    fn = af.residual(apply, X, Y)
    solver = af.AdaptedGaussNewton(rtol=1e-14, atol=1e-14, residual=fn)
    method, reason = solver.gram_path(params, Y.size)
    assert method == "dense" and "not an adaptedflow.mlp" in reason
    path = af.least_squares_path(fn, solver, params, n_steps=10)
    assert jax.tree_util.tree_structure(path.ys) == jax.tree_util.tree_structure(params)
    step = ravel_pytree(jax.tree_util.tree_map(lambda a: a[1] - a[0], path.ys))[0]
    expected = _min_norm_step(fn, params)
    assert np.linalg.norm(step - expected) <= 1e-9 * np.linalg.norm(expected)
    assert _first_below(path)[0] >= 1


def test_equinox_mlp_structured_equals_dense():
    net, X, Y, _ = _teacher_problem(N=10, widths=(3, 12, 12, 2), seed=1)
    model = eqx.nn.MLP(3, 2, 12, 2, activation=jnp.tanh, key=jax.random.PRNGKey(7))
    fn, params = af.model_residual(model, X, Y)
    view, to_theta, _ = residual_view(fn, params)
    assert view == af.mlp((3, 12, 12, 2), "tanh")
    # the flat θ of the view reproduces the model's outputs through adaptedflow.mlp
    np.testing.assert_allclose(view(to_theta(params), X), jax.vmap(model)(X).reshape(-1), rtol=0, atol=1e-13)
    solver = af.AdaptedGaussNewton(1e-14, 1e-14, residual=fn)
    assert solver.gram_path(params, Y.size)[0] == "structured"
    path = af.least_squares_path(fn, solver, params, n_steps=8)
    step = ravel_pytree(jax.tree_util.tree_map(lambda a: a[1] - a[0], path.ys))[0]
    expected = _min_norm_step(fn, params)            # dense D, numpy pinv
    assert np.linalg.norm(step - expected) <= 1e-12 * np.linalg.norm(expected)
    assert _first_below(path)[0] >= 1
    last = jax.tree_util.tree_map(lambda a: a[-1], path.ys)
    fitted = eqx.combine(last, eqx.partition(model, eqx.is_inexact_array)[1])
    np.testing.assert_allclose(jax.vmap(fitted)(X), Y, rtol=0, atol=TARGET)


def test_unrecognised_model_falls_back_with_reason():
    X = jnp.ones((4, 2)) * jnp.arange(4.0)[:, None]
    Y = jnp.zeros((4, 1))
    model = eqx.nn.MLP(2, 1, 8, 1, activation=jax.nn.silu, key=jax.random.PRNGKey(0))
    fn, params = af.model_residual(model, X, Y)
    method, reason = af.AdaptedGaussNewton(0.0, 0.0, residual=fn).gram_path(params, 4)
    assert method == "dense" and "activation" in reason
    with pytest.raises(ValueError, match="cannot apply"):
        af.AdaptedGaussNewton(0.0, 0.0, residual=fn, gram="structured").gram_path(params, 4)
    seq = eqx.nn.Sequential([eqx.nn.Linear(2, 8, key=jax.random.PRNGKey(1)), eqx.nn.Lambda(jnp.tanh),
                             eqx.nn.Linear(8, 1, key=jax.random.PRNGKey(2))])
    fn, params = af.model_residual(seq, X, Y)
    assert af.AdaptedGaussNewton(0.0, 0.0, residual=fn).gram_path(params, 4)[0] == "structured"


def test_line_search_composes(teacher):
    fn, theta0 = teacher
    solver = af.AdaptedGaussNewton(rtol=1e-14, atol=1e-14, residual=fn, search=optx.BacktrackingArmijo())
    sol = optx.least_squares(fn, solver, theta0, max_steps=100)
    assert float(jnp.linalg.norm(fn(sol.value, None))) <= TARGET


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(damping=-1.0), ValueError, "`damping` must be finite and ≥ 0"),
    (dict(damping=float("nan")), ValueError, "`damping`"),
    (dict(damping="big"), TypeError, "`damping` must be a real number"),
    (dict(step_size=0.0), ValueError, "`step_size` must be > 0"),
    (dict(step_size=-0.5), ValueError, "`step_size`"),
    (dict(gram="qr"), ValueError, "`gram` must be one of"),
    (dict(gram="structured"), ValueError, "needs `residual=`"),
    (dict(search=optx.LearningRate(0.5), step_size=0.5), ValueError, "either `search` or `step_size`"),
    (dict(search="armijo"), TypeError, "`search` must be an optimistix search"),
    (dict(cg_maxiter=0), ValueError, "`cg_maxiter`"),
    (dict(residual=lambda y, a: y), TypeError, "`residual` must be made by"),
])
def test_bad_options(kwargs, error, match):
    with pytest.raises(error, match=match):
        af.AdaptedGaussNewton(1e-8, 1e-8, **kwargs)


def test_bad_residual_inputs():
    with pytest.raises(ValueError, match="`X` must be 2-D"):
        af.residual(af.mlp((2, 3, 1)), jnp.ones(4), jnp.ones((4, 1)))
    with pytest.raises(TypeError, match="float64"):
        af.residual(af.mlp((2, 3, 1)), np.ones((4, 2), np.float32), jnp.ones((4, 1)))
    with pytest.raises(TypeError, match="`model` must be an `equinox.Module`"):
        af.model_residual(lambda x: x, jnp.ones((4, 2)), jnp.ones((4, 1)))
    with pytest.raises(ValueError, match="`n_steps`"):
        af.least_squares_path(lambda y, a: y, af.AdaptedGaussNewton(0.0, 0.0), jnp.ones(3), n_steps=-1)


def _two_class_problem(key):
    """`(net, θ0, X, Y)`: an MLP 3 → 6 → 2 on five random inputs with alternating one-hot labels."""
    net = af.mlp((3, 6, 2))
    k1, k2 = jax.random.split(jax.random.PRNGKey(key))
    X = jax.random.normal(k1, (5, 3))
    Y = jax.nn.one_hot(jnp.arange(5) % 2, 2, dtype=jnp.float64)
    return net, af.init_params(k2, net.widths), X, Y


def test_chapter_run_through_optimistix_matches_descent():
    from adaptedflow.paper.discrete import equinox_mlp, optx_adapted_run

    net, theta0, X, Y = _two_class_problem(5)
    N = X.shape[0]
    a = optx_adapted_run(equinox_mlp(net, theta0), X, Y, step=0.5 * N, n_steps=6, test=(X, Y))
    b = af.descent("adapted", net, theta0, X, Y, step=0.5 * N, n_steps=6, test=(X, Y))
    assert np.max(np.abs(a.costs - b.costs)) <= 1e-12 * b.costs[0]
    np.testing.assert_allclose(a.thetas, b.thetas, rtol=0, atol=1e-10 * np.max(np.abs(b.thetas)))
    assert (a.train_accuracy, a.test_accuracy) == (b.train_accuracy, b.test_accuracy)


def test_race_callables_compute_what_race_runs_records():
    from adaptedflow.book.bench import round_robin_seconds
    from adaptedflow.paper.discrete import equinox_mlp, race_callables, race_runs

    net, theta0, X, Y = _two_class_problem(7)
    specs = {"adapted": dict(method="adapted", step=2.5, n_steps=4), "gd": dict(method="gd", step=0.1, n_steps=4)}
    model = equinox_mlp(net, theta0)
    runs = race_runs(specs, net, theta0, X, Y, model=model)
    fns = race_callables(specs, net, theta0, X, Y, model=model)
    path = fns[0]()                                   # the adapted run: optimistix's iterates
    costs = np.sum(np.asarray(path.residuals) ** 2, axis=1) / (2 * X.shape[0])
    np.testing.assert_allclose(costs, runs["adapted"].costs, rtol=1e-13)
    seconds = round_robin_seconds(fns, repeats=2)
    assert seconds.shape == (2, 2) and np.all(seconds > 0)
    with pytest.raises(ValueError, match="repeats"):
        round_robin_seconds(fns, repeats=0)
