"""Intervals for accuracies and their differences."""

from __future__ import annotations

import numpy as np
import pytest

from learning.stats import (
    accuracy_half_width,
    paired_difference_interval,
    wilson_interval,
)


def test_wilson_half_of_hundred() -> None:
    interval = wilson_interval(50, 100)
    assert interval.low == pytest.approx(0.4038, abs=1e-4)
    assert interval.high == pytest.approx(0.5962, abs=1e-4)


def test_wilson_all_correct_stays_below_one() -> None:
    interval = wilson_interval(10, 10)
    assert interval.high == pytest.approx(1.0)
    assert interval.low < 1.0


def test_wilson_rejects_impossible_counts() -> None:
    with pytest.raises(ValueError, match="11 of 10"):
        wilson_interval(11, 10)


def test_standard_error_at_thousand_examples() -> None:
    # One accuracy near 0.62 on 1000 examples has a standard error of 1.5 points.
    se = accuracy_half_width(0.62, 1000) / 1.959964
    assert se == pytest.approx(0.01535, abs=5e-5)


def test_ten_thousand_examples_resolve_one_point() -> None:
    assert accuracy_half_width(0.5, 10000) < 0.01


def test_paired_difference_identical_is_zero() -> None:
    correct = np.array([1, 0, 1, 1, 0, 1])
    diff, interval = paired_difference_interval(correct, correct)
    assert diff == 0
    assert interval.low == interval.high == 0


def test_paired_difference_sign_and_width() -> None:
    rng = np.random.default_rng(0)
    a = (rng.random(2000) < 0.8).astype(int)
    b = a.copy()
    flip = rng.choice(2000, 100, replace=False)
    b[flip] = 0
    diff, interval = paired_difference_interval(a, b)
    assert diff == pytest.approx((a.sum() - b.sum()) / 2000)
    assert interval.low < diff < interval.high
    assert interval.low > 0


def test_paired_difference_rejects_mismatch() -> None:
    with pytest.raises(ValueError, match="equal length"):
        paired_difference_interval(np.ones(3), np.ones(4))
