import jax
import jax.numpy as jnp
import numpy as np
import pytest

import adaptedflow as af
from adaptedflow import geometry as geo

EPS = float(np.finfo(np.float64).eps)
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
    for (a, b), v in zip(pairs, np.asarray(br)):
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
