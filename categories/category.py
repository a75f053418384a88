"""The category interface and its laws.

Composition order, used everywhere in this package: ``compose(f, g)`` is
"f then g", written f;g. It is defined when ``cod(f)`` equals ``dom(g)`` and
has domain ``dom(f)`` and codomain ``cod(g)``. On functions this is
``x -> g(f(x))``.

Laws checked by `category_law_failures`:

- ``identity.typing``: dom(id_x) = x and cod(id_x) = x;
- ``composition.typing``: dom(f;g) = dom(f) and cod(f;g) = cod(g);
- ``identity.left``: id_{dom f};f = f, and ``identity.right``: f;id_{cod f} = f;
- ``associativity``: (f;g);h = f;(g;h).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from itertools import product
from typing import Generic, TypeVar

from categories.errors import CategoryError, CompositionError
from categories.laws import LawFailure, LawReport

__all__ = ["Category", "CompositionError", "category_law_failures", "composable_pairs"]

Ob = TypeVar("Ob")
Mor = TypeVar("Mor")


class Category(ABC, Generic[Ob, Mor]):
    """A category: objects, morphisms with a domain and codomain, identities, composition.

    Subclasses implement `dom`, `cod`, `identity` and `compose`; equality of
    objects and of morphisms defaults to ``==`` and may be overridden, for
    instance with a numerical tolerance. Every law is declared here once and
    inherited by every concrete category.
    """

    name: str = "Category"

    @abstractmethod
    def dom(self, f: Mor) -> Ob:
        """Return the domain of `f`."""

    @abstractmethod
    def cod(self, f: Mor) -> Ob:
        """Return the codomain of `f`."""

    @abstractmethod
    def identity(self, x: Ob) -> Mor:
        """Return the identity morphism on `x`."""

    @abstractmethod
    def compose(self, f: Mor, g: Mor) -> Mor:
        """Return f;g, "f then g"; raise `CompositionError` unless cod(f) = dom(g)."""

    def equal_objects(self, x: Ob, y: Ob) -> bool:
        """Return whether two objects are equal (``==`` unless overridden)."""
        return bool(x == y)

    def equal_morphisms(self, f: Mor, g: Mor) -> bool:
        """Return whether two morphisms are equal (``==`` unless overridden)."""
        return bool(f == g)

    def composable(self, f: Mor, g: Mor) -> bool:
        """Return whether f;g is defined."""
        return self.equal_objects(self.cod(f), self.dom(g))

    def compose_all(self, morphisms: Sequence[Mor]) -> Mor:
        """Compose a non-empty sequence of morphisms left to right."""
        if not morphisms:
            raise ValueError("compose_all needs at least one morphism; got none")
        result = morphisms[0]
        for g in morphisms[1:]:
            result = self.compose(result, g)
        return result

    def describe_difference(self, f: Mor, g: Mor) -> str:
        """Return a short text on how two unequal morphisms differ (empty by default)."""
        return ""

    # Enumeration, for categories that can list their contents. Infinite or
    # unlisted categories keep these defaults; checkers then need objects and
    # morphisms handed to them, or drawn by Hypothesis strategies.

    def objects(self) -> Sequence[Ob] | None:
        """Return every object, or None when the category does not list them."""
        return None

    def hom(self, x: Ob, y: Ob) -> Sequence[Mor] | None:
        """Return every morphism x -> y, or None when the category does not list them."""
        return None

    def generators(self) -> Sequence[Mor] | None:
        """Return morphisms that generate every morphism under composition.

        None means no finite generating set is known. Naturality and functor
        laws checked on generators then hold on all morphisms.
        """
        return None

    def relations(self) -> Sequence[tuple[str, Sequence[Mor], Sequence[Mor]]]:
        """Return the defining relations as (name, lhs path, rhs path) of generators.

        A path is a sequence of composable generators read left to right (an
        empty path stands for an identity, and then the relation's other side
        fixes its object). Categories without a presentation have none.
        """
        return ()

    def law_failures(
        self, objects: Iterable[Ob], morphisms: Sequence[Mor]
    ) -> LawReport:
        """Check the category laws on the given objects and morphisms."""
        return category_law_failures(self, objects, morphisms)


def composable_pairs(
    category: Category[Ob, Mor], morphisms: Sequence[Mor]
) -> list[tuple[Mor, Mor]]:
    """Return every pair (f, g) of the given morphisms for which f;g is defined."""
    return [
        (f, g) for f, g in product(morphisms, repeat=2) if category.composable(f, g)
    ]


def category_law_failures(
    category: Category[Ob, Mor],
    objects: Iterable[Ob],
    morphisms: Sequence[Mor],
    pairs: Sequence[tuple[Mor, Mor]] | None = None,
    triples: Sequence[tuple[Mor, Mor, Mor]] | None = None,
) -> LawReport:
    """Check the category laws on the given objects and morphisms.

    Parameters
    ----------
    category : Category
        The category under test.
    objects : iterable
        Objects on which the identity laws are checked.
    morphisms : sequence
        Morphisms on which the unit laws are checked.
    pairs, triples : sequence, optional
        Composable pairs and triples to check composition typing and
        associativity on. By default they are searched among `morphisms`,
        which costs a quadratic number of object comparisons.

    Returns
    -------
    LawReport
        Counts of the equations checked per law, and every failure.
    """
    failures: list[LawFailure] = []
    checked = {
        "identity.typing": 0,
        "identity.left": 0,
        "identity.right": 0,
        "composition.typing": 0,
        "associativity": 0,
    }

    def expect(
        law: str,
        witness: tuple[object, ...],
        lhs: Mor,
        rhs: Mor,
        sides: str = "",
    ) -> None:
        checked[law] += 1
        if not category.equal_morphisms(lhs, rhs):
            detail = category.describe_difference(lhs, rhs)
            detail = f"{sides}; {detail}" if sides and detail else sides or detail
            failures.append(LawFailure(law, witness, lhs, rhs, detail))

    def expect_object(law: str, witness: tuple[object, ...], lhs: Ob, rhs: Ob) -> None:
        checked[law] += 1
        if not category.equal_objects(lhs, rhs):
            failures.append(LawFailure(law, witness, lhs, rhs))

    def undefined(law: str, witness: tuple[object, ...], error: CategoryError) -> None:
        # A composite that cannot be formed, because an earlier composite came
        # out with the wrong type, is a failure of the law, not a crash.
        checked[law] += 1
        failures.append(LawFailure(law, witness, None, None, f"undefined: {error}"))

    for x in objects:
        unit = category.identity(x)
        expect_object("identity.typing", (x,), category.dom(unit), x)
        expect_object("identity.typing", (x,), category.cod(unit), x)

    for f in morphisms:
        try:
            left = category.compose(category.identity(category.dom(f)), f)
            expect("identity.left", (f,), left, f, "lhs is id;f, rhs is f")
        except CategoryError as error:
            undefined("identity.left", (f,), error)
        try:
            right = category.compose(f, category.identity(category.cod(f)))
            expect("identity.right", (f,), right, f, "lhs is f;id, rhs is f")
        except CategoryError as error:
            undefined("identity.right", (f,), error)

    if pairs is None:
        pairs = composable_pairs(category, morphisms)
    for f, g in pairs:
        try:
            fg = category.compose(f, g)
        except CategoryError as error:
            undefined("composition.typing", (f, g), error)
            continue
        expect_object("composition.typing", (f, g), category.dom(fg), category.dom(f))
        expect_object("composition.typing", (f, g), category.cod(fg), category.cod(g))

    if triples is None:
        triples = [
            (f, g, h) for f, g in pairs for h in morphisms if category.composable(g, h)
        ]
    for f, g, h in triples:
        try:
            lhs = category.compose(category.compose(f, g), h)
            rhs = category.compose(f, category.compose(g, h))
        except CategoryError as error:
            undefined("associativity", (f, g, h), error)
            continue
        expect("associativity", (f, g, h), lhs, rhs, "lhs is (f;g);h, rhs is f;(g;h)")

    return LawReport(checked=checked, failures=tuple(failures))
