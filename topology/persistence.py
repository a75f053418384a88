"""Persistence diagrams of grid functions and point clouds, and distances between them.

Homology is computed with coefficients in Z/2, the usual choice in topological data
analysis. A diagram stores its bars per homology dimension. An essential class, one
that never dies, has death ``np.inf``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import gudhi
import numpy as np
import numpy.typing as npt
from scipy.optimize import linear_sum_assignment

logger = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float64]

# Z/2 is the usual coefficient field in topological data analysis, while gudhi
# 3.13 defaults to Z/11. The field matters only where integral homology has
# torsion, which cubical complexes in the plane or in R^3 never have.
_COEFFICIENT_FIELD = 2

_gudhi_wasserstein: Callable[..., float] | None
try:
    from gudhi.wasserstein import (  # type: ignore[no-redef]
        wasserstein_distance as _gudhi_wasserstein,
    )
except ImportError:
    # gudhi.wasserstein needs the optional package POT (module ``ot``). Without
    # it, finite bars are matched by ``_finite_wasserstein_power`` instead.
    _gudhi_wasserstein = None

JsonDiagram = dict[str, dict[str, list[list[float | None]]]]


def _empty_bars() -> FloatArray:
    return np.zeros((0, 2), dtype=np.float64)


def _validated_bars(dim: object, raw: object) -> FloatArray:
    """Return a read-only float64 copy of ``raw`` after checking it is a bar table."""
    if isinstance(dim, bool) or not isinstance(dim, int | np.integer) or dim < 0:
        raise ValueError(
            f"homology dimension must be a non-negative int, got {dim!r}; "
            "key the bars by 0 for H0, 1 for H1 and so on"
        )
    bars = np.array(raw, dtype=np.float64)
    if bars.size == 0:
        bars = _empty_bars()
    if bars.ndim != 2 or bars.shape[1] != 2:
        raise ValueError(
            f"bars of dimension {dim} must have shape (k, 2), got {bars.shape}; "
            "pass one [birth, death] row per bar"
        )
    if np.isnan(bars).any():
        row = int(np.argwhere(np.isnan(bars))[0][0])
        raise ValueError(
            f"bars of dimension {dim} contain NaN in row {row}: {bars[row].tolist()}; "
            "every birth and death must be a number (death may be inf)"
        )
    if not np.isfinite(bars[:, 0]).all():
        row = int(np.argwhere(~np.isfinite(bars[:, 0]))[0][0])
        raise ValueError(
            f"bar {row} of dimension {dim} has birth {bars[row, 0]}; births must "
            "be finite, and only deaths may be inf"
        )
    if (bars[:, 0] > bars[:, 1]).any():
        row = int(np.argwhere(bars[:, 0] > bars[:, 1])[0][0])
        raise ValueError(
            f"bar {row} of dimension {dim} has birth {bars[row, 0]} > death "
            f"{bars[row, 1]}; a bar must satisfy birth <= death"
        )
    bars.setflags(write=False)
    return bars


@dataclass(frozen=True, eq=False)
class PersistenceDiagram:
    """Persistence bars keyed by homology dimension.

    ``bars[d]`` is a float64 array of shape (k, 2), one ``[birth, death]`` row per
    bar of H_d, with ``birth <= death``. An essential class has death ``np.inf``.
    A dimension may be present with no bars. The constructor copies the arrays and
    makes the copies read-only.

    Two diagrams are equal when they have the same dimensions and the same bars in
    the same order. Diagrams are not hashable because they contain arrays.
    """

    bars: dict[int, FloatArray]

    def __post_init__(self) -> None:
        if not isinstance(self.bars, Mapping):
            raise TypeError(
                f"bars must be a mapping from homology dimension to a (k, 2) array, "
                f"got {type(self.bars).__name__}"
            )
        checked = {
            int(dim): _validated_bars(dim, raw) for dim, raw in self.bars.items()
        }
        object.__setattr__(self, "bars", dict(sorted(checked.items())))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PersistenceDiagram):
            return NotImplemented
        if self.dimensions != other.dimensions:
            return False
        return all(np.array_equal(self.bars[d], other.bars[d]) for d in self.bars)

    @property
    def dimensions(self) -> tuple[int, ...]:
        """Homology dimensions present in the diagram, in increasing order."""
        return tuple(self.bars)

    @property
    def is_empty(self) -> bool:
        """Whether the diagram has no bar in any dimension."""
        return all(len(bars) == 0 for bars in self.bars.values())

    def _select(self, dim: int | None, essential: bool) -> FloatArray:
        if dim is None:
            tables = list(self.bars.values())
        else:
            tables = [self.bars.get(dim, _empty_bars())]
        stacked = np.concatenate([_empty_bars(), *tables], axis=0)
        mask = np.isinf(stacked[:, 1]) if essential else np.isfinite(stacked[:, 1])
        selected: FloatArray = stacked[mask]
        return selected

    def finite(self, dim: int | None = None) -> FloatArray:
        """Return the bars with finite death.

        Parameters
        ----------
        dim : int or None
            Homology dimension. None stacks the bars of all dimensions in
            increasing order of dimension. A dimension absent from the diagram
            gives an empty array.

        Returns
        -------
        numpy.ndarray
            Array of shape (k, 2).
        """
        return self._select(dim, essential=False)

    def essential(self, dim: int | None = None) -> FloatArray:
        """Return the bars of essential classes, whose death is ``np.inf``.

        Parameters
        ----------
        dim : int or None
            Homology dimension. None stacks the bars of all dimensions in
            increasing order of dimension.

        Returns
        -------
        numpy.ndarray
            Array of shape (k, 2) whose second column is ``np.inf``.
        """
        return self._select(dim, essential=True)

    def to_json(self) -> JsonDiagram:
        """Convert the diagram to a JSON-compatible dict.

        JSON has no infinity, so an essential death is written as ``None`` (``null``
        in JSON). Dimensions become string keys because JSON object keys are
        strings. The result has the form ``{"bars": {"0": [[0.0, None], ...]}}``
        and ``json.dumps`` accepts it.
        """
        table: dict[str, list[list[float | None]]] = {}
        for dim, bars in self.bars.items():
            table[str(dim)] = [
                [float(birth), None if math.isinf(death) else float(death)]
                for birth, death in bars.tolist()
            ]
        return {"bars": table}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PersistenceDiagram:
        """Build a diagram from the dict that :meth:`to_json` returns.

        Raises
        ------
        ValueError
            If ``data`` has no ``"bars"`` entry, a key is not an integer, or a
            birth is ``None``.
        """
        if "bars" not in data:
            raise ValueError(
                f"persistence diagram JSON has no 'bars' entry (keys: {sorted(data)}); "
                "pass the dict that PersistenceDiagram.to_json returns"
            )
        bars: dict[int, FloatArray] = {}
        for key, rows in data["bars"].items():
            try:
                dim = int(key)
            except ValueError:
                raise ValueError(
                    f"persistence diagram JSON has the dimension key {key!r}; "
                    "keys must be integers written as strings, such as '0'"
                ) from None
            pairs: list[list[float]] = []
            for row in rows:
                if len(row) != 2:
                    raise ValueError(
                        f"bar {row!r} of dimension {dim} must be a [birth, death] pair"
                    )
                birth, death = row
                if birth is None:
                    raise ValueError(
                        f"bar {row!r} of dimension {dim} has birth None; only a "
                        "death may be None, which stands for infinity"
                    )
                pairs.append([birth, math.inf if death is None else death])
            bars[dim] = np.array(pairs, dtype=np.float64).reshape(-1, 2)
        return cls(bars)


def _first_nonfinite_message(array: FloatArray, name: str) -> str | None:
    """Describe the NaN and inf entries of ``array``, or return None if it has none."""
    nonfinite = ~np.isfinite(array)
    count = int(nonfinite.sum())
    if count == 0:
        return None
    index = tuple(int(i) for i in np.argwhere(nonfinite)[0])
    return (
        f"{name} contains {count} non-finite value(s) (NaN or inf); the first is "
        f"{array[index]} at index {index}"
    )


def sublevel_persistence(values: npt.ArrayLike) -> PersistenceDiagram:
    """Compute the sublevel-set persistence of a function sampled on a grid.

    The grid may have any number of axes. Each entry of ``values`` is the
    filtration value of one top-dimensional cell of a cubical complex (gudhi's
    ``CubicalComplex(top_dimensional_cells=...)``), and a lower-dimensional cell
    enters with the minimum of the cells around it. So two cells that share only
    a corner are connected as soon as both are present: on a 2-D grid the
    components are those of the 8-neighbourhood.

    Bars of zero length, which come from tied values, are dropped. Because a
    full grid is contractible, H0 has exactly one essential bar, born at the
    global minimum, and higher dimensions have none.

    Parameters
    ----------
    values : array_like
        Function values, for example the ``values`` of a loss surface.

    Returns
    -------
    PersistenceDiagram
        Bars for every dimension from 0 to ``values.ndim - 1``.

    Raises
    ------
    ValueError
        If ``values`` is a scalar or empty, or if it contains NaN or inf. A
        non-finite value means the landscape contains a diverged point. It is
        rejected, rather than treated as a value, because gudhi would turn it into
        a spurious extra component or drop it.
    """
    array = np.asarray(values, dtype=np.float64)
    if array.ndim == 0:
        raise ValueError(
            f"values must be an array with at least one axis, got the scalar "
            f"{array.item()}; pass the grid of function values"
        )
    if array.size == 0:
        raise ValueError(
            f"values is empty (shape {array.shape}); pass a grid with at least "
            "one point"
        )
    message = _first_nonfinite_message(array, "values")
    if message is not None:
        raise ValueError(
            f"{message}. The landscape contains a diverged point. Evaluate it on "
            "a smaller span, or clip the values to a finite maximum if diverged "
            "points should count as high loss."
        )

    complex_ = gudhi.CubicalComplex(top_dimensional_cells=array)
    complex_.compute_persistence(homology_coeff_field=_COEFFICIENT_FIELD)
    bars = {
        dim: np.asarray(
            complex_.persistence_intervals_in_dimension(dim), dtype=np.float64
        ).reshape(-1, 2)
        for dim in range(array.ndim)
    }
    logger.debug(
        "sublevel persistence of a grid of shape %s: %s bars per dimension",
        array.shape,
        {dim: len(b) for dim, b in bars.items()},
    )
    return PersistenceDiagram(bars)


def rips_persistence(
    points: npt.ArrayLike,
    max_dimension: int = 1,
    max_edge_length: float = math.inf,
) -> PersistenceDiagram:
    """Compute the persistence of the Vietoris-Rips filtration of a point cloud.

    The filtration value of an edge is the Euclidean distance between its end
    points (gudhi's convention, not half of it). The complex is built up to
    simplices of dimension ``max_dimension + 1``, which are needed to kill cycles
    of dimension ``max_dimension``. Its size grows like ``n ** (max_dimension + 2)``
    for ``n`` points.

    Parameters
    ----------
    points : array_like
        Array of shape (n, d), one point per row.
    max_dimension : int
        Highest homology dimension to compute.
    max_edge_length : float
        Maximum edge length included in the complex. Components still apart at
        this scale become essential classes.

    Returns
    -------
    PersistenceDiagram
        Bars for every dimension from 0 to ``max_dimension``. A cloud of one point
        gives the single H0 bar ``(0, inf)``. A cloud of zero points gives a
        diagram with these dimensions and no bars, so ``is_empty`` is True.

    Raises
    ------
    ValueError
        If ``points`` is not two-dimensional or contains NaN or inf, if
        ``max_dimension`` is negative, or if ``max_edge_length`` is NaN or
        negative.
    """
    array = np.asarray(points, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(
            f"points must have shape (n, d), got {array.shape}; for points on a "
            "line use points.reshape(-1, 1)"
        )
    message = _first_nonfinite_message(array, "points")
    if message is not None:
        raise ValueError(f"{message}; every coordinate must be finite")
    if isinstance(max_dimension, bool) or not isinstance(max_dimension, int):
        raise TypeError(f"max_dimension must be an int, got {max_dimension!r}")
    if max_dimension < 0:
        raise ValueError(
            f"max_dimension must be >= 0, got {max_dimension}; use 0 for H0 only"
        )
    if math.isnan(max_edge_length) or max_edge_length < 0:
        raise ValueError(
            f"max_edge_length must be >= 0 (inf for no limit), got {max_edge_length}"
        )

    dims = range(max_dimension + 1)
    if array.shape[0] == 0:
        return PersistenceDiagram({dim: _empty_bars() for dim in dims})

    rips = gudhi.RipsComplex(points=array, max_edge_length=max_edge_length)
    tree = rips.create_simplex_tree(max_dimension=max_dimension + 1)
    # Without persistence_dim_max, gudhi skips the complex's top dimension, so a
    # single point (a complex of dimension 0) would get no H0 bar at all.
    tree.compute_persistence(
        homology_coeff_field=_COEFFICIENT_FIELD, persistence_dim_max=True
    )
    # Dimension max_dimension + 1 is not read: without the simplices one
    # dimension higher, its classes would all look essential.
    bars = {
        dim: np.asarray(
            tree.persistence_intervals_in_dimension(dim), dtype=np.float64
        ).reshape(-1, 2)
        for dim in dims
    }
    return PersistenceDiagram(bars)


def total_persistence(
    diagram: PersistenceDiagram,
    p: float = 1.0,
    dims: Iterable[int] | None = None,
    essential_death: float | None = None,
) -> float:
    """Sum ``(death - birth) ** p`` over the bars of a diagram.

    By default essential bars are excluded, because their length is
    infinite. Given ``essential_death``, each essential bar is closed there
    instead and counts as ``(essential_death - birth) ** p``. Closing at the
    largest value of a finite filtration is the usual choice: on a grid it
    makes the global minimum's bar measure how far the function rises.

    Parameters
    ----------
    diagram : PersistenceDiagram
        Diagram to summarize.
    p : float
        Exponent applied to each bar length. Must be positive and finite.
    dims : iterable of int or None
        Homology dimensions to include. None includes every dimension of the
        diagram. A dimension absent from the diagram adds nothing.
    essential_death : float or None
        Where to close essential bars; None leaves them out. It must be
        finite and at least the birth of every essential bar included.

    Returns
    -------
    float
        Total persistence, 0.0 for a diagram without bars to count.
    """
    if not (math.isfinite(p) and p > 0):
        raise ValueError(f"p must be positive and finite, got {p}; use 1.0 or 2.0")
    if essential_death is not None and not math.isfinite(essential_death):
        raise ValueError(
            f"essential_death must be finite, got {essential_death}; pass the"
            " largest value of the filtration, or None to leave essential bars out"
        )
    selected = diagram.dimensions if dims is None else tuple(dims)
    total = 0.0
    for dim in selected:
        bars = diagram.finite(dim)
        total += float(np.sum((bars[:, 1] - bars[:, 0]) ** p))
        if essential_death is None:
            continue
        births = diagram.essential(dim)[:, 0]
        if (births > essential_death).any():
            raise ValueError(
                f"essential_death = {essential_death} is below the birth"
                f" {births.max()} of an essential bar in dimension {dim}; pass"
                " the largest value of the filtration"
            )
        total += float(np.sum((essential_death - births) ** p))
    return total


def _essential_gaps(
    a: PersistenceDiagram, b: PersistenceDiagram, dim: int
) -> FloatArray:
    """Return the birth differences of the optimal essential matching in ``dim``.

    Returns an array with one entry per essential bar, or an array containing
    ``inf`` when the two diagrams have different numbers of essential bars. On a
    line, pairing sorted births is optimal for both the max and any p-sum with
    p >= 1.
    """
    births_a = np.sort(a.essential(dim)[:, 0])
    births_b = np.sort(b.essential(dim)[:, 0])
    if len(births_a) != len(births_b):
        return np.array([math.inf])
    return np.abs(births_a - births_b)


def _shared_dimensions(a: PersistenceDiagram, b: PersistenceDiagram) -> list[int]:
    return sorted(set(a.dimensions) | set(b.dimensions))


def bottleneck_distance(a: PersistenceDiagram, b: PersistenceDiagram) -> float:
    """Compute the bottleneck distance between two diagrams.

    In each dimension, essential bars are matched to essential bars by sorted
    birth, and finite bars are matched with ``gudhi.bottleneck_distance`` in exact
    mode. The ground metric is L-infinity, so a finite bar left unmatched costs
    half its length. If the diagrams have different numbers of essential bars in
    some dimension, the distance is ``inf``. A dimension present in only one
    diagram is compared with an empty one.

    Returns
    -------
    float
        Maximum over all dimensions; 0.0 for two empty diagrams.
    """
    distance = 0.0
    for dim in _shared_dimensions(a, b):
        gaps = _essential_gaps(a, b, dim)
        if len(gaps) > 0:
            distance = max(distance, float(gaps.max()))
        finite_distance = gudhi.bottleneck_distance(a.finite(dim), b.finite(dim), e=0)
        distance = max(distance, float(finite_distance))
    return distance


def _finite_wasserstein_power(a: FloatArray, b: FloatArray, order: float) -> float:
    """Return the optimal cost ``W_order ** order`` of matching two sets of finite bars.

    The assignment problem uses the usual augmented square matrix. Its rows are
    the bars of ``a`` and then one diagonal slot per bar of ``b``. Its columns are
    the bars of ``b`` and then one diagonal slot per bar of ``a``. A bar may go to
    its own diagonal slot at the cost of its L-infinity distance to the diagonal,
    which is half its length. Two diagonal slots match at no cost.
    """
    n, m = len(a), len(b)
    if n + m == 0:
        return 0.0
    cost = np.zeros((n + m, n + m), dtype=np.float64)
    pairwise = np.maximum(
        np.abs(a[:, None, 0] - b[None, :, 0]), np.abs(a[:, None, 1] - b[None, :, 1])
    )
    cost[:n, :m] = pairwise**order
    cost[:n, m:] = math.inf
    cost[n:, :m] = math.inf
    half_a = (a[:, 1] - a[:, 0]) / 2
    half_b = (b[:, 1] - b[:, 0]) / 2
    cost[np.arange(n), m + np.arange(n)] = half_a**order
    cost[n + np.arange(m), np.arange(m)] = half_b**order
    rows, cols = linear_sum_assignment(cost)
    return float(cost[rows, cols].sum())


def wasserstein_distance(
    a: PersistenceDiagram, b: PersistenceDiagram, order: float = 1.0
) -> float:
    """Compute the p-Wasserstein distance between two diagrams, with p = ``order``.

    In each dimension, essential bars are matched by sorted birth at cost
    ``|birth_a - birth_b| ** order``. Finite bars are matched with the L-infinity
    ground metric, the default of gudhi's ``wasserstein_distance``. That function
    is used when its optional dependency POT is importable, and an exact
    assignment with ``scipy.optimize.linear_sum_assignment`` is used otherwise. If
    the diagrams have different numbers of essential bars in some dimension, the
    distance is ``inf``.

    Parameters
    ----------
    a, b : PersistenceDiagram
        Diagrams to compare. A dimension present in only one is compared with an
        empty one.
    order : float
        Exponent p, at least 1 (below 1 the result is not a metric).

    Returns
    -------
    float
        ``(sum over dimensions of W_p(dim) ** p) ** (1 / p)``; 0.0 for two empty
        diagrams.
    """
    if not (math.isfinite(order) and order >= 1):
        raise ValueError(
            f"order must be finite and >= 1, got {order}; for order inf use "
            "bottleneck_distance"
        )
    power_sum = 0.0
    for dim in _shared_dimensions(a, b):
        gaps = _essential_gaps(a, b, dim)
        power_sum += float(np.sum(gaps**order))
        if math.isinf(power_sum):
            return math.inf
        finite_a, finite_b = a.finite(dim), b.finite(dim)
        if _gudhi_wasserstein is not None:
            finite_distance = float(
                _gudhi_wasserstein(finite_a, finite_b, order=order, internal_p=np.inf)
            )
            power_sum += finite_distance**order
        else:
            power_sum += _finite_wasserstein_power(finite_a, finite_b, order)
    return float(power_sum ** (1.0 / order))
