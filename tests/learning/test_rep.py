"""Rep: representations and their paths, equal up to a stated tolerance."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from categories import CompositionError, category_law_failures
from learning.rep import RepCategory, RepPath, Representation

REP = RepCategory(rtol=1e-4, atol=1e-5)


@st.composite
def paths(draw: st.DrawFn, start: torch.Tensor | None = None) -> RepPath:
    n = draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    features = torch.randn(n, 4, 2, generator=torch.Generator().manual_seed(seed))
    if start is not None:
        features[0] = start
    return RepPath(tuple(range(0, 2 * n, 2)), features)


@st.composite
def composable_triples(draw: st.DrawFn) -> tuple[RepPath, RepPath, RepPath]:
    f = draw(paths())
    g = draw(paths(start=f.features[-1]))
    h = draw(paths(start=g.features[-1]))
    return f, g, h


@given(composable_triples())
def test_rep_laws_hold(triple: tuple[RepPath, RepPath, RepPath]) -> None:
    f, g, h = triple
    objects = [f.start, f.end, g.end, h.end]
    report = category_law_failures(
        REP, objects, list(triple), [(f, g), (g, h)], [triple]
    )
    assert report.ok, report.failures


def test_equality_within_tolerance() -> None:
    a = Representation(torch.ones(3, 2))
    b = Representation(torch.ones(3, 2) + 1e-7)
    assert REP.equal_objects(a, b)
    assert a != b  # Python equality stays exact


def test_equality_outside_tolerance() -> None:
    a = Representation(torch.ones(3, 2))
    b = Representation(torch.ones(3, 2) + 1e-2)
    assert not REP.equal_objects(a, b)


def test_shapes_differ_means_unequal() -> None:
    assert not REP.equal_objects(
        Representation(torch.ones(3, 2)), Representation(torch.ones(2, 3))
    )


def test_compose_rejects_distant_ends() -> None:
    f = RepPath((0, 1), torch.zeros(2, 3, 2))
    g = RepPath((0, 1), torch.ones(2, 3, 2))
    with pytest.raises(CompositionError, match="not within"):
        REP.compose(f, g)


def test_compose_shifts_times() -> None:
    f = RepPath((0, 3), torch.zeros(2, 3, 2))
    g = RepPath((0, 2), torch.zeros(2, 3, 2))
    assert REP.compose(f, g).times == (0, 3, 5)


def test_difference_reports_largest_gap() -> None:
    f = RepPath((0,), torch.zeros(1, 2, 2))
    g = RepPath((0,), torch.full((1, 2, 2), 0.5))
    assert "0.5" in REP.describe_difference(f, g)


def test_negative_tolerance_rejected() -> None:
    with pytest.raises(ValueError, match="rtol=-1"):
        RepCategory(rtol=-1)


def test_path_rejects_bad_shape() -> None:
    with pytest.raises(ValueError, match="n_probe"):
        RepPath((0, 1), torch.zeros(2, 3))
