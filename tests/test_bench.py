"""The benchmark's models and analyses (adaptedflow.book.bench); timings themselves are never asserted."""

import pytest

from adaptedflow.book.bench import (
    crossover_statement,
    direction_cost_model,
    direction_flops,
    direction_time_summary,
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
