"""Strict 2-category laws: monoids as one-cell 2-categories, and Cat."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from itertools import permutations
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from categories import Category, CategoryError, Functor
from categories.finite import FiniteCategory
from categories.finset import FinFunction, FinSet, finfunctions
from categories.transformation import (
    NaturalTransformation,
    identity_transformation,
    whisker_right,
)
from categories.twocategory import (
    Cat,
    TwoCategory,
    is_two_category,
    two_category_law_failures,
)

# Test-only fixtures, as in the tests of transformations: diagrams of the
# walking arrow in FinSet, and the functors X -> X x A on FinSet. FinSet
# instances do not compare equal, so every functor here shares one instance.

FINSET = FinSet()
MAX_SIZE = 3

# Examples per property, half the suite's profile: Hypothesis still draws
# empty, singleton and unequal sets, at half the running time.
EXAMPLES = 25


# The walking arrow 0 -a-> 1.
ARROW = FiniteCategory(
    [0, 1],
    {"id0": (0, 0), "id1": (1, 1), "a": (0, 1)},
    {0: "id0", 1: "id1"},
    {
        ("id0", "id0"): "id0",
        ("id0", "a"): "a",
        ("a", "id1"): "a",
        ("id1", "id1"): "id1",
    },
    name="walking arrow",
)


class ArrowDiagram(Functor[Hashable, Hashable, int, FinFunction]):
    """The diagram F(0) -F(a)-> F(1) in FinSet given by one function."""

    def __init__(self, arrow: FinFunction) -> None:
        self.arrow = arrow
        self.name = f"D{arrow.tolist()}"

    @property
    def source(self) -> FiniteCategory:
        return ARROW

    @property
    def target(self) -> FinSet:
        return FINSET

    def map_object(self, x: Hashable) -> int:
        return self.arrow.dom if x == 0 else self.arrow.cod

    def map_morphism(self, f: Hashable) -> FinFunction:
        if f == "a":
            return self.arrow
        return FinFunction.identity(self.map_object(ARROW.dom(f)))


class ArrowEndofunctor(Functor[Hashable, Hashable, Hashable, Hashable]):
    """The functor of the walking arrow to itself with 0 -> start, 1 -> end."""

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end
        self.name = f"E{start}{end}"

    @property
    def source(self) -> FiniteCategory:
        return ARROW

    @property
    def target(self) -> FiniteCategory:
        return ARROW

    def map_object(self, x: Hashable) -> Hashable:
        return self.start if x == 0 else self.end

    def map_morphism(self, f: Hashable) -> Hashable:
        if f == "a" and self.start != self.end:
            return "a"
        return ARROW.identity(self.map_object(ARROW.dom(f)))


class Product(Functor[int, FinFunction, int, FinFunction]):
    """The functor X -> X x A on FinSet, with (x, i) numbered x * |A| + i."""

    def __init__(self, factor: int) -> None:
        self.factor = factor
        self.name = f"(-)x{factor}"

    @property
    def source(self) -> FinSet:
        return FINSET

    @property
    def target(self) -> FinSet:
        return FINSET

    def map_object(self, x: int) -> int:
        return x * self.factor

    def map_morphism(self, f: FinFunction) -> FinFunction:
        pairs = f.values[:, None] * self.factor + np.arange(self.factor)[None, :]
        return FinFunction(pairs.ravel(), cod=f.cod * self.factor)


Transformation = NaturalTransformation[Any, Any, Any, Any]


def product_transformation(
    source: Product, target: Product, phi: FinFunction
) -> Transformation:
    """Build the transformation X x A => X x B sending (x, i) to (x, phi(i))."""

    def component(n: int) -> FinFunction:
        pairs = np.arange(n)[:, None] * target.factor + phi.values[None, :]
        return FinFunction(pairs.ravel(), cod=n * target.factor)

    return NaturalTransformation(source, target, component, name=f"x{phi.tolist()}")


@st.composite
def natural_from(
    draw: st.DrawFn, source: Functor[Hashable, Hashable, int, FinFunction]
) -> Transformation:
    """Draw a natural transformation out of `source` into a new diagram.

    Each alpha_0(i) is drawn from the preimage under G(a) of alpha_1(F(a)(i)),
    which G(a) is extended to cover when needed, so the square commutes.
    """
    arrow = source.map_morphism("a")
    alpha_1 = draw(finfunctions(dom=arrow.cod, max_size=MAX_SIZE))
    base = draw(finfunctions(cod=alpha_1.cod, max_size=MAX_SIZE))
    needed = [alpha_1(arrow(i)) for i in range(arrow.dom)]
    extend = draw(st.booleans()) or not set(needed) <= set(base.tolist())
    values = base.tolist() + (list(range(alpha_1.cod)) if extend else [])
    target = ArrowDiagram(FinFunction(values, cod=alpha_1.cod))

    choices = draw(st.lists(st.integers(0, 7), min_size=arrow.dom, max_size=arrow.dom))
    alpha_0 = []
    for value, choice in zip(needed, choices, strict=True):
        fibre = [j for j, image in enumerate(values) if image == value]
        alpha_0.append(fibre[choice % len(fibre)])
    components = {0: FinFunction(alpha_0, cod=len(values)), 1: alpha_1}
    return NaturalTransformation(source, target, components)


@st.composite
def arrow_columns(draw: st.DrawFn) -> tuple[Transformation, Transformation]:
    """Draw alpha: F => G and beta: G => H between diagrams of the walking arrow."""
    source = ArrowDiagram(draw(finfunctions(max_size=MAX_SIZE)))
    alpha = draw(natural_from(source))
    beta = draw(natural_from(alpha.target))
    return alpha, beta


@st.composite
def product_columns(draw: st.DrawFn) -> tuple[Transformation, Transformation]:
    """Draw gamma: (-)xA => (-)xB and delta: (-)xB => (-)xC from A -> B -> C."""
    first = draw(finfunctions(max_size=MAX_SIZE))
    second = draw(finfunctions(dom=first.cod, max_size=MAX_SIZE))
    middle = Product(first.cod)
    gamma = product_transformation(Product(first.dom), middle, first)
    delta = product_transformation(middle, Product(second.cod), second)
    return gamma, delta


# FinSet does not list its objects, so Cat compares cells out of it here.
FINSET_PROBE = (
    FINSET,
    [0, 1, 2, 3],
    [
        FinFunction.empty(2),
        FinFunction([0], cod=1),
        FinFunction([1, 0, 1], cod=2),
        FinFunction([2, 0, 0], cod=3),
    ],
)


def finset_cat() -> Cat:
    return Cat(probes=[FINSET_PROBE])


# Monoids as 2-categories with one 0-cell and one 1-cell.

Permutation = tuple[int, ...]


def then(p: Permutation, q: Permutation) -> Permutation:
    """Return the permutation "p then q", i -> q[p[i]]."""
    return tuple(q[i] for i in p)


S3 = list(permutations(range(3)))


class MonoidTwoCategory(TwoCategory[str, str, Any]):
    """A monoid as a 2-category: one 0-cell, one 1-cell, its elements as 2-cells.

    Vertical composition is the monoid's product; horizontal composition is
    the product given. By Eckmann-Hilton, the interchange law holds only if
    both agree and are commutative.
    """

    def __init__(
        self,
        unit: Any,
        vertical: Callable[[Any, Any], Any],
        horizontal: Callable[[Any, Any], Any],
    ) -> None:
        self.unit = unit
        self.vertical = vertical
        self.horizontal = horizontal

    def dom0(self, f: str) -> str:
        return "*"

    def cod0(self, f: str) -> str:
        return "*"

    def dom1(self, alpha: Any) -> str:
        return "*"

    def cod1(self, alpha: Any) -> str:
        return "*"

    def identity1(self, x: str) -> str:
        return "*"

    def compose1(self, f: str, g: str) -> str:
        return "*"

    def identity2(self, f: str) -> Any:
        return self.unit

    def vcompose(self, alpha: Any, beta: Any) -> Any:
        return self.vertical(alpha, beta)

    def hcompose(self, alpha: Any, beta: Any) -> Any:
        return self.horizontal(alpha, beta)


def cyclic(n: int) -> MonoidTwoCategory:
    """Z/n under addition, for both compositions: a lawful 2-category."""

    def add(a: int, b: int) -> int:
        return (a + b) % n

    return MonoidTwoCategory(0, add, add)


def reversed_s3() -> MonoidTwoCategory:
    """Known-bad: S3 with horizontal composition the reversed product."""
    return MonoidTwoCategory(S3[0], then, lambda p, q: then(q, p))


IDENTITY = (0, 1, 2)
SWAP = (1, 0, 2)
CYCLE = (1, 2, 0)


def test_cyclic_monoid_is_two_category() -> None:
    report = two_category_law_failures(cyclic(4), ["*"], ["*"], [0, 1, 2, 3])
    assert report.ok, report.failures
    assert report.checked["interchange"] == 4**4


@settings(max_examples=EXAMPLES)
@given(st.lists(st.integers(0, 4), min_size=1, max_size=4))
def test_cyclic_monoid_laws_on_drawn_cells(cells: list[int]) -> None:
    assert is_two_category(cyclic(5), ["*"], ["*"], cells)


def test_reversed_s3_fails_only_interchange() -> None:
    report = two_category_law_failures(reversed_s3(), ["*"], ["*"], S3)
    laws = {failure.law for failure in report.failures}
    assert laws == {"interchange"}
    assert report.checked["hcompose.associativity"] == 6**3


def test_reversed_s3_interchange_sides() -> None:
    grid = (IDENTITY, IDENTITY, IDENTITY, IDENTITY)
    ok = two_category_law_failures(reversed_s3(), [], [], [], grids=[grid])
    assert ok.ok

    grid = (SWAP, IDENTITY, IDENTITY, CYCLE)
    report = two_category_law_failures(reversed_s3(), [], [], [], grids=[grid])
    (failure,) = report.failures
    assert failure.law == "interchange"
    assert failure.witness == grid
    # (SWAP·id) * (id·CYCLE) is CYCLE then SWAP; (SWAP*id)·(id*CYCLE) is
    # SWAP then CYCLE.
    assert failure.lhs == then(CYCLE, SWAP)
    assert failure.rhs == then(SWAP, CYCLE)


@settings(max_examples=EXAMPLES)
@given(st.tuples(*[st.sampled_from(S3)] * 4))
def test_reversed_s3_fails_iff_noncommuting(
    grid: tuple[Permutation, Permutation, Permutation, Permutation],
) -> None:
    # (a·b)*(c·d) = c;d;a;b and (a*c)·(b*d) = c;a;d;b agree iff a and d commute.
    alpha, _, _, delta = grid
    report = two_category_law_failures(reversed_s3(), [], [], [], grids=[grid])
    commute = then(alpha, delta) == then(delta, alpha)
    assert report.ok == commute


def test_s3_with_equal_products_fails_interchange() -> None:
    # Eckmann-Hilton: equal compositions must also be commutative.
    same = MonoidTwoCategory(IDENTITY, then, then)
    report = two_category_law_failures(same, ["*"], ["*"], S3)
    assert {failure.law for failure in report.failures} == {"interchange"}


def test_given_grid_must_compose() -> None:
    cat = finset_cat()
    alpha = identity_transformation(ArrowDiagram(FinFunction([0], cod=1)))
    with pytest.raises(CategoryError, match="does not compose: alpha\\*gamma"):
        two_category_law_failures(cat, [], [], [], grids=[(alpha,) * 4])


# Cat.


@settings(max_examples=EXAMPLES // 2)
@given(arrow_columns(), product_columns(), st.sampled_from([(0, 0), (0, 1), (1, 1)]))
def test_cat_laws_on_drawn_cells(
    arrow: tuple[Transformation, Transformation],
    product: tuple[Transformation, Transformation],
    ends: tuple[int, int],
) -> None:
    alpha, beta = arrow
    gamma, delta = product
    endofunctor = ArrowEndofunctor(*ends)
    one_cells = [
        endofunctor,
        alpha.source,
        alpha.target,
        beta.target,
        gamma.source,
        gamma.target,
        delta.target,
    ]
    two_cells = [identity_transformation(endofunctor), alpha, beta, gamma, delta]
    zero_cells: list[Category[Any, Any]] = [ARROW, FINSET]
    report = two_category_law_failures(finset_cat(), zero_cells, one_cells, two_cells)
    assert report.ok, report.failures
    assert report.checked["interchange"] >= 1
    assert report.checked["hcompose.associativity"] >= 1


@settings(max_examples=EXAMPLES)
@given(arrow_columns(), product_columns())
def test_cat_interchange_on_drawn_grid(
    arrow: tuple[Transformation, Transformation],
    product: tuple[Transformation, Transformation],
) -> None:
    grid = (*arrow, *product)
    report = two_category_law_failures(finset_cat(), [], [], [], grids=[grid])
    assert report.ok, report.failures
    assert report.checked["interchange"] == 1


@settings(max_examples=EXAMPLES)
@given(product_columns(), product_columns())
def test_cat_interchange_within_finset(
    first: tuple[Transformation, Transformation],
    second: tuple[Transformation, Transformation],
) -> None:
    report = two_category_law_failures(
        finset_cat(), [], [], [], grids=[(*first, *second)]
    )
    assert report.ok, report.failures


class ForgetfulCat(Cat):
    """Known-bad: horizontal composition forgets beta and whiskers by its target."""

    def hcompose(self, alpha: Transformation, beta: Transformation) -> Transformation:
        return whisker_right(alpha, beta.target)


def test_forgetful_horizontal_rejected() -> None:
    alpha = NaturalTransformation(
        ArrowDiagram(FinFunction([0, 0], cod=1)),
        ArrowDiagram(FinFunction([0, 0], cod=1)),
        {0: FinFunction([1, 0], cod=2), 1: FinFunction([0], cod=1)},
    )
    beta = identity_transformation(alpha.target)
    middle = Product(2)
    gamma = product_transformation(Product(1), middle, FinFunction([1], cod=2))
    delta = product_transformation(middle, Product(3), FinFunction([2, 0], cod=3))
    cat = ForgetfulCat(probes=[FINSET_PROBE])
    grid = (alpha, beta, gamma, delta)

    report = two_category_law_failures(cat, [], [], [alpha, beta, gamma, delta])
    assert report.failures_of("hcompose.typing")
    (interchange,) = [
        failure
        for failure in report.failures_of("interchange")
        if failure.witness == grid
    ]
    assert "could not be computed" in interchange.detail
    assert two_category_law_failures(finset_cat(), [], [], [], grids=[grid]).ok


def test_cat_finset_needs_probe() -> None:
    with pytest.raises(CategoryError, match="pass the objects and morphisms"):
        two_category_law_failures(Cat(), [FINSET], [Product(2)], [])


def test_cat_probe_decides_functor_equality() -> None:
    cat = finset_cat()
    assert cat.equal_1cells(Product(1), cat.identity1(FINSET))
    assert not cat.equal_1cells(Product(2), cat.identity1(FINSET))


def test_cat_enumerates_walking_arrow() -> None:
    diagram = ArrowDiagram(FinFunction([0, 1], cod=2))
    copy = ArrowDiagram(FinFunction([0, 1], cod=2))
    cat = Cat()
    assert cat.equal_1cells(diagram, copy)
    assert cat.equal_2cells(identity_transformation(diagram), cat.identity2(copy))


def test_cat_describes_differing_components() -> None:
    diagram = ArrowDiagram(FinFunction([0, 1], cod=2))
    swap = NaturalTransformation(
        diagram,
        diagram,
        {0: FinFunction([1, 0], cod=2), 1: FinFunction([1, 0], cod=2)},
    )
    cat = Cat()
    assert not cat.equal_2cells(swap, cat.identity2(diagram))
    assert "at object 0" in cat.describe_2cell_difference(swap, cat.identity2(diagram))
