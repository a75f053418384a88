"""Linear regression of the generalization gap on a topological summary.

Each training run contributes one point: x is the total persistence of its loss
landscape and y its generalization gap. The fit reports R² with a bootstrap
percentile interval, and gives the reason when R² cannot be computed.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass

import numpy as np
import numpy.typing as npt
from scipy import stats

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

# The interval runs from the 2.5th to the 97.5th percentile of the bootstrap R².
_CI_PERCENTILES = (2.5, 97.5)

# Minimum number of points for a meaningful R² and p-value, because two points
# always lie on a line.
_MIN_POINTS = 3


@dataclass(frozen=True)
class LinearFit:
    """Ordinary least-squares fit of the generalization gap on total persistence.

    Attributes
    ----------
    slope, intercept : float or None
        Coefficients of ``gap = slope * persistence + intercept``. None when the
        line is undefined: fewer than 3 points, or constant persistence.
    r2 : float or None
        Coefficient of determination, the squared Pearson correlation, in
        [0, 1]. None when it is undefined, with the cause in ``reason``.
    pearson_r : float or None
        Pearson correlation coefficient. None whenever ``r2`` is None.
    p_value : float or None
        Two-sided p-value of ``scipy.stats.linregress`` for a zero slope. None
        whenever ``r2`` is None.
    n : int
        Number of points, one per training run.
    r2_ci_low, r2_ci_high : float or None
        2.5th and 97.5th percentiles of R² over the bootstrap resamples. None when
        ``r2`` is None or no resample was usable.
    n_bootstrap : int
        Number of resamples behind the interval. Resamples whose x or y is
        constant have no R² and are skipped, so this can be smaller than the
        number requested.
    reason : str or None
        Why ``r2`` is None, for example "total persistence is constant across
        runs". None when ``r2`` is a number.
    """

    slope: float | None
    intercept: float | None
    r2: float | None
    pearson_r: float | None
    p_value: float | None
    n: int
    r2_ci_low: float | None
    r2_ci_high: float | None
    n_bootstrap: int
    reason: str | None

    def to_json(self) -> dict[str, float | int | str | None]:
        """Convert the fit to a JSON-compatible dict keyed by field name."""
        return asdict(self)


def _as_finite_vector(values: npt.ArrayLike, name: str) -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be one-dimensional, one value per run, got shape "
            f"{array.shape}"
        )
    nonfinite = np.flatnonzero(~np.isfinite(array))
    if len(nonfinite) > 0:
        index = int(nonfinite[0])
        raise ValueError(
            f"{name}[{index}] is {array[index]}, but every value must be finite "
            f"({len(nonfinite)} non-finite in total); drop the run or fix its "
            "measurement"
        )
    return array


def _undefined_fit(n: int, reason: str) -> LinearFit:
    logger.debug("no R² for %d points: %s", n, reason)
    return LinearFit(
        slope=None,
        intercept=None,
        r2=None,
        pearson_r=None,
        p_value=None,
        n=n,
        r2_ci_low=None,
        r2_ci_high=None,
        n_bootstrap=0,
        reason=reason,
    )


def _bootstrap_r2(
    x: FloatArray, y: FloatArray, n_bootstrap: int, seed: int
) -> FloatArray:
    """Return R² for each bootstrap resample of the points whose R² is defined."""
    rng = np.random.default_rng(seed)
    indices = rng.integers(0, len(x), size=(n_bootstrap, len(x)))
    xs, ys = x[indices], y[indices]

    # Constancy is tested on the values themselves. A centred constant row can
    # leave a rounding residue and so a tiny, meaningless nonzero variance.
    defined = (np.ptp(xs, axis=1) > 0) & (np.ptp(ys, axis=1) > 0)
    xs, ys = xs[defined], ys[defined]
    x_centred = xs - xs.mean(axis=1, keepdims=True)
    y_centred = ys - ys.mean(axis=1, keepdims=True)
    sxy = (x_centred * y_centred).sum(axis=1)
    sxx = (x_centred**2).sum(axis=1)
    syy = (y_centred**2).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        r2 = sxy**2 / (sxx * syy)
    r2 = r2[np.isfinite(r2)]
    clipped: FloatArray = np.clip(r2, 0.0, 1.0)
    return clipped


def fit_gap(
    x: npt.ArrayLike,
    y: npt.ArrayLike,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> LinearFit:
    """Fit the generalization gap ``y`` on total persistence ``x`` by least squares.

    The line has an intercept and comes from ``scipy.stats.linregress``, and
    R² = r². The interval for R² is the percentile bootstrap: points are
    resampled with replacement ``n_bootstrap`` times with
    ``numpy.random.default_rng(seed)``, and resamples with constant x or y are
    skipped.

    When R² is undefined the fit has ``r2`` None and a ``reason``, and no
    exception is raised. This happens with fewer than 3 points, constant ``x``,
    constant ``y``, or values so extreme that the statistics overflow. With
    constant ``y`` the slope (0) and intercept are still reported.

    Parameters
    ----------
    x : array_like
        Total persistence of each run, shape (n,).
    y : array_like
        Generalization gap of each run, shape (n,).
    n_bootstrap : int
        Number of bootstrap resamples; 0 skips the interval.
    seed : int
        Seed of the bootstrap generator. The same data and seed give the same
        interval.

    Returns
    -------
    LinearFit

    Raises
    ------
    ValueError
        If ``x`` or ``y`` is not one-dimensional, their lengths differ, a value
        is NaN or inf (the message names the index), or ``n_bootstrap`` is
        negative.
    """
    x_array = _as_finite_vector(x, "x")
    y_array = _as_finite_vector(y, "y")
    if len(x_array) != len(y_array):
        raise ValueError(
            f"x has {len(x_array)} values but y has {len(y_array)}; pass one "
            "total persistence and one generalization gap per run"
        )
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int):
        raise TypeError(f"n_bootstrap must be an int, got {n_bootstrap!r}")
    if n_bootstrap < 0:
        raise ValueError(f"n_bootstrap must be >= 0, got {n_bootstrap}")

    n = len(x_array)
    if n < _MIN_POINTS:
        return _undefined_fit(
            n, f"fewer than {_MIN_POINTS} runs (n={n}), so R² is not meaningful"
        )
    if np.ptp(x_array) == 0:
        return _undefined_fit(
            n,
            "total persistence is constant across runs"
            f" (every run has {float(x_array[0]):.6g})",
        )
    if np.ptp(y_array) == 0:
        # The line is gap = constant, but R² = 1 - 0/0 is undefined.
        return LinearFit(
            slope=0.0,
            intercept=float(y_array[0]),
            r2=None,
            pearson_r=None,
            p_value=None,
            n=n,
            r2_ci_low=None,
            r2_ci_high=None,
            n_bootstrap=0,
            reason="generalization gap is constant across runs",
        )

    with np.errstate(all="ignore"):
        result = stats.linregress(x_array, y_array)
    numbers = (result.slope, result.intercept, result.rvalue, result.pvalue)
    if not all(math.isfinite(float(value)) for value in numbers):
        return _undefined_fit(
            n,
            "the regression statistics overflowed or are undefined for these "
            "values; rescale x and y",
        )

    pearson_r = float(result.rvalue)
    bootstrap = _bootstrap_r2(x_array, y_array, n_bootstrap, seed)
    ci_low: float | None = None
    ci_high: float | None = None
    if len(bootstrap) > 0:
        low, high = np.percentile(bootstrap, _CI_PERCENTILES)
        ci_low, ci_high = float(low), float(high)
    return LinearFit(
        slope=float(result.slope),
        intercept=float(result.intercept),
        r2=min(max(pearson_r**2, 0.0), 1.0),
        pearson_r=pearson_r,
        p_value=float(result.pvalue),
        n=n,
        r2_ci_low=ci_low,
        r2_ci_high=ci_high,
        n_bootstrap=len(bootstrap),
        reason=None,
    )
