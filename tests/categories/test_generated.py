"""Functors given on generators: relation checks, identities and composites."""

from __future__ import annotations

from collections.abc import Hashable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from categories.errors import CategoryError
from categories.finite import FiniteCategory
from categories.finset import FinFunction, FinSet
from categories.functor import functor_law_failures, is_functor
from categories.generated import GeneratedFunctor
from categories.presentation import Path, Presentation


def simplicial() -> Presentation:
    """V, E with d0, d1: V -> E, s0: E -> V, d0;s0 = id_V and d1;s0 = id_V."""
    return Presentation(
        ["V", "E"],
        [("d0", "V", "E"), ("d1", "V", "E"), ("s0", "E", "V")],
        [(["d0", "s0"], []), (["d1", "s0"], [])],
        name="simplicial",
    )


def fin(values: list[int], cod: int) -> FinFunction:
    return FinFunction(values, cod=cod)


def simplicial_images(d1: list[int]) -> dict[str, FinFunction]:
    """Return images of d0, d1, s0 in FinSet, with V -> 2, E -> 3 and d1 as given.

    With d1 = [0, 2] both relations hold (d0;s0 and d1;s0 are [0, 1]); with
    d1 = [1, 2], d1;s0 is [1, 1] and the relation d1;s0 = id_V fails.
    """
    return {"d0": fin([0, 1], 3), "d1": fin(d1, 3), "s0": fin([0, 1, 1], 2)}


def simplicial_functor(
    presentation: Presentation, d1: list[int]
) -> GeneratedFunctor[int, FinFunction]:
    return GeneratedFunctor(
        presentation, FinSet(), {"V": 2, "E": 3}, simplicial_images(d1), name="F"
    )


@st.composite
def paths(draw: st.DrawFn, presentation: Presentation, start: Hashable) -> Path:
    """Draw a composable path of up to 8 generators from `start`."""
    names: list[str] = []
    current = start
    for _ in range(draw(st.integers(0, 8))):
        out = [
            name
            for name in presentation.generator_names()
            if presentation.generator_type(name)[0] == current
        ]
        if not out:
            break
        name = draw(st.sampled_from(out))
        names.append(name)
        current = presentation.generator_type(name)[1]
    return presentation.path(*names, obj=start)


# A functor given on generators must respect every defining relation.


def test_simplicial_functor_passes_every_law() -> None:
    presentation = simplicial()
    functor = simplicial_functor(presentation, [0, 2])
    report = functor_law_failures(
        functor, presentation.objects(), presentation.morphisms()
    )
    assert report.ok, report.failures
    assert report.checked["functor.relation"] == 2


def test_simplicial_law_report_ok() -> None:
    assert simplicial_functor(simplicial(), [0, 2]).law_report().ok


def test_broken_relation_is_named() -> None:
    presentation = simplicial()
    functor = simplicial_functor(presentation, [1, 2])
    report = functor_law_failures(
        functor, presentation.objects(), presentation.generators()
    )
    (failure,) = report.failures_of("functor.relation")
    assert failure.witness == ("d1;s0 = id_V",)
    assert failure.lhs == fin([1, 1], 2)
    assert failure.rhs == fin([0, 1], 2)


def test_broken_relation_not_a_functor() -> None:
    presentation = simplicial()
    functor = simplicial_functor(presentation, [1, 2])
    assert not is_functor(functor, presentation.objects(), presentation.generators())
    failed = {f.witness for f in functor.law_report().failures_of("functor.relation")}
    assert failed == {("d1;s0 = id_V",)}


def test_broken_relation_via_finite_category() -> None:
    presentation = simplicial()
    category = FiniteCategory.from_presentation(presentation)
    images = {
        presentation.generator(name): image
        for name, image in simplicial_images([1, 2]).items()
    }
    functor = GeneratedFunctor(category, FinSet(), {"V": 2, "E": 3}, images)
    failed = [
        f.witness[0] for f in functor.law_report().failures_of("functor.relation")
    ]
    assert "d1;s0 = id_V" in failed
    assert all("d1" in name for name in failed)
    images[presentation.generator("d1")] = fin([0, 2], 3)
    fixed = GeneratedFunctor(category, FinSet(), {"V": 2, "E": 3}, images)
    assert fixed.law_report().ok


@given(data=st.data())
def test_simplicial_functor_preserves_composition(data: st.DataObject) -> None:
    presentation = simplicial()
    functor = simplicial_functor(presentation, [0, 2])
    start = data.draw(st.sampled_from(["V", "E"]))
    f = data.draw(paths(presentation, start))
    g = data.draw(paths(presentation, f.cod))
    lhs = functor.map_morphism(presentation.compose(f, g))
    rhs = functor.target.compose(functor.map_morphism(f), functor.map_morphism(g))
    assert lhs == rhs


@given(data=st.data())
def test_free_cycle_functor_preserves_composition(data: st.DataObject) -> None:
    # Any images define a functor on a free category, which is infinite here.
    cycle = Presentation(["x", "y"], [("a", "x", "y"), ("b", "y", "x")])
    functor = GeneratedFunctor(
        cycle, FinSet(), {"x": 3, "y": 2}, {"a": fin([0, 1, 1], 2), "b": fin([2, 0], 3)}
    )
    f = data.draw(paths(cycle, "x"))
    g = data.draw(paths(cycle, f.cod))
    lhs = functor.map_morphism(cycle.compose(f, g))
    rhs = functor.target.compose(functor.map_morphism(f), functor.map_morphism(g))
    assert lhs == rhs
    assert functor.law_report().ok


def test_identity_maps_to_identity() -> None:
    presentation = simplicial()
    functor = simplicial_functor(presentation, [0, 2])
    assert functor.map_morphism(presentation.identity("E")) == FinFunction.identity(3)


def test_equal_paths_have_one_image() -> None:
    presentation = simplicial()
    functor = simplicial_functor(presentation, [0, 2])
    images = {presentation.path("s0", "d0", "s0"): "cached"}
    assert images[presentation.generator("s0")] == "cached"
    assert functor.map_morphism(presentation.path("s0", "d1", "s0")) == fin(
        [0, 1, 1], 2
    )


# A generator that the relations make redundant.


def test_redundant_generator_image_checked() -> None:
    presentation = Presentation(
        ["x"], [("a", "x", "x"), ("b", "x", "x")], [(["b"], ["a"]), (["a", "a"], [])]
    )
    swap, unit = fin([1, 0], 2), FinFunction.identity(2)
    functor = GeneratedFunctor(presentation, FinSet(), {"x": 2}, {"a": swap, "b": unit})
    # b's normal form is a, so the relation b = a compares F(a) with itself;
    # only the generator check detects that the image given for b differs.
    report = functor.law_report()
    assert report.failures_of("functor.relation") == []
    (failure,) = report.failures_of("functor.generator")
    assert failure.witness == ("b",)
    assert failure.lhs == unit
    assert failure.rhs == swap


def test_consistent_redundant_generator_passes() -> None:
    presentation = Presentation(
        ["x"], [("a", "x", "x"), ("b", "x", "x")], [(["b"], ["a"]), (["a", "a"], [])]
    )
    swap = fin([1, 0], 2)
    functor = GeneratedFunctor(presentation, FinSet(), {"x": 2}, {"a": swap, "b": swap})
    assert functor.law_report().ok


# Identity and composite functors.


def test_identity_functor_fixes_every_morphism() -> None:
    presentation = simplicial()
    identity = GeneratedFunctor.identity(presentation)
    for f in presentation.morphisms():
        assert identity.map_morphism(f) == f
    assert identity.map_object("E") == "E"
    assert identity.law_report().ok


def test_identity_functor_of_finite_category() -> None:
    category = FiniteCategory.from_presentation(simplicial())
    identity = GeneratedFunctor.identity(category)
    assert all(identity.map_morphism(f) == f for f in category.morphisms())


def test_composite_applies_both_functors() -> None:
    presentation = simplicial()
    swap = GeneratedFunctor(
        presentation,
        presentation,
        {"V": "V", "E": "E"},
        {
            "d0": presentation.generator("d1"),
            "d1": presentation.generator("d0"),
            "s0": presentation.generator("s0"),
        },
        name="swap",
    )
    into_sets = simplicial_functor(presentation, [0, 2])
    composite = swap.then(into_sets)
    assert composite.name == "swap;F"
    assert composite.law_report().ok
    for f in presentation.morphisms():
        expected = into_sets.map_morphism(swap.map_morphism(f))
        assert composite.map_morphism(f) == expected


def test_composite_needs_matching_categories() -> None:
    functor = simplicial_functor(simplicial(), [0, 2])
    with pytest.raises(CategoryError, match="cannot compose F then"):
        functor.then(GeneratedFunctor.identity(simplicial()))  # type: ignore[arg-type]


# Validation at construction.


def test_missing_object_image_rejected() -> None:
    with pytest.raises(CategoryError, match="no image for the object 'E'"):
        GeneratedFunctor(simplicial(), FinSet(), {"V": 2}, simplicial_images([0, 2]))


def test_missing_generator_image_rejected() -> None:
    images = simplicial_images([0, 2])
    del images["s0"]
    with pytest.raises(CategoryError, match="no image for the generator 's0'"):
        GeneratedFunctor(simplicial(), FinSet(), {"V": 2, "E": 3}, images)


def test_unknown_generator_key_rejected() -> None:
    images = {**simplicial_images([0, 2]), "s1": fin([0, 1, 1], 2)}
    with pytest.raises(CategoryError, match="'s1', which is not a generator"):
        GeneratedFunctor(simplicial(), FinSet(), {"V": 2, "E": 3}, images)


def test_foreign_path_rejected() -> None:
    functor = simplicial_functor(simplicial(), [0, 2])
    with pytest.raises(CategoryError, match="not a morphism of simplicial"):
        functor.map_morphism(simplicial().generator("d0"))


def test_repr_names_both_categories() -> None:
    assert repr(simplicial_functor(simplicial(), [0, 2])) == (
        "GeneratedFunctor('F': simplicial -> FinSet)"
    )
