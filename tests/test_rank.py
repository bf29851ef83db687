"""Tests for adaptedflow.paper.rank: numerical rank with gap, sphere sampling, column statistics."""

import jax
import numpy as np
import pytest

import adaptedflow as af
from adaptedflow.numerics import default_rank_rtol
from adaptedflow.paper.rank import (
    MEASURES,
    adapted_orbit_outcomes,
    column_overlaps,
    column_statistics,
    ks_two_sample,
    moment_curve,
    normalized_columns,
    output_bias_columns,
    rank_report,
    rank_table,
    rank_table_rows,
    rank_trials,
    real_jacobian_conditioning,
    sample_sphere,
    structural_orthogonal_pairs,
)


@pytest.mark.parametrize("shape,rank", [((5, 9), 5), ((5, 9), 3), ((8, 4), 2), ((6, 6), 6)])
def test_rank_report_finds_rank_and_structural_gap(rng, shape, rank):
    D = rng.normal(size=(shape[0], rank)) @ rng.normal(size=(rank, shape[1]))
    rep = rank_report(D)
    assert rep.rank == rank
    assert rep.full == (rank == min(shape))
    if rank < min(shape):
        assert rep.gap > 1e10          # the lost directions are at rounding level
    else:
        assert rep.gap == np.inf
    np.testing.assert_allclose(rep.singular_values, np.linalg.svd(D, compute_uv=False))
    assert np.isclose(rep.tol, rep.singular_values[0] * default_rank_rtol(shape))


def test_rank_report_uses_D_not_gram():
    # σ_min/σ_max = 1e-10: full rank from D's SVD; D Dᵀ would have 1e-20, below eps
    D = np.diag([1.0, 1e-10])
    assert rank_report(D).rank == 2
    assert rank_report(D).gap == np.inf
    assert np.linalg.matrix_rank(D @ D.T) == 1      # the hazard


def test_rank_report_errors(rng):
    with pytest.raises(TypeError, match="float64"):
        rank_report(rng.normal(size=(3, 4)).astype(np.float32))
    with pytest.raises(ValueError, match="2-D"):
        rank_report(np.ones(3))
    with pytest.raises(ValueError, match="rtol"):
        rank_report(np.eye(3), rtol=0.0)


@pytest.mark.parametrize("measure", sorted(MEASURES))
def test_sample_sphere_unit_vectors_and_shapes(measure):
    E = sample_sphere(jax.random.PRNGKey(0), 7, 6, measure, batch=(3,))
    assert E.shape == (3, 7, 6)
    np.testing.assert_allclose(np.linalg.norm(E, axis=-1), 1.0, rtol=1e-14)
    E2 = sample_sphere(jax.random.PRNGKey(0), 7, 6, measure, batch=(3,))
    np.testing.assert_array_equal(E, E2)     # deterministic in the key


def test_sample_sphere_errors():
    with pytest.raises(ValueError, match="measure"):
        sample_sphere(jax.random.PRNGKey(0), 3, 4, "gaussian")
    with pytest.raises(ValueError, match="dim"):
        sample_sphere(jax.random.PRNGKey(0), 3, 1)
    with pytest.raises(ValueError, match="cap_radius"):
        sample_sphere(jax.random.PRNGKey(0), 3, 4, "cap", cap_radius=0.0)


def test_subsphere_lies_in_a_hyperplane():
    E = sample_sphere(jax.random.PRNGKey(1), 12, 5, "subsphere")
    assert rank_report(E.T).rank == 4


def test_cap_stays_in_cap():
    E = sample_sphere(jax.random.PRNGKey(2), 50, 5, "cap", cap_radius=0.01)
    c = E.mean(axis=0)
    c /= np.linalg.norm(c)
    assert np.all(E @ c > np.cos(0.03))


@pytest.mark.parametrize("dim", [4, 5])
def test_moment_curve_points_are_independent(dim):
    t = np.linspace(0.1, 6.0, dim)
    V = moment_curve(t, dim)
    assert V.shape == (dim, dim)
    assert rank_report(V).full


def test_rank_trials_frequencies():
    full = rank_trials(jax.random.PRNGKey(0), 20, 6, 8, "uniform")
    assert full["full"].all() and np.all(full["gap"] == np.inf)
    sub = rank_trials(jax.random.PRNGKey(0), 20, 6, 8, "subsphere")
    assert not sub["full"].any() and np.all(sub["rank"] == 5) and np.all(sub["gap"] > 1e10)


def test_normalized_columns_and_overlaps(rng):
    D = rng.normal(size=(4, 3))
    D[:, 1] = 0.0
    E, norms = normalized_columns(D)
    assert norms[1] == 0 and np.all(E[:, 1] == 0)
    np.testing.assert_allclose(np.linalg.norm(E[:, [0, 2]], axis=0), 1.0)
    ov = column_overlaps(E)
    assert ov.shape == (3,)
    assert np.isclose(ov[1], abs(E[:, 0] @ E[:, 2]))


def test_output_bias_columns_and_orthogonal_pairs_match_a_real_jacobian():
    widths, N = (2, 3, 2), 4
    X = jax.random.normal(jax.random.PRNGKey(0), (N, 2))
    D = af.jacobian(af.mlp(widths), af.init_params(jax.random.PRNGKey(1), widths), X)
    E, _ = normalized_columns(D)
    idx, Eb = output_bias_columns(widths, N)
    np.testing.assert_allclose(E[:, idx], Eb, atol=1e-15)
    assert np.sum(column_overlaps(E) == 0.0) >= structural_orthogonal_pairs(widths) == 16


def test_ks_two_sample():
    a = np.linspace(0, 1, 200)
    stat, crit = ks_two_sample(a, a)
    assert stat == 0.0 and 0 < crit < 0.3
    stat, _ = ks_two_sample(a, a + 2)
    assert stat == 1.0
    with pytest.raises(ValueError, match="alpha"):
        ks_two_sample(a, a, alpha=1.5)


def test_init_params_batch_has_the_law_of_init_params():
    from adaptedflow.paper.rank import init_params_batch

    widths = (3, 4, 2)
    th = np.asarray(init_params_batch(jax.random.PRNGKey(0), widths, 4000))
    assert th.shape == (4000, af.num_params(widths))
    ref = np.stack([np.asarray(af.init_params(jax.random.PRNGKey(i), widths)) for i in range(4)])
    assert ref.shape[1] == th.shape[1]
    sd = th.std(axis=0)
    np.testing.assert_allclose(sd[:12], 1 / np.sqrt(3), rtol=0.1)     # W_1 ~ N(0, 1/M)
    np.testing.assert_allclose(sd[12:16], np.sqrt(0.1), rtol=0.1)     # b_1 ~ N(0, 0.1)
    np.testing.assert_allclose(sd[16:24], 1 / np.sqrt(4), rtol=0.1)   # W_2 ~ N(0, 1/M_1)
    with pytest.raises(ValueError, match="`n`"):
        init_params_batch(jax.random.PRNGKey(0), widths, 0)


def test_rank_certificates_counts_certified_and_structural():
    from adaptedflow.paper.rank import rank_certificates
    key = jax.random.PRNGKey(0)
    uni = rank_trials(key, 50, 6, 6, "uniform")
    sub = rank_trials(jax.random.fold_in(key, 1), 50, 6, 8, "subsphere")
    c = rank_certificates([(uni, 6, 6)])
    assert c.n == 50 and c.certified + c.uncertified == 50
    assert c.rank_deficient == 0 and c.structural == 0 and c.max_gap == 0.0
    s = rank_certificates([(sub, 6, 8)])
    assert s.certified == 0 and s.rank_deficient == 50 and s.structural == 50
    both = rank_certificates([(uni, 6, 6), (sub, 6, 8)])
    assert both.n == 100 and both.structural == 50
    with pytest.raises(ValueError, match="factor"):
        rank_certificates([(uni, 6, 6)], factor=1.0)
    with pytest.raises(ValueError, match="trials"):
        rank_certificates([])


def test_max_relative_sigma_min_separates_lost_from_kept():
    from adaptedflow.paper.rank import max_relative_sigma_min
    key = jax.random.PRNGKey(2)
    assert max_relative_sigma_min([(rank_trials(key, 20, 6, 9, "subsphere"), 6, 9)]) < 1.0
    assert max_relative_sigma_min([(rank_trials(key, 20, 6, 9, "uniform"), 6, 9)]) > 1.0


@pytest.mark.parametrize("widths", [(3, 4, 2), (2, 3, 3, 3), (3, 5, 1)])
def test_structural_orthogonal_pair_indices_are_orthogonal(rng, widths):
    from adaptedflow.paper.rank import structural_orthogonal_pair_indices
    I, J = structural_orthogonal_pair_indices(widths)
    assert I.size == structural_orthogonal_pairs(widths)
    assert np.all(I < J)
    X = rng.normal(size=(4, widths[0]))
    D = np.asarray(af.jacobian(af.mlp(widths), af.init_params(jax.random.PRNGKey(3), widths), X))
    E, _ = normalized_columns(D)
    if I.size:
        assert np.max(np.abs(np.sum(E[:, I] * E[:, J], axis=0))) == 0.0


def test_fraction_below_quantile():
    from adaptedflow.paper.rank import fraction_below_quantile
    ref = np.arange(1.0, 101.0)
    assert fraction_below_quantile(np.array([0.5, 3.0, 50.0]), ref, 0.05) == (2, 3)
    with pytest.raises(ValueError, match="q"):
        fraction_below_quantile(ref, ref, 1.5)


def test_rank_table_keys_and_outcomes():
    key = jax.random.PRNGKey(0)
    tab = rank_table(key, [("uniform", None), ("subsphere", None)], [4, 5], 3, 4)
    assert set(tab) == {("uniform", None, 4), ("uniform", None, 5), ("subsphere", None, 4), ("subsphere", None, 5)}
    for K in (4, 5):
        assert tab["uniform", None, K]["full"].all()          # absolutely continuous: rank QN
        assert not tab["subsphere", None, K]["full"].any()    # charges a hyperplane: rank < QN
        assert np.all(tab["subsphere", None, K]["gap"] > 1e10)
    # case c and K use fold_in(key, 1000 c + K)
    again = rank_trials(jax.random.fold_in(key, 1000 + 5), 3, 4, 5, "subsphere")
    np.testing.assert_array_equal(again["ratio"], tab["subsphere", None, 5]["ratio"])


def test_rank_table_rows_one_row_per_case_and_K():
    key = jax.random.PRNGKey(0)
    cases, Ks = [("uniform", None), ("subsphere", None), ("cap", 1e-17)], [4, 5]
    tab = rank_table(key, cases, Ks, 3, 4)
    rows = rank_table_rows(tab, cases, Ks)
    assert [(r[0], r[1]) for r in rows] == [("uniform", 4), ("uniform", 5), ("subsphere", 4), ("subsphere", 5),
                                            ("cap ρ=1e-17", 4), ("cap ρ=1e-17", 5)]
    for label, K, full, ratio, gap in rows:
        t = tab[{"uniform": "uniform", "subsphere": "subsphere"}.get(label, "cap"),
                None if label != "cap ρ=1e-17" else 1e-17, K]
        assert full == t["full"].mean() and ratio == np.median(t["ratio"])
        if label == "uniform":
            assert full == 1.0 and np.isnan(gap)            # no rank-deficient trial: no gap
        else:
            assert full == 0.0 and gap == np.median(t["gap"]) and gap > 1e10


def test_real_jacobian_conditioning_small_mlp():
    real = real_jacobian_conditioning(jax.random.PRNGKey(0), [(2, 3, 1)], 4, 3)
    r = real[(2, 3, 1)]
    assert r["K"] == 13 and r["full"].shape == (4,) and r["full"].all()
    assert np.all((r["lam"] > 1e-5) & (r["lam"] < 1.0))
    np.testing.assert_allclose(r["lam"], [0.00988647, 0.03459562, 0.00092719, 0.0217118], rtol=1e-5)


def test_column_statistics_structural_pairs_exactly_orthogonal():
    cs = column_statistics(jax.random.PRNGKey(0), (2, 3, 2), 3)
    assert cs.overlaps.shape == (17 * 16 // 2,) == cs.overlaps_iid.shape
    assert cs.n_structural == structural_orthogonal_pairs((2, 3, 2)) == 16
    assert cs.n_zero == 16                       # exactly the structural pairs
    assert cs.structural_overlap == 0.0 and cs.bias_deviation == 0.0
    assert 0.0 < cs.ks <= 1.0 and cs.ks_critical > 0


def test_adapted_orbit_outcomes_keep_rank_when_wide():
    outs = adapted_orbit_outcomes(jax.random.PRNGKey(0), (2, 6, 1), 2, 3, 1e-2, 1e-6)
    assert outs == ["s1", "s1"]                  # K = 25 ≫ QN = 3: rank QN kept up to s_*(ε)
