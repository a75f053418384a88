"""The categorical core: categories, functors, transformations, 2-categories,
limits, and checkers that return every law failure.

Composition order throughout: ``compose(f, g)`` is "f then g" (f;g), defined
when cod(f) = dom(g).
"""

from categories.category import Category, category_law_failures, composable_pairs
from categories.checking import assert_lawful, check_laws
from categories.errors import CategoryError, CompositionError, ConeError, SizeLimitError
from categories.finite import (
    FiniteCategory,
    FiniteCone,
    FiniteDiagram,
    FiniteLimit,
    associativity_failures,
    table_law_failures,
)
from categories.finset import FinFunction, FinSet
from categories.functor import Functor, functor_law_failures, is_functor
from categories.generated import GeneratedFunctor
from categories.laws import LawFailure, LawReport, LawViolation, assert_laws
from categories.limits import (
    Cocone,
    Cone,
    coequalizer,
    colimit_failures,
    coproduct,
    equalizer,
    initial,
    is_colimit,
    is_limit,
    limit_failures,
    product,
    pullback,
    pushout,
    terminal,
)
from categories.matrices import (
    ExactMatrices,
    ExactMatrix,
    NumericMatrices,
    NumericMatrix,
)
from categories.presentation import Path, Presentation, Relation
from categories.transformation import (
    ComposedFunctor,
    IdentityFunctor,
    NaturalTransformation,
    horizontal,
    identity_transformation,
    is_natural,
    naturality_failures,
    vertical,
    whisker_left,
    whisker_right,
)
from categories.twocategory import (
    Cat,
    TwoCategory,
    is_two_category,
    two_category_law_failures,
)

__all__ = [
    "Cat",
    "Category",
    "CategoryError",
    "Cocone",
    "ComposedFunctor",
    "CompositionError",
    "Cone",
    "ConeError",
    "ExactMatrices",
    "ExactMatrix",
    "FinFunction",
    "FinSet",
    "FiniteCategory",
    "FiniteCone",
    "FiniteDiagram",
    "FiniteLimit",
    "Functor",
    "GeneratedFunctor",
    "IdentityFunctor",
    "LawFailure",
    "LawReport",
    "LawViolation",
    "NaturalTransformation",
    "NumericMatrices",
    "NumericMatrix",
    "Path",
    "Presentation",
    "Relation",
    "SizeLimitError",
    "TwoCategory",
    "assert_lawful",
    "assert_laws",
    "associativity_failures",
    "category_law_failures",
    "check_laws",
    "coequalizer",
    "colimit_failures",
    "composable_pairs",
    "coproduct",
    "equalizer",
    "functor_law_failures",
    "horizontal",
    "identity_transformation",
    "initial",
    "is_colimit",
    "is_functor",
    "is_limit",
    "is_natural",
    "is_two_category",
    "limit_failures",
    "naturality_failures",
    "product",
    "pullback",
    "pushout",
    "table_law_failures",
    "terminal",
    "two_category_law_failures",
    "vertical",
    "whisker_left",
    "whisker_right",
]
