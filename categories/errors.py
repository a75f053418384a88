"""Errors raised by the categorical core.

All derive from `CategoryError`, itself a `ValueError`, so callers can catch
the core's errors as a group or as the invalid values they are.
"""

from __future__ import annotations


class CategoryError(ValueError):
    """Base class of the core's errors."""


class CompositionError(CategoryError):
    """Raised when two morphisms are composed whose codomain and domain differ."""


class ConeError(CategoryError):
    """Raised when a cone or cocone does not commute, or does not fit its diagram."""


class SizeLimitError(CategoryError):
    """Raised when an enumeration would exceed its stated bound.

    Infinite or very large presentations, hom-sets and searches stop at a
    bound instead of hanging; the message names the bound and how to raise it.
    """
