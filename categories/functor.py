"""Functors between categories and the functor laws.

Laws checked by `functor_law_failures`, with ``;`` the composition "then":

- ``functor.domain``: F(dom f) = dom F(f), and ``functor.codomain``:
  F(cod f) = cod F(f);
- ``functor.identity``: F(id_x) = id_{F(x)};
- ``functor.composition``: F(f;g) = F(f);F(g);
- ``functor.relation``: for every defining relation p = q of a presented
  source, the images compose equally, F(p_1);...;F(p_n) = F(q_1);...;F(q_m).
  A functor given on generators is well defined exactly when these hold.

Equalities are decided by the target category, so a target with a numerical
tolerance (such as representations compared up to floating-point error)
checks the laws up to that tolerance.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from typing import Generic, TypeVar

from categories.category import Category, composable_pairs
from categories.errors import CategoryError, CompositionError
from categories.laws import LawFailure, LawReport

SourceOb = TypeVar("SourceOb")
SourceMor = TypeVar("SourceMor")
TargetOb = TypeVar("TargetOb")
TargetMor = TypeVar("TargetMor")


class Functor(ABC, Generic[SourceOb, SourceMor, TargetOb, TargetMor]):
    """A functor F: source -> target, given on objects and on morphisms."""

    name: str = "F"

    @property
    @abstractmethod
    def source(self) -> Category[SourceOb, SourceMor]:
        """The domain category."""

    @property
    @abstractmethod
    def target(self) -> Category[TargetOb, TargetMor]:
        """The codomain category."""

    @abstractmethod
    def map_object(self, x: SourceOb) -> TargetOb:
        """Return F(x)."""

    @abstractmethod
    def map_morphism(self, f: SourceMor) -> TargetMor:
        """Return F(f)."""

    def law_failures(
        self, objects: Iterable[SourceOb], morphisms: Sequence[SourceMor]
    ) -> LawReport:
        """Check the functor laws on the given objects and morphisms."""
        return functor_law_failures(self, objects, morphisms)


def functor_law_failures(
    functor: Functor[SourceOb, SourceMor, TargetOb, TargetMor],
    objects: Iterable[SourceOb],
    morphisms: Sequence[SourceMor],
    pairs: Sequence[tuple[SourceMor, SourceMor]] | None = None,
    check_relations: bool = True,
) -> LawReport:
    """Check the functor laws on the given objects, morphisms and composable pairs.

    Parameters
    ----------
    functor : Functor
        The functor under test.
    objects : iterable
        Objects of the source on which the identity law is checked.
    morphisms : sequence
        Morphisms of the source on which domains and codomains are checked.
    pairs : sequence of (f, g), optional
        Composable pairs on which F(f;g) = F(f);F(g) is checked. By default
        every composable pair among `morphisms`.
    check_relations : bool
        Whether to check the defining relations of a presented source.

    Returns
    -------
    LawReport
        Counts of the equations checked per law, and every failure with its
        witness and both sides.
    """
    source, target = functor.source, functor.target
    failures: list[LawFailure] = []
    checked = {
        "functor.domain": 0,
        "functor.codomain": 0,
        "functor.identity": 0,
        "functor.composition": 0,
        "functor.relation": 0,
    }

    def expect_object(
        law: str, witness: tuple[object, ...], lhs: TargetOb, rhs: TargetOb
    ) -> None:
        checked[law] += 1
        if not target.equal_objects(lhs, rhs):
            failures.append(LawFailure(law, witness, lhs, rhs))

    def expect(
        law: str, witness: tuple[object, ...], lhs: TargetMor, rhs: TargetMor
    ) -> None:
        checked[law] += 1
        if not target.equal_morphisms(lhs, rhs):
            detail = target.describe_difference(lhs, rhs)
            failures.append(LawFailure(law, witness, lhs, rhs, detail))

    def undefined(law: str, witness: tuple[object, ...], error: CategoryError) -> None:
        # F applied to a composite that its own images make ill-typed is a
        # failure of the law, reported like any other, not a crash.
        checked[law] += 1
        failures.append(LawFailure(law, witness, None, None, f"undefined: {error}"))

    for x in objects:
        try:
            lhs = functor.map_morphism(source.identity(x))
            rhs = target.identity(functor.map_object(x))
        except CategoryError as error:
            undefined("functor.identity", (x,), error)
            continue
        expect("functor.identity", (x,), lhs, rhs)

    for f in morphisms:
        try:
            image = functor.map_morphism(f)
        except CategoryError as error:
            undefined("functor.domain", (f,), error)
            continue
        dom_image = functor.map_object(source.dom(f))
        cod_image = functor.map_object(source.cod(f))
        expect_object("functor.domain", (f,), target.dom(image), dom_image)
        expect_object("functor.codomain", (f,), target.cod(image), cod_image)

    if pairs is None:
        pairs = composable_pairs(source, morphisms)
    for f, g in pairs:
        try:
            lhs_fg = functor.map_morphism(source.compose(f, g))
            image_f, image_g = functor.map_morphism(f), functor.map_morphism(g)
        except CategoryError as error:
            undefined("functor.composition", (f, g), error)
            continue
        if not target.composable(image_f, image_g):
            checked["functor.composition"] += 1
            failures.append(
                LawFailure(
                    "functor.composition",
                    (f, g),
                    target.cod(image_f),
                    target.dom(image_g),
                    "F(f) and F(g) are not composable in the target",
                )
            )
            continue
        expect("functor.composition", (f, g), lhs_fg, target.compose(image_f, image_g))

    relations = source.relations() if check_relations else ()
    for name, lhs_path, rhs_path in relations:
        witness = (name,)
        try:
            lhs_image = _image_of_path(functor, lhs_path, rhs_path)
            rhs_image = _image_of_path(functor, rhs_path, lhs_path)
        except CategoryError as error:
            checked["functor.relation"] += 1
            failures.append(
                LawFailure("functor.relation", witness, lhs_path, rhs_path, str(error))
            )
            continue
        expect("functor.relation", witness, lhs_image, rhs_image)

    return LawReport(checked=checked, failures=tuple(failures))


def _image_of_path(
    functor: Functor[SourceOb, SourceMor, TargetOb, TargetMor],
    path: Sequence[SourceMor],
    other_side: Sequence[SourceMor],
) -> TargetMor:
    """Compose the images of a path of generators; an empty path is an identity."""
    if path:
        return functor.target.compose_all([functor.map_morphism(g) for g in path])
    if not other_side:
        raise CompositionError("a relation has two empty sides; give one generator")
    start = functor.source.dom(other_side[0])
    return functor.target.identity(functor.map_object(start))


def is_functor(
    functor: Functor[SourceOb, SourceMor, TargetOb, TargetMor],
    objects: Iterable[SourceOb],
    morphisms: Sequence[SourceMor],
    pairs: Sequence[tuple[SourceMor, SourceMor]] | None = None,
) -> bool:
    """Return whether `functor_law_failures` finds no failure."""
    return functor_law_failures(functor, objects, morphisms, pairs).ok
