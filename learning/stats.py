"""Confidence intervals for test accuracies and for differences between them.

On a test set of n examples one accuracy near p has a standard error of about
sqrt(p (1 - p) / n), so whether a gap between runs is resolvable depends on n.
Every accuracy and gap the main job reports carries an interval from here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


@dataclass(frozen=True)
class Interval:
    """A two-sided confidence interval."""

    low: float
    high: float
    confidence: float = 0.95
    method: str = ""

    def to_json(self) -> dict[str, float | str]:
        """Return the interval as a JSON-ready dict."""
        return {
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "method": self.method,
        }


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Return the Wilson score interval of a binomial proportion.

    Raises
    ------
    ValueError
        If n < 1 or successes is outside 0..n.
    """
    if n < 1 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n and n >= 1; got {successes} of {n}")
    ci = stats.binomtest(successes, n).proportion_ci(
        confidence_level=confidence, method="wilson"
    )
    return Interval(float(ci.low), float(ci.high), confidence, "wilson")


def paired_difference_interval(
    correct_a: np.ndarray, correct_b: np.ndarray, confidence: float = 0.95
) -> tuple[float, Interval]:
    """Return acc_a - acc_b and its normal interval for two classifiers on one test set.

    Both arrays hold 0/1 correctness per test example. Pairing accounts for
    the examples both get right or wrong, so the interval is narrower than
    the one for two independent test sets.
    """
    a = np.asarray(correct_a, dtype=float)
    b = np.asarray(correct_b, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or len(a) < 2:
        raise ValueError(
            f"need two 1-D correctness arrays of equal length >= 2; got {a.shape}, {b.shape}"
        )
    d = a - b
    diff = float(d.mean())
    se = float(d.std(ddof=1) / math.sqrt(len(d)))
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return diff, Interval(diff - z * se, diff + z * se, confidence, "paired normal")


def accuracy_half_width(p: float, n: int, confidence: float = 0.95) -> float:
    """Return the normal-approximation half-width of one accuracy p on n examples."""
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    return z * math.sqrt(max(p * (1 - p), 0.0) / n)
