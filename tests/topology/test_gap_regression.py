"""Tests of the regression of the generalization gap on total persistence."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topology import generalization
from topology.generalization import LinearFit, fit_gap


def noisy_line(n: int = 20, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.0, 10.0, n)
    y = 0.3 * x + rng.normal(0.0, 1.0, n)
    return x, y


def test_fit_gap_exact_line() -> None:
    x = np.array([0.0, 1.0, 2.0, 3.0, 5.0])
    fit = fit_gap(x, 2.0 * x + 1.0, n_bootstrap=200)
    assert fit.r2 == pytest.approx(1.0)
    assert fit.slope == pytest.approx(2.0)
    assert fit.intercept == pytest.approx(1.0)
    assert fit.pearson_r == pytest.approx(1.0)
    assert fit.reason is None


def test_fit_gap_exact_line_interval() -> None:
    x = np.array([0.0, 1.0, 2.0, 3.0, 5.0])
    fit = fit_gap(x, 2.0 * x + 1.0, n_bootstrap=200)
    assert fit.r2_ci_low == pytest.approx(1.0)
    assert fit.r2_ci_high == pytest.approx(1.0)


def test_fit_gap_decreasing_line() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0])
    fit = fit_gap(x, -x, n_bootstrap=0)
    assert fit.pearson_r == pytest.approx(-1.0)
    assert fit.r2 == pytest.approx(1.0)


def test_fit_gap_constant_x() -> None:
    fit = fit_gap([2.0, 2.0, 2.0, 2.0], [0.1, 0.2, 0.3, 0.5])
    assert fit.r2 is None
    assert fit.reason is not None
    assert fit.reason.startswith("total persistence is constant across runs")
    assert fit.slope is None
    assert fit.r2_ci_low is None


def test_fit_gap_constant_y() -> None:
    fit = fit_gap([1.0, 2.0, 3.0], [0.4, 0.4, 0.4])
    assert fit.r2 is None
    assert fit.reason == "generalization gap is constant across runs"
    assert fit.slope == 0.0
    assert fit.intercept == 0.4


@pytest.mark.parametrize("n", [0, 1, 2])
def test_fit_gap_too_few_points(n: int) -> None:
    fit = fit_gap(np.arange(n, dtype=float), np.arange(n, dtype=float))
    assert fit.r2 is None
    assert fit.reason is not None
    assert f"n={n}" in fit.reason
    assert fit.n == n


def test_fit_gap_rejects_nan_x() -> None:
    with pytest.raises(ValueError, match=r"x\[2\] is nan"):
        fit_gap([1.0, 2.0, math.nan, 4.0], [1.0, 2.0, 3.0, 4.0])


def test_fit_gap_rejects_inf_y() -> None:
    with pytest.raises(ValueError, match=r"y\[0\] is inf"):
        fit_gap([1.0, 2.0, 3.0], [math.inf, 2.0, 3.0])


def test_fit_gap_rejects_length_mismatch() -> None:
    with pytest.raises(ValueError, match="x has 3 values but y has 2"):
        fit_gap([1.0, 2.0, 3.0], [1.0, 2.0])


def test_fit_gap_rejects_2d() -> None:
    with pytest.raises(ValueError, match="x must be one-dimensional"):
        fit_gap(np.zeros((2, 2)), np.zeros(4))


def test_fit_gap_rejects_negative_bootstrap() -> None:
    with pytest.raises(ValueError, match="n_bootstrap must be >= 0, got -1"):
        fit_gap([1.0, 2.0, 3.0], [1.0, 2.0, 4.0], n_bootstrap=-1)


def test_fit_gap_matches_numpy_r2() -> None:
    x, y = noisy_line()
    fit = fit_gap(x, y, n_bootstrap=0)
    assert fit.r2 == pytest.approx(np.corrcoef(x, y)[0, 1] ** 2)


def test_fit_gap_bootstrap_reproducible() -> None:
    x, y = noisy_line()
    first = fit_gap(x, y, n_bootstrap=300, seed=5)
    second = fit_gap(x, y, n_bootstrap=300, seed=5)
    assert first.r2_ci_low == second.r2_ci_low
    assert first.r2_ci_high == second.r2_ci_high


def test_fit_gap_bootstrap_seed_matters() -> None:
    x, y = noisy_line()
    first = fit_gap(x, y, n_bootstrap=300, seed=5)
    second = fit_gap(x, y, n_bootstrap=300, seed=6)
    assert (first.r2_ci_low, first.r2_ci_high) != (second.r2_ci_low, second.r2_ci_high)


def test_fit_gap_interval_ordered() -> None:
    x, y = noisy_line()
    fit = fit_gap(x, y, n_bootstrap=300)
    assert fit.r2_ci_low is not None
    assert fit.r2_ci_high is not None
    assert 0.0 <= fit.r2_ci_low <= fit.r2_ci_high <= 1.0


def test_fit_gap_skips_constant_resamples() -> None:
    # With four points at x = 0 and one at x = 1, many resamples have constant x.
    x = np.array([0.0, 0.0, 0.0, 0.0, 1.0])
    y = np.array([0.1, 0.5, 0.2, 0.4, 0.9])
    fit = fit_gap(x, y, n_bootstrap=500)
    assert 0 < fit.n_bootstrap < 500


def test_bootstrap_r2_skips_rounding_residue() -> None:
    # The mean of three 0.1 is not exactly 0.1, so centring leaves a variance of
    # about 6e-34. A resample of constant x must still be skipped.
    x = np.array([0.1, 0.1, 0.1])
    y = np.array([0.0, 1.0, 3.0])
    assert len(generalization._bootstrap_r2(x, y, 50, seed=0)) == 0


def test_fit_gap_no_bootstrap() -> None:
    x, y = noisy_line()
    fit = fit_gap(x, y, n_bootstrap=0)
    assert fit.r2_ci_low is None
    assert fit.r2_ci_high is None
    assert fit.n_bootstrap == 0


def test_fit_gap_to_json() -> None:
    x, y = noisy_line()
    fit = fit_gap(x, y, n_bootstrap=50)
    restored = json.loads(json.dumps(fit.to_json()))
    assert LinearFit(**restored) == fit


def test_fit_gap_to_json_none_fields() -> None:
    data = fit_gap([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]).to_json()
    assert data["r2"] is None
    assert data["reason"].startswith("total persistence is constant across runs")


values = st.floats(-1e3, 1e3, allow_nan=False)


@settings(deadline=None, max_examples=60)
@given(st.lists(st.tuples(values, values), min_size=3, max_size=15))
def test_fit_gap_r2_in_unit_interval(points: list[tuple[float, float]]) -> None:
    x = np.array([p[0] for p in points])
    y = np.array([p[1] for p in points])
    fit = fit_gap(x, y, n_bootstrap=100)
    if fit.r2 is None:
        assert fit.reason is not None
        return
    assert 0.0 <= fit.r2 <= 1.0
    if fit.r2_ci_low is not None and fit.r2_ci_high is not None:
        assert 0.0 <= fit.r2_ci_low <= fit.r2_ci_high <= 1.0
