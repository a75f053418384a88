"""One call that checks every law of a category, functor, natural
transformation or 2-category: `check_laws`.

Finite categories that list their objects and hom-sets are checked
exhaustively while the number of composable triples stays under a bound.
Otherwise, and for categories such as FinSet that cannot be listed, the
laws are checked on examples drawn by the Hypothesis strategies of
`categories.strategies`. Either way the result is a `LawReport` with every
failure, never an exception; `assert_laws` turns it into a test failure.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from categories import strategies
from categories.category import Category, category_law_failures
from categories.errors import CategoryError, SizeLimitError
from categories.functor import Functor, functor_law_failures
from categories.generated import GeneratedFunctor
from categories.laws import LawFailure, LawReport, assert_laws, merge_reports
from categories.transformation import NaturalTransformation, naturality_failures
from categories.twocategory import TwoCategory, two_category_law_failures

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_MAX_EXAMPLES = 100
DEFAULT_EXHAUSTIVE_LIMIT = 100_000


def _check_max_examples(max_examples: object) -> int:
    """Return `max_examples` as an int; raise unless it is a count of at least 1."""
    try:
        if isinstance(max_examples, bool):
            raise TypeError
        count = operator.index(max_examples)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(
            f"max_examples = {max_examples!r} is not an integer; pass a count >= 1"
        ) from None
    if count < 1:
        raise ValueError(
            f"max_examples = {max_examples} draws no example; pass a count >= 1"
        )
    return count


def run_examples(
    strategy: st.SearchStrategy[T],
    check: Callable[[T], LawReport],
    max_examples: int = DEFAULT_MAX_EXAMPLES,
) -> LawReport:
    """Run `check` on examples drawn from `strategy` and merge the reports.

    The draw is derandomized, so the same call checks the same examples
    every time; Hypothesis's example database is not used. A failure found
    on several examples is listed once.
    """
    max_examples = _check_max_examples(max_examples)
    reports: list[LawReport] = []

    @settings(
        max_examples=max_examples,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(example: T) -> None:
        reports.append(check(example))

    collect()
    return merge_reports(reports)


def _composable_triple_count(category: Category[Any, Any], limit: int) -> int | None:
    listed = category.objects()
    if listed is None:
        return None
    sizes: dict[tuple[Any, Any], int] = {}
    for x in listed:
        for y in listed:
            hom = category.hom(x, y)
            if hom is None:
                return None
            sizes[(x, y)] = len(hom)
    total = 0
    for a in listed:
        for b in listed:
            for c in listed:
                for d in listed:
                    total += sizes[(a, b)] * sizes[(b, c)] * sizes[(c, d)]
                    if total > limit:
                        return total
    return total


def check_category(
    category: Category[Any, Any],
    max_examples: int = DEFAULT_MAX_EXAMPLES,
    exhaustive_limit: int = DEFAULT_EXHAUSTIVE_LIMIT,
) -> LawReport:
    """Check every category law, exhaustively when the category is small enough."""
    try:
        count = _composable_triple_count(category, exhaustive_limit)
    except SizeLimitError:
        # An infinite or very large hom-set: fall back to drawn examples.
        count = None
    listed = category.objects()
    if count is not None and count <= exhaustive_limit and listed is not None:
        morphisms: list[Any] = []
        for x in listed:
            for y in listed:
                morphisms += list(category.hom(x, y) or ())
        logger.debug("checking %s exhaustively: %d triples", category, count)
        return category_law_failures(category, listed, morphisms)

    def check(triple: tuple[Any, Any, Any]) -> LawReport:
        f, g, h = triple
        return category_law_failures(
            category,
            [category.dom(f)],
            [f, g, h],
            pairs=[(f, g), (g, h)],
            triples=[triple],
        )

    return run_examples(strategies.composable_triples(category), check, max_examples)


def check_functor(
    functor: Functor[Any, Any, Any, Any],
    max_examples: int = DEFAULT_MAX_EXAMPLES,
) -> LawReport:
    """Check every functor law on drawn pairs, and every relation of a presented source."""
    source = functor.source
    relations = functor_law_failures(functor, [], [], [], check_relations=True)

    def check(pair: tuple[Any, Any]) -> LawReport:
        f, g = pair
        return functor_law_failures(
            functor, [source.dom(f)], [f, g], [(f, g)], check_relations=False
        )

    drawn = run_examples(strategies.composable_pairs(source), check, max_examples)
    reports = [relations, drawn]
    if isinstance(functor, GeneratedFunctor):
        try:
            reports.append(functor.generator_failures())
        except CategoryError as error:
            failure = LawFailure(
                "functor.generator", (), None, None, f"undefined: {error}"
            )
            reports.append(LawReport({"functor.generator": 1}, (failure,)))
    return merge_reports(reports)


def check_transformation(
    alpha: NaturalTransformation[Any, Any, Any, Any],
    max_examples: int = DEFAULT_MAX_EXAMPLES,
) -> LawReport:
    """Check naturality on every generator square, or on drawn morphisms.

    When the domain category has a finite set of generators, their squares
    are checked, which suffices. Otherwise morphisms are drawn from the
    domain by its strategies.
    """
    domain = alpha.domain
    if domain.generators() is not None:
        return naturality_failures(alpha)
    return run_examples(
        strategies.morphisms(domain),
        lambda f: naturality_failures(alpha, morphisms=[f]),
        max_examples,
    )


def check_two_category(
    two_category: TwoCategory[Any, Any, Any],
    max_examples: int = DEFAULT_MAX_EXAMPLES,
) -> LawReport:
    """Check every 2-category law, the interchange law included, on drawn 2x2 grids."""
    t = two_category

    def check(grid: tuple[Any, Any, Any, Any]) -> LawReport:
        alpha, beta, gamma, delta = grid
        f, g = t.dom1(alpha), t.dom1(gamma)
        one_cells = [f, t.cod1(alpha), t.cod1(beta), g, t.cod1(gamma), t.cod1(delta)]
        zero_cells = [t.dom0(f), t.cod0(f), t.cod0(g)]
        return two_category_law_failures(t, zero_cells, one_cells, list(grid), [grid])

    return run_examples(strategies.two_cell_grids(t), check, max_examples)


def check_laws(subject: object, max_examples: int = DEFAULT_MAX_EXAMPLES) -> LawReport:
    """Check every law of a category, functor, transformation or 2-category.

    Parameters
    ----------
    subject : Category, Functor, NaturalTransformation or TwoCategory
        What to check.
    max_examples : int
        Examples Hypothesis draws when the subject is not checked exhaustively.

    Returns
    -------
    LawReport
        Equations checked per law, and every failure with witness and sides.

    Raises
    ------
    TypeError, ValueError
        If `max_examples` is not an integer of at least 1.
    """
    max_examples = _check_max_examples(max_examples)
    if isinstance(subject, Category):
        return check_category(subject, max_examples)
    if isinstance(subject, Functor):
        return check_functor(subject, max_examples)
    if isinstance(subject, NaturalTransformation):
        return check_transformation(subject, max_examples)
    if isinstance(subject, TwoCategory):
        return check_two_category(subject, max_examples)
    raise TypeError(
        "check_laws takes a Category, Functor, NaturalTransformation or"
        f" TwoCategory; got {type(subject).__name__}"
    )


def assert_lawful(subject: object, max_examples: int = DEFAULT_MAX_EXAMPLES) -> None:
    """Fail a pytest test with every law failure of `subject`, if there is one."""
    assert_laws(check_laws(subject, max_examples))


__all__: Sequence[str] = [
    "assert_lawful",
    "check_category",
    "check_functor",
    "check_laws",
    "check_transformation",
    "check_two_category",
    "run_examples",
]
