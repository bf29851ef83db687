r"""Real data shipped with the package: the 8×8 handwritten digits, offline.

`load_digits` reads `adaptedflow/data/digits.npz` (1,797 images, 10 classes), a copy of
scikit-learn's `load_digits` data, itself the test set of the UCI ML "Optical Recognition
of Handwritten Digits" data set (Alpaydin & Kaynak, 1998); see `adaptedflow/data/README.md`
for source and licence (scikit-learn: BSD 3-Clause; UCI: CC BY 4.0).  The file is package
data, read through `importlib.resources`, so an installed wheel needs neither scikit-learn
nor a network.

`digits_problem` draws a supervised problem of §1.1 from it: `N` inputs in R^64 (M = 64),
Q = 10 classes, and targets y_{ω(j)} = e_{ω(j)} (the default one-hot labels
`problem.one_hot_labels`), in the `(X, omega, Y)` form of `problem.gaussian_clusters`.
"""

from __future__ import annotations

import hashlib
import io
from importlib import resources

import jax
import numpy as np

from .problem import one_hot_labels, stacked_targets
from .validation import positive_int

#: Number of images, pixels per image (M) and classes (Q) of the digits data.
DIGITS_SIZE, DIGITS_PIXELS, DIGITS_CLASSES = 1797, 64, 10
#: The largest pixel count (pixels are integers 0..16); `load_digits` divides by it.
DIGITS_MAX_PIXEL = 16
#: SHA-256 of the shipped `adaptedflow/data/digits.npz`.
DIGITS_SHA256 = "af104d81e7cd419be5f343d23c6ca2e4e4ff847b06636260802df8e903c6183f"


def _digits_bytes() -> bytes:
    return resources.files("adaptedflow").joinpath("data", "digits.npz").read_bytes()


def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """The shipped arrays, read afresh (45 kB): images (1797, 64) uint8 in 0..16, labels (1797,) uint8 in 0..9."""
    with np.load(io.BytesIO(_digits_bytes())) as z:
        return z["images"], z["labels"]


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    r"""The 1,797 handwritten digits, pixels scaled to [0, 1].

    Returns:
        `(images, labels)`: images of shape `(1797, 64)`, float64, each row one 8×8 image
        (row-major) with pixel counts 0..16 divided by 16; labels of shape `(1797,)`,
        integers 0..9, the digit shown.  Fresh arrays on every call.

    References:
        E. Alpaydin, C. Kaynak, Optical Recognition of Handwritten Digits, UCI Machine
        Learning Repository (1998), via scikit-learn's `load_digits`.
    """
    images, labels = _digits_raw()
    return images.astype(np.float64) / DIGITS_MAX_PIXEL, labels.astype(np.int64)


def digits_order(key) -> np.ndarray:
    r"""A seeded order of the 1,797 digits that cycles through the classes.

    Each class is shuffled by `key`; the order then takes the first image of every class
    (in class order 0..9), then the second of every class, and so on, so that its first
    `N` entries hold ⌊N/10⌋ or ⌈N/10⌉ images of each class (until a class runs out,
    at N > 10·174: the smallest class has 174 images).

    Args:
        key: a `jax.random` key.

    Returns:
        Indices into `load_digits()`'s rows, shape `(1797,)`, a permutation.
    """
    labels = _digits_raw()[1]
    u = np.asarray(jax.random.uniform(key, (DIGITS_SIZE,)))
    rank = np.empty(DIGITS_SIZE, dtype=np.int64)
    for c in range(DIGITS_CLASSES):
        idx = np.flatnonzero(labels == c)
        rank[idx[np.argsort(u[idx], kind="stable")]] = np.arange(idx.size)
    return np.lexsort((labels, rank))                 # by rank within the class, then by class


def digits_problem(key, N: int):
    r"""A supervised problem of §1.1 from the digits: `N` images, one-hot targets.

    The inputs are `N` images of `load_digits`, chosen by `digits_order(key)` (classes
    balanced to within one image); input j has label ω(j) ∈ 0..9 and target
    y_{ω(j)} = e_{ω(j)} ∈ R^10 (one-hot, the default labels of §1.1; not centred), so
    Q = 10 and QN = 10·N.

    Args:
        key: a `jax.random` key; the same key gives the same problem.
        N: number of inputs, 1 ≤ N ≤ 1797.

    Returns:
        `(X, omega, Y)`: inputs of shape `(N, 64)` (float64 in [0, 1]), labels of shape
        `(N,)` in `0..9`, targets `Y = one_hot_labels(10)[omega]` of shape `(N, 10)`.

    Raises:
        ValueError: `N` not an integer, `N` < 1 or `N` > 1797.
    """
    N = positive_int(N, "N")
    if N > DIGITS_SIZE:
        raise ValueError(f"`N` must be at most {DIGITS_SIZE} (the number of digit images); got N = {N}.")
    images, labels = load_digits()
    rows = digits_order(key)[:N]
    omega = labels[rows]
    return images[rows], omega, stacked_targets(omega, one_hot_labels(DIGITS_CLASSES))


def digits_checksum() -> str:
    """SHA-256 of the shipped digits file (compare with `DIGITS_SHA256`)."""
    return hashlib.sha256(_digits_bytes()).hexdigest()
