"""Limits and colimits in FinSet satisfy their universal property, checked through it.

Test cones and cocones are drawn independently of the constructions. A
pullback cone picks, per apex element, a common value and one preimage on
each side. A coequalizer or pushout cocone starts from random legs and merges
values until every equation holds.
"""

from __future__ import annotations

import math
from itertools import product as cartesian

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from categories.errors import CategoryError, ConeError, SizeLimitError
from categories.finset import FinFunction, FinSet, finfunctions
from categories.limits import (
    Cocone,
    Cone,
    Cospan,
    DiscreteDiagram,
    ParallelPair,
    Span,
    coequalizer,
    colimit_failures,
    cone_failures,
    coproduct,
    equalizer,
    initial,
    is_cocone,
    is_colimit,
    is_cone,
    is_limit,
    limit_failures,
    product,
    pullback,
    pushout,
    terminal,
)

MAX = 5


def function(values: list[int], cod: int) -> FinFunction:
    return FinFunction(values, cod)


def mediating_count_by_enumeration(cone: Cone, test: Cone) -> int:
    """Count, one by one, the maps m into cone.apex with m;leg_i = test leg i."""
    return sum(
        all(m.then(leg) == test_leg for leg, test_leg in zip(cone.legs, test.legs))
        for m in FinSet().hom(test.apex, cone.apex)
    )


# Strategies


@st.composite
def cospans(draw: st.DrawFn) -> tuple[FinFunction, FinFunction]:
    shared = draw(st.integers(0, MAX))
    return draw(finfunctions(cod=shared)), draw(finfunctions(cod=shared))


@st.composite
def parallel_pairs(draw: st.DrawFn) -> tuple[FinFunction, FinFunction]:
    f = draw(finfunctions())
    return f, draw(finfunctions(dom=f.dom, cod=f.cod))


@st.composite
def spans(draw: st.DrawFn) -> tuple[FinFunction, FinFunction]:
    f = draw(finfunctions())
    return f, draw(finfunctions(dom=f.dom))


@st.composite
def pullback_cones(draw: st.DrawFn, f: FinFunction, g: FinFunction) -> Cone:
    """Draw a commuting cone over f, g: each element gets (a, b) with f(a) = g(b)."""
    common = sorted(set(f.tolist()) & set(g.tolist()))
    apex = draw(st.integers(0, 4)) if common else 0
    left, right = [], []
    for _ in range(apex):
        value = draw(st.sampled_from(common))
        left.append(draw(st.sampled_from([a for a in range(f.dom) if f(a) == value])))
        right.append(draw(st.sampled_from([b for b in range(g.dom) if g(b) == value])))
    return Cone(apex, (function(left, f.dom), function(right, g.dom)))


@st.composite
def equalizer_cones(draw: st.DrawFn, f: FinFunction, g: FinFunction) -> Cone:
    agreeing = [a for a in range(f.dom) if f(a) == g(a)]
    apex = draw(st.integers(0, 4)) if agreeing else 0
    values = [draw(st.sampled_from(agreeing)) for _ in range(apex)]
    return Cone(apex, (function(values, f.dom),))


@st.composite
def product_cones(draw: st.DrawFn, objects: tuple[int, ...]) -> Cone:
    apex = 0 if 0 in objects else draw(st.integers(0, 4))
    legs = tuple(draw(finfunctions(dom=apex, cod=n)) for n in objects)
    return Cone(apex, legs)


@st.composite
def coproduct_cocones(draw: st.DrawFn, objects: tuple[int, ...]) -> Cocone:
    apex = draw(st.integers(1 if sum(objects) else 0, 4))
    legs = tuple(draw(finfunctions(dom=n, cod=apex)) for n in objects)
    return Cocone(apex, legs)


def merge_until_equal(
    left: list[int], right: list[int], pairs: list[tuple[int, int]]
) -> None:
    """Identify values until left[i] == right[j] for every (i, j) in pairs.

    Each step renames one value everywhere, so equalities made by earlier
    steps survive and one pass suffices.
    """
    for i, j in pairs:
        old, new = right[j], left[i]
        if old != new:
            for values in (left, right):
                values[:] = [new if v == old else v for v in values]


@st.composite
def coequalizer_cocones(draw: st.DrawFn, f: FinFunction, g: FinFunction) -> Cocone:
    apex = draw(st.integers(1 if f.cod else 0, 4))
    values = draw(finfunctions(dom=f.cod, cod=apex)).tolist()
    pairs = [(f(a), g(a)) for a in range(f.dom)]
    # One list stands for both sides: each pair must end with equal values.
    merge_until_equal(values, values, pairs)
    return Cocone(apex, (function(values, apex),))


@st.composite
def pushout_cocones(draw: st.DrawFn, f: FinFunction, g: FinFunction) -> Cocone:
    apex = draw(st.integers(1 if f.cod + g.cod else 0, 4))
    left = draw(finfunctions(dom=f.cod, cod=apex)).tolist()
    right = draw(finfunctions(dom=g.cod, cod=apex)).tolist()
    pairs = [(f(s), g(s)) for s in range(f.dom)]
    merge_until_equal(left, right, pairs)
    return Cocone(apex, (function(left, apex), function(right, apex)))


objects_lists = st.lists(st.integers(0, 4), max_size=3).map(tuple)


# A general pullback: f = [0, 0, 2, 1] and g = [0, 0, 3, 1], both 4 -> 4


EXAMPLE_F = function([0, 0, 2, 1], 4)
EXAMPLE_G = function([0, 0, 3, 1], 4)
EXAMPLE_CONE = Cone(3, (function([0, 1, 3], 4), function([1, 0, 3], 4)))


def test_pullback_has_the_five_pairs() -> None:
    result = pullback(EXAMPLE_F, EXAMPLE_G)
    left, right = result.projections
    pairs = {(left(k), right(k)) for k in range(result.apex)}
    assert result.apex == 5
    assert pairs == {(0, 0), (0, 1), (1, 0), (1, 1), (3, 3)}


def test_pullback_cone_mediates_by_pairs() -> None:
    result = pullback(EXAMPLE_F, EXAMPLE_G)
    mediating = result.mediate(EXAMPLE_CONE)
    left, right = result.projections
    assert [(left(m), right(m)) for m in mediating.tolist()] == [(0, 1), (1, 0), (3, 3)]
    assert mediating.then(left) == EXAMPLE_CONE.legs[0]
    assert mediating.then(right) == EXAMPLE_CONE.legs[1]


def test_pullback_mediating_map_is_unique() -> None:
    result = pullback(EXAMPLE_F, EXAMPLE_G)
    assert is_limit(result.diagram, result.cone, [EXAMPLE_CONE])
    assert mediating_count_by_enumeration(result.cone, EXAMPLE_CONE) == 1


def test_pullback_rejects_noncommuting_cone_at_element() -> None:
    cone = Cone(3, (function([0, 1, 3], 4), function([2, 0, 3], 4)))
    with pytest.raises(ConeError, match=r"fails at element 0 of the apex: 0 != 3"):
        pullback(EXAMPLE_F, EXAMPLE_G).mediate(cone)


def test_pullback_rejects_cone_missing_a_leg() -> None:
    with pytest.raises(ConeError, match=r"needs 2 leg\(s\).*got 1"):
        pullback(EXAMPLE_F, EXAMPLE_G).mediate(Cone(3, (function([0, 1, 3], 4),)))


def test_pullback_rejects_leg_into_wrong_object() -> None:
    cone = Cone(3, (function([0, 1, 3], 4), function([1, 0, 3], 5)))
    with pytest.raises(ConeError, match=r"leg 1 has codomain 5"):
        pullback(EXAMPLE_F, EXAMPLE_G).mediate(cone)


def test_cospan_with_different_codomains_rejected() -> None:
    with pytest.raises(CategoryError, match=r"same codomain"):
        pullback(function([0], 1), function([0], 2))


def test_pullback_beyond_max_apex_rejected() -> None:
    constant = FinFunction.constant(1000, 0, 1)
    with pytest.raises(SizeLimitError, match=r"1000000 elements.*max_apex=10"):
        pullback(constant, constant, max_apex=10)


def test_pullback_large_hash_join_matches_fibres() -> None:
    rng = np.random.default_rng(1)
    f = FinFunction(rng.integers(0, 10**4, size=10**4), cod=10**4)
    g = FinFunction(rng.integers(0, 10**4, size=10**4), cod=10**4)
    result = pullback(f, g)
    left, right = result.projections
    expected = int(
        (
            np.bincount(f.values, minlength=10**4)
            * np.bincount(g.values, minlength=10**4)
        ).sum()
    )
    assert result.apex == expected
    assert np.array_equal(f.values[left.values], g.values[right.values])
    pairs = left.values * 10**4 + right.values
    assert np.unique(pairs).size == result.apex


def test_pullback_with_huge_codomain_matches_pairs() -> None:
    # A codomain this large takes the stable-argsort path of the join.
    cod = 2**62
    f = function([2**61, 5, 2**61], cod)
    g = function([5, 2**61, 2**61, 7], cod)
    result = pullback(f, g)
    left, right = result.projections
    pairs = {(left(k), right(k)) for k in range(result.apex)}
    assert pairs == {(0, 1), (0, 2), (1, 0), (2, 1), (2, 2)}
    cone = Cone(2, (function([2, 1], 3), function([2, 0], 4)))
    mediating = result.mediate(cone)
    assert mediating.then(left) == cone.legs[0]
    assert mediating.then(right) == cone.legs[1]


def test_product_beyond_max_apex_rejected() -> None:
    with pytest.raises(SizeLimitError, match=r"\[1000, 1000\] has 1000000 elements"):
        product(1000, 1000, max_apex=10)


# Empty limits and colimits


def test_pullback_of_empty_function_is_empty() -> None:
    result = pullback(FinFunction.empty(3), function([0, 1], 3))
    assert result.apex == 0
    assert result.projections[0] == FinFunction.empty(0)
    assert result.projections[1] == FinFunction.empty(2)


def test_pullback_with_disjoint_images_is_empty() -> None:
    result = pullback(function([0, 0], 3), function([1, 2], 3))
    assert result.apex == 0
    assert is_limit(result.diagram, result.cone, [Cone(0, (FinFunction.empty(2),) * 2)])


def test_equalizer_of_identity_and_cycle_is_empty() -> None:
    result = equalizer(FinFunction.identity(5), function([1, 2, 3, 4, 0], 5))
    assert result.inclusion == FinFunction.empty(5)
    assert result.mediate(Cone(0, (FinFunction.empty(5),))) == FinFunction.empty(0)


def test_coproduct_of_nothing_is_initial() -> None:
    result = coproduct()
    assert result.apex == 0
    assert initial().apex == 0
    assert result.mediate(Cocone(3, ())) == FinFunction.empty(3)


def test_product_of_nothing_is_terminal() -> None:
    result = terminal()
    assert result.apex == 1
    assert result.mediate(Cone(3, ())) == FinFunction.constant(3, 0, 1)


def test_product_with_empty_factor_is_empty() -> None:
    result = product(2, 0, 3)
    assert result.apex == 0
    assert is_limit(result.diagram, result.cone)


# Checking cones


def test_cone_leg_must_start_at_apex() -> None:
    with pytest.raises(ConeError, match=r"leg 0 of the cone has domain 2.*apex is 3"):
        Cone(3, (function([0, 1], 2),))


def test_cocone_leg_must_end_at_apex() -> None:
    with pytest.raises(ConeError, match=r"leg 0 of the cocone has codomain 2"):
        Cocone(3, (function([0, 1], 2),))


def test_negative_apex_rejected() -> None:
    with pytest.raises(ConeError, match=r"got -1"):
        Cone(-1, ())


def test_parallel_pair_needs_matching_types() -> None:
    with pytest.raises(CategoryError, match=r"same domain and codomain"):
        ParallelPair(function([0], 2), function([0], 3))


def test_span_needs_common_domain() -> None:
    with pytest.raises(CategoryError, match=r"same domain"):
        Span(function([0], 2), function([0, 1], 2))


def test_cone_failures_name_equation_and_element() -> None:
    diagram = ParallelPair(function([0, 1, 1], 2), function([0, 0, 1], 2))
    report = cone_failures(diagram, Cone(2, (function([0, 1], 3),)))
    (failure,) = report.failures_of("cone.commutes")
    assert failure.witness == ("leg;f = leg;g", 1)
    assert (failure.lhs, failure.rhs) == (1, 0)
    assert not is_cone(diagram, Cone(2, (function([0, 1], 3),)))


def test_equalizer_rejects_noncommuting_cone() -> None:
    result = equalizer(function([0, 1, 1], 2), function([0, 0, 1], 2))
    with pytest.raises(ConeError, match=r"fails at element 1 of the apex"):
        result.mediate(Cone(2, (function([0, 1], 3),)))


def test_coequalizer_rejects_noncommuting_cocone() -> None:
    result = coequalizer(function([0, 2], 4), function([1, 3], 4))
    with pytest.raises(ConeError, match=r"fails at element 1 of A: 0 != 1"):
        result.mediate(Cocone(2, (function([0, 0, 0, 1], 2),)))


def test_pushout_rejects_cocone_missing_a_leg() -> None:
    result = pushout(function([0], 1), function([0], 1))
    with pytest.raises(ConeError, match=r"needs 2 leg\(s\)"):
        result.mediate(Cocone(1, (function([0], 1),)))


def test_cospan_cocone_is_one_leg_from_the_apex() -> None:
    diagram = Cospan(function([0], 2), function([1], 2))
    assert is_cocone(diagram, Cocone(1, (function([0, 0], 1),)))


# Universal properties, property-based


@given(st.data(), cospans())
def test_pullback_universal_property(
    data: st.DataObject, pair: tuple[FinFunction, FinFunction]
) -> None:
    f, g = pair
    result = pullback(f, g)
    cone = data.draw(pullback_cones(f, g))
    mediating = result.mediate(cone)
    assert mediating.then(result.projections[0]) == cone.legs[0]
    assert mediating.then(result.projections[1]) == cone.legs[1]
    report = limit_failures(result.diagram, result.cone, [cone])
    assert report.ok, report.failures


@given(cospans())
def test_pullback_apex_counts_matching_pairs(
    pair: tuple[FinFunction, FinFunction],
) -> None:
    f, g = pair
    result = pullback(f, g)
    left, right = result.projections
    pairs = {(left(k), right(k)) for k in range(result.apex)}
    expected = {(a, b) for a in range(f.dom) for b in range(g.dom) if f(a) == g(b)}
    assert pairs == expected
    assert result.apex == len(expected)


@given(st.data(), parallel_pairs())
def test_equalizer_universal_property(
    data: st.DataObject, pair: tuple[FinFunction, FinFunction]
) -> None:
    f, g = pair
    result = equalizer(f, g)
    cone = data.draw(equalizer_cones(f, g))
    assert result.mediate(cone).then(result.inclusion) == cone.legs[0]
    report = limit_failures(result.diagram, result.cone, [cone])
    assert report.ok, report.failures


@given(st.data(), objects_lists)
def test_product_universal_property(
    data: st.DataObject, objects: tuple[int, ...]
) -> None:
    result = product(*objects)
    cone = data.draw(product_cones(objects))
    mediating = result.mediate(cone)
    for projection, leg in zip(result.projections, cone.legs, strict=True):
        assert mediating.then(projection) == leg
    assert result.apex == math.prod(objects)
    report = limit_failures(result.diagram, result.cone, [cone])
    assert report.ok, report.failures


@given(st.data(), objects_lists)
def test_coproduct_universal_property(
    data: st.DataObject, objects: tuple[int, ...]
) -> None:
    result = coproduct(*objects)
    cocone = data.draw(coproduct_cocones(objects))
    mediating = result.mediate(cocone)
    for injection, leg in zip(result.injections, cocone.legs, strict=True):
        assert injection.then(mediating) == leg
    assert result.apex == sum(objects)
    report = colimit_failures(result.diagram, result.cocone, [cocone])
    assert report.ok, report.failures


@given(st.data(), parallel_pairs())
def test_coequalizer_universal_property(
    data: st.DataObject, pair: tuple[FinFunction, FinFunction]
) -> None:
    f, g = pair
    result = coequalizer(f, g)
    cocone = data.draw(coequalizer_cocones(f, g))
    assert result.quotient.then(result.mediate(cocone)) == cocone.legs[0]
    assert result.quotient.is_surjective()
    report = colimit_failures(result.diagram, result.cocone, [cocone])
    assert report.ok, report.failures


@given(st.data(), spans())
def test_pushout_universal_property(
    data: st.DataObject, pair: tuple[FinFunction, FinFunction]
) -> None:
    f, g = pair
    result = pushout(f, g)
    cocone = data.draw(pushout_cocones(f, g))
    mediating = result.mediate(cocone)
    assert result.legs[0].then(mediating) == cocone.legs[0]
    assert result.legs[1].then(mediating) == cocone.legs[1]
    report = colimit_failures(result.diagram, result.cocone, [cocone])
    assert report.ok, report.failures


@given(st.data(), st.integers(0, 3), st.integers(0, 3))
def test_binary_product_count_matches_enumeration(
    data: st.DataObject, a: int, b: int
) -> None:
    result = product(a, b)
    cone = data.draw(product_cones((a, b)))
    assert mediating_count_by_enumeration(result.cone, cone) == 1


# The checkers reject wrong claims


def test_pullback_missing_a_pair_fails_existence() -> None:
    claimed = Cone(4, (function([0, 0, 1, 3], 4), function([0, 1, 1, 3], 4)))
    report = limit_failures(Cospan(EXAMPLE_F, EXAMPLE_G), claimed, [EXAMPLE_CONE])
    (failure,) = report.failures
    assert failure.law == "limit.existence"
    assert failure.witness == (0, 1)
    assert mediating_count_by_enumeration(claimed, EXAMPLE_CONE) == 0


def test_pullback_with_repeated_pair_fails_uniqueness() -> None:
    claimed = Cone(
        6, (function([0, 0, 1, 1, 3, 3], 4), function([0, 1, 0, 1, 3, 3], 4))
    )
    report = limit_failures(Cospan(EXAMPLE_F, EXAMPLE_G), claimed, [EXAMPLE_CONE])
    assert not report.failures_of("limit.existence")
    uniqueness = report.failures_of("limit.uniqueness")
    assert (0, 2) in [failure.witness for failure in uniqueness]
    assert (-1, 4) in [failure.witness for failure in uniqueness]


def test_noncommuting_claimed_cone_fails() -> None:
    claimed = Cone(1, (function([2], 4), function([2], 4)))
    report = limit_failures(Cospan(EXAMPLE_F, EXAMPLE_G), claimed)
    (failure,) = report.failures_of("cone.commutes")
    assert (failure.lhs, failure.rhs) == (2, 3)
    assert not is_limit(Cospan(EXAMPLE_F, EXAMPLE_G), claimed)


def test_claimed_cone_with_wrong_legs_fails_fit() -> None:
    report = limit_failures(DiscreteDiagram((2, 3)), Cone(2, (function([0, 1], 2),)))
    assert report.failures_of("cone.fit")


def test_small_product_claim_fails_existence() -> None:
    claimed = Cone(3, (function([0, 0, 1], 2), function([0, 1, 0], 2)))
    test = Cone(1, (function([1], 2), function([1], 2)))
    report = limit_failures(DiscreteDiagram((2, 2)), claimed, [test])
    assert [failure.law for failure in report.failures] == ["limit.existence"]


def test_noncommuting_test_cone_raises() -> None:
    result = pullback(EXAMPLE_F, EXAMPLE_G)
    bad = Cone(1, (function([2], 4), function([2], 4)))
    with pytest.raises(ConeError, match=r"fails at element 0"):
        limit_failures(result.diagram, result.cone, [bad])


def test_coproduct_with_extra_element_fails_uniqueness() -> None:
    claimed = Cocone(4, (function([0, 1], 4), function([2], 4)))
    report = colimit_failures(DiscreteDiagram((2, 1)), claimed)
    (failure,) = report.failures
    assert failure.law == "colimit.uniqueness"
    assert failure.witness == (-1, 3)


def test_initial_claimed_as_one_fails_existence() -> None:
    claimed = Cocone(1, ())
    report = colimit_failures(DiscreteDiagram(()), claimed, [Cocone(0, ())])
    assert [failure.witness for failure in report.failures_of("colimit.existence")] == [
        (0, 0)
    ]


def test_too_coarse_coequalizer_fails_existence() -> None:
    f, g = function([0, 2], 4), function([1, 3], 4)
    claimed = Cocone(1, (FinFunction.constant(4, 0, 1),))
    test = coequalizer(f, g).cocone
    report = colimit_failures(ParallelPair(f, g), claimed, [test])
    (failure,) = report.failures
    assert failure.law == "colimit.existence"
    assert failure.witness == (0, 0)
    assert {failure.lhs, failure.rhs} == {0, 1}
    assert not is_colimit(ParallelPair(f, g), claimed, [test])


def test_noncommuting_claimed_cocone_fails() -> None:
    f, g = function([0, 2], 4), function([1, 3], 4)
    claimed = Cocone(4, (FinFunction.identity(4),))
    report = colimit_failures(ParallelPair(f, g), claimed)
    (failure,) = report.failures_of("cocone.commutes")
    assert failure.witness == ("f;leg = g;leg", 0)


def test_coequalizer_with_repeated_edges() -> None:
    result = coequalizer(
        FinFunction.constant(256, 0, 2), FinFunction.constant(256, 1, 2)
    )
    assert result.apex == 1
    assert result.quotient == FinFunction([0, 0], cod=1)


def test_pushout_glues_along_span() -> None:
    result = pushout(function([0, 1], 2), function([0, 0], 3))
    left, right = result.legs
    assert result.apex == 3
    assert left(0) == left(1) == right(0)
    assert len({right(0), right(1), right(2)}) == 3


def test_enumeration_agrees_with_counting_on_product() -> None:
    result = product(2, 2)
    for values in cartesian(range(2), repeat=2):
        test = Cone(1, (function([values[0]], 2), function([values[1]], 2)))
        assert mediating_count_by_enumeration(result.cone, test) == 1
