"""Natural transformations into FinSet: naturality, compositions, whiskering."""

from __future__ import annotations

from collections.abc import Hashable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from categories import CategoryError, Functor
from categories.finite import FiniteCategory
from categories.finset import FinFunction, FinSet, finfunctions
from categories.functor import functor_law_failures
from categories.transformation import (
    ComposedFunctor,
    IdentityFunctor,
    NaturalTransformation,
    equal_functors,
    equal_transformations,
    horizontal,
    identity_transformation,
    is_natural,
    naturality_failures,
    vertical,
    whisker_left,
    whisker_right,
)

# Test-only fixtures: diagrams of the walking arrow in FinSet, and the
# functors X -> X x A on FinSet. FinSet instances do not compare equal, so
# every functor here shares one instance.

FINSET = FinSet()

# Sizes of drawn finite sets stay at most this, so composites stay small.
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


def product_transformation(
    source: Product, target: Product, phi: FinFunction
) -> NaturalTransformation[int, FinFunction, int, FinFunction]:
    """Build the transformation X x A => X x B sending (x, i) to (x, phi(i))."""

    def component(n: int) -> FinFunction:
        pairs = np.arange(n)[:, None] * target.factor + phi.values[None, :]
        return FinFunction(pairs.ravel(), cod=n * target.factor)

    return NaturalTransformation(source, target, component, name=f"x{phi.tolist()}")


# Strategies.

arrows = finfunctions(max_size=MAX_SIZE)
diagrams = arrows.map(ArrowDiagram)
endofunctors = st.sampled_from([(0, 0), (0, 1), (1, 1)]).map(
    lambda ends: ArrowEndofunctor(*ends)
)
# Morphisms of FinSet to check transformations out of FinSet on.
finset_morphisms = st.lists(finfunctions(max_size=MAX_SIZE), min_size=1, max_size=4)


@st.composite
def natural_from(
    draw: st.DrawFn, source: Functor[Hashable, Hashable, int, FinFunction]
) -> NaturalTransformation[Hashable, Hashable, int, FinFunction]:
    """Draw a natural transformation out of `source` into a new diagram.

    The square F(a);alpha_1 = alpha_0;G(a) is solved for alpha_0: each
    alpha_0(i) is drawn from the preimage under G(a) of alpha_1(F(a)(i)),
    which G(a) is extended to cover when needed.
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
    components: dict[Hashable, FinFunction] = {
        0: FinFunction(alpha_0, cod=len(values)),
        1: alpha_1,
    }
    return NaturalTransformation(source, target, components)


naturals = diagrams.flatmap(natural_from)
composable_naturals = naturals.flatmap(
    lambda alpha: natural_from(alpha.target).map(lambda beta: (alpha, beta))
)


@st.composite
def product_naturals(
    draw: st.DrawFn,
) -> NaturalTransformation[int, FinFunction, int, FinFunction]:
    """Draw a transformation (-) x A => (-) x B from a function A -> B."""
    phi = draw(finfunctions(max_size=MAX_SIZE))
    return product_transformation(Product(phi.dom), Product(phi.cod), phi)


def components_of(
    alpha: NaturalTransformation[Hashable, Hashable, int, FinFunction],
) -> list[list[int]]:
    return [alpha.component(x).tolist() for x in ARROW.objects()]


# The square of case C4: F(0) = 4, F(1) = 2, F(a) = [0, 0, 1, 1].

C4_DIAGRAM = ArrowDiagram(FinFunction([0, 0, 1, 1], cod=2))


def c4_transformation(
    alpha_0: list[int],
) -> NaturalTransformation[Hashable, Hashable, int, FinFunction]:
    components: dict[Hashable, FinFunction] = {
        0: FinFunction(alpha_0, cod=4),
        1: FinFunction([1, 0], cod=2),
    }
    return NaturalTransformation(C4_DIAGRAM, C4_DIAGRAM, components)


def test_c4_swap_is_natural() -> None:
    alpha = c4_transformation([2, 3, 0, 1])
    report = naturality_failures(alpha)
    assert report.ok, report.failures
    assert report.checked["transformation.naturality"] == 1
    assert report.checked["transformation.component"] == 4


def test_c4_square_sides() -> None:
    alpha = c4_transformation([2, 3, 0, 1])
    swapped = FinFunction([1, 1, 0, 0], cod=2)
    assert FINSET.compose(C4_DIAGRAM.arrow, alpha.component(1)) == swapped
    assert FINSET.compose(alpha.component(0), C4_DIAGRAM.arrow) == swapped


def test_c4_swap_squared_is_identity() -> None:
    alpha = c4_transformation([2, 3, 0, 1])
    square = vertical(alpha, alpha)
    assert equal_transformations(square, identity_transformation(C4_DIAGRAM))
    assert components_of(square) == [[0, 1, 2, 3], [0, 1]]


def test_c4_identity_at_zero_fails_at_a() -> None:
    alpha = c4_transformation([0, 1, 2, 3])
    report = naturality_failures(alpha)
    (failure,) = report.failures
    assert failure.law == "transformation.naturality"
    assert failure.witness == ("a",)
    assert failure.lhs == FinFunction([1, 1, 0, 0], cod=2)
    assert failure.rhs == FinFunction([0, 0, 1, 1], cod=2)
    assert "first at element 0" in failure.detail
    assert not is_natural(alpha)


def test_missing_component_named() -> None:
    with pytest.raises(CategoryError, match=r"no component at the object\(s\) \[1\]"):
        NaturalTransformation(
            C4_DIAGRAM, C4_DIAGRAM, {0: FinFunction.identity(4)}, name="partial"
        )


def test_component_lookup_unknown_object() -> None:
    alpha = c4_transformation([2, 3, 0, 1])
    with pytest.raises(CategoryError, match="no component at 7"):
        alpha.component(7)


def test_mismatched_functor_categories_rejected() -> None:
    with pytest.raises(CategoryError, match="same source and target"):
        # The functors' types differ on purpose: the check runs at run time.
        NaturalTransformation(C4_DIAGRAM, Product(2), FinFunction.identity)  # type: ignore[misc]


def test_component_typing_failure_named() -> None:
    components: dict[Hashable, FinFunction] = {
        0: FinFunction.identity(3),
        1: FinFunction([1, 0], cod=2),
    }
    alpha = NaturalTransformation(C4_DIAGRAM, C4_DIAGRAM, components)
    report = naturality_failures(alpha)
    typing = report.failures_of("transformation.component")
    assert [failure.witness for failure in typing] == [(0,), (0,)]
    assert typing[0].lhs == 3
    assert typing[0].rhs == 4
    # The square cannot even be formed, which is reported, not raised.
    assert report.failures_of("transformation.naturality")


def test_no_generators_needs_morphisms() -> None:
    alpha = identity_transformation(Product(2))
    with pytest.raises(CategoryError, match="pass the morphisms"):
        naturality_failures(alpha)


def test_every_failing_square_reported() -> None:
    # x -> x + 1 mod n is natural for no non-identity function below.
    def shift(n: int) -> FinFunction:
        return FinFunction([(x + 1) % n for x in range(n)], cod=n)

    identity = IdentityFunctor(FINSET)
    alpha = NaturalTransformation(identity, identity, shift, name="shift")
    morphisms = [
        FinFunction([0, 0], cod=2),
        FinFunction([0, 2, 1], cod=3),
        FinFunction([1], cod=3),
    ]
    report = naturality_failures(alpha, morphisms)
    witnesses = [failure.witness for failure in report.failures]
    assert witnesses == [(f,) for f in morphisms]
    assert report.checked["transformation.naturality"] == 3


def test_shift_natural_on_identities_only() -> None:
    def shift(n: int) -> FinFunction:
        return FinFunction([(x + 1) % n for x in range(n)], cod=n)

    identity = IdentityFunctor(FINSET)
    alpha = NaturalTransformation(identity, identity, shift, name="shift")
    assert is_natural(alpha, [FinFunction.identity(n) for n in range(4)])


@settings(max_examples=EXAMPLES)
@given(naturals)
def test_drawn_transformations_natural(
    alpha: NaturalTransformation[Hashable, Hashable, int, FinFunction],
) -> None:
    report = naturality_failures(alpha)
    assert report.ok, report.failures


@settings(max_examples=EXAMPLES)
@given(naturals, st.data())
def test_perturbed_component_rejected(
    alpha: NaturalTransformation[Hashable, Hashable, int, FinFunction],
    data: st.DataObject,
) -> None:
    arrow = alpha.source.map_morphism("a")
    alpha_1 = alpha.component(1)
    if arrow.dom == 0 or alpha_1.cod < 2:
        return
    i = data.draw(st.integers(0, arrow.dom - 1))
    point = arrow(i)
    values = alpha_1.tolist()
    values[point] = (values[point] + 1) % alpha_1.cod
    components: dict[Hashable, FinFunction] = {
        0: alpha.component(0),
        1: FinFunction(values, cod=alpha_1.cod),
    }
    broken = NaturalTransformation(alpha.source, alpha.target, components)
    (failure,) = naturality_failures(broken).failures
    assert failure.law == "transformation.naturality"
    assert failure.witness == ("a",)


@settings(max_examples=EXAMPLES)
@given(composable_naturals)
def test_vertical_composite_natural(
    pair: tuple[
        NaturalTransformation[Hashable, Hashable, int, FinFunction],
        NaturalTransformation[Hashable, Hashable, int, FinFunction],
    ],
) -> None:
    alpha, beta = pair
    composite = vertical(alpha, beta)
    assert is_natural(composite)
    assert composite.source is alpha.source
    assert composite.target is beta.target
    for x in ARROW.objects():
        expected = FINSET.compose(alpha.component(x), beta.component(x))
        assert composite.component(x) == expected


@settings(max_examples=EXAMPLES)
@given(composable_naturals)
def test_vertical_identity_units(
    pair: tuple[
        NaturalTransformation[Hashable, Hashable, int, FinFunction],
        NaturalTransformation[Hashable, Hashable, int, FinFunction],
    ],
) -> None:
    alpha, _ = pair
    left = vertical(identity_transformation(alpha.source), alpha)
    right = vertical(alpha, identity_transformation(alpha.target))
    assert equal_transformations(left, alpha)
    assert equal_transformations(right, alpha)


@settings(max_examples=EXAMPLES)
@given(composable_naturals, st.data())
def test_vertical_associative(
    pair: tuple[
        NaturalTransformation[Hashable, Hashable, int, FinFunction],
        NaturalTransformation[Hashable, Hashable, int, FinFunction],
    ],
    data: st.DataObject,
) -> None:
    alpha, beta = pair
    gamma = data.draw(natural_from(beta.target))
    left = vertical(vertical(alpha, beta), gamma)
    right = vertical(alpha, vertical(beta, gamma))
    assert equal_transformations(left, right)


def test_vertical_mismatch_rejected() -> None:
    alpha = c4_transformation([2, 3, 0, 1])
    other = identity_transformation(ArrowDiagram(FinFunction([0, 1], cod=2)))
    with pytest.raises(CategoryError, match="differ at object 0"):
        vertical(alpha, other)


def test_vertical_accepts_equal_distinct_functors() -> None:
    alpha = c4_transformation([2, 3, 0, 1])
    copy = ArrowDiagram(FinFunction([0, 0, 1, 1], cod=2))
    composite = vertical(alpha, identity_transformation(copy))
    assert composite.target is copy


@settings(max_examples=EXAMPLES)
@given(naturals, st.integers(0, MAX_SIZE))
def test_whisker_right_natural(
    alpha: NaturalTransformation[Hashable, Hashable, int, FinFunction], factor: int
) -> None:
    functor = Product(factor)
    whiskered = whisker_right(alpha, functor)
    assert is_natural(whiskered)
    assert whiskered.source == ComposedFunctor(alpha.source, functor)
    for x in ARROW.objects():
        assert whiskered.component(x) == functor.map_morphism(alpha.component(x))


@settings(max_examples=EXAMPLES)
@given(naturals, endofunctors)
def test_whisker_left_by_endofunctor_natural(
    alpha: NaturalTransformation[Hashable, Hashable, int, FinFunction],
    functor: ArrowEndofunctor,
) -> None:
    whiskered = whisker_left(functor, alpha)
    assert is_natural(whiskered)
    for x in ARROW.objects():
        assert whiskered.component(x) == alpha.component(functor.map_object(x))


@settings(max_examples=EXAMPLES)
@given(diagrams, product_naturals(), finset_morphisms)
def test_whisker_left_into_finset_natural(
    diagram: ArrowDiagram,
    beta: NaturalTransformation[int, FinFunction, int, FinFunction],
    morphisms: list[FinFunction],
) -> None:
    assert is_natural(beta, morphisms)
    whiskered = whisker_left(diagram, beta)
    assert is_natural(whiskered)
    for x in ARROW.objects():
        assert whiskered.component(x) == beta.component(diagram.map_object(x))


@settings(max_examples=EXAMPLES)
@given(naturals, product_naturals())
def test_horizontal_composite_natural(
    alpha: NaturalTransformation[Hashable, Hashable, int, FinFunction],
    beta: NaturalTransformation[int, FinFunction, int, FinFunction],
) -> None:
    composite = horizontal(alpha, beta)
    assert is_natural(composite)
    assert composite.source == ComposedFunctor(alpha.source, beta.source)
    assert composite.target == ComposedFunctor(alpha.target, beta.target)


@settings(max_examples=EXAMPLES)
@given(naturals, product_naturals())
def test_horizontal_both_paths_agree(
    alpha: NaturalTransformation[Hashable, Hashable, int, FinFunction],
    beta: NaturalTransformation[int, FinFunction, int, FinFunction],
) -> None:
    composite = horizontal(alpha, beta)
    for x in ARROW.objects():
        moved = alpha.component(x)
        upper = FINSET.compose(
            beta.source.map_morphism(moved),
            beta.component(alpha.target.map_object(x)),
        )
        lower = FINSET.compose(
            beta.component(alpha.source.map_object(x)),
            beta.target.map_morphism(moved),
        )
        assert composite.component(x) == upper
        assert upper == lower


@settings(max_examples=EXAMPLES)
@given(naturals, product_naturals())
def test_horizontal_with_identities_is_whiskering(
    alpha: NaturalTransformation[Hashable, Hashable, int, FinFunction],
    beta: NaturalTransformation[int, FinFunction, int, FinFunction],
) -> None:
    right = horizontal(alpha, identity_transformation(beta.source))
    left = horizontal(identity_transformation(alpha.source), beta)
    assert equal_transformations(right, whisker_right(alpha, beta.source))
    assert equal_transformations(left, whisker_left(alpha.source, beta))


def test_horizontal_mismatch_rejected() -> None:
    alpha = c4_transformation([2, 3, 0, 1])
    with pytest.raises(CategoryError, match="cannot compose"):
        horizontal(alpha, alpha)  # type: ignore[misc]


@settings(max_examples=EXAMPLES)
@given(diagrams, st.integers(0, MAX_SIZE))
def test_composed_functor_satisfies_laws(diagram: ArrowDiagram, factor: int) -> None:
    functor = ComposedFunctor(diagram, Product(factor))
    report = functor_law_failures(functor, ARROW.objects(), ["id0", "a", "id1"])
    assert report.ok, report.failures
    assert functor.map_object(0) == diagram.arrow.dom * factor


@settings(max_examples=EXAMPLES)
@given(finset_morphisms)
def test_identity_functor_satisfies_laws(morphisms: list[FinFunction]) -> None:
    report = functor_law_failures(IdentityFunctor(FINSET), [0, 1, 3], morphisms)
    assert report.ok, report.failures


@settings(max_examples=EXAMPLES)
@given(diagrams, endofunctors, st.integers(0, MAX_SIZE))
def test_composition_associative_and_unital(
    diagram: ArrowDiagram, functor: ArrowEndofunctor, factor: int
) -> None:
    product = Product(factor)
    left = ComposedFunctor(ComposedFunctor(functor, diagram), product)
    right = ComposedFunctor(functor, ComposedFunctor(diagram, product))
    assert equal_functors(left, right)
    assert equal_functors(ComposedFunctor(IdentityFunctor(ARROW), diagram), diagram)
    assert equal_functors(ComposedFunctor(diagram, IdentityFunctor(FINSET)), diagram)


def test_composed_functor_mismatch_rejected() -> None:
    with pytest.raises(CategoryError, match="must be the source of"):
        ComposedFunctor(Product(2), C4_DIAGRAM)  # type: ignore[misc]


def test_composite_functor_equality_and_hash() -> None:
    product = Product(2)
    first = ComposedFunctor(C4_DIAGRAM, product)
    second = ComposedFunctor(C4_DIAGRAM, product)
    assert first == second
    assert hash(first) == hash(second)
    assert {first: "value"}[second] == "value"
    assert first != ComposedFunctor(C4_DIAGRAM, Product(2))


def test_identity_functor_equality_and_hash() -> None:
    assert IdentityFunctor(ARROW) == IdentityFunctor(ARROW)
    assert hash(IdentityFunctor(ARROW)) == hash(IdentityFunctor(ARROW))
    assert IdentityFunctor(ARROW) != IdentityFunctor(FINSET)


def test_equal_functors_detects_difference() -> None:
    other = ArrowDiagram(FinFunction([0, 1, 1, 1], cod=2))
    assert not equal_functors(C4_DIAGRAM, other)


def test_equal_functors_finset_needs_sample() -> None:
    with pytest.raises(CategoryError, match="pass the objects and morphisms"):
        equal_functors(Product(1), IdentityFunctor(FINSET))


def test_equal_functors_on_given_sample() -> None:
    sample = [FinFunction([2, 0], cod=3), FinFunction.empty(2)]
    assert equal_functors(Product(1), IdentityFunctor(FINSET), [0, 2, 3], sample)
    assert not equal_functors(Product(2), IdentityFunctor(FINSET), [0, 2, 3], sample)
