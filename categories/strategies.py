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

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import strategies as st

from categories.category import Category
from categories.twocategory import TwoCategory

T = TypeVar("T")
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
    """Draw objects of a category: from its provider if one is registered, else its list."""
    provider = _provider(category)
    if provider is not None:
        registered: st.SearchStrategy[Ob] = provider.objects(category)
        return registered
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
    provider = _provider(category)
    if provider is not None:
        registered: st.SearchStrategy[Mor] = provider.morphisms_from(category, x)
        return registered
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


def _matrices_from(category: Any, dom: int) -> st.SearchStrategy[Any]:
    """Draw matrices dom -> cod with small integer entries, cod in 0..3."""

    def build(cod: int) -> st.SearchStrategy[Any]:
        entries = st.lists(
            st.lists(st.integers(-3, 3), min_size=dom, max_size=dom),
            min_size=cod,
            max_size=cod,
        )
        return entries.map(
            lambda rows: (
                category.zero(dom, cod)
                if not rows or not dom
                else category.matrix(rows)
            )
        )

    return st.integers(0, 3).flatmap(build)


def _paths_from(category: Any, x: Any) -> st.SearchStrategy[Any]:
    """Draw paths of up to 6 generators out of `x` by a random walk on the graph.

    Walking the generator graph needs no hom-set enumeration, so it works
    for infinite presentations too; the path is then put in normal form.
    """
    outgoing: dict[Any, list[str]] = {}
    for name in category.generator_names():
        dom, _ = category.generator_type(name)
        outgoing.setdefault(dom, []).append(name)

    def walk(choices: list[int]) -> Any:
        names: list[str] = []
        here = x
        for choice in choices:
            options = outgoing.get(here, [])
            if not options:
                break
            name = options[choice % len(options)]
            names.append(name)
            here = category.generator_type(name)[1]
        return category.path(*names, obj=x)

    return st.lists(st.integers(0, 2**16), max_size=6).map(walk)


def _register_builtin_providers() -> None:
    from categories.finset import FinSet, finfunctions
    from categories.matrices import MatrixCategory
    from categories.presentation import Presentation

    register_strategies(
        Presentation,
        StrategyProvider(
            objects=lambda category: st.sampled_from(list(category.objects())),
            morphisms_from=_paths_from,
        ),
    )

    # Sizes up to 5 include the empty and singleton sets and keep hom-sets
    # small enough that Hypothesis shrinks failures quickly.
    register_strategies(
        FinSet,
        StrategyProvider(
            objects=lambda category: st.integers(0, 5),
            morphisms_from=lambda category, x: finfunctions(dom=x, max_size=5),
        ),
    )
    register_strategies(
        MatrixCategory,
        StrategyProvider(
            objects=lambda category: st.integers(0, 3),
            morphisms_from=_matrices_from,
        ),
    )


_register_builtin_providers()


# ---------------------------------------------------------------- 2-categories


def _listed(values: Sequence[T] | None, kind: str, owner: object) -> list[T]:
    if values is None:
        raise TypeError(
            f"{type(owner).__name__} does not list its {kind}; implement the"
            " enumeration hooks zero_cells(), one_cells(x, y) and two_cells(f, g)"
        )
    return list(values)


def two_cells_from(
    two_category: TwoCategory[Any, Any, Any], f: Any
) -> st.SearchStrategy[Any]:
    """Draw 2-cells whose domain 1-cell is `f`; the identity 2-cell is always possible."""
    x, y = two_category.dom0(f), two_category.cod0(f)
    cells: list[Any] = []
    for g in _listed(two_category.one_cells(x, y), "1-cells", two_category):
        cells += _listed(two_category.two_cells(f, g), "2-cells", two_category)
    return st.sampled_from(cells) if cells else st.just(two_category.identity2(f))


def _one_cells_from(
    two_category: TwoCategory[Any, Any, Any], x: Any
) -> st.SearchStrategy[Any]:
    cells: list[Any] = []
    for y in _listed(two_category.zero_cells(), "0-cells", two_category):
        cells += _listed(two_category.one_cells(x, y), "1-cells", two_category)
    return st.sampled_from(cells) if cells else st.just(two_category.identity1(x))


def _vertical_pair_from(
    two_category: TwoCategory[Any, Any, Any], f: Any
) -> st.SearchStrategy[tuple[Any, Any]]:
    return two_cells_from(two_category, f).flatmap(
        lambda alpha: two_cells_from(two_category, two_category.cod1(alpha)).map(
            lambda beta: (alpha, beta)
        )
    )


def two_cell_grids(
    two_category: TwoCategory[Any, Any, Any],
) -> st.SearchStrategy[tuple[Any, Any, Any, Any]]:
    """Draw 2x2 grids (alpha, beta, gamma, delta) of 2-cells.

    alpha: f => g and beta: g => h are 2-cells between 1-cells x -> y, and
    gamma: f' => g' and delta: g' => h' between 1-cells y -> z, so both
    sides of the interchange law, (alpha.beta)*(gamma.delta) and
    (alpha*gamma).(beta*delta), are defined. The 2-category must list its
    cells through its enumeration hooks.
    """
    zero = st.sampled_from(_listed(two_category.zero_cells(), "0-cells", two_category))

    def grid_from(x: Any) -> st.SearchStrategy[tuple[Any, Any, Any, Any]]:
        def second_column(f: Any) -> st.SearchStrategy[tuple[Any, Any, Any, Any]]:
            left = _vertical_pair_from(two_category, f)
            y = two_category.cod0(f)
            right = _one_cells_from(two_category, y).flatmap(
                lambda f2: _vertical_pair_from(two_category, f2)
            )
            return st.tuples(left, right).map(lambda lr: (*lr[0], *lr[1]))

        return _one_cells_from(two_category, x).flatmap(second_column)

    return zero.flatmap(grid_from)
