"""The categorical core: categories, functors and their law checkers.

Composition order throughout: ``compose(f, g)`` is "f then g" (f;g), defined
when cod(f) = dom(g).
"""

from categories.category import Category, category_law_failures, composable_pairs
from categories.errors import CategoryError, CompositionError, ConeError, SizeLimitError
from categories.functor import Functor, functor_law_failures, is_functor
from categories.laws import LawFailure, LawReport, LawViolation, assert_laws

__all__ = [
    "Category",
    "CategoryError",
    "CompositionError",
    "ConeError",
    "Functor",
    "LawFailure",
    "LawReport",
    "LawViolation",
    "SizeLimitError",
    "assert_laws",
    "category_law_failures",
    "composable_pairs",
    "functor_law_failures",
    "is_functor",
]
