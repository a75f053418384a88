"""Finite categories from tables: validation, the vectorized check, limits."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from itertools import product

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from categories.category import category_law_failures
from categories.errors import CategoryError, CompositionError, ConeError, SizeLimitError
from categories.finite import (
    FiniteCategory,
    FiniteCone,
    FiniteDiagram,
    associativity_failures,
    composable_triple_count,
    table_law_failures,
)
from categories.finset import FinFunction
from categories.generated import GeneratedFunctor
from categories.presentation import Presentation


def walking_idempotent() -> FiniteCategory:
    return FiniteCategory(
        ["x"],
        {"1": ("x", "x"), "e": ("x", "x")},
        {"x": "1"},
        {("1", "1"): "1", ("1", "e"): "e", ("e", "1"): "e", ("e", "e"): "e"},
        name="idempotent",
    )


def divisors_of_12() -> FiniteCategory:
    """The divisors of 12 ordered by divisibility: a -> b when a divides b."""
    numbers = [1, 2, 3, 4, 6, 12]
    arrows = {(a, b): (a, b) for a in numbers for b in numbers if b % a == 0}
    return FiniteCategory(
        numbers,
        arrows,
        {a: (a, a) for a in numbers},
        {
            ((a, b), (c, d)): (a, d)
            for (a, b), (c, d) in product(arrows, repeat=2)
            if b == c
        },
        name="divisors",
    )


def small_sets() -> FiniteCategory:
    """The full subcategory of FinSet on the sets of sizes 0, 1 and 2."""
    sizes = [0, 1, 2]
    functions = {
        FinFunction(list(values), cod=m): (n, m)
        for n in sizes
        for m in sizes
        for values in product(range(m), repeat=n)
    }
    return FiniteCategory.from_compose(
        sizes,
        functions,
        {n: FinFunction.identity(n) for n in sizes},
        lambda f, g: f.then(g),
        name="FinSet_2",
    )


def cyclic_group(order: int) -> FiniteCategory:
    return FiniteCategory.from_compose(
        ["*"],
        {k: ("*", "*") for k in range(order)},
        {"*": 0},
        lambda a, b: (a + b) % order,
        name=f"Z_{order}",
    )


def fin(values: list[int], cod: int) -> FinFunction:
    return FinFunction(values, cod=cod)


def loop_failures(table: np.ndarray) -> list[tuple[int, int, int]]:
    """Reference check: every triple with f;g and g;h defined, one at a time."""
    rows = table.tolist()
    n = len(rows)
    return [
        (f, g, h)
        for f in range(n)
        for g in range(n)
        for h in range(n)
        if rows[f][g] >= 0
        and rows[g][h] >= 0
        and (rows[rows[f][g]][h] if rows[f][g] >= 0 else -1)
        != (rows[f][rows[g][h]] if rows[g][h] >= 0 else -1)
    ]


# Tables that are categories.


@pytest.mark.parametrize(
    "build", [walking_idempotent, divisors_of_12, small_sets, lambda: cyclic_group(5)]
)
@given(data=st.data())
def test_category_laws_on_drawn_morphisms(
    build: Callable[[], FiniteCategory], data: st.DataObject
) -> None:
    category = build()
    morphisms = list(category.morphisms())
    f = data.draw(st.sampled_from(morphisms))
    g = data.draw(
        st.sampled_from([m for m in morphisms if category.dom(m) == category.cod(f)])
    )
    h = data.draw(
        st.sampled_from([m for m in morphisms if category.dom(m) == category.cod(g)])
    )
    report = category_law_failures(
        category,
        category.objects(),
        [f, g, h],
        pairs=[(f, g), (g, h)],
        triples=[(f, g, h)],
    )
    assert report.ok, report.failures


def test_law_report_counts_every_triple() -> None:
    report = small_sets().law_report()
    assert report.ok
    assert report.checked["associativity"] == composable_triple_count(
        small_sets().composition_table
    )
    assert report.checked["identity.left"] == 11


def test_hom_sets_of_small_sets() -> None:
    category = small_sets()
    assert len(category.hom(2, 2)) == 4
    assert category.hom(2, 0) == ()
    assert len(category.hom(0, 2)) == 1
    assert len(category.morphisms()) == 11


def test_compose_uses_table() -> None:
    category = small_sets()
    f, g = fin([1, 0], 2), fin([0, 0], 1)
    assert category.compose(f, g) == fin([0, 0], 1)
    with pytest.raises(CompositionError, match="differs from dom"):
        category.compose(g, f)


def test_unknown_morphism_rejected() -> None:
    with pytest.raises(CategoryError, match="'z' is not a morphism"):
        walking_idempotent().dom("z")


def test_from_presentation_of_simplicial() -> None:
    presentation = Presentation(
        ["V", "E"],
        [("d0", "V", "E"), ("d1", "V", "E"), ("s0", "E", "V")],
        [(["d0", "s0"], []), (["d1", "s0"], [])],
        name="simplicial",
    )
    category = FiniteCategory.from_presentation(presentation)
    assert len(category.morphisms()) == 7
    assert category.generators() == presentation.generators()
    d0, s0 = presentation.generator("d0"), presentation.generator("s0")
    assert category.compose(d0, s0) == presentation.identity("V")


def test_from_presentation_of_infinite_raises() -> None:
    cycle = Presentation(["x"], [("a", "x", "x")])
    with pytest.raises(SizeLimitError, match="infinitely many"):
        FiniteCategory.from_presentation(cycle)


def test_from_presentation_over_bound_raises() -> None:
    presentation = Presentation(["x"], [("a", "x", "x")], [(["a"] * 30, [])])
    with pytest.raises(SizeLimitError, match="max_morphisms=10"):
        FiniteCategory.from_presentation(presentation, max_morphisms=10)


def test_words_compose_to_their_morphism() -> None:
    category = small_sets()
    for f in category.morphisms():
        word = category.word(f)
        start = category.identity(category.dom(f))
        assert category.compose_all([start, *word]) == f


def test_relations_hold_in_the_table() -> None:
    category = divisors_of_12()
    for name, lhs, rhs in category.relations():
        start = category.identity(category.dom((lhs or rhs)[0]))
        left = category.compose_all([start, *lhs])
        right = category.compose_all([start, *rhs])
        assert left == right, name


def test_generators_must_generate() -> None:
    with pytest.raises(CategoryError, match="do not generate 'e'"):
        FiniteCategory(
            ["x"],
            {"1": ("x", "x"), "e": ("x", "x")},
            {"x": "1"},
            {("1", "1"): "1", ("1", "e"): "e", ("e", "1"): "e", ("e", "e"): "e"},
            generators=[],
        )


def test_opposite_reverses_composition() -> None:
    category = small_sets()
    opposite = category.opposite()
    f, g = fin([1, 0], 2), fin([0, 0], 1)
    assert opposite.compose(g, f) == category.compose(f, g)
    assert opposite.dom(g) == 1
    assert opposite.opposite() is category


# Tables that are not categories.


def test_non_associative_table_rejected() -> None:
    # With x;x = y, y;x = 1 and x;y = x, (x;x);x = y;x = 1 but
    # x;(x;x) = x;y = x.
    table = {
        ("1", "1"): "1", ("1", "x"): "x", ("1", "y"): "y",
        ("x", "1"): "x", ("y", "1"): "y",
        ("x", "x"): "y", ("x", "y"): "x", ("y", "x"): "1", ("y", "y"): "y",
    }  # fmt: skip
    morphisms = {"1": ("*", "*"), "x": ("*", "*"), "y": ("*", "*")}
    with pytest.raises(CategoryError, match="associativity") as error:
        FiniteCategory(["*"], morphisms, {"*": "1"}, table)
    assert "('x', 'x', 'x')" in str(error.value)
    assert "('x';'x');'x' = '1' but 'x';('x';'x') = 'x'" in str(error.value)


def test_non_associative_failure_has_both_sides() -> None:
    table = {
        ("1", "1"): "1", ("1", "x"): "x", ("1", "y"): "y",
        ("x", "1"): "x", ("y", "1"): "y",
        ("x", "x"): "y", ("x", "y"): "x", ("y", "x"): "1", ("y", "y"): "y",
    }  # fmt: skip
    morphisms = {"1": ("*", "*"), "x": ("*", "*"), "y": ("*", "*")}
    report = table_law_failures(["*"], morphisms, {"*": "1"}, table)
    failure = next(f for f in report.failures if f.witness == ("x", "x", "x"))
    assert failure.law == "associativity"
    assert failure.lhs == "1"
    assert failure.rhs == "x"


def test_identity_that_is_not_a_unit_rejected() -> None:
    table = {("1", "1"): "1", ("1", "e"): "1", ("e", "1"): "e", ("e", "e"): "e"}
    with pytest.raises(CategoryError, match="identity.left") as error:
        FiniteCategory(["x"], {"1": ("x", "x"), "e": ("x", "x")}, {"x": "1"}, table)
    assert "'1';'e' = '1'" in str(error.value)


def test_missing_identity_rejected() -> None:
    with pytest.raises(CategoryError, match="object 'y' has no identity"):
        FiniteCategory(["x", "y"], {"1": ("x", "x")}, {"x": "1"}, {("1", "1"): "1"})


def test_identity_of_wrong_type_rejected() -> None:
    morphisms = {"1": ("x", "x"), "f": ("x", "y"), "1y": ("y", "y")}
    table = {
        ("1", "1"): "1", ("1", "f"): "f", ("f", "1y"): "f", ("1y", "1y"): "1y",
    }  # fmt: skip
    report = table_law_failures(["x", "y"], morphisms, {"x": "1", "y": "f"}, table)
    assert [f.witness for f in report.failures_of("identity.typing")] == [("y",)]


def test_missing_composite_rejected() -> None:
    table = {("1", "1"): "1", ("1", "e"): "e", ("e", "1"): "e"}
    with pytest.raises(CategoryError, match="composition.closure") as error:
        FiniteCategory(["x"], {"1": ("x", "x"), "e": ("x", "x")}, {"x": "1"}, table)
    assert "('e', 'e')" in str(error.value)


def test_composite_of_wrong_type_rejected() -> None:
    morphisms = {"1x": ("x", "x"), "1y": ("y", "y"), "f": ("x", "y"), "g": ("y", "x")}
    table = {
        ("1x", "1x"): "1x", ("1y", "1y"): "1y",
        ("1x", "f"): "f", ("f", "1y"): "f", ("1y", "g"): "g", ("g", "1x"): "g",
        ("f", "g"): "1x", ("g", "f"): "g",
    }  # fmt: skip
    report = table_law_failures(["x", "y"], morphisms, {"x": "1x", "y": "1y"}, table)
    (failure,) = report.failures_of("composition.typing")
    assert failure.witness == ("g", "f")
    assert failure.lhs == ("y", "x")
    assert failure.rhs == ("y", "y")
    assert report.checked["associativity"] == 0


def test_entry_for_non_composable_pair_rejected() -> None:
    morphisms = {"1x": ("x", "x"), "1y": ("y", "y"), "f": ("x", "y")}
    table = {("1x", "1x"): "1x", ("1y", "1y"): "1y", ("f", "f"): "f"}
    with pytest.raises(CategoryError, match=r"table\[\('f', 'f'\)\] is given"):
        FiniteCategory(["x", "y"], morphisms, {"x": "1x", "y": "1y"}, table)


def test_unknown_morphism_in_table_rejected() -> None:
    with pytest.raises(CategoryError, match="names 'z', which is not a morphism"):
        FiniteCategory(
            ["x"], {"1": ("x", "x")}, {"x": "1"}, {("1", "1"): "1", ("1", "z"): "1"}
        )


def test_morphism_with_unknown_object_rejected() -> None:
    with pytest.raises(CategoryError, match="codomain 'w', which is not an object"):
        FiniteCategory(["x"], {"1": ("x", "x"), "f": ("x", "w")}, {"x": "1"}, {})


def test_non_associative_compose_rejected() -> None:
    with pytest.raises(CategoryError, match="associativity"):
        FiniteCategory.from_compose(
            ["*"], {k: ("*", "*") for k in range(3)}, {"*": 0}, lambda a, b: (a - b) % 3
        )


# The vectorized associativity check.

tables = st.integers(1, 7).flatmap(
    lambda n: hnp.arrays(np.int64, (n, n), elements=st.integers(-1, n - 1))
)


@given(tables)
def test_vectorized_and_loop_checks_agree(table: np.ndarray) -> None:
    found = [tuple(int(i) for i in t) for t in associativity_failures(table)]
    assert found == loop_failures(table)


@given(tables)
def test_triple_count_matches_loop(table: np.ndarray) -> None:
    n = table.shape[0]
    expected = sum(
        1
        for f, g, h in product(range(n), repeat=3)
        if table[f, g] >= 0 and table[g, h] >= 0
    )
    assert composable_triple_count(table) == expected


@given(st.integers(1, 12), st.integers(0, 143), st.integers(1, 11))
def test_corrupted_group_checks_agree(order: int, position: int, shift: int) -> None:
    # One changed entry need not break associativity: in Z_2, setting 1;1 = 1
    # gives the walking idempotent. So only agreement is asserted here.
    table = np.array(cyclic_group(order).composition_table)
    f, g = divmod(position % (order * order), order)
    table[f, g] = (table[f, g] + shift) % order
    found = associativity_failures(table)
    assert [tuple(int(i) for i in t) for t in found] == loop_failures(table)


def test_corrupted_group_table_rejected() -> None:
    table = np.array(cyclic_group(5).composition_table)
    table[2, 3] = 1  # 2 + 3 is 0 in Z_5
    found = [tuple(int(i) for i in t) for t in associativity_failures(table)]
    assert (2, 3, 1) in found
    assert found == loop_failures(table)


def test_vectorized_check_slices_large_tables() -> None:
    order = 90  # 91**3 entries exceed one slice, so several slices run
    table = np.array(cyclic_group(order).composition_table)
    table[7, 9] = 0
    found = associativity_failures(table)
    assert len(found) > 0
    assert [tuple(int(i) for i in t) for t in found] == loop_failures(table)


def test_vectorized_check_rejects_bad_shapes() -> None:
    with pytest.raises(CategoryError, match="square"):
        associativity_failures(np.zeros((2, 3), dtype=int))
    with pytest.raises(CategoryError, match="not a morphism index"):
        associativity_failures(np.array([[5]]))


def test_empty_table_has_no_failures() -> None:
    assert associativity_failures(np.zeros((0, 0), dtype=int)).shape == (0, 3)


# Limits and colimits by search.


def test_product_in_divisors_is_gcd() -> None:
    category = divisors_of_12()
    found = category.limit(FiniteDiagram({"a": 4, "b": 6}))
    assert found is not None
    assert found.apex == 2
    assert found.cone.legs == {"a": (2, 4), "b": (2, 6)}


def test_coproduct_in_divisors_is_lcm() -> None:
    found = divisors_of_12().colimit(FiniteDiagram({"a": 4, "b": 6}))
    assert found is not None
    assert found.apex == 12
    assert found.kind == "colimit"


def test_empty_limit_is_terminal() -> None:
    category = divisors_of_12()
    terminal = category.limit(FiniteDiagram({}))
    initial = category.colimit(FiniteDiagram({}))
    assert terminal is not None and terminal.apex == 12
    assert initial is not None and initial.apex == 1


def test_product_in_group_does_not_exist() -> None:
    assert cyclic_group(3).limit(FiniteDiagram({"a": "*", "b": "*"})) is None


def test_product_too_large_for_small_sets_is_none() -> None:
    # 2 x 2 has four elements, and no set of size at most 2 is a product.
    assert small_sets().limit(FiniteDiagram({"a": 2, "b": 2})) is None


def test_product_of_one_and_two_in_small_sets() -> None:
    found = small_sets().limit(FiniteDiagram({"a": 1, "b": 2}))
    assert found is not None
    assert found.apex == 2
    assert found.cone.legs["a"] == fin([0, 0], 1)


def test_pullback_in_small_sets() -> None:
    # f = [0, 0] and g = [0, 1] into 2 meet in {(0, 0), (1, 0)}, a set of size 2.
    category = small_sets()
    cospan = FiniteDiagram(
        {"a": 2, "b": 2, "x": 2},
        {"f": ("a", "x", fin([0, 0], 2)), "g": ("b", "x", fin([0, 1], 2))},
    )
    found = category.limit(cospan)
    assert found is not None
    assert found.apex == 2
    assert category.limit_failures(cospan, found.cone).ok


def test_equalizer_in_small_sets_is_empty() -> None:
    pair = FiniteDiagram(
        {"a": 1, "b": 2},
        {"f": ("a", "b", fin([0], 2)), "g": ("a", "b", fin([1], 2))},
    )
    found = small_sets().limit(pair)
    assert found is not None
    assert found.apex == 0


def test_mediate_returns_unique_factorization() -> None:
    category = divisors_of_12()
    diagram = FiniteDiagram({"a": 4, "b": 6})
    found = category.limit(diagram)
    assert found is not None
    other = FiniteCone(1, {"a": (1, 4), "b": (1, 6)})
    assert found.mediate(other) == (1, 2)


def test_mediate_for_colimit_leaves_apex() -> None:
    category = small_sets()
    diagram = FiniteDiagram({"a": 1, "b": 1})
    found = category.colimit(diagram)
    assert found is not None
    assert found.apex == 2
    other = FiniteCone(1, {"a": fin([0], 1), "b": fin([0], 1)})
    mediator = found.mediate(other)
    assert mediator == fin([0, 0], 1)


def test_mediate_rejects_non_cone() -> None:
    category = small_sets()
    pair = FiniteDiagram(
        {"a": 2, "b": 2},
        {"f": ("a", "b", fin([0, 1], 2)), "g": ("a", "b", fin([0, 0], 2))},
    )
    found = category.limit(pair)
    assert found is not None
    with pytest.raises(ConeError, match="cone.commutes"):
        found.mediate(FiniteCone(1, {"a": fin([1], 2), "b": fin([1], 2)}))


def test_wrong_limit_rejected_on_existence() -> None:
    category = divisors_of_12()
    diagram = FiniteDiagram({"a": 4, "b": 6})
    claimed = FiniteCone(1, {"a": (1, 4), "b": (1, 6)})
    report = category.limit_failures(diagram, claimed)
    assert not report.ok
    (failure,) = report.failures_of("limit.existence")
    assert failure.witness == (FiniteCone(2, {"a": (2, 4), "b": (2, 6)}),)


def test_wrong_limit_rejected_on_uniqueness() -> None:
    category = small_sets()
    diagram = FiniteDiagram({"a": 1, "b": 1})
    claimed = FiniteCone(2, {"a": fin([0, 0], 1), "b": fin([0, 0], 1)})
    report = category.limit_failures(diagram, claimed)
    failures = report.failures_of("limit.uniqueness")
    assert [f.witness[0].apex for f in failures] == [1, 2]
    assert report.failures_of("limit.existence") == []


def test_non_commuting_cone_rejected() -> None:
    category = small_sets()
    pair = FiniteDiagram(
        {"a": 1, "b": 2},
        {"f": ("a", "b", fin([0], 2)), "g": ("a", "b", fin([1], 2))},
    )
    claimed = FiniteCone(1, {"a": fin([0], 1), "b": fin([0], 2)})
    report = category.limit_failures(pair, claimed)
    (failure,) = report.failures_of("cone.commutes")
    assert failure.witness == ("g",)
    assert failure.lhs == fin([1], 2)
    assert failure.rhs == fin([0], 2)


def test_ill_typed_cone_rejected() -> None:
    report = divisors_of_12().limit_failures(
        FiniteDiagram({"a": 4}), FiniteCone(2, {"a": (2, 6)})
    )
    (failure,) = report.failures
    assert failure.law == "cone.typing"
    assert failure.lhs == (2, 6)
    assert failure.rhs == (2, 4)


def test_wrong_colimit_rejected() -> None:
    category = divisors_of_12()
    diagram = FiniteDiagram({"a": 4, "b": 6})
    report = category.colimit_failures(
        diagram, FiniteCone(12, {"a": (4, 12), "b": (6, 12)})
    )
    assert report.ok
    wrong = category.colimit_failures(
        diagram, FiniteCone(12, {"a": (4, 12), "b": (4, 12)})
    )
    assert wrong.failures_of("cocone.typing")


def test_found_limits_pass_the_check() -> None:
    category = small_sets()
    for a, b in product([0, 1, 2], repeat=2):
        diagram = FiniteDiagram({"a": a, "b": b})
        for found, check in (
            (category.limit(diagram), category.limit_failures),
            (category.colimit(diagram), category.colimit_failures),
        ):
            if found is not None:
                assert check(diagram, found.cone).ok


def test_cone_search_bound() -> None:
    with pytest.raises(SizeLimitError, match="max_cones=3"):
        small_sets().limit(FiniteDiagram({"a": 2, "b": 2}), max_cones=3)
    with pytest.raises(SizeLimitError, match="max_search_steps=2"):
        small_sets().limit(FiniteDiagram({"a": 2, "b": 2}), max_search_steps=2)


def test_cones_lists_every_cone() -> None:
    assert len(small_sets().cones(FiniteDiagram({"a": 2, "b": 2}), 2)) == 16


def test_diagram_that_does_not_fit_rejected() -> None:
    with pytest.raises(CategoryError, match="carries"):
        small_sets().limit(
            FiniteDiagram({"a": 1, "b": 1}, {"f": ("a", "b", fin([0, 0], 2))})
        )
    with pytest.raises(CategoryError, match="not an object"):
        small_sets().limit(FiniteDiagram({"a": 3}))


def test_limit_of_functor_diagram() -> None:
    cospan = Presentation(["a", "b", "x"], [("f", "a", "x"), ("g", "b", "x")])
    category = small_sets()
    functor = GeneratedFunctor(
        cospan,
        category,
        {"a": 2, "b": 2, "x": 2},
        {"f": fin([0, 0], 2), "g": fin([0, 1], 2)},
    )
    found = category.limit(functor)
    assert found is not None
    assert found.apex == 2
    legs: dict[Hashable, object] = dict(found.cone.legs)
    assert set(legs) == {"a", "b", "x"}
