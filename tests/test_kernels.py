import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptedflow as af
import adaptedflow.kernels as km
from adaptedflow.kernels import (
    DirectionOptions,
    adapted_step_direction,
    compiled_direction,
    direction_with_info,
    is_structured,
    kernel_rank_floor,
    linearize_outputs,
    mlp_ntk_diagonal,
    mlp_outputs_and_ntk,
    nystrom_preconditioner,
)

CASES = [((3, 7, 2), 5, "tanh"), ((4, 16, 8, 3), 6, "softplus"), ((2, 5, 5, 5, 1), 4, "gelu"),
         ((3, 12, 1), 8, "sigmoid")]
ACTS = ("tanh", "softplus", "gelu", "sigmoid")


def _random_case(i):
    """Shapes and depths drawn from a fixed generator: 1–3 hidden layers, Q from 1 to 4;
    odd i draw narrow layers and many inputs (K < QN, the under-parametrized case)."""
    rng = np.random.default_rng(100 + i)
    depth = int(rng.integers(1, 4))
    lo, hi, N = (2, 4, int(rng.integers(15, 30))) if i % 2 else (3, 20, int(rng.integers(2, 12)))
    hidden = tuple(int(rng.integers(lo, hi)) for _ in range(depth))
    widths = (int(rng.integers(1, 6)),) + hidden + (int(rng.integers(1, 5)),)
    return widths, N, ACTS[i % 4], i


def _problem(widths, N, act, seed):
    X, _, Y = af.gaussian_clusters(jax.random.PRNGKey(seed), N, widths[0], widths[-1])
    return af.mlp(widths, act), af.init_params(jax.random.PRNGKey(seed + 1), widths), X, Y


def _rel(u, v):
    return float(jnp.linalg.norm(u - v) / jnp.linalg.norm(v))


@pytest.mark.parametrize("widths,N,act", CASES)
def test_structured_kernel_and_its_diagonal_equal_D_Dt(widths, N, act):
    net, theta, X, _ = _problem(widths, N, act, N)
    x, D = af.outputs_and_jacobian(net, theta, X)
    x2, G = mlp_outputs_and_ntk(net, theta, X)
    np.testing.assert_allclose(x2, x, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(G, D @ D.T, rtol=1e-12, atol=1e-13 * float(jnp.max(jnp.abs(G))))
    np.testing.assert_allclose(mlp_ntk_diagonal(net, theta, X), jnp.sum(D**2, axis=1), rtol=1e-13)


@pytest.mark.parametrize("case", [_random_case(i) for i in range(8)], ids=lambda c: f"{c[0]}-N{c[1]}-{c[2]}")
def test_three_methods_agree_for_every_flow(case):
    """≤ 1e-10 relative agreement with the dense reference, every flow that fits K and QN."""
    widths, N, act, seed = case
    net, theta, X, Y = _problem(widths, N, act, seed)
    K, QN = theta.size, Y.size
    D = af.jacobian(net, theta, X)
    s = np.linalg.svd(np.asarray(D), compute_uv=False)
    flows = ["least-squares"] + (["adapted"] if K >= QN else []) + (["adapted-under"] if K <= QN else [])
    checked = []
    for flow in flows:
        # a cut-off the kernel resolves (≥ 10·sqrt(QN·eps)), away from every σ/σ_max of D
        kw = {"pinv_rtol": 1e-5} if flow == "least-squares" else {}
        if flow == "least-squares" and np.min(np.abs(np.log10(s / s[0] + 1e-300) + 5)) < 1:
            continue                               # a singular value within a decade of the cut-off
        if flow != "least-squares" and s[-1] / s[0] < 1e-3:
            continue                               # κ(D) > 1e3: κ²·eps of a Gram solve (dense too) exceeds 1e-10
        checked.append(flow)
        ref, info = adapted_step_direction(net, theta, X, Y, flow=flow, method="dense", **kw)
        assert info.method == "dense" and not bool(info.fallback)
        # iterative solvers stop on a residual: their relative error is ≈ κ·tol, so the
        # tolerance is set from the κ of the part of D that is inverted
        kept = s[s > 1e-5 * s[0]] if flow == "least-squares" else s
        tol = max(1e-11 / (kept[0] / kept[-1]), 1e-15)
        for method in ("structured", "matrix-free"):
            u, info = adapted_step_direction(net, theta, X, Y, flow=flow, method=method, cg_tol=tol, **kw)
            assert _rel(u, ref) <= 1e-10, (flow, method, _rel(u, ref))
            assert not bool(info.fallback) and float(info.residual) <= 1e-9, (flow, method)
    if not checked:
        pytest.skip(f"κ(D) = {s[0] / s[-1]:.1e} and σ/σ_max near the 1e-5 cut-off: no flow comparable to 1e-10")


def test_auto_picks_structured_when_correct_and_says_why():
    net, theta, X, Y = _problem((3, 12, 12, 2), 5, "tanh", 0)
    info = adapted_step_direction(net, theta, X, Y)[1]
    assert info.method == "structured" and "K ≥ QN" in info.reason
    info = adapted_step_direction(net, theta, X, Y, flow="least-squares")[1]       # default cut-off ~1e-13
    assert info.method == "dense" and "below what the kernel resolves" in info.reason
    info = adapted_step_direction(net, theta, X, Y, flow="least-squares", pinv_rtol=1e-5)[1]
    assert info.method == "structured"
    net, theta, X, Y = _problem((2, 3, 2), 20, "tanh", 0)                           # K = 17 < QN = 40
    info = adapted_step_direction(net, theta, X, Y, flow="adapted-under")[1]
    assert info.method == "dense" and "no larger than the kernel" in info.reason


def test_nystrom_preconditioner_cuts_cg_iterations():
    """Before/after on a kernel with outlying top eigenvalues (κ ≈ 8e3): rank-50 Nyström
    needs at most 60 % of the iterations of unpreconditioned and Jacobi CG."""
    net, theta, X, Y = _problem((8, 64, 64, 4), 50, "tanh", 0)
    ref, _ = adapted_step_direction(net, theta, X, Y, method="dense")
    its = {}
    for pc in ("none", "jacobi", "nystrom"):
        u, info = adapted_step_direction(net, theta, X, Y, method="matrix-free", precondition=pc, nystrom_rank=50)
        its[pc] = int(info.iterations)
        assert _rel(u, ref) <= 1e-10, pc
    assert its["nystrom"] <= 0.6 * min(its["none"], its["jacobi"]), its


def test_nystrom_approximation_exact_at_full_rank_and_below_the_spectrum_otherwise():
    A = jax.random.normal(jax.random.PRNGKey(0), (30, 30))
    A = A @ A.T + 0.1 * jnp.eye(30)
    lam_true = jnp.linalg.eigvalsh(A)[::-1]
    apply, lam = nystrom_preconditioner(lambda B: A @ B, 30, 30, jax.random.PRNGKey(1))
    np.testing.assert_allclose(lam, lam_true, rtol=1e-8)
    P = jax.vmap(apply, in_axes=1, out_axes=1)(A)           # rank n: P⁻¹A = λ_min I
    np.testing.assert_allclose(P, lam_true[-1] * jnp.eye(30), atol=1e-8 * float(lam_true[0]))
    _, lam = nystrom_preconditioner(lambda B: A @ B, 30, 10, jax.random.PRNGKey(1))
    assert bool(jnp.all(lam <= lam_true[:10] * (1 + 1e-12)))  # A − A_nys ⪰ 0


def test_structured_path_falls_back_on_duplicate_inputs_and_reports_threshold():
    net, theta, X, Y = _problem((2, 16, 2), 4, "tanh", 4)
    X = X.at[1].set(X[0])                       # D D^T exactly singular
    u, info = adapted_step_direction(net, theta, X, Y, method="structured")
    assert bool(info.fallback) and bool(jnp.all(jnp.isfinite(u)))
    assert info.fallback_rtol == pytest.approx(8 * np.finfo(float).eps)
    # the fallback is the eigendecomposition pseudo-inverse: the least-squares direction (4.6)
    ref, _ = adapted_step_direction(net, theta, X, Y, flow="least-squares", method="dense", pinv_rtol=1e-6)
    assert _rel(u, ref) <= 1e-8


def test_near_duplicate_inputs_trigger_the_fallback():
    """Inputs 1e-9 apart: cond(D Dᵀ) ≈ 1e18 > 1/(QN·eps); Cholesky's pivots reveal it."""
    net, theta, X, Y = _problem((2, 16, 2), 4, "tanh", 4)
    X = X.at[1].set(X[0] + 1e-9)
    u, info = adapted_step_direction(net, theta, X, Y, method="structured")
    assert bool(info.fallback) and bool(jnp.all(jnp.isfinite(u)))


def test_structured_least_squares_through_rank_loss_matches_dense():
    net, theta, X, Y = _problem((3, 20, 2), 6, "tanh", 7)
    X = X.at[2].set(X[0])                       # rank D = QN − Q
    ref, _ = adapted_step_direction(net, theta, X, Y, flow="least-squares", method="dense", pinv_rtol=1e-6)
    u, info = adapted_step_direction(net, theta, X, Y, flow="least-squares", method="structured", pinv_rtol=1e-6)
    assert int(info.rank) == Y.size - 2 and _rel(u, ref) <= 1e-10
    u, info = adapted_step_direction(net, theta, X, Y, flow="least-squares", method="matrix-free", pinv_rtol=1e-6)
    assert _rel(u, ref) <= 1e-9


def test_bad_arguments_are_named():
    fmap = lambda theta, X: jnp.tanh(theta[:4] * theta[4:]) + 0.0 * X[0, 0]
    X, Y = jnp.zeros((2, 1)), jnp.asarray([[0.1, 0.2], [0.3, 0.4]])
    theta = jnp.linspace(0.1, 0.8, 8)
    assert not is_structured(fmap) and is_structured(af.mlp((1, 2, 2)))
    assert adapted_step_direction(fmap, theta, X, Y)[1].method == "dense"
    with pytest.raises(ValueError, match="structured"):
        adapted_step_direction(fmap, theta, X, Y, method="structured")
    with pytest.raises(ValueError, match="method"):
        adapted_step_direction(fmap, theta, X, Y, method="qr")
    with pytest.raises(ValueError, match="precondition"):
        adapted_step_direction(fmap, theta, X, Y, method="matrix-free", precondition="ilu")
    with pytest.raises(ValueError, match="flow"):
        adapted_step_direction(fmap, theta, X, Y, flow="newton")
    net, theta, X, Y = _problem((3, 12, 2), 5, "tanh", 0)
    with pytest.raises(ValueError, match=r"pinv_rtol.*10·sqrt\(QN·eps\)"):
        adapted_step_direction(net, theta, X, Y, flow="least-squares", method="structured", pinv_rtol=1e-9)
    net, theta, X, Y = _problem((2, 3, 2), 20, "tanh", 0)
    with pytest.raises(ValueError, match="K ≥ QN"):
        adapted_step_direction(net, theta, X, Y, flow="adapted")
    assert kernel_rank_floor(1000) == pytest.approx(4.71e-7, rel=1e-2)


@pytest.mark.parametrize("flow,widths,N,kw", [("adapted", (2, 8, 2), 5, {}),
                                               ("least-squares", (2, 8, 2), 5, {"pinv_rtol": 1e-5}),
                                               ("adapted-under", (2, 3, 2), 12, {})])
def test_integrator_structured_and_dense_orbits_agree(flow, widths, N, kw):
    net, theta, X, Y = _problem(widths, N, "tanh", 5)
    a = af.integrate_flow(flow, net, theta, X, Y, s1=5.0, n_save=5, jacobian="structured", **kw)
    b = af.integrate_flow(flow, net, theta, X, Y, s1=5.0, n_save=5, jacobian="dense", **kw)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-8, atol=1e-10)
    with pytest.raises(ValueError, match="jacobian"):
        af.integrate_flow(flow, net, theta, X, Y, s1=1.0, jacobian="sparse", **kw)


def test_mlp_without_hidden_layer_runs_on_every_path():
    """widths (M, Q): the kernel is the output block alone (a reviewer found an IndexError)."""
    net, theta, X, Y = _problem((6, 2), 3, "tanh", 1)
    D = af.jacobian(net, theta, X)
    np.testing.assert_allclose(mlp_outputs_and_ntk(net, theta, X)[1], D @ D.T, rtol=1e-13)
    np.testing.assert_allclose(mlp_ntk_diagonal(net, theta, X), jnp.sum(D**2, axis=1), rtol=1e-13)
    ref, _ = adapted_step_direction(net, theta, X, Y, method="dense")
    u, info = adapted_step_direction(net, theta, X, Y)
    assert info.method == "structured" and _rel(u, ref) <= 1e-12
    orbit = af.integrate_flow("adapted", net, theta, X, Y, s1=1.0, n_save=3)
    assert orbit.stop == "s1"
    run = af.descent("adapted", net, theta, X, Y, step=0.5, n_steps=3)
    assert np.all(np.diff(run.costs) < 0)


def test_rank_deficient_under_parametrized_gives_the_minimum_norm_answer_and_says_so():
    """Zeroed output weights of one hidden unit: rank D = 22 < K = 26. Dense and structured
    (5.2) both fall back and return −D⁺∇ₓC."""
    widths, N = (3, 4, 2), 40
    net, theta, X, Y = _problem(widths, N, "tanh", 1)
    i_out = 3 * 4 + 4
    theta = theta.at[i_out].set(0.0).at[i_out + 4].set(0.0)
    x, D = af.outputs_and_jacobian(net, theta, X)
    ref = -jnp.linalg.pinv(D) @ af.grad_x_cost(x, Y)
    for method in ("dense", "structured"):
        u, info = adapted_step_direction(net, theta, X, Y, flow="adapted-under", method=method)
        assert bool(info.fallback) and _rel(u, ref) <= 1e-10, (method, _rel(u, ref))
    assert adapted_step_direction(net, theta, X, Y, flow="adapted-under", method="dense")[1].fallback_rtol == \
        pytest.approx(theta.size * np.finfo(float).eps)


def test_iterative_solvers_report_non_convergence():
    net, theta, X, Y = _problem((3, 12, 12, 2), 5, "tanh", 0)
    for flow in ("adapted", "least-squares"):
        info = adapted_step_direction(net, theta, X, Y, flow=flow, method="matrix-free", cg_maxiter=2)[1]
        assert not bool(info.converged) and int(info.iterations) == 2, flow
        info = adapted_step_direction(net, theta, X, Y, flow=flow, method="matrix-free")[1]
        assert bool(info.converged), flow


def test_zero_gradient_gives_zero_direction_and_residual():
    net, theta, X, _ = _problem((3, 12, 2), 4, "tanh", 0)
    Y = net(theta, X).reshape(4, 2)                       # x = y: ∇ₓC = 0
    for method in ("dense", "structured", "matrix-free"):
        u, info = adapted_step_direction(net, theta, X, Y, method=method)
        assert float(jnp.linalg.norm(u)) == 0.0 and float(info.residual) == 0.0, method


def test_a_plain_function_works_with_dense_and_matrix_free_and_is_refused_by_structured():
    """The MLP as a function of θ (not an `MLP` value): same directions, no structured path."""
    net, theta, X, Y = _problem((3, 12, 2), 4, "tanh", 3)
    fmap = lambda t, X: net(t, X)
    assert not is_structured(fmap) and is_structured(net)
    ref, _ = adapted_step_direction(net, theta, X, Y, method="dense")
    for method in ("auto", "dense", "matrix-free"):
        u, info = adapted_step_direction(fmap, theta, X, Y, method=method)
        assert info.method == ("dense" if method == "auto" else method)
        assert _rel(u, ref) <= 1e-10, method
    with pytest.raises(ValueError, match=r"`method='structured'` needs an MLP made by `adaptedflow.mlp`"):
        adapted_step_direction(fmap, theta, X, Y, method="structured")
    with pytest.raises(ValueError, match=r"`jacobian='structured'` needs an MLP"):
        af.integrate_flow("adapted", fmap, theta, X, Y, s1=1.0, jacobian="structured")


@pytest.mark.parametrize("field,value,error,match", [
    ("method", "qr", ValueError, "`method` must be one of"),
    ("precondition", "ilu", ValueError, "`precondition` must be one of"),
    ("cg_tol", 0.0, ValueError, "`cg_tol` must be a positive finite number; got 0.0"),
    ("cg_tol", float("nan"), ValueError, "`cg_tol` must be a positive finite"),
    ("cg_tol", "tight", TypeError, "`cg_tol` must be a real number"),
    ("cg_maxiter", 0, ValueError, "`cg_maxiter` must be a positive integer; got 0"),
    ("cg_maxiter", 2.5, ValueError, "`cg_maxiter` must be a positive integer"),
    ("nystrom_rank", -3, ValueError, "`nystrom_rank` must be a positive integer"),
    ("pinv_rtol", -1e-6, ValueError, "`pinv_rtol` must be a positive finite"),
])
def test_direction_options_are_checked_when_made(field, value, error, match):
    with pytest.raises(error, match=match):
        DirectionOptions(**{field: value})
    net, theta, X, Y = _problem((3, 12, 2), 4, "tanh", 0)
    with pytest.raises(error, match=match):                       # the keyword form builds the same options
        adapted_step_direction(net, theta, X, Y, **{field: value})


def test_direction_options_are_values_and_equal_to_the_keyword_form():
    a, b = DirectionOptions(method="matrix-free", cg_tol=1e-10), DirectionOptions("matrix-free", 1e-10)
    assert a == b and hash(a) == hash(b) and a != DirectionOptions(method="matrix-free")
    assert DirectionOptions(cg_maxiter=np.int64(5)).cg_maxiter == 5 and DirectionOptions(cg_tol=1).cg_tol == 1.0
    net, theta, X, Y = _problem((3, 12, 2), 4, "tanh", 0)
    u1, i1 = adapted_step_direction(net, theta, X, Y, options=a)
    u2, i2 = adapted_step_direction(net, theta, X, Y, method="matrix-free", cg_tol=1e-10)
    u3, i3 = adapted_step_direction(net, theta, X, Y, options=DirectionOptions(method="dense"), method="matrix-free",
                                    cg_tol=1e-10)                 # keywords replace fields of `options`
    np.testing.assert_array_equal(u1, u2)
    np.testing.assert_array_equal(u1, u3)
    assert i1.method == i2.method == i3.method == "matrix-free"
    with pytest.raises(TypeError, match="`options` must be a `DirectionOptions`"):
        adapted_step_direction(net, theta, X, Y, options={"method": "dense"})
    resolved, reason = DirectionOptions(nystrom_rank=500).resolve(net, "adapted", theta.size, Y.size)
    assert resolved.method == "structured" and resolved.nystrom_rank == Y.size - 1 and "K ≥ QN" in reason
    assert resolved.pinv_rtol == pytest.approx(max(theta.size, Y.size) * np.finfo(float).eps)


def test_traceable_direction_equals_the_public_one_and_compiles_once_per_value():
    net, theta, X, Y = _problem((3, 12, 2), 4, "tanh", 0)
    for method in ("structured", "dense", "matrix-free"):
        opts = DirectionOptions(method=method)
        u, info = adapted_step_direction(net, theta, X, Y, options=opts)
        arrays = jax.jit(functools.partial(direction_with_info, net, "adapted", opts))(theta, X, Y)
        np.testing.assert_array_equal(arrays.u, u)
        assert int(arrays.iterations) == int(info.iterations) and bool(arrays.converged)
    before = compiled_direction._cache_size()
    opts = DirectionOptions(method="structured").resolve(net, "adapted", theta.size, Y.size)[0]
    compiled_direction(net, "adapted", opts, theta, X, Y)
    compiled_direction(af.mlp((3, 12, 2)), "adapted", DirectionOptions(method="structured").resolve(
        af.mlp((3, 12, 2)), "adapted", theta.size, Y.size)[0], theta + 1.0, X, Y)
    assert compiled_direction._cache_size() - before <= 1     # equal networks and options: one compilation


def test_linearize_outputs_gives_D_and_its_transpose():
    net, theta, X, _ = _problem((3, 5, 2), 4, "tanh", 0)
    x, D = af.outputs_and_jacobian(net, theta, X)
    x2, Dt, Dv = linearize_outputs(net, theta, X)
    a, v = jnp.linspace(-1.0, 1.0, x.size), jnp.linspace(0.5, -0.5, theta.size)
    np.testing.assert_array_equal(x2, x)
    np.testing.assert_allclose(Dt(a), D.T @ a, rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(Dv(v), D @ v, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("dist", [1e-1, 1e-3, 1e-5, 1e-6, 1e-7, 1e-8])
def test_kernel_rank_event_agrees_with_the_svd_of_D(dist):
    """The rank event read from the kernel (`sigma="kernel"`) flags σ_min/σ_max < rank_rtol as the
    SVD of D does, wherever the ratio is a factor 2 away from rank_rtol (near-duplicate inputs)."""
    from adaptedflow.integrate import rank_event_value

    net, theta = af.mlp((2, 16, 2)), af.init_params(jax.random.PRNGKey(5), (2, 16, 2))
    X, _, _ = af.gaussian_clusters(jax.random.PRNGKey(4), 4, 2, 2)
    X = X.at[1].set(X[0] + dist)
    s = np.linalg.svd(np.asarray(af.jacobian(net, theta, X)), compute_uv=False)
    ratio = s[-1] / s[0]
    for rtol in (1e-4, 1e-6, 1e-7):
        if 0.5 < ratio / rtol < 2:
            continue
        assert bool(rank_event_value(net, theta, X, rtol, "kernel") < 0) == bool(ratio < rtol), (dist, rtol, ratio)


@pytest.mark.parametrize("dist", [1.0, 1e-1, 1e-2, 1e-3, 1e-5, 1e-7])
def test_kernel_ratio_certificate_never_claims_more_than_the_svd_of_D(dist):
    # The rank event fixes its sign far from the threshold with this certificate, so wherever it says
    # σ_min/σ_max ≥ 0.9·t (t ≥ 10·sqrt(QN·eps)), the SVD of D must agree; and it is not vacuous: it
    # certifies every t at least 10·QN times below the true ratio (Gershgorin overestimates λ_max ≤ QN×).
    net, theta = af.mlp((3, 24, 3)), af.init_params(jax.random.PRNGKey(2), (3, 24, 3))
    X = jax.random.normal(jax.random.PRNGKey(3), (8, 3))
    X = X.at[1].set(X[0] + dist)
    s = np.linalg.svd(np.asarray(af.jacobian(net, theta, X)), compute_uv=False)
    ratio = s[-1] / s[0]
    G = km.mlp_outputs_and_ntk(net, theta, X)[1]
    floor = 10 * km.kernel_rank_floor(24)
    ts = np.geomspace(floor, 1.0, 60)
    certified = np.array([bool(km.kernel_ratio_certainly_above(G, t)) for t in ts])
    assert np.all(km.CERTIFY_SAFETY * ts[certified] <= ratio), (dist, ratio, ts[certified].max())
    assert np.all(certified[ts * 10 * 24 <= ratio]), (dist, ratio)


@pytest.mark.parametrize("eigh_max", [None, 2048])
def test_kernel_singular_values_resolve_below_the_kernel_floor_at_QN_1000(monkeypatch, eigh_max):
    # QN = 1000, two inputs 1e-4 apart: σ_min/σ_max = 1.36e-7, below the kernel's eigenvalue floor
    # sqrt(QN·eps) = 4.7e-7, so sqrt(λ_min/λ_max) cannot see it; Rayleigh–Ritz through D can (on eigenvectors
    # of the kernel, and on the Lanczos spaces used above `EIGH_MAX_SIZE`), and the rank event resolves the
    # default threshold 1e-7.  Reference: the SVD of D (1000 × 1210).
    import adaptedflow.kernels as km
    from adaptedflow.cost import outputs_and_jacobian
    from adaptedflow.integrate import rank_event_value

    if eigh_max is not None:
        monkeypatch.setattr(km, "EIGH_MAX_SIZE", eigh_max)
    widths, N = (4, 80, 10), 100
    net = af.mlp(widths, "tanh")
    X = jax.random.normal(jax.random.PRNGKey(0), (N, 4))
    X = X.at[1].set(X[0] + 1e-4 * jnp.array([1.0, -0.5, 0.3, 0.2]))
    th = af.init_params(jax.random.PRNGKey(1), widths)
    s = np.linalg.svd(np.asarray(outputs_and_jacobian(net, th, X)[1]), compute_uv=False)
    assert s[-1] / s[0] < km.kernel_rank_floor(N * 10) / 3
    smin, smax = (float(v) for v in km.kernel_extreme_singular_values(net, th, X))
    assert abs(smin - s[-1]) <= 1e-9 * s[-1], (smin, s[-1])           # measured 1.3e-11 (Lanczos), 1.4e-11 (eigh)
    assert abs(smax - s[0]) <= 1e-12 * s[0], (smax, s[0])             # measured ≤ 1.2e-16
    assert float(rank_event_value(net, th, X, 1e-7, "kernel")) > 0 > float(rank_event_value(net, th, X, 2e-7, "kernel"))


def test_direction_info_reports_kappa_and_refinements():
    net, theta, X, Y = _problem((3, 12, 2), 5, "tanh", 0)
    for method in ("structured", "dense"):
        _, info = adapted_step_direction(net, theta, X, Y, method=method)
        assert 1.0 <= float(info.kappa) < 1e4 and int(info.refinements) == 1, (method, info)
    _, info = adapted_step_direction(net, theta, X, Y, method="matrix-free")
    assert np.isnan(float(info.kappa)) and int(info.refinements) == 0
