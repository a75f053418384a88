"""Tests of persistence diagrams, grid and Rips persistence, and diagram distances."""

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from topology import persistence
from topology.persistence import (
    PersistenceDiagram,
    bottleneck_distance,
    rips_persistence,
    sublevel_persistence,
    total_persistence,
    wasserstein_distance,
)

INF = math.inf


def bar_set(bars: np.ndarray) -> set[tuple[float, float]]:
    return {(float(birth), float(death)) for birth, death in bars}


def brute_force_wasserstein_power(a: np.ndarray, b: np.ndarray, order: float) -> float:
    """Return W_order ** order of finite bars by trying every partial matching."""
    half_a = (a[:, 1] - a[:, 0]) / 2
    half_b = (b[:, 1] - b[:, 0]) / 2
    best = INF
    for size in range(min(len(a), len(b)) + 1):
        for rows in itertools.combinations(range(len(a)), size):
            for cols in itertools.permutations(range(len(b)), size):
                total = 0.0
                for i, j in zip(rows, cols, strict=True):
                    gap = max(abs(a[i, 0] - b[j, 0]), abs(a[i, 1] - b[j, 1]))
                    total += gap**order
                total += sum(half_a[i] ** order for i in set(range(len(a))) - set(rows))
                total += sum(half_b[j] ** order for j in set(range(len(b))) - set(cols))
                best = min(best, total)
    return best


finite_bar = st.tuples(
    st.floats(-10, 10, allow_nan=False), st.floats(0, 10, allow_nan=False)
).map(lambda pair: [pair[0], pair[0] + pair[1]])


def finite_bars(max_size: int = 6) -> st.SearchStrategy[np.ndarray]:
    return st.lists(finite_bar, max_size=max_size).map(
        lambda rows: np.array(rows, dtype=np.float64).reshape(-1, 2)
    )


@st.composite
def diagrams(draw: st.DrawFn) -> PersistenceDiagram:
    """Draw a diagram with dimensions 0 and 1, essential bars included."""
    bars = {}
    for dim in (0, 1):
        finite = draw(finite_bars())
        births = draw(st.lists(st.floats(-10, 10, allow_nan=False), max_size=2))
        essential = np.array([[birth, INF] for birth in births]).reshape(-1, 2)
        bars[dim] = np.concatenate([finite, essential])
    return PersistenceDiagram(bars)


# PersistenceDiagram


def test_diagram_rejects_birth_after_death() -> None:
    with pytest.raises(ValueError, match="birth 2.0 > death 1.0"):
        PersistenceDiagram({0: [[2.0, 1.0]]})


def test_diagram_rejects_nan() -> None:
    with pytest.raises(ValueError, match="NaN"):
        PersistenceDiagram({0: [[0.0, math.nan]]})


def test_diagram_rejects_infinite_birth() -> None:
    with pytest.raises(ValueError, match="births must be finite"):
        PersistenceDiagram({0: [[-INF, 1.0]]})


def test_diagram_rejects_negative_dimension() -> None:
    with pytest.raises(ValueError, match="-1"):
        PersistenceDiagram({-1: [[0.0, 1.0]]})


def test_diagram_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match=r"shape \(k, 2\)"):
        PersistenceDiagram({0: [[0.0, 1.0, 2.0]]})


def test_diagram_arrays_read_only() -> None:
    diagram = PersistenceDiagram({0: [[0.0, 1.0]]})
    with pytest.raises(ValueError):
        diagram.bars[0][0, 0] = 5.0


def test_diagram_copies_input() -> None:
    source = np.array([[0.0, 1.0]])
    diagram = PersistenceDiagram({0: source})
    source[0, 0] = 0.5
    assert diagram.bars[0][0, 0] == 0.0


def test_diagram_finite_essential_split() -> None:
    diagram = PersistenceDiagram({0: [[0.0, INF], [1.0, 2.0]], 1: [[0.5, 0.7]]})
    assert bar_set(diagram.finite(0)) == {(1.0, 2.0)}
    assert bar_set(diagram.essential(0)) == {(0.0, INF)}
    assert bar_set(diagram.finite()) == {(1.0, 2.0), (0.5, 0.7)}
    assert diagram.essential(1).shape == (0, 2)


def test_diagram_absent_dimension_empty() -> None:
    diagram = PersistenceDiagram({0: [[0.0, 1.0]]})
    assert diagram.finite(3).shape == (0, 2)


def test_diagram_dimensions_sorted() -> None:
    diagram = PersistenceDiagram({1: [], 0: [[0.0, 1.0]]})
    assert diagram.dimensions == (0, 1)


def test_diagram_is_empty() -> None:
    assert PersistenceDiagram({0: [], 1: []}).is_empty
    assert not PersistenceDiagram({0: [[0.0, 1.0]]}).is_empty


def test_diagram_unhashable() -> None:
    with pytest.raises(TypeError):
        hash(PersistenceDiagram({0: []}))


def test_diagram_json_uses_null_for_inf() -> None:
    diagram = PersistenceDiagram({0: [[0.0, INF], [1.0, 2.0]]})
    text = json.dumps(diagram.to_json())
    assert json.loads(text) == {"bars": {"0": [[0.0, None], [1.0, 2.0]]}}


@settings(deadline=None)
@given(diagrams())
def test_diagram_json_roundtrip(diagram: PersistenceDiagram) -> None:
    restored = PersistenceDiagram.from_json(json.loads(json.dumps(diagram.to_json())))
    assert restored == diagram


def test_diagram_from_json_missing_bars() -> None:
    with pytest.raises(ValueError, match="no 'bars' entry"):
        PersistenceDiagram.from_json({"0": []})


def test_diagram_from_json_null_birth() -> None:
    with pytest.raises(ValueError, match="birth None"):
        PersistenceDiagram.from_json({"bars": {"0": [[None, 1.0]]}})


# sublevel_persistence


def test_sublevel_1d_bars() -> None:
    diagram = sublevel_persistence(np.array([3.0, 1.0, 2.0, 0.0, 4.0]))
    assert bar_set(diagram.bars[0]) == {(0.0, INF), (1.0, 2.0)}
    assert len(diagram.bars[0]) == 2


def test_sublevel_1d_total_persistence() -> None:
    diagram = sublevel_persistence(np.array([3.0, 1.0, 2.0, 0.0, 4.0]))
    assert total_persistence(diagram) == 1.0


def test_sublevel_1d_dimensions() -> None:
    diagram = sublevel_persistence([3.0, 1.0, 2.0])
    assert diagram.dimensions == (0,)


def test_sublevel_two_basins_exact() -> None:
    # Basins 0 and 1 meet at the ridge cell of height 3, and the border cells are 5.
    values = np.array(
        [
            [5.0, 5.0, 5.0, 5.0, 5.0],
            [5.0, 0.0, 3.0, 1.0, 5.0],
            [5.0, 5.0, 5.0, 5.0, 5.0],
        ]
    )
    diagram = sublevel_persistence(values)
    assert bar_set(diagram.bars[0]) == {(0.0, INF), (1.0, 3.0)}
    assert len(diagram.bars[1]) == 0


def test_sublevel_two_basins_smooth() -> None:
    axis = np.linspace(-2.0, 2.0, 41)
    x, y = np.meshgrid(axis, axis, indexing="ij")
    left = (x + 1) ** 2 + y**2
    right = (x - 1) ** 2 + y**2 + 0.5
    values = np.minimum(left, right)
    diagram = sublevel_persistence(values)
    assert len(diagram.bars[0]) == 2
    assert len(diagram.essential(0)) == 1
    assert diagram.essential(0)[0, 0] == values.min()
    assert diagram.finite(0)[0, 0] == pytest.approx(0.5)
    assert len(diagram.bars[1]) == 0


def test_sublevel_single_bowl() -> None:
    axis = np.linspace(-1.0, 1.0, 15)
    x, y = np.meshgrid(axis, axis, indexing="ij")
    values = x**2 + y**2
    diagram = sublevel_persistence(values)
    assert bar_set(diagram.bars[0]) == {(0.0, INF)}
    assert len(diagram.finite()) == 0
    assert len(diagram.essential()) == 1


def test_sublevel_ring_has_loop() -> None:
    # A ring of low cells around a high centre encloses a loop that is filled
    # when the centre enters at 9.
    values = np.full((5, 5), 5.0)
    values[1:4, 1:4] = 0.0
    values[2, 2] = 9.0
    diagram = sublevel_persistence(values)
    assert bar_set(diagram.bars[1]) == {(0.0, 9.0)}


def test_sublevel_3d_grid() -> None:
    axis = np.linspace(-1.0, 1.0, 7)
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    diagram = sublevel_persistence(x**2 + y**2 + z**2)
    assert diagram.dimensions == (0, 1, 2)
    assert len(diagram.essential(0)) == 1
    assert len(diagram.finite()) == 0


def test_sublevel_constant_grid_one_bar() -> None:
    diagram = sublevel_persistence(np.full((4, 4), 2.5))
    assert bar_set(diagram.bars[0]) == {(2.5, INF)}


@pytest.mark.parametrize("bad", [math.nan, INF, -INF])
def test_sublevel_rejects_nonfinite(bad: float) -> None:
    values = np.zeros((3, 4))
    values[1, 2] = bad
    with pytest.raises(ValueError, match=r"values contains 1 non-finite") as info:
        sublevel_persistence(values)
    assert "(1, 2)" in str(info.value)
    assert "diverged point" in str(info.value)


def test_sublevel_counts_nonfinite() -> None:
    values = np.array([0.0, math.nan, 1.0, INF])
    with pytest.raises(ValueError, match="2 non-finite"):
        sublevel_persistence(values)


def test_sublevel_rejects_empty() -> None:
    with pytest.raises(ValueError, match="values is empty"):
        sublevel_persistence(np.zeros((0, 3)))


def test_sublevel_rejects_scalar() -> None:
    with pytest.raises(ValueError, match="at least one axis"):
        sublevel_persistence(np.float64(1.0))


# total_persistence


def test_total_persistence_excludes_essential() -> None:
    diagram = PersistenceDiagram({0: [[0.0, INF], [1.0, 3.0]], 1: [[0.0, 0.5]]})
    assert total_persistence(diagram) == 2.5


def test_total_persistence_power() -> None:
    diagram = PersistenceDiagram({0: [[1.0, 3.0]], 1: [[0.0, 0.5]]})
    assert total_persistence(diagram, p=2.0) == 4.25


def test_total_persistence_dims_filter() -> None:
    diagram = PersistenceDiagram({0: [[1.0, 3.0]], 1: [[0.0, 0.5]]})
    assert total_persistence(diagram, dims=[1]) == 0.5


def test_total_persistence_rejects_bad_p() -> None:
    with pytest.raises(ValueError, match="p must be positive"):
        total_persistence(PersistenceDiagram({0: []}), p=0.0)


# Distances


def test_distance_unmatched_essential_infinite() -> None:
    a = PersistenceDiagram({0: [[0.0, INF], [0.1, 0.5]]})
    b = PersistenceDiagram({0: [[0.0, 1.0], [0.1, 0.5]]})
    assert bottleneck_distance(a, b) == INF
    assert wasserstein_distance(a, b) == INF
    assert wasserstein_distance(a, b, order=2.0) == INF


def test_distance_essential_matched_by_birth() -> None:
    a = PersistenceDiagram({0: [[0.0, INF], [1.0, 3.0]]})
    b = PersistenceDiagram({0: [[0.5, INF]]})
    assert bottleneck_distance(a, b) == 1.0
    assert wasserstein_distance(a, b) == pytest.approx(1.5)
    assert wasserstein_distance(a, b, order=2.0) == pytest.approx(math.sqrt(1.25))


def test_distance_essential_sorted_matching() -> None:
    a = PersistenceDiagram({0: [[0.0, INF], [10.0, INF]]})
    b = PersistenceDiagram({0: [[9.0, INF], [1.0, INF]]})
    assert bottleneck_distance(a, b) == 1.0
    assert wasserstein_distance(a, b) == pytest.approx(2.0)


def test_distance_combines_dimensions() -> None:
    a = PersistenceDiagram({0: [[0.0, 2.0]], 1: [[0.0, 4.0]]})
    b = PersistenceDiagram({0: []})
    assert bottleneck_distance(a, b) == 2.0
    assert wasserstein_distance(a, b, order=2.0) == pytest.approx(math.sqrt(5.0))


def test_distance_absent_dimension_is_empty() -> None:
    a = PersistenceDiagram({0: [], 1: [[0.0, 1.0]]})
    b = PersistenceDiagram({0: []})
    assert bottleneck_distance(a, b) == 0.5
    assert bottleneck_distance(b, a) == 0.5


def test_distance_essential_only_in_absent_dimension() -> None:
    a = PersistenceDiagram({1: [[0.0, INF]]})
    b = PersistenceDiagram({0: []})
    assert bottleneck_distance(a, b) == INF


def test_wasserstein_rejects_order_below_one() -> None:
    diagram = PersistenceDiagram({0: []})
    with pytest.raises(ValueError, match="order must be finite and >= 1"):
        wasserstein_distance(diagram, diagram, order=0.5)


@settings(deadline=None)
@given(diagrams())
def test_bottleneck_self_zero(diagram: PersistenceDiagram) -> None:
    assert bottleneck_distance(diagram, diagram) == 0.0


@settings(deadline=None)
@given(diagrams(), st.sampled_from([1.0, 2.0]))
def test_wasserstein_self_zero(diagram: PersistenceDiagram, order: float) -> None:
    assert wasserstein_distance(diagram, diagram, order=order) == 0.0


@settings(deadline=None)
@given(finite_bars())
def test_bottleneck_to_empty_half_max(bars: np.ndarray) -> None:
    diagram = PersistenceDiagram({0: bars})
    empty = PersistenceDiagram({0: []})
    expected = float((bars[:, 1] - bars[:, 0]).max() / 2) if len(bars) else 0.0
    assert bottleneck_distance(empty, diagram) == pytest.approx(expected, abs=1e-12)


@settings(deadline=None)
@given(finite_bars(), st.sampled_from([1.0, 2.0, 3.0]))
def test_wasserstein_to_empty_diagonal_cost(bars: np.ndarray, order: float) -> None:
    diagram = PersistenceDiagram({0: bars})
    empty = PersistenceDiagram({0: []})
    expected = float(np.sum(((bars[:, 1] - bars[:, 0]) / 2) ** order) ** (1 / order))
    assert wasserstein_distance(empty, diagram, order) == pytest.approx(
        expected, rel=1e-9, abs=1e-12
    )


@settings(deadline=None)
@given(diagrams(), diagrams())
def test_bottleneck_symmetric(a: PersistenceDiagram, b: PersistenceDiagram) -> None:
    assert bottleneck_distance(a, b) == pytest.approx(bottleneck_distance(b, a))


@settings(deadline=None)
@given(diagrams(), diagrams())
def test_wasserstein_at_least_bottleneck(
    a: PersistenceDiagram, b: PersistenceDiagram
) -> None:
    # With the same L-infinity ground metric, the largest matched cost is at most
    # the p-sum of all of them.
    bottleneck = bottleneck_distance(a, b)
    wasserstein = wasserstein_distance(a, b, order=1.0)
    assert wasserstein >= bottleneck - 1e-9 or math.isinf(bottleneck)


@settings(deadline=None, max_examples=60)
@given(
    finite_bars(max_size=3), finite_bars(max_size=3), st.sampled_from([1.0, 1.5, 2.0])
)
def test_finite_wasserstein_matches_brute_force(
    a: np.ndarray, b: np.ndarray, order: float
) -> None:
    expected = brute_force_wasserstein_power(a, b, order)
    actual = persistence._finite_wasserstein_power(a, b, order)
    assert actual == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_finite_wasserstein_prefers_diagonal() -> None:
    # Matching the two short bars to each other costs 10, while sending both to
    # the diagonal costs 0.5 + 0.5.
    a = np.array([[0.0, 1.0]])
    b = np.array([[10.0, 11.0]])
    assert persistence._finite_wasserstein_power(a, b, 1.0) == pytest.approx(1.0)


@pytest.mark.skipif(
    persistence._gudhi_wasserstein is None, reason="POT (module ot) is not installed"
)
@settings(deadline=None, max_examples=30)
@given(finite_bars(), finite_bars(), st.sampled_from([1.0, 2.0]))
def test_finite_wasserstein_matches_gudhi(
    a: np.ndarray, b: np.ndarray, order: float
) -> None:
    assert persistence._gudhi_wasserstein is not None
    expected = persistence._gudhi_wasserstein(a, b, order=order, internal_p=np.inf)
    actual = persistence._finite_wasserstein_power(a, b, order) ** (1 / order)
    assert actual == pytest.approx(expected, rel=1e-9, abs=1e-12)


# rips_persistence


def test_rips_single_point_one_bar() -> None:
    diagram = rips_persistence(np.array([[1.0, 2.0]]))
    assert len(diagram.bars[0]) == 1
    assert diagram.bars[0][0, 1] == INF


def test_rips_single_point_no_loops() -> None:
    diagram = rips_persistence(np.array([[1.0, 2.0]]))
    assert len(diagram.bars[1]) == 0


def test_rips_no_points_empty() -> None:
    diagram = rips_persistence(np.zeros((0, 2)))
    assert diagram.is_empty
    assert diagram.dimensions == (0, 1)


def test_rips_identical_points_one_bar() -> None:
    diagram = rips_persistence(np.zeros((4, 3)))
    assert bar_set(diagram.bars[0]) == {(0.0, INF)}
    assert len(diagram.bars[0]) == 1
    assert len(diagram.bars[1]) == 0


def test_rips_top_dimension_not_spurious() -> None:
    # Four identical points form a hollow tetrahedron in the complex up to
    # triangles. Its H2 class must not be reported when max_dimension is 1.
    diagram = rips_persistence(np.zeros((4, 3)), max_dimension=1)
    assert diagram.dimensions == (0, 1)


def test_rips_two_clusters() -> None:
    points = np.array([[0.0, 0.0], [0.0, 0.1], [5.0, 0.0], [5.0, 0.1]])
    diagram = rips_persistence(points, max_dimension=0)
    longest = diagram.finite(0)[:, 1].max()
    assert longest == pytest.approx(5.0)


def test_rips_circle_has_loop() -> None:
    angles = np.linspace(0.0, 2 * np.pi, 24, endpoint=False)
    points = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    diagram = rips_persistence(points)
    lengths = diagram.finite(1)[:, 1] - diagram.finite(1)[:, 0]
    assert len(lengths) >= 1
    assert lengths.max() > 1.0


def test_rips_max_edge_length_splits() -> None:
    points = np.array([[0.0, 0.0], [3.0, 0.0]])
    diagram = rips_persistence(points, max_edge_length=1.0)
    assert len(diagram.essential(0)) == 2


@pytest.mark.parametrize("bad", [math.nan, INF])
def test_rips_rejects_nonfinite(bad: float) -> None:
    points = np.array([[0.0, 0.0], [1.0, bad]])
    with pytest.raises(ValueError, match=r"points contains 1 non-finite .* \(1, 1\)"):
        rips_persistence(points)


def test_rips_rejects_flat_points() -> None:
    with pytest.raises(ValueError, match=r"reshape\(-1, 1\)"):
        rips_persistence(np.array([0.0, 1.0]))


def test_rips_rejects_negative_dimension() -> None:
    with pytest.raises(ValueError, match="max_dimension must be >= 0"):
        rips_persistence(np.zeros((2, 2)), max_dimension=-1)


def test_total_persistence_closes_essential_bars() -> None:
    # The grid [3, 1, 2, 0, 4]: bars (1, 2) and (0, inf); closed at the
    # maximum 4 the essential bar counts 4 - 0, so the total is 1 + 4.
    diagram = sublevel_persistence(np.array([3.0, 1.0, 2.0, 0.0, 4.0]))
    assert total_persistence(diagram, essential_death=4.0) == pytest.approx(5.0)


def test_total_persistence_single_bowl_is_height() -> None:
    x = np.linspace(-1, 1, 9)
    bowl = x[:, None] ** 2 + x[None, :] ** 2
    diagram = sublevel_persistence(bowl)
    assert total_persistence(diagram) == 0.0
    closed = total_persistence(diagram, essential_death=float(bowl.max()))
    assert closed == pytest.approx(float(bowl.max() - bowl.min()))


def test_total_persistence_rejects_low_essential_death() -> None:
    diagram = sublevel_persistence(np.array([3.0, 1.0, 2.0, 0.0, 4.0]))
    with pytest.raises(ValueError, match="below the birth"):
        total_persistence(diagram, essential_death=-1.0)


def test_total_persistence_rejects_infinite_essential_death() -> None:
    diagram = sublevel_persistence(np.array([3.0, 1.0, 2.0, 0.0, 4.0]))
    with pytest.raises(ValueError, match="must be finite"):
        total_persistence(diagram, essential_death=float("inf"))
