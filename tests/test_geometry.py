import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptedflow as af
from adaptedflow.numerics import EPS
from adaptedflow.paper import geometry as geo

_A = jnp.asarray(np.random.default_rng(3).normal(size=(3, 5)))


def affine_map(theta, X):
    """x = A θ + X-dependent offset: D = A is constant, so every bracket vanishes."""
    return _A @ theta + jnp.sum(X)


def tanh_affine_map(theta, X):
    """x = tanh(A θ): D = diag(sech²) A, so V = range(Aᵀ) is constant (integrable) but brackets ≠ 0."""
    return jnp.tanh(_A @ theta)


def heisenberg_map(theta, X):
    """x = (θ₁, θ₂ + θ₁θ₃): X₁ = e₁, X₂ = (θ₃, 1, θ₁), [X₁, X₂] = e₃ (K = 3, QN = 2)."""
    return jnp.stack([theta[0], theta[1] + theta[0] * theta[2]])


_H = jnp.asarray(np.random.default_rng(4).normal(size=(3, 4, 4)))
_H = _H + jnp.swapaxes(_H, 1, 2)


def quadratic_map(theta, X):
    """x_a = ½ θᵀ H_a θ: X_a = H_a θ, [X_a, X_b] = (H_b H_a − H_a H_b) θ."""
    return 0.5 * jnp.einsum("i,aij,j->a", theta, _H, theta)


X0 = jnp.zeros((1, 1))


@pytest.fixture(scope="module")
def mlp_problem():
    """A small tanh MLP: widths (2, 4, 1), N = 3 (QN = 3, K = 17)."""
    widths, N = (2, 4, 1), 3
    X, _, Y = af.gaussian_clusters(jax.random.PRNGKey(0), N, widths[0], widths[-1])
    net = af.mlp(widths)
    theta = af.init_params(jax.random.PRNGKey(1), widths)
    return net, theta, X, Y


def test_lie_bracket_of_linear_fields_is_commutator():
    rng = np.random.default_rng(0)
    A, B, th = rng.normal(size=(4, 4)), rng.normal(size=(4, 4)), rng.normal(size=4)
    got = geo.lie_bracket(lambda t: A @ t, lambda t: B @ t, jnp.asarray(th))
    np.testing.assert_allclose(got, (B @ A - A @ B) @ th, rtol=1e-13, atol=1e-13)


def test_section_brackets_quadratic_closed_form():
    th = jnp.asarray(np.random.default_rng(1).normal(size=4))
    pairs, br = geo.section_brackets(quadratic_map, th, X0)
    H = np.asarray(_H)
    for (a, b), v in zip(pairs, np.asarray(br), strict=True):
        np.testing.assert_allclose(v, (H[b] @ H[a] - H[a] @ H[b]) @ np.asarray(th), rtol=1e-12, atol=1e-12)


def test_affine_model_brackets_vanish():
    th = jnp.asarray(np.random.default_rng(2).normal(size=5))
    _, br = geo.section_brackets(affine_map, th, X0)
    assert br.shape == (3, 5)
    assert float(jnp.max(jnp.abs(br))) <= 1e-14


def test_tanh_affine_model_is_integrable_with_nonzero_brackets():
    th = jnp.asarray(np.random.default_rng(5).normal(size=5)) * 0.3
    _, br = geo.section_brackets(tanh_affine_map, th, X0)
    D = af.jacobian(tanh_affine_map, th, X0)
    assert float(jnp.min(jnp.linalg.norm(br, axis=1))) > 1e-3
    assert float(jnp.max(geo.normal_fraction(D, br))) <= 1e-12


def test_heisenberg_bracket_is_normal_and_generating():
    th = jnp.zeros(3)
    _, br = geo.section_brackets(heisenberg_map, th, X0)
    np.testing.assert_allclose(br, [[0.0, 0.0, 1.0]], atol=1e-15)
    D = af.jacobian(heisenberg_map, th, X0)
    np.testing.assert_allclose(geo.normal_fraction(D, br), [1.0], atol=1e-15)
    reps = geo.bracket_ranks(heisenberg_map, th, X0, depth=2)
    assert [r.rank for r in reps] == [2, 3]
    assert geo.generating_step(reps, 3) == 2


def test_brackets_antisymmetric(mlp_problem):
    net, th, X, _ = mlp_problem
    _, br = geo.section_brackets(net, th, X, pairs=[[0, 1], [1, 0], [0, 2], [2, 0], [1, 1]])
    ab, ba, aa = br[0::2][:2], br[1::2][:2], br[4]
    assert float(jnp.max(jnp.abs(ab))) > 1e-3
    np.testing.assert_allclose(ab, -ba, rtol=0, atol=1e-13 * float(jnp.max(jnp.abs(ab))))
    assert float(jnp.max(jnp.abs(aa))) == 0.0


def test_jacobi_identity_nonlinear_fields():
    F = lambda t: jnp.array([jnp.sin(t[1]), t[0] * t[2], jnp.tanh(t[0])])
    G = lambda t: jnp.array([t[2] ** 2, jnp.cos(t[0]), t[1]])
    H = lambda t: jnp.array([t[0] * t[1], jnp.exp(-t[2]), jnp.sin(t[0] + t[1])])
    br = lambda P, R: (lambda t: geo.lie_bracket(P, R, t))
    th = jnp.array([0.3, -0.7, 0.2])
    terms = jax.jit(lambda t: [geo.lie_bracket(F, br(G, H), t), geo.lie_bracket(G, br(H, F), t),
                               geo.lie_bracket(H, br(F, G), t)])(th)
    scale = max(float(jnp.linalg.norm(t)) for t in terms)
    assert scale > 0.1
    assert float(jnp.linalg.norm(sum(terms))) <= 1e-14 * scale


@pytest.mark.parametrize("which", ["mlp", "quadratic"])
def test_projector_idempotent_symmetric(which, mlp_problem):
    if which == "mlp":
        net, th, X, _ = mlp_problem
        D = af.jacobian(net, th, X)
    else:
        D = af.jacobian(quadratic_map, jnp.asarray(np.random.default_rng(6).normal(size=4)), X0)
    P = np.asarray(geo.horizontal_projector(D))
    np.testing.assert_allclose(P @ P, P, atol=1e-13)
    np.testing.assert_allclose(P, P.T, atol=1e-15)
    np.testing.assert_allclose(P @ np.asarray(D).T, np.asarray(D).T, atol=1e-12)
    assert round(float(np.trace(P))) == D.shape[0]


def test_kernel_brackets_stay_in_kernel(mlp_problem):
    net, th, X, _ = mlp_problem
    K = th.shape[0]
    W = jax.random.normal(jax.random.PRNGKey(7), (3, K))
    D = np.asarray(af.jacobian(net, th, X))
    Z = np.asarray(geo.kernel_brackets(net, th, X, W))
    assert Z.shape == (3, K)
    rel = np.linalg.norm(Z @ D.T, axis=1) / (np.linalg.norm(D, 2) * np.linalg.norm(Z, axis=1))
    assert np.min(np.linalg.norm(Z, axis=1)) > 1e-3
    assert np.max(rel) <= 1e-11


def test_bundle_gradient_is_minus_adapted_and_solves_2_23(mlp_problem):
    net, th, X, Y = mlp_problem
    x, D = af.outputs_and_jacobian(net, th, X)
    gx = af.grad_x_cost(x, Y)
    u = geo.bundle_gradient(D, gx)
    np.testing.assert_allclose(u, -af.adapted_direction(D, gx), rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(geo.bundle_gradient_from_metric(D, gx), u, rtol=1e-9, atol=1e-13)
    v = D.T @ jnp.array([1.0, -2.0, 0.5])
    np.testing.assert_allclose(geo.bundle_metric(D, u, v), jnp.dot(D.T @ gx, v), rtol=1e-11)


def test_spanned_rank_gap_and_zero_rows():
    rng = np.random.default_rng(0)
    V = rng.normal(size=(3, 6))
    fam = np.vstack([V, V[0] + V[1], np.zeros(6), 1e-30 * V[2]])
    rep = geo.spanned_rank(fam)
    assert rep.rank == 3 and rep.n_zero == 2
    assert rep.smallest_kept > 1e-2 and rep.largest_dropped < 1e-14


def test_validation_messages():
    with pytest.raises(ValueError, match="`grad_x`"):
        geo.bundle_gradient(jnp.ones((2, 4)), jnp.ones(3))
    with pytest.raises(ValueError, match="over-parametrized"):
        geo.bundle_gradient(jnp.ones((4, 2)), jnp.ones(4))
    with pytest.raises(TypeError, match="float64"):
        geo.horizontal_projector(np.ones((2, 3), dtype=np.float32))
    with pytest.raises(ValueError, match="`pairs`"):
        geo.section_brackets(heisenberg_map, jnp.zeros(3), X0, pairs=[[0, 5]])
    with pytest.raises(ValueError, match="`depth`"):
        geo.bracket_family(heisenberg_map, jnp.zeros(3), X0, depth=4)
    with pytest.raises(ValueError, match="`rtol`"):
        geo.spanned_rank(np.eye(2), rtol=2.0)
    with pytest.raises(TypeError, match="`output_map`"):
        geo.section_brackets("net", jnp.zeros(3), X0)


def test_bundle_gradient_errors_within_derived_tolerance(mlp_problem):
    net, th, X, Y = mlp_problem
    x, D = af.outputs_and_jacobian(net, th, X)
    gx = af.grad_x_cost(x, Y)
    K = th.shape[0]
    P = np.asarray(geo.horizontal_projector(D))
    rng = np.random.default_rng(8)
    V, W = rng.normal(size=(4, K)) @ P, rng.normal(size=(4, K)) @ (np.eye(K) - P)
    e = geo.bundle_gradient_errors(D, gx, V, W)
    assert e["kappa"] >= 1.0
    tol = K * EPS * e["kappa"]
    for c in ("solves", "horizontal", "lstsq", "form129", "definition", "metric", "kernel"):
        assert 0.0 <= e[c] <= tol, c
    assert e["pythagoras"] <= tol + (4 * K + 6) * EPS
    with pytest.raises(ValueError, match="`V`"):
        geo.bundle_gradient_errors(D, gx, V[:, :3], W)


def test_one_neuron_map_closed_form():
    X = jnp.array([[0.5], [-1.0]])
    np.testing.assert_allclose(geo.one_neuron_map(jnp.array([2.0, 3.0]), X), 3.0 * np.tanh(2.0 * np.array([0.5, -1.0])),
                               rtol=1e-15)


@pytest.mark.parametrize("n, dims", [(1, [1, 1, 1]), (2, [2, 3, 5]), (3, [3, 6, 14]), (5, [5, 15, 55])])
def test_free_lie_dims_witt(n, dims):
    assert geo.free_lie_dims(n) == dims
    assert geo.free_lie_dims(n, depth=2) == dims[:2]


def test_free_lie_dims_validation():
    with pytest.raises(ValueError, match="`n`"):
        geo.free_lie_dims(0)
    with pytest.raises(ValueError, match="`depth`"):
        geo.free_lie_dims(3, depth=4)


def test_kernel_bracket_defects_within_tolerance(mlp_problem):
    net, th, X, _ = mlp_problem
    K = th.shape[0]
    W = jax.random.normal(jax.random.PRNGKey(9), (3, K))
    defects, kappa = geo.kernel_bracket_defects(net, th, X, W)
    assert defects.shape == (3,)
    assert np.max(defects) <= geo.kernel_bracket_tolerance(3, K, kappa)


def test_max_normal_fraction_controls():
    frac, kappa = geo.max_normal_fraction(heisenberg_map, jnp.zeros(3), X0)
    assert frac == pytest.approx(1.0, abs=1e-15) and kappa == pytest.approx(1.0)
    th = jnp.asarray(np.random.default_rng(5).normal(size=5)) * 0.3
    frac, kappa = geo.max_normal_fraction(tanh_affine_map, th, X0)
    assert frac <= geo.normal_fraction_tolerance(5, kappa)
    with pytest.raises(ValueError, match="QN ≥ 2"):
        geo.max_normal_fraction(lambda t, X: t[:1], jnp.zeros(3), X0)


def test_geometry_witnesses_fixed_and_read_only():
    ws = geo.geometry_witnesses()
    assert [(w.widths, w.X.shape, w.theta.shape) for w in ws] == [
        ((1, 1, 1), (2, 1), (4,)), ((1, 2, 1), (4, 1), (7,)), ((2, 2, 1), (3, 2), (9,)), ((2, 2, 1), (5, 2), (9,))]
    assert all(af.num_params(w.widths) == w.theta.size for w in ws)
    with pytest.raises(ValueError):
        ws[0].theta[0] = 1.0


def test_smallest_witness_not_integrable_and_generating():
    w = geo.geometry_witnesses()[0]
    net = af.mlp(w.widths)
    frac, kappa = geo.max_normal_fraction(net, jnp.asarray(w.theta), jnp.asarray(w.X))
    assert frac > 0.5 and frac > 1e10 * geo.normal_fraction_tolerance(4, kappa)
    reps = geo.bracket_ranks(net, jnp.asarray(w.theta), jnp.asarray(w.X), depth=3)
    assert [r.rank for r in reps] == [min(4, d) for d in geo.free_lie_dims(2)]
    assert min(r.smallest_kept for r in reps) > 1e-2


def test_near_integrable_instance_is_saturated():
    w = geo.near_integrable_instance()
    frac, kappa = geo.max_normal_fraction(af.mlp(w.widths), jnp.asarray(w.theta), jnp.asarray(w.X))
    assert frac < 1e-4 and kappa > 1e4
    z = w.X @ w.theta[:2].reshape(2, 1).T + w.theta[2:4]
    assert np.max(1.0 / np.cosh(z[:, 1]) ** 2) < 1e-7


def test_velocity_normal_fractions_one_neuron():
    X, Y = jnp.ones((1, 1)), jnp.ones((1, 1))
    thetas = jnp.array([[0.6, -0.9], [1.2, -0.6], [2.0, 0.3]])
    for flow in ("adapted", "standard"):
        f = geo.velocity_normal_fractions(flow, geo.one_neuron_map, thetas, X, Y)
        assert f.shape == (3,) and np.max(f) <= geo.VELOCITY_NORMAL_TOLERANCE
    with pytest.raises(ValueError, match="QN = 1"):
        geo.velocity_normal_fractions("adapted", heisenberg_map, jnp.zeros((2, 3)), X0, jnp.zeros((1, 2)))
    with pytest.raises(ValueError, match="`flow`"):
        geo.velocity_normal_fractions("gauss", geo.one_neuron_map, thetas, X, Y)


def test_jacobi_defect_quadratic_map():
    levels = geo.bracket_family(quadratic_map, jnp.asarray(np.random.default_rng(1).normal(size=4)), X0, depth=3)
    assert geo.jacobi_defect(levels) <= 1e-14
    with pytest.raises(ValueError, match="depth=3"):
        geo.jacobi_defect(levels[:2])


def test_bundle_gradient_trials_within_tolerance():
    key = jax.random.PRNGKey(0)
    X, _, Y = af.gaussian_clusters(key, 3, 2, 1)
    t = geo.bundle_gradient_trials((2, 4, 1), X, Y, key, 2)
    assert len(t.rows) == 2 and tuple(t.ratios) == geo.BUNDLE_GRADIENT_ERROR_KEYS
    K = af.num_params((2, 4, 1))
    np.testing.assert_allclose(t.tolerances, [K * EPS * r["kappa"] for r in t.rows], rtol=1e-15)
    assert max(max(v) for v in t.ratios.values()) < 1.0     # every characterisation of grad_V C agrees
    assert t.rows[0]["solves"] < 1e-14


def test_frobenius_controls_integrable():
    c = geo.frobenius_controls(jax.random.PRNGKey(0), 1)
    assert c.affine_max == 0.0 < c.affine_tol < 1e-13     # forward mode: exact zero brackets
    assert len(c.tanh_fractions) == 6                       # QN = 4: 6 pairs
    assert max(c.tanh_ratios) < 1.0 and min(c.tanh_min_norms) > 1e-2


def test_small_mlp_instance_deterministic():
    key = jax.random.PRNGKey(0)
    net, widths, X, theta = geo.small_mlp_instance(key, [1, 2, 1, 4], 0, 0)
    assert widths == (1, 2, 1) and X.shape == (4, 1) and theta.shape == (7,) and net == af.mlp(widths)
    np.testing.assert_array_equal(theta, geo.small_mlp_instance(key, [1, 2, 1, 4], 0, 0)[3])
    assert not np.array_equal(theta, geo.small_mlp_instance(key, [1, 2, 1, 4], 0, 1)[3])


def test_kernel_bracket_control_within_tolerance():
    kc = geo.kernel_bracket_control(jax.random.PRNGKey(0), [1, 2, 1, 3], 0, 1)
    assert kc.widths == (1, 2, 1) and len(kc.defects) == 3 and len(kc.tolerances) == 1
    assert max(kc.defects) < 1e-10 and max(kc.ratios) < 1.0


def test_witness_analysis_not_integrable_and_free_growth():
    wa = geo.witness_analysis()
    assert [(w["K"], w["QN"]) for w in wa] == [(4, 2), (7, 4), (9, 3), (9, 5)]
    assert [w["ranks"] for w in wa] == [[2, 3, 4], [4, 7, 7], [3, 6, 9], [5, 9, 9]]
    for w in wa:
        assert w["ranks"] == w["full_rank"] and w["ranks"][-1] == w["K"]
        assert w["frac"] > 0.5 > 1e6 * w["tol"]           # (2.31) fails far above rounding
        assert min(w["gaps"]) > 1e-10 and w["jacobi"] < 1e-12
    np.testing.assert_allclose(wa[0]["frac"], 0.958, atol=1e-3)


def test_random_bracket_analysis_one_neuron_net():
    ra = geo.random_bracket_analysis(jax.random.PRNGKey(0), [[1, 1, 1, 2]], 2)
    assert [r["spec"] for r in ra] == [(1, 1, 1, 2)] * 2
    for r in ra:
        assert (r["K"], r["QN"], r["fractions"].shape) == (4, 2, (1,))
        assert r["ranks"] == r["full_rank"] == [2, 3, 4] and 0 < r["saturation"] <= 1
    np.testing.assert_allclose([r["frac"] for r in ra], [0.20235848, 0.99582295], rtol=1e-6)


def test_random_bracket_summary_counts_per_network():
    def inst(spec, fracs, ranks, K):
        return dict(spec=tuple(spec), K=K, fractions=np.array(fracs), frac=max(fracs), ranks=ranks,
                    full_rank=[2, 3, 4] if K == 4 else [3, 6, 9])
    nets = [[1, 1, 1, 2], [2, 2, 1, 3]]
    rand = [inst(nets[0], [0.5], [2, 3, 4], 4), inst(nets[0], [1e-7], [2, 3, 3], 4),
            inst(nets[1], [0.2, 0.4, 0.6], [3, 6, 9], 9), inst(nets[1], [0.1, 0.3, 0.9], [3, 5, 9], 9)]
    a, b = geo.random_bracket_summary(rand, nets, 1e-6)
    assert (a["spec"], a["n"], a["near"], a["short"], a["slow"], a["steps"]) == ((1, 1, 1, 2), 2, 1, 1, 1, [3, None])
    assert a["min_frac"] == 1e-7 and a["full_rank"] == [2, 3, 4]
    assert (b["n"], b["near"], b["short"], b["slow"], b["steps"]) == (2, 0, 0, 1, [3])
    assert b["median_fraction"] == pytest.approx(0.35) and b["min_frac"] == 0.6
    with pytest.raises(ValueError, match="no instance"):
        geo.random_bracket_summary(rand, [[3, 3, 1, 2]], 1e-6)


def test_near_integrable_analysis_saturated_unit():
    na = geo.near_integrable_analysis()
    assert na["widths"] == (1, 2, 1) and na["N"] == 4 and na["preactivations"].shape == (4, 2)
    assert na["frac"] < 1e-5 and na["kappa"] > 1e5
    assert na["saturation"][1] < 1e-7 < 0.1 < na["saturation"][0]
    assert na["frac_desat"] > 0.4                            # out of saturation: far from integrable
