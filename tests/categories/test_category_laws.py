"""The category and functor law checkers accept lawful instances and reject broken ones."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from categories import (
    Category,
    CompositionError,
    Functor,
    LawViolation,
    assert_laws,
    category_law_failures,
    functor_law_failures,
    is_functor,
)


class IntegersUnderAddition(Category[str, int]):
    """The one-object category whose morphisms are integers, composed by +."""

    def dom(self, f: int) -> str:
        return "*"

    def cod(self, f: int) -> str:
        return "*"

    def identity(self, x: str) -> int:
        return 0

    def compose(self, f: int, g: int) -> int:
        return f + g


class IntegersUnderSubtraction(IntegersUnderAddition):
    """Known-bad: subtraction is neither associative nor unital on the left."""

    def compose(self, f: int, g: int) -> int:
        return f - g


class Doubling(Functor[str, int, str, int]):
    """n -> 2n is a functor from (Z, +) to itself."""

    def __init__(self) -> None:
        self._category = IntegersUnderAddition()

    @property
    def source(self) -> IntegersUnderAddition:
        return self._category

    @property
    def target(self) -> IntegersUnderAddition:
        return self._category

    def map_object(self, x: str) -> str:
        return x

    def map_morphism(self, f: int) -> int:
        return 2 * f


class PlusOne(Doubling):
    """Known-bad: n -> n + 1 sends the identity 0 to 1 and breaks composition."""

    def map_morphism(self, f: int) -> int:
        return f + 1


integers = st.lists(st.integers(-100, 100), min_size=1, max_size=6)


@given(integers)
def test_addition_satisfies_category_laws(morphisms: list[int]) -> None:
    report = category_law_failures(IntegersUnderAddition(), ["*"], morphisms)
    assert report.ok, report.failures


@given(integers)
def test_doubling_satisfies_functor_laws(morphisms: list[int]) -> None:
    assert is_functor(Doubling(), ["*"], morphisms)


def test_subtraction_rejected_with_named_laws() -> None:
    report = category_law_failures(IntegersUnderSubtraction(), ["*"], [1, 2, 3])
    laws = {failure.law for failure in report.failures}
    assert "associativity" in laws
    assert "identity.left" in laws
    assert "identity.right" not in laws  # f - 0 = f holds


def test_subtraction_failure_has_witness_and_sides() -> None:
    report = category_law_failures(
        IntegersUnderSubtraction(), [], [], pairs=[], triples=[(1, 2, 3)]
    )
    (failure,) = report.failures
    assert failure.witness == (1, 2, 3)
    assert failure.lhs == (1 - 2) - 3
    assert failure.rhs == 1 - (2 - 3)


def test_plus_one_rejected_on_identity_and_composition() -> None:
    report = functor_law_failures(PlusOne(), ["*"], [2, 5])
    assert report.failures_of("functor.identity")[0].lhs == 1
    composition = report.failures_of("functor.composition")
    assert len(composition) == report.checked["functor.composition"]


def test_checked_counts_every_equation() -> None:
    report = category_law_failures(IntegersUnderAddition(), ["*"], [1, 2])
    assert (
        report.checked["associativity"] == 8
    )  # every triple of 2 composable morphisms
    assert report.checked["identity.left"] == 2


def test_assert_laws_raises_listing_failures() -> None:
    report = functor_law_failures(PlusOne(), ["*"], [3])
    with pytest.raises(LawViolation, match="functor.identity"):
        assert_laws(report)


def test_assert_laws_passes_on_lawful_report() -> None:
    assert_laws(functor_law_failures(Doubling(), ["*"], [3]))


def test_compose_all_needs_a_morphism() -> None:
    with pytest.raises(ValueError, match="at least one"):
        IntegersUnderAddition().compose_all([])


def test_composition_error_is_value_error() -> None:
    assert issubclass(CompositionError, ValueError)
