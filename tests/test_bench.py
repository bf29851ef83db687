"""The benchmark's models and analyses (adaptedflow.book.bench); timings themselves are never asserted."""

import math

import jax
import numpy as np
import pytest

from adaptedflow.book.bench import (
    FIELD_PARTS,
    crossover_statement,
    direction_cost_model,
    direction_flops,
    direction_time_summary,
    field_throughput,
    integrator_step_cost,
    matrix_free_crossover,
)


def test_direction_flops_closed_form():
    # widths (2, 3, 2), N = 4: K = (2·3 + 3) + (3·2 + 2) = 17, QN = 8
    f = direction_flops((2, 3, 2), 4)
    assert (f["K"], f["QN"]) == (17, 8)
    assert f["cholesky"] == pytest.approx(8**3 / 3, rel=1e-15)
    assert f["gram_dense"] == 2 * 8**2 * 17
    assert f["dense"] == pytest.approx(8 * 4 * 4 * 17 + 2 * 8**2 * 17 + 8**3 / 3, rel=1e-15)
    # kernel: δδᵀ and hhᵀ of the hidden layer (2·QN²·3 + 2·N²·2), hhᵀ of the output layer (2·N²·3)
    assert f["kernel"] == 2 * 64 * 3 + 2 * 16 * 2 + 2 * 16 * 3
    # back-propagated errors QN·M_L (one hidden layer: no products between hidden layers), one VJP 4NK
    assert f["structured"] == pytest.approx(f["kernel"] + 8 * 3 + 8**3 / 3 + 4 * 4 * 17, rel=1e-15)
    assert f["gradient"] == 6 * 4 * 17


def test_direction_cost_model_ratios_and_memory():
    widths, N = (16, 256, 256, 10), 100
    f, m = direction_flops(widths, N), direction_cost_model(widths, N)
    assert {k: m[k] for k in f} == f
    assert m["gram_over_kernel"] == f["gram_dense"] / f["kernel"]
    assert m["cholesky_share"] == f["cholesky"] / f["structured"]
    assert m["dense_over_structured"] == f["dense"] / f["structured"]
    # QN = 1000, K = 72,714: D takes 8·QN·K bytes ≈ 555 MiB, the kernel 8·QN² ≈ 7.6 MiB
    assert (m["QN"], m["K"]) == (1000, 72714)
    assert m["jacobian_mb"] == pytest.approx(8 * 1000 * 72714 / 2**20, rel=1e-15)
    assert m["kernel_mb"] == pytest.approx(8e6 / 2**20, rel=1e-15)


def _rows(qn, t_structured, t_matrix_free):
    return [{"QN": q, "seconds": {"structured": s, "matrix-free": m}}
            for q, s, m in zip(qn, t_structured, t_matrix_free, strict=True)]


def test_matrix_free_crossover_extrapolates_the_power_laws():
    # structured ∝ QN², matrix-free ∝ QN: at QN = 100 they take 100 and 200, so they meet at QN = 200
    cr = matrix_free_crossover(_rows([10, 100], [1.0, 100.0], [20.0, 200.0]))
    assert cr.exponent_structured == pytest.approx(2.0, rel=1e-12)
    assert cr.exponent_matrix_free == pytest.approx(1.0, rel=1e-12)
    assert cr.first_faster is None
    assert cr.extrapolated == pytest.approx(200.0, rel=1e-12)
    assert cr.kernel_gib == pytest.approx(8 * 200.0**2 / 2**30, rel=1e-12)


def test_matrix_free_crossover_measured_or_not_in_sight():
    measured = matrix_free_crossover(_rows([10, 100, 1000], [1.0, 10.0, 100.0], [5.0, 8.0, 20.0]))
    assert measured.first_faster == 100 and measured.extrapolated is None and measured.kernel_gib is None
    parallel = matrix_free_crossover(_rows([10, 100], [1.0, 10.0], [2.0, 20.0]))
    assert parallel.first_faster is None and parallel.extrapolated is None
    assert parallel.exponent_structured == pytest.approx(parallel.exponent_matrix_free, rel=1e-12)
    with pytest.raises(ValueError, match="at least two sizes"):
        matrix_free_crossover(_rows([10], [1.0], [2.0]))


def test_crossover_statement_labels_an_extrapolation_and_hides_a_far_one():
    rows = _rows([10, 100], [1.0, 100.0], [20.0, 200.0])          # the power laws meet at QN = 200
    near = crossover_statement(matrix_free_crossover(rows), rows)
    assert "structured was faster at every size of the sweep (QN ≤ 100)" in near
    assert "Extrapolated, not measured" in near and "QN ≈ 2e+02" in near
    far_rows = _rows([10, 100], [1.0, 100.0], [100.0, 1000.0])    # they meet at QN = 1000 > 5 · 100
    far = crossover_statement(matrix_free_crossover(far_rows), far_rows, max_factor=5)
    assert "beyond 5 × the largest measured QN: not shown" in far and "≈" not in far
    measured_rows = _rows([10, 100, 1000], [1.0, 10.0, 100.0], [5.0, 8.0, 20.0])
    assert crossover_statement(matrix_free_crossover(measured_rows), measured_rows).startswith(
        "Measured: matrix-free was faster than structured at QN = 100")
    parallel = _rows([10, 100], [1.0, 10.0], [2.0, 20.0])
    assert "no larger than matrix-free's: no crossover in sight" in crossover_statement(
        matrix_free_crossover(parallel), parallel)
    assert all(len(line) < 100 for text in (near, far) for line in text.splitlines())
    with pytest.raises(ValueError, match="max_factor"):
        crossover_statement(matrix_free_crossover(rows), rows, max_factor=0.5)


def test_direction_time_summary_ratios_and_fastest():
    rows = [{"gradient": 1.0, "seconds": {"structured": 2.0, "dense": 4.0}},
            {"gradient": 2.0, "seconds": {"structured": 8.0, "dense": 6.0}}]
    summary = direction_time_summary(rows, ("structured", "dense"))
    assert summary == [("structured", 2.0, 4.0, 1), ("dense", 3.0, 4.0, 1)]
    with pytest.raises(ValueError, match="empty"):
        direction_time_summary([], ("structured",))


TINY = (3, 8, 8, 2)          # K = (3·8 + 8) + (8·8 + 8) + (8·2 + 2) = 122 ≥ QN = 2·4 = 8


def test_field_throughput_shapes_and_shares():
    r = field_throughput(TINY, 4, repeats=2, inner=3, seed=3)
    assert (r.K, r.QN, r.repeats, r.inner) == (122, 8, 2, 3)
    assert r.refinements >= 1
    assert math.isfinite(r.call_seconds) and r.call_seconds > 0
    assert set(r.part_seconds) == set(FIELD_PARTS)
    assert set(r.shares) == {*FIELD_PARTS, "other"}
    assert all(math.isfinite(v) and v > 0 for v in r.part_seconds.values())
    assert all(0 <= v <= 1 for v in r.shares.values())
    assert sum(r.shares.values()) == pytest.approx(1.0, rel=1e-12)
    assert r.evaluations_per_second * r.seconds_per_evaluation == pytest.approx(1.0, rel=1e-12)
    assert r.parts_over_whole == pytest.approx(sum(r.part_seconds.values()) / r.seconds_per_evaluation, rel=1e-12)
    # "other" is what the whole has beyond the separately timed parts, and no more
    parts = sum(r.part_seconds.values())
    total = max(parts, r.seconds_per_evaluation)
    assert r.shares["other"] == pytest.approx(max(r.seconds_per_evaluation - parts, 0.0) / total, abs=1e-15)


def test_field_throughput_takes_given_data_and_checks_it():
    X = jax.random.normal(jax.random.PRNGKey(0), (4, 3))
    Y = np.eye(2)[[0, 1, 0, 1]]
    assert field_throughput(TINY, 4, repeats=1, X=X, Y=Y).QN == 8
    with pytest.raises(ValueError, match="`X` and `Y` go together"):
        field_throughput(TINY, 4, repeats=1, X=X)
    with pytest.raises(ValueError, match=r"`X` must have shape \(N, M\) = \(5, 3\)"):
        field_throughput(TINY, 5, repeats=1, X=X, Y=Y)
    with pytest.raises(ValueError, match="needs K ≥ QN"):
        field_throughput((3, 2, 4), 10, repeats=1)
    with pytest.raises(ValueError, match="inner"):
        field_throughput(TINY, 4, inner=0)


def test_integrator_step_cost_counts_steps_and_evaluations():
    r = integrator_step_cost(TINY, 4, s1=1.0, rtol=1e-8, atol=1e-10, repeats=2, evaluations=2, seed=1)
    assert (r.K, r.QN, r.repeats, r.s1) == (122, 8, 2, 1.0)
    assert r.n_steps > r.n_steps_short >= 1
    assert all(math.isfinite(v) and v > 0 for v in (r.seconds_per_evaluation, r.orbit_seconds, r.short_seconds))
    assert math.isfinite(r.seconds_per_step) and math.isfinite(r.ratio)
    # two repeats: each median is a mean, so the marginal step is the difference of the medians
    assert r.seconds_per_step == pytest.approx((r.orbit_seconds - r.short_seconds) / (r.n_steps - r.n_steps_short),
                                               rel=1e-9)
    with pytest.raises(ValueError, match="`s1` must be a positive finite time"):
        integrator_step_cost(TINY, 4, s1=0.0)
    with pytest.raises(ValueError, match="too short"):
        integrator_step_cost(TINY, 4, s1=1e-6, rtol=1e-8, atol=1e-10)


def _lm_step_rel_diff(widths, N, damping):
    """|p/N − u|/|u| for the Levenberg–Marquardt step p = −(JᵀJ + λ1)⁻¹Jᵀr on r = (x − y)/√N, J = D/√N,
    against u = −D⁺∇ₓC from the dense SVD pseudo-inverse (as the bench's peers see it)."""
    import adaptedflow as af

    X, _, Y = af.gaussian_clusters(jax.random.PRNGKey(0), N, widths[0], widths[-1])
    net = af.mlp(widths)
    theta = af.init_params(jax.random.PRNGKey(1), widths)
    x, D = af.outputs_and_jacobian(net, theta, X)
    D, r = np.asarray(D), np.asarray(x - Y.reshape(-1))
    u = -np.linalg.pinv(D) @ (r / N)                  # ∇ₓC = (x − y)/N
    J, rs = D / np.sqrt(N), r / np.sqrt(N)
    p = -np.linalg.solve(J.T @ J + damping * np.eye(J.shape[1]), J.T @ rs)
    return np.linalg.norm(p / N - u) / np.linalg.norm(u)


def test_optimistix_lm_row_reads_its_damped_first_step():
    from adaptedflow.book.bench import _measure

    row = _measure("optimistix-lm", TINY, 4, 1)
    assert (row["K"], row["QN"]) == (122, 8) and row["seconds"] > 0
    # its first step is damped with λ = 1 (the trust region's first step size): not −D⁺r
    expected = _lm_step_rel_diff(TINY, 4, 1.0)
    assert expected > 1e-3
    assert row["rel_diff"] == pytest.approx(expected, rel=1e-6)
    lsmr = _measure("optimistix-lm-lsmr", TINY, 4, 1)
    assert lsmr["rel_diff"] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("method, tol", [("nlls-gram", 1e-10), ("nlls-gram-cg", 1e-8)])
def test_nlls_gram_rows_give_the_adapted_direction(method, tol):
    pytest.importorskip("nlls_gram")
    from adaptedflow.book.bench import _measure

    row = _measure(method, TINY, 4, 1)
    assert (row["K"], row["QN"]) == (122, 8) and row["seconds"] > 0
    assert row["rel_diff"] <= tol                     # the undamped Gram-space step is N·(−D⁺∇ₓC)


def test_peers_that_form_big_matrices_are_skipped(monkeypatch):
    from adaptedflow.book import bench

    monkeypatch.setattr(bench, "SKIP_DENSE_ABOVE", 100)      # QN·K = 976 and (QN + K)·K = 15,860 entries
    assert "damped stack [D; √λ·1] would have" in bench._measure("optimistix-lm", TINY, 4, 1)["skipped"]
    assert "D would have" in bench._measure("nlls-gram", TINY, 4, 1)["skipped"]      # its Cholesky forms D


def test_bench_refuses_an_unknown_size():
    from adaptedflow.book.bench import main

    with pytest.raises(SystemExit):
        main(["--size", "QN=7"])
