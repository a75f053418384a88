"""Hypothesis strategies that draw objects, morphisms and composable chains.

For a category that lists its objects and hom-sets (`Category.objects` and
`Category.hom` return sequences), the strategies here draw from those lists.
Categories that do not list them, such as FinSet or the categories of
matrices, register a `StrategyProvider` with `register_strategies`; the
provider draws an object, and a morphism out of a given object.

Every chain strategy draws f first, then g out of cod(f), then h out of
cod(g), so the drawn pairs and triples are composable by construction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import strategies as st

from categories.category import Category

Ob = TypeVar("Ob")
Mor = TypeVar("Mor")


@dataclass(frozen=True)
class StrategyProvider:
    """How to draw from a category that does not list its contents.

    Attributes
    ----------
    objects : callable
        ``objects(category)`` returns a strategy of objects.
    morphisms_from : callable
        ``morphisms_from(category, x)`` returns a strategy of morphisms with
        domain x.
    """

    objects: Callable[[Any], st.SearchStrategy[Any]]
    morphisms_from: Callable[[Any, Any], st.SearchStrategy[Any]]


_PROVIDERS: dict[type, StrategyProvider] = {}


def register_strategies(category_type: type, provider: StrategyProvider) -> None:
    """Register how to draw objects and morphisms of a category class and its subclasses."""
    _PROVIDERS[category_type] = provider


def _provider(category: Category[Any, Any]) -> StrategyProvider | None:
    for cls in type(category).__mro__:
        if cls in _PROVIDERS:
            return _PROVIDERS[cls]
    return None


def _no_strategy(category: Category[Any, Any]) -> TypeError:
    return TypeError(
        f"no Hypothesis strategy for {type(category).__name__}: it lists no objects"
        " and no provider is registered; implement objects() and hom(), or call"
        " register_strategies(type(category), StrategyProvider(...))"
    )


def objects(category: Category[Ob, Mor]) -> st.SearchStrategy[Ob]:
    """Draw objects of a category."""
    listed = category.objects()
    if listed is not None:
        if not listed:
            raise ValueError(f"{type(category).__name__} has no objects to draw")
        return st.sampled_from(list(listed))
    provider = _provider(category)
    if provider is None:
        raise _no_strategy(category)
    strategy: st.SearchStrategy[Ob] = provider.objects(category)
    return strategy


def morphisms_from(category: Category[Ob, Mor], x: Ob) -> st.SearchStrategy[Mor]:
    """Draw morphisms with domain `x`; the identity is always possible."""
    listed = category.objects()
    if listed is not None:
        out: list[Mor] = []
        for y in listed:
            hom = category.hom(x, y)
            if hom is None:
                raise _no_strategy(category)
            out += list(hom)
        if not out:
            return st.just(category.identity(x))
        return st.sampled_from(out)
    provider = _provider(category)
    if provider is None:
        raise _no_strategy(category)
    strategy: st.SearchStrategy[Mor] = provider.morphisms_from(category, x)
    return strategy


def morphisms(category: Category[Ob, Mor]) -> st.SearchStrategy[Mor]:
    """Draw morphisms of a category."""
    return objects(category).flatmap(lambda x: morphisms_from(category, x))


def composable_pairs(category: Category[Ob, Mor]) -> st.SearchStrategy[tuple[Mor, Mor]]:
    """Draw pairs (f, g) with cod(f) = dom(g)."""
    return morphisms(category).flatmap(
        lambda f: morphisms_from(category, category.cod(f)).map(lambda g: (f, g))
    )


def composable_triples(
    category: Category[Ob, Mor],
) -> st.SearchStrategy[tuple[Mor, Mor, Mor]]:
    """Draw triples (f, g, h) with cod(f) = dom(g) and cod(g) = dom(h)."""
    return composable_pairs(category).flatmap(
        lambda fg: morphisms_from(category, category.cod(fg[1])).map(
            lambda h: (fg[0], fg[1], h)
        )
    )
