import numpy as np
import pytest

import adaptedflow as af


def test_closed_forms_1_13_1_14(rng):
    Y = rng.normal(size=(5, 2))
    x0 = rng.normal(size=10)
    s = np.linspace(0, 30, 7)
    xs = af.comparison_outputs(x0, Y, s)
    C0 = af.cost(x0, Y)
    np.testing.assert_allclose([af.cost(x, Y) for x in xs], af.comparison_cost(C0, s, 5), rtol=1e-13)
    np.testing.assert_allclose(xs[0], x0)


def test_stopping_time_2_18_and_2_21():
    N, C0 = 8, 2.0
    s = af.stopping_time(C0, 2e-6, N)
    np.testing.assert_allclose(s, 4 * np.log(1e6), rtol=1e-15)
    np.testing.assert_allclose(af.comparison_cost(C0, s, N), 2e-6, rtol=1e-13)
    assert af.stopping_time(C0, 3.0, N) == 0.0                    # ε ≥ C(0): (2.21)
    with pytest.raises(ValueError, match="eps"):
        af.stopping_time(C0, 0.0, N)
    with pytest.raises(ValueError, match="C0"):
        af.stopping_time(0.0, 1e-3, N)
