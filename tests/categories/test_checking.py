"""check_laws: exhaustive on small listed categories, Hypothesis-driven otherwise."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import strategies as st

from categories import Category, Functor, LawViolation, TwoCategory
from categories.checking import assert_lawful, check_laws
from categories.strategies import StrategyProvider, register_strategies


class Cyclic(Category[str, int]):
    """The cyclic group Z/n as a one-object category, listed in full."""

    def __init__(self, n: int, twist: int = 0) -> None:
        self.n = n
        self.twist = twist

    def dom(self, f: int) -> str:
        return "*"

    def cod(self, f: int) -> str:
        return "*"

    def identity(self, x: str) -> int:
        return 0

    def compose(self, f: int, g: int) -> int:
        # twist != 0 breaks the unit laws whenever f or g is the identity.
        extra = self.twist if (f == 0) != (g == 0) else 0
        return (f + g + extra) % self.n

    def objects(self) -> Sequence[str]:
        return ["*"]

    def hom(self, x: str, y: str) -> Sequence[int]:
        return list(range(self.n))


class Integers(Category[str, int]):
    """(Z, +) as a one-object category that cannot be listed."""

    def dom(self, f: int) -> str:
        return "*"

    def cod(self, f: int) -> str:
        return "*"

    def identity(self, x: str) -> int:
        return 0

    def compose(self, f: int, g: int) -> int:
        return f + g


class BrokenIntegers(Integers):
    """Known-bad: f;g = f - g is not associative."""

    def compose(self, f: int, g: int) -> int:
        return f - g


register_strategies(
    Integers,
    StrategyProvider(
        objects=lambda category: st.just("*"),
        morphisms_from=lambda category, x: st.integers(-50, 50),
    ),
)


class Reduce(Functor[str, int, str, int]):
    """Reduction Z -> Z/n, a functor; with `shift` it breaks identities."""

    def __init__(self, n: int, shift: int = 0) -> None:
        self._source = Integers()
        self._target = Cyclic(n)
        self.shift = shift

    @property
    def source(self) -> Integers:
        return self._source

    @property
    def target(self) -> Cyclic:
        return self._target

    def map_object(self, x: str) -> str:
        return x

    def map_morphism(self, f: int) -> int:
        return (f + self.shift) % self._target.n


def test_cyclic_checked_exhaustively() -> None:
    report = check_laws(Cyclic(4))
    assert report.ok
    assert report.checked["associativity"] == 4**3


def test_twisted_cyclic_rejected() -> None:
    report = check_laws(Cyclic(4, twist=1))
    assert report.failures_of("identity.left")
    assert report.failures_of("identity.right")


def test_integers_checked_by_hypothesis() -> None:
    report = check_laws(Integers(), max_examples=30)
    assert report.ok
    assert report.checked["associativity"] == 30


def test_broken_integers_rejected() -> None:
    report = check_laws(BrokenIntegers(), max_examples=30)
    assert report.failures_of("associativity")


def test_check_is_deterministic() -> None:
    first = check_laws(BrokenIntegers(), max_examples=20)
    second = check_laws(BrokenIntegers(), max_examples=20)
    assert [str(f) for f in first.failures] == [str(f) for f in second.failures]


def test_reduction_is_functor() -> None:
    assert check_laws(Reduce(5), max_examples=30).ok


def test_shifted_reduction_rejected() -> None:
    report = check_laws(Reduce(5, shift=1), max_examples=30)
    assert report.failures_of("functor.identity")
    assert report.failures_of("functor.composition")


def test_assert_lawful_raises_on_broken() -> None:
    with pytest.raises(LawViolation, match="associativity"):
        assert_lawful(BrokenIntegers(), max_examples=10)


def test_provider_inherited_by_subclass() -> None:
    class Unlisted(Integers):
        pass

    assert check_laws(Unlisted(), max_examples=5).ok


def test_unlisted_without_provider_is_type_error() -> None:
    class Bare(Category[int, int]):
        def dom(self, f: int) -> int:
            return 0

        def cod(self, f: int) -> int:
            return 0

        def identity(self, x: int) -> int:
            return 0

        def compose(self, f: int, g: int) -> int:
            return 0

    with pytest.raises(TypeError, match="register_strategies"):
        check_laws(Bare())


def test_check_laws_rejects_other_types() -> None:
    with pytest.raises(TypeError, match="Category, Functor"):
        check_laws(42)


def test_finset_checked_by_hypothesis() -> None:
    from categories.finset import FinSet

    report = check_laws(FinSet(), max_examples=50)
    assert report.ok
    assert report.checked["associativity"] == 50


def test_finset_off_by_one_rejected() -> None:
    from categories.finset import FinFunction, FinSet

    class ShiftedFinSet(FinSet):
        def compose(self, f: FinFunction, g: FinFunction) -> FinFunction:
            composite = super().compose(f, g)
            if composite.cod == 0:
                return composite
            return FinFunction((composite.values + 1) % composite.cod, composite.cod)

    report = check_laws(ShiftedFinSet(), max_examples=50)
    assert report.failures_of("identity.left")


def test_exact_matrices_checked_by_hypothesis() -> None:
    from categories.matrices import ExactMatrices

    report = check_laws(ExactMatrices(), max_examples=15)
    assert report.ok
    assert report.checked["associativity"] == 15


def test_numeric_matrices_checked_by_hypothesis() -> None:
    from categories.matrices import NumericMatrices

    assert check_laws(NumericMatrices(), max_examples=30).ok


class MonoidTwoCategory(TwoCategory[str, str, int]):
    """One 0-cell, one 1-cell, 2-cells the integers mod n.

    Vertical composition is addition; horizontal composition is addition
    too, or, with `broken`, a twisted operation a*b = a + 2b that is not
    compatible with addition, so the interchange law fails.
    """

    def __init__(self, n: int, broken: bool = False) -> None:
        self.n = n
        self.broken = broken

    def dom0(self, f: str) -> str:
        return "*"

    def cod0(self, f: str) -> str:
        return "*"

    def dom1(self, alpha: int) -> str:
        return "1"

    def cod1(self, alpha: int) -> str:
        return "1"

    def identity1(self, x: str) -> str:
        return "1"

    def compose1(self, f: str, g: str) -> str:
        return "1"

    def identity2(self, f: str) -> int:
        return 0

    def vcompose(self, alpha: int, beta: int) -> int:
        return (alpha + beta) % self.n

    def hcompose(self, alpha: int, beta: int) -> int:
        if self.broken:
            return (alpha * beta + alpha + beta) % self.n
        return (alpha + beta) % self.n

    def zero_cells(self) -> Sequence[str]:
        return ["*"]

    def one_cells(self, x: str, y: str) -> Sequence[str]:
        return ["1"]

    def two_cells(self, f: str, g: str) -> Sequence[int]:
        return list(range(self.n))


def test_two_category_checked_on_grids() -> None:
    report = check_laws(MonoidTwoCategory(5), max_examples=40)
    assert report.ok
    assert report.checked["interchange"] == 40


def test_broken_interchange_rejected() -> None:
    report = check_laws(MonoidTwoCategory(5, broken=True), max_examples=40)
    assert report.failures_of("interchange")


def test_transformation_checked_on_generators() -> None:
    from categories import (
        FinFunction,
        FinSet,
        GeneratedFunctor,
        NaturalTransformation,
        Presentation,
    )

    finset = FinSet()
    arrow = Presentation([0, 1], [("a", 0, 1)])
    functor = GeneratedFunctor(
        arrow, finset, {0: 4, 1: 2}, {"a": FinFunction([0, 0, 1, 1], cod=2)}
    )
    swap = {0: FinFunction([2, 3, 0, 1], cod=4), 1: FinFunction([1, 0], cod=2)}
    assert check_laws(NaturalTransformation(functor, functor, swap)).ok
    broken = {0: finset.identity(4), 1: FinFunction([1, 0], cod=2)}
    report = check_laws(NaturalTransformation(functor, functor, broken))
    assert report.failures_of("transformation.naturality")


def test_generator_law_checked_for_generated_functor() -> None:
    from categories import FinFunction, FinSet, GeneratedFunctor, Presentation

    # b = a in the presentation, so the images of a and b must agree.
    p = Presentation(["x", "y"], [("a", "x", "y"), ("b", "x", "y")], [(["b"], ["a"])])
    functor = GeneratedFunctor(
        p,
        FinSet(),
        {"x": 2, "y": 2},
        {"a": FinFunction([0, 1], cod=2), "b": FinFunction([1, 0], cod=2)},
    )
    report = check_laws(functor, max_examples=10)
    assert report.failures_of("functor.generator")


def test_mistyped_composite_reported_not_raised() -> None:
    from categories.finset import FinFunction, FinSet

    class WrongDomain(FinSet):
        # f;g comes out with domain cod(g) instead of dom(f).
        def compose(self, f: FinFunction, g: FinFunction) -> FinFunction:
            composite = super().compose(f, g)
            if composite.cod == 0 or composite.dom == g.cod:
                return composite
            return FinFunction([0] * g.cod, composite.cod)

    report = check_laws(WrongDomain(), max_examples=50)
    assert not report.ok
    assert report.failures_of("composition.typing") or report.failures_of(
        "identity.left"
    )


def test_mistyped_generator_image_reported() -> None:
    from categories import FinFunction, FinSet, GeneratedFunctor, Presentation

    chain = Presentation([0, 1, 2], [("f", 0, 1), ("g", 1, 2)])
    functor = GeneratedFunctor(
        chain,
        FinSet(),
        {0: 2, 1: 4, 2: 2},
        {"f": FinFunction([0, 1, 2], cod=3), "g": FinFunction([0, 1, 1, 0], cod=2)},
    )
    report = check_laws(functor, max_examples=20)
    assert report.failures_of("functor.domain") or report.failures_of(
        "functor.codomain"
    )
    assert report.failures_of("functor.composition")


def test_infinite_presentation_checked_by_drawing() -> None:
    from categories import FinFunction, FinSet, GeneratedFunctor, Presentation

    naturals = Presentation(["*"], [("s", "*", "*")])
    successor = GeneratedFunctor(
        naturals, FinSet(), {"*": 3}, {"s": FinFunction([1, 2, 0], cod=3)}
    )
    assert check_laws(naturals, max_examples=20).ok
    assert check_laws(successor, max_examples=20).ok


def test_drawn_failures_listed_once() -> None:
    report = check_laws(BrokenIntegers(), max_examples=50)
    texts = [str(f) for f in report.failures]
    assert len(texts) == len(set(texts))


def test_list_is_not_a_finfunction() -> None:
    from categories.finset import FinFunction, FinSet

    with pytest.raises(TypeError, match="FinSet composes FinFunctions"):
        FinSet().compose([0, 1], FinFunction([0, 1], cod=2))  # type: ignore[arg-type]


def test_list_component_rejected() -> None:
    from categories import (
        CategoryError,
        FinFunction,
        FinSet,
        GeneratedFunctor,
        NaturalTransformation,
        Presentation,
    )

    arrow = Presentation([0, 1], [("a", 0, 1)])
    functor = GeneratedFunctor(
        arrow, FinSet(), {0: 2, 1: 2}, {"a": FinFunction([0, 1], cod=2)}
    )
    with pytest.raises(CategoryError, match="at 0 is a list"):
        NaturalTransformation(functor, functor, {0: [0, 1], 1: FinFunction([0, 1], 2)})  # type: ignore[dict-item]


def test_paths_search_is_bounded() -> None:
    from categories import Presentation, SizeLimitError

    free = Presentation(
        ["x", "y"], [("a", "x", "x"), ("b", "x", "x")], max_morphisms=100
    )
    with pytest.raises(SizeLimitError, match="visited more than"):
        free.paths("x", "y", 30)


def test_nonterminating_completion_stops_at_bound() -> None:
    from categories import Presentation, SizeLimitError

    with pytest.raises(SizeLimitError, match="max_completion_steps"):
        Presentation(
            ["*"],
            [("a", "*", "*"), ("b", "*", "*")],
            [(["a", "b", "a"], ["b", "a", "b"])],
            max_completion_steps=2000,
        )


@pytest.mark.parametrize(
    "count, error", [(0, ValueError), (-3, ValueError), (2.5, TypeError)]
)
def test_max_examples_below_one_rejected(count: object, error: type) -> None:
    with pytest.raises(error, match="max_examples = .* pass a count >= 1"):
        check_laws(Cyclic(4), max_examples=count)  # type: ignore[arg-type]


def test_max_examples_accepts_numpy_integer() -> None:
    assert check_laws(Cyclic(4), max_examples=np.int64(5)).ok
