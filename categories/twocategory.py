"""Strict 2-categories, their laws, and Cat, the 2-category of categories.

A strict 2-category has 0-cells, 1-cells f: x -> y between 0-cells, and
2-cells alpha: f => g between parallel 1-cells. Every composition is
diagrammatic, "first then second", as in `categories.category`:

- ``compose1(f, g)`` is f;g, for cod0(f) = dom0(g);
- ``vcompose(alpha, beta)`` is alpha·beta: f => h, for alpha: f => g and
  beta: g => h (vertical composition);
- ``hcompose(alpha, beta)`` is alpha*beta: f;h => g;k, for alpha: f => g
  between x and y and beta: h => k between y and z (horizontal composition).

Laws checked by `two_category_law_failures`:

- 1-cells form a category: ``identity1.typing``, ``compose1.typing``,
  ``compose1.identity.left``, ``compose1.identity.right`` and
  ``compose1.associativity``;
- ``cell2.typing``: the domain and codomain of a 2-cell are parallel;
- each hom is a category under vertical composition: ``identity2.typing``,
  ``vcompose.typing``, ``vcompose.identity.left``, ``vcompose.identity.right``
  and ``vcompose.associativity``;
- horizontal composition is typed, unital with the identity 2-cells of
  identity 1-cells, and associative: ``hcompose.typing``,
  ``hcompose.identity.left``, ``hcompose.identity.right`` and
  ``hcompose.associativity``;
- ``hcompose.of_identities``: id_f * id_g = id_{f;g};
- ``interchange``: (alpha·beta) * (gamma·delta) = (alpha*gamma)·(beta*delta)
  on every 2x2 grid of 2-cells where both sides are defined.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from itertools import product
from typing import Any, Generic, TypeVar

from categories.category import Category
from categories.errors import CategoryError
from categories.functor import Functor
from categories.laws import LawFailure, LawReport
from categories.transformation import (
    ComposedFunctor,
    IdentityFunctor,
    NaturalTransformation,
    describe_functor_difference,
    describe_transformation_difference,
    equal_functors,
    equal_transformations,
    horizontal,
    identity_transformation,
    same_category,
    vertical,
)

__all__ = [
    "Cat",
    "TwoCategory",
    "is_two_category",
    "two_category_law_failures",
]

Zero = TypeVar("Zero")
One = TypeVar("One")
Two = TypeVar("Two")


class TwoCategory(ABC, Generic[Zero, One, Two]):
    """A strict 2-category: 0-cells, 1-cells, 2-cells and their compositions.

    Subclasses implement the typing maps, identities and the three
    compositions. Equality of cells defaults to ``==`` and may be overridden,
    as `Cat` does with extensional equality of functors and transformations.
    Compositions may raise `CompositionError` on cells that do not compose.
    """

    name: str = "TwoCategory"

    @abstractmethod
    def dom0(self, f: One) -> Zero:
        """Return the 0-cell a 1-cell starts at."""

    @abstractmethod
    def cod0(self, f: One) -> Zero:
        """Return the 0-cell a 1-cell ends at."""

    @abstractmethod
    def dom1(self, alpha: Two) -> One:
        """Return the 1-cell a 2-cell starts at."""

    @abstractmethod
    def cod1(self, alpha: Two) -> One:
        """Return the 1-cell a 2-cell ends at."""

    @abstractmethod
    def identity1(self, x: Zero) -> One:
        """Return the identity 1-cell on a 0-cell."""

    @abstractmethod
    def compose1(self, f: One, g: One) -> One:
        """Return the 1-cell f;g, "f then g"."""

    @abstractmethod
    def identity2(self, f: One) -> Two:
        """Return the identity 2-cell f => f."""

    @abstractmethod
    def vcompose(self, alpha: Two, beta: Two) -> Two:
        """Return alpha·beta: f => h for alpha: f => g and beta: g => h."""

    @abstractmethod
    def hcompose(self, alpha: Two, beta: Two) -> Two:
        """Return alpha*beta: f;h => g;k for alpha: f => g and beta: h => k."""

    def equal_0cells(self, x: Zero, y: Zero) -> bool:
        """Return whether two 0-cells are equal (``==`` unless overridden)."""
        return bool(x == y)

    def equal_1cells(self, f: One, g: One) -> bool:
        """Return whether two 1-cells are equal (``==`` unless overridden)."""
        return bool(f == g)

    def equal_2cells(self, alpha: Two, beta: Two) -> bool:
        """Return whether two 2-cells are equal (``==`` unless overridden)."""
        return bool(alpha == beta)

    def describe_1cell_difference(self, f: One, g: One) -> str:
        """Return a short text on how two unequal 1-cells differ (empty by default)."""
        return ""

    def describe_2cell_difference(self, alpha: Two, beta: Two) -> str:
        """Return a short text on how two unequal 2-cells differ (empty by default)."""
        return ""

    def composable1(self, f: One, g: One) -> bool:
        """Return whether the 1-cell f;g is defined."""
        return self.equal_0cells(self.cod0(f), self.dom0(g))

    def vcomposable(self, alpha: Two, beta: Two) -> bool:
        """Return whether alpha·beta is defined: cod1(alpha) = dom1(beta)."""
        return self.equal_1cells(self.cod1(alpha), self.dom1(beta))

    def hcomposable(self, alpha: Two, beta: Two) -> bool:
        """Return whether alpha*beta is defined: alpha ends where beta starts."""
        return self.composable1(self.dom1(alpha), self.dom1(beta))

    # Enumeration, for 2-categories that can list their cells. The defaults
    # mean "not listed", so the law checker then needs the cells passed to it.

    def zero_cells(self) -> Sequence[Zero] | None:
        """Return every 0-cell, or None when they are not listed."""
        return None

    def one_cells(self, x: Zero, y: Zero) -> Sequence[One] | None:
        """Return every 1-cell x -> y, or None when they are not listed."""
        return None

    def two_cells(self, f: One, g: One) -> Sequence[Two] | None:
        """Return every 2-cell f => g, or None when they are not listed."""
        return None

    def law_failures(
        self,
        zero_cells: Iterable[Zero],
        one_cells: Sequence[One],
        two_cells: Sequence[Two],
    ) -> LawReport:
        """Check the strict 2-category laws on the given cells."""
        return two_category_law_failures(self, zero_cells, one_cells, two_cells)


_LAWS = (
    "identity1.typing",
    "compose1.typing",
    "compose1.identity.left",
    "compose1.identity.right",
    "compose1.associativity",
    "cell2.typing",
    "identity2.typing",
    "vcompose.typing",
    "vcompose.identity.left",
    "vcompose.identity.right",
    "vcompose.associativity",
    "hcompose.typing",
    "hcompose.identity.left",
    "hcompose.identity.right",
    "hcompose.associativity",
    "hcompose.of_identities",
    "interchange",
)


class _Recorder(Generic[Zero, One, Two]):
    """Counts the equations checked per law and collects the failures."""

    def __init__(self, two_category: TwoCategory[Zero, One, Two]) -> None:
        self.two_category = two_category
        self.checked = dict.fromkeys(_LAWS, 0)
        self.failures: list[LawFailure] = []

    def expect(
        self,
        law: str,
        witness: tuple[Any, ...],
        sides: Callable[..., tuple[Any, Any]],
        dimension: int,
    ) -> None:
        """Check that ``sides(*witness)`` returns two equal cells of a dimension.

        A side whose composition raises `CategoryError` is a failure of the
        law, with the error in the detail, since a lawful 2-category defines
        every composite the law mentions.
        """
        self.checked[law] += 1
        try:
            lhs, rhs = sides(*witness)
        except CategoryError as error:
            detail = f"a side could not be computed: {error}"
            self.failures.append(LawFailure(law, witness, None, None, detail))
            return
        cells = self.two_category
        if dimension == 0:
            if not cells.equal_0cells(lhs, rhs):
                self.failures.append(LawFailure(law, witness, lhs, rhs))
        elif dimension == 1:
            if not cells.equal_1cells(lhs, rhs):
                detail = cells.describe_1cell_difference(lhs, rhs)
                self.failures.append(LawFailure(law, witness, lhs, rhs, detail))
        elif not cells.equal_2cells(lhs, rhs):
            detail = cells.describe_2cell_difference(lhs, rhs)
            self.failures.append(LawFailure(law, witness, lhs, rhs, detail))

    def report(self) -> LawReport:
        return LawReport(checked=dict(self.checked), failures=tuple(self.failures))


def two_category_law_failures(
    two_category: TwoCategory[Zero, One, Two],
    zero_cells: Iterable[Zero],
    one_cells: Sequence[One],
    two_cells: Sequence[Two],
    grids: Sequence[tuple[Two, Two, Two, Two]] | None = None,
) -> LawReport:
    """Check the strict 2-category laws on the given cells.

    Parameters
    ----------
    two_category : TwoCategory
        The 2-category under test.
    zero_cells : iterable
        0-cells on which identity 1-cells are checked.
    one_cells : sequence
        1-cells on which the 1-cell category laws, identity 2-cells and
        horizontal composition of identities are checked, over every
        composable pair and triple.
    two_cells : sequence
        2-cells on which vertical and horizontal composition are checked,
        over every composable pair and triple.
    grids : sequence of (alpha, beta, gamma, delta), optional
        2x2 grids for the interchange law: alpha·beta and gamma·delta defined,
        and alpha*gamma defined. By default every such grid among `two_cells`,
        a number that can grow as the fourth power of their count.

    Returns
    -------
    LawReport
        Counts of the equations checked per law, and every failure with its
        witness and both sides.

    Raises
    ------
    CategoryError
        If a given grid is not composable, or if the 2-category cannot decide
        the equality of cells, as `Cat` cannot for categories it cannot
        enumerate.
    """
    recorder = _Recorder(two_category)
    _check_one_cells(recorder, list(zero_cells), one_cells)
    _check_vertical(recorder, one_cells, two_cells)
    _check_horizontal(recorder, one_cells, two_cells)
    _check_interchange(recorder, two_cells, grids)
    return recorder.report()


def is_two_category(
    two_category: TwoCategory[Zero, One, Two],
    zero_cells: Iterable[Zero],
    one_cells: Sequence[One],
    two_cells: Sequence[Two],
    grids: Sequence[tuple[Two, Two, Two, Two]] | None = None,
) -> bool:
    """Return whether `two_category_law_failures` finds no failure."""
    return two_category_law_failures(
        two_category, zero_cells, one_cells, two_cells, grids
    ).ok


# Each check below hands the recorder a function from the witness to the two
# sides of its equation, so that a composite that raises is caught there.


def _check_one_cells(
    recorder: _Recorder[Zero, One, Two],
    zero_cells: Sequence[Zero],
    one_cells: Sequence[One],
) -> None:
    """Check that 0-cells and 1-cells form a category under compose1."""
    cells = recorder.two_category

    def identity_dom(x: Zero) -> tuple[Zero, Zero]:
        return cells.dom0(cells.identity1(x)), x

    def identity_cod(x: Zero) -> tuple[Zero, Zero]:
        return cells.cod0(cells.identity1(x)), x

    def left_unit(f: One) -> tuple[One, One]:
        return cells.compose1(cells.identity1(cells.dom0(f)), f), f

    def right_unit(f: One) -> tuple[One, One]:
        return cells.compose1(f, cells.identity1(cells.cod0(f))), f

    def composite_dom(f: One, g: One) -> tuple[Zero, Zero]:
        return cells.dom0(cells.compose1(f, g)), cells.dom0(f)

    def composite_cod(f: One, g: One) -> tuple[Zero, Zero]:
        return cells.cod0(cells.compose1(f, g)), cells.cod0(g)

    def associativity(f: One, g: One, h: One) -> tuple[One, One]:
        return (
            cells.compose1(cells.compose1(f, g), h),
            cells.compose1(f, cells.compose1(g, h)),
        )

    for x in zero_cells:
        recorder.expect("identity1.typing", (x,), identity_dom, 0)
        recorder.expect("identity1.typing", (x,), identity_cod, 0)

    for f in one_cells:
        recorder.expect("compose1.identity.left", (f,), left_unit, 1)
        recorder.expect("compose1.identity.right", (f,), right_unit, 1)

    pairs = [(f, g) for f, g in product(one_cells, repeat=2) if cells.composable1(f, g)]
    for f, g in pairs:
        recorder.expect("compose1.typing", (f, g), composite_dom, 0)
        recorder.expect("compose1.typing", (f, g), composite_cod, 0)

    for f, g in pairs:
        for h in one_cells:
            if cells.composable1(g, h):
                recorder.expect("compose1.associativity", (f, g, h), associativity, 1)


def _check_vertical(
    recorder: _Recorder[Zero, One, Two],
    one_cells: Sequence[One],
    two_cells: Sequence[Two],
) -> None:
    """Check that each hom is a category under vertical composition."""
    cells = recorder.two_category

    def parallel_dom(alpha: Two) -> tuple[Zero, Zero]:
        return cells.dom0(cells.dom1(alpha)), cells.dom0(cells.cod1(alpha))

    def parallel_cod(alpha: Two) -> tuple[Zero, Zero]:
        return cells.cod0(cells.dom1(alpha)), cells.cod0(cells.cod1(alpha))

    def identity_dom(f: One) -> tuple[One, One]:
        return cells.dom1(cells.identity2(f)), f

    def identity_cod(f: One) -> tuple[One, One]:
        return cells.cod1(cells.identity2(f)), f

    def left_unit(alpha: Two) -> tuple[Two, Two]:
        return cells.vcompose(cells.identity2(cells.dom1(alpha)), alpha), alpha

    def right_unit(alpha: Two) -> tuple[Two, Two]:
        return cells.vcompose(alpha, cells.identity2(cells.cod1(alpha))), alpha

    def composite_dom(alpha: Two, beta: Two) -> tuple[One, One]:
        return cells.dom1(cells.vcompose(alpha, beta)), cells.dom1(alpha)

    def composite_cod(alpha: Two, beta: Two) -> tuple[One, One]:
        return cells.cod1(cells.vcompose(alpha, beta)), cells.cod1(beta)

    def associativity(alpha: Two, beta: Two, gamma: Two) -> tuple[Two, Two]:
        return (
            cells.vcompose(cells.vcompose(alpha, beta), gamma),
            cells.vcompose(alpha, cells.vcompose(beta, gamma)),
        )

    for alpha in two_cells:
        recorder.expect("cell2.typing", (alpha,), parallel_dom, 0)
        recorder.expect("cell2.typing", (alpha,), parallel_cod, 0)

    for f in one_cells:
        recorder.expect("identity2.typing", (f,), identity_dom, 1)
        recorder.expect("identity2.typing", (f,), identity_cod, 1)

    for alpha in two_cells:
        recorder.expect("vcompose.identity.left", (alpha,), left_unit, 2)
        recorder.expect("vcompose.identity.right", (alpha,), right_unit, 2)

    pairs = [
        (alpha, beta)
        for alpha, beta in product(two_cells, repeat=2)
        if cells.vcomposable(alpha, beta)
    ]
    for alpha, beta in pairs:
        recorder.expect("vcompose.typing", (alpha, beta), composite_dom, 1)
        recorder.expect("vcompose.typing", (alpha, beta), composite_cod, 1)

    for alpha, beta in pairs:
        for gamma in two_cells:
            if cells.vcomposable(beta, gamma):
                witness = (alpha, beta, gamma)
                recorder.expect("vcompose.associativity", witness, associativity, 2)


def _check_horizontal(
    recorder: _Recorder[Zero, One, Two],
    one_cells: Sequence[One],
    two_cells: Sequence[Two],
) -> None:
    """Check typing, units and associativity of horizontal composition."""
    cells = recorder.two_category

    def left_unit(alpha: Two) -> tuple[Two, Two]:
        start = cells.dom0(cells.dom1(alpha))
        unit = cells.identity2(cells.identity1(start))
        return cells.hcompose(unit, alpha), alpha

    def right_unit(alpha: Two) -> tuple[Two, Two]:
        end = cells.cod0(cells.dom1(alpha))
        unit = cells.identity2(cells.identity1(end))
        return cells.hcompose(alpha, unit), alpha

    def composite_dom(alpha: Two, beta: Two) -> tuple[One, One]:
        return (
            cells.dom1(cells.hcompose(alpha, beta)),
            cells.compose1(cells.dom1(alpha), cells.dom1(beta)),
        )

    def composite_cod(alpha: Two, beta: Two) -> tuple[One, One]:
        return (
            cells.cod1(cells.hcompose(alpha, beta)),
            cells.compose1(cells.cod1(alpha), cells.cod1(beta)),
        )

    def associativity(alpha: Two, beta: Two, gamma: Two) -> tuple[Two, Two]:
        return (
            cells.hcompose(cells.hcompose(alpha, beta), gamma),
            cells.hcompose(alpha, cells.hcompose(beta, gamma)),
        )

    def of_identities(f: One, g: One) -> tuple[Two, Two]:
        return (
            cells.hcompose(cells.identity2(f), cells.identity2(g)),
            cells.identity2(cells.compose1(f, g)),
        )

    for alpha in two_cells:
        recorder.expect("hcompose.identity.left", (alpha,), left_unit, 2)
        recorder.expect("hcompose.identity.right", (alpha,), right_unit, 2)

    pairs = [
        (alpha, beta)
        for alpha, beta in product(two_cells, repeat=2)
        if cells.hcomposable(alpha, beta)
    ]
    for alpha, beta in pairs:
        recorder.expect("hcompose.typing", (alpha, beta), composite_dom, 1)
        recorder.expect("hcompose.typing", (alpha, beta), composite_cod, 1)

    for alpha, beta in pairs:
        for gamma in two_cells:
            if cells.hcomposable(beta, gamma):
                witness = (alpha, beta, gamma)
                recorder.expect("hcompose.associativity", witness, associativity, 2)

    for f, g in product(one_cells, repeat=2):
        if cells.composable1(f, g):
            recorder.expect("hcompose.of_identities", (f, g), of_identities, 2)


def _check_interchange(
    recorder: _Recorder[Zero, One, Two],
    two_cells: Sequence[Two],
    grids: Sequence[tuple[Two, Two, Two, Two]] | None,
) -> None:
    """Check (alpha·beta) * (gamma·delta) = (alpha*gamma)·(beta*delta) on grids."""
    cells = recorder.two_category

    def interchange(alpha: Two, beta: Two, gamma: Two, delta: Two) -> tuple[Two, Two]:
        vertical_first = cells.hcompose(
            cells.vcompose(alpha, beta), cells.vcompose(gamma, delta)
        )
        horizontal_first = cells.vcompose(
            cells.hcompose(alpha, gamma), cells.hcompose(beta, delta)
        )
        return vertical_first, horizontal_first

    if grids is None:
        columns = [
            (alpha, beta)
            for alpha, beta in product(two_cells, repeat=2)
            if cells.vcomposable(alpha, beta)
        ]
        grids = [
            (alpha, beta, gamma, delta)
            for (alpha, beta), (gamma, delta) in product(columns, repeat=2)
            if cells.hcomposable(alpha, gamma)
        ]
    else:
        for grid in grids:
            _require_grid(cells, grid)

    for grid in grids:
        recorder.expect("interchange", grid, interchange, 2)


def _require_grid(
    cells: TwoCategory[Zero, One, Two], grid: tuple[Two, Two, Two, Two]
) -> None:
    alpha, beta, gamma, delta = grid
    if not cells.vcomposable(alpha, beta):
        problem = "alpha·beta is not defined"
    elif not cells.vcomposable(gamma, delta):
        problem = "gamma·delta is not defined"
    elif not cells.hcomposable(alpha, gamma):
        problem = "alpha*gamma is not defined"
    else:
        return
    raise CategoryError(
        f"the grid (alpha, beta, gamma, delta) = {grid!r} does not compose:"
        f" {problem}; pass grids with cod1(alpha) = dom1(beta),"
        " cod1(gamma) = dom1(delta) and alpha ending where gamma starts"
    )


# Cat, the 2-category of categories, functors and natural transformations.

AnyCategory = Category[Any, Any]
AnyFunctor = Functor[Any, Any, Any, Any]
AnyTransformation = NaturalTransformation[Any, Any, Any, Any]
Probe = tuple[AnyCategory, Sequence[Any], Sequence[Any]]


class Cat(TwoCategory[AnyCategory, AnyFunctor, AnyTransformation]):
    """The strict 2-category of categories, functors and natural transformations.

    Functors and transformations are compared extensionally: two functors
    are equal when they agree on objects and morphisms, and two
    transformations when their functors and components agree. A category
    is compared on the objects and morphisms its probe gives, or else on
    what it enumerates (its objects, and its generators or every listed
    morphism).

    Parameters
    ----------
    probes : iterable of (category, objects, morphisms), optional
        Objects and morphisms to compare functors and transformations out of
        `category` on. A category that does not list its objects, such as
        FinSet, needs a probe whenever cells out of it are compared.

    Notes
    -----
    Comparison on a probe decides equality only on what the probe samples.
    An equal result is therefore evidence, not proof, unless the probe
    contains every object and a generating set of morphisms.
    """

    name = "Cat"

    def __init__(self, probes: Iterable[Probe] = ()) -> None:
        self._probes = list(probes)

    def probe(
        self, category: AnyCategory
    ) -> tuple[Sequence[Any] | None, Sequence[Any] | None]:
        """Return the objects and morphisms given for `category`, or (None, None)."""
        for candidate, objects, morphisms in self._probes:
            if same_category(candidate, category):
                return objects, morphisms
        return None, None

    def dom0(self, f: AnyFunctor) -> AnyCategory:
        """Return the source category of a functor."""
        return f.source

    def cod0(self, f: AnyFunctor) -> AnyCategory:
        """Return the target category of a functor."""
        return f.target

    def dom1(self, alpha: AnyTransformation) -> AnyFunctor:
        """Return the source functor of a transformation."""
        return alpha.source

    def cod1(self, alpha: AnyTransformation) -> AnyFunctor:
        """Return the target functor of a transformation."""
        return alpha.target

    def identity1(self, x: AnyCategory) -> AnyFunctor:
        """Return the identity functor on a category."""
        return IdentityFunctor(x)

    def compose1(self, f: AnyFunctor, g: AnyFunctor) -> AnyFunctor:
        """Return the composite functor f;g."""
        return ComposedFunctor(f, g)

    def identity2(self, f: AnyFunctor) -> AnyTransformation:
        """Return the identity transformation on a functor."""
        return identity_transformation(f)

    def vcompose(
        self, alpha: AnyTransformation, beta: AnyTransformation
    ) -> AnyTransformation:
        """Return the vertical composite, with components alpha_x;beta_x."""
        return vertical(alpha, beta)

    def hcompose(
        self, alpha: AnyTransformation, beta: AnyTransformation
    ) -> AnyTransformation:
        """Return the horizontal composite, with components H(alpha_x);beta_{G(x)}."""
        return horizontal(alpha, beta)

    def equal_0cells(self, x: AnyCategory, y: AnyCategory) -> bool:
        """Return whether two categories are the same object or ``==``."""
        return same_category(x, y)

    def equal_1cells(self, f: AnyFunctor, g: AnyFunctor) -> bool:
        """Return whether two functors agree on the probe of their source.

        Raises
        ------
        CategoryError
            If the source has no probe and cannot be enumerated.
        """
        if f is g or f == g:
            return True
        objects, morphisms = self.probe(f.source)
        return equal_functors(f, g, objects, morphisms)

    def equal_2cells(self, alpha: AnyTransformation, beta: AnyTransformation) -> bool:
        """Return whether two transformations agree on the probe of their domain.

        Raises
        ------
        CategoryError
            If the domain has no probe and cannot be enumerated.
        """
        objects, morphisms = self.probe(alpha.domain)
        return equal_transformations(alpha, beta, objects, morphisms)

    def describe_1cell_difference(self, f: AnyFunctor, g: AnyFunctor) -> str:
        """Return where two functors first differ on the probe of their source."""
        objects, morphisms = self.probe(f.source)
        return describe_functor_difference(f, g, objects, morphisms)

    def describe_2cell_difference(
        self, alpha: AnyTransformation, beta: AnyTransformation
    ) -> str:
        """Return where two transformations first differ on the probe."""
        objects, morphisms = self.probe(alpha.domain)
        return describe_transformation_difference(alpha, beta, objects, morphisms)
