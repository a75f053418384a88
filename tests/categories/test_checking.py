"""check_laws: exhaustive on small listed categories, Hypothesis-driven otherwise."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from hypothesis import strategies as st

from categories import Category, Functor, LawViolation
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
    with pytest.raises(TypeError, match="Category or a Functor"):
        check_laws(42)
