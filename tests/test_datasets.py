"""The shipped digits (`adaptedflow.datasets`): file, shapes, ranges, reproducible draws, bad N."""

import importlib.resources
import zipfile

import jax
import numpy as np
import pytest

from adaptedflow import datasets


def test_shipped_file_is_package_data_and_unchanged():
    path = importlib.resources.files("adaptedflow").joinpath("data", "digits.npz")
    assert path.is_file()
    assert datasets.digits_checksum() == datasets.DIGITS_SHA256


def test_load_digits_shapes_dtypes_ranges():
    images, labels = datasets.load_digits()
    assert images.shape == (1797, 64) and images.dtype == np.float64
    assert labels.shape == (1797,) and np.issubdtype(labels.dtype, np.integer)
    assert images.min() == 0.0 and images.max() == 1.0
    assert np.array_equal(images * 16, np.round(images * 16))          # counts 0..16, exactly
    assert np.array_equal(np.unique(labels), np.arange(10))
    assert np.bincount(labels).min() == 174


def test_load_digits_returns_fresh_arrays():
    images, labels = datasets.load_digits()
    images[0, 0], labels[0] = 99.0, 99
    again, labels_again = datasets.load_digits()
    assert again[0, 0] != 99.0 and labels_again[0] != 99


def test_matches_scikit_learn():
    sk = pytest.importorskip("sklearn.datasets")
    d = sk.load_digits()
    images, labels = datasets.load_digits()
    assert np.array_equal(images * 16, d.data) and np.array_equal(labels, d.target)


@pytest.mark.parametrize("N", [1, 10, 37, 100, 1797])
def test_digits_problem_shapes_and_targets(N):
    X, omega, Y = datasets.digits_problem(jax.random.PRNGKey(3), N)
    assert X.shape == (N, 64) and X.dtype == np.float64
    assert omega.shape == (N,) and Y.shape == (N, 10) and Y.dtype == np.float64
    assert 0.0 <= float(X.min()) and float(X.max()) <= 1.0
    assert np.array_equal(np.asarray(Y), np.eye(10)[omega])             # one-hot y_ω(j) = e_ω(j)
    if N <= 1740:                                                         # balanced while no class ran out
        counts = np.bincount(omega, minlength=10)
        assert counts.max() - counts.min() <= 1


def test_digits_problem_rows_are_distinct_images_with_their_labels():
    images, labels = datasets.load_digits()
    order = datasets.digits_order(jax.random.PRNGKey(0))
    assert np.array_equal(np.sort(order), np.arange(1797))
    X, omega, _ = datasets.digits_problem(jax.random.PRNGKey(0), 100)
    assert np.array_equal(X, images[order[:100]]) and np.array_equal(omega, labels[order[:100]])


def test_digits_problem_is_reproducible_and_depends_on_key():
    a = datasets.digits_problem(jax.random.PRNGKey(7), 50)
    b = datasets.digits_problem(jax.random.PRNGKey(7), 50)
    c = datasets.digits_problem(jax.random.PRNGKey(8), 50)
    assert all(np.array_equal(np.asarray(u), np.asarray(v)) for u, v in zip(a, b, strict=True))
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize("N, match", [(0, "positive integer"), (-3, "positive integer"), (2.5, "positive integer"),
                                      (1798, "at most 1797")])
def test_digits_problem_bad_N(N, match):
    with pytest.raises(ValueError, match=match):
        datasets.digits_problem(jax.random.PRNGKey(0), N)


def test_wheel_layout_ships_the_data(tmp_path):
    """The file is found from an installed (wheel-like) layout: package data in pyproject."""
    import tomllib
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cfg = tomllib.loads((root / "pyproject.toml").read_text())
    patterns = cfg["tool"]["setuptools"]["package-data"]["adaptedflow"]
    assert "data/*.npz" in patterns
    # the same bytes read as a zipped package would hold them
    z = tmp_path / "pkg.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.write(root / "src" / "adaptedflow" / "data" / "digits.npz", "adaptedflow/data/digits.npz")
    with zipfile.ZipFile(z) as f:
        assert f.read("adaptedflow/data/digits.npz") == datasets._digits_bytes()
