"""Functors given on generators: an object map and one image per generator.

A `GeneratedFunctor` starts from a `Presentation` or a `FiniteCategory`,
whose every morphism has a canonical path of generators: the normal form
of a `Path`, or `FiniteCategory.word`. The image of a morphism is the
composite, in the target, of the images of the generators on that path,
and the image of an identity is the identity on the image of its object.

Such a functor is well defined exactly when the images satisfy every
defining relation of the source. `functor_law_failures` checks this on
``source.relations()`` (law ``functor.relation``, the witness being the
relation's name). A generator that the relations make equal to an identity
or to another generator never appears in a normal form, so `map_morphism`
never uses its given image. The law ``functor.generator`` checks that this
image agrees with the image of the generator's normal form.
`GeneratedFunctor.law_report` runs both checks on every object and generator,
which suffices for every morphism.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from categories.category import Category
from categories.errors import CategoryError
from categories.finite import FiniteCategory
from categories.functor import Functor, functor_law_failures
from categories.laws import LawFailure, LawReport, merge_reports
from categories.presentation import Path, Presentation

__all__ = ["GeneratedFunctor"]

TargetOb = TypeVar("TargetOb")
TargetMor = TypeVar("TargetMor")
NextOb = TypeVar("NextOb")
NextMor = TypeVar("NextMor")

# A morphism of the source: a `Path` of a presentation, or any hashable
# morphism of a finite category. The union of the two is Hashable, which
# mypy would not match against Category[Hashable, Path], hence Any.
SourceMor = Any


class GeneratedFunctor(
    Functor[Hashable, SourceMor, TargetOb, TargetMor], Generic[TargetOb, TargetMor]
):
    """A functor from a presented or finite category, given on generators.

    Parameters
    ----------
    source : Presentation or FiniteCategory
        The domain category.
    target : Category
        The codomain category.
    object_map : mapping
        The image of every object of the source, and nothing else.
    generator_map : mapping
        The image of every generator, and nothing else. A presentation's
        generators are keyed by name (``"d0"``), a finite category's by the
        generating morphism itself.
    name : str
        The name shown in reprs and reports.

    Raises
    ------
    CategoryError
        If an object or generator has no image, or a key is not an object or
        generator of the source. Images that break a functor law are
        accepted, so that `law_report` can name the failing law.

    Examples
    --------
    >>> from categories.finset import FinFunction, FinSet
    >>> walking_arrow = Presentation(["0", "1"], [("a", "0", "1")])
    >>> F = GeneratedFunctor(
    ...     walking_arrow, FinSet(), {"0": 4, "1": 2},
    ...     {"a": FinFunction([0, 0, 1, 1], cod=2)},
    ... )
    >>> F.map_morphism(walking_arrow.path("a"))
    FinFunction([0, 0, 1, 1], cod=2)
    """

    def __init__(
        self,
        source: Presentation | FiniteCategory,
        target: Category[TargetOb, TargetMor],
        object_map: Mapping[Any, TargetOb],
        generator_map: Mapping[Any, TargetMor],
        *,
        name: str = "F",
    ) -> None:
        self.name = name
        self._source = source
        self._category: Category[Hashable, SourceMor] = source
        self._target = target
        self._object_map: dict[Hashable, TargetOb] = dict(object_map)
        self._generator_map: dict[Hashable, TargetMor] = dict(generator_map)
        _require_same_keys(
            "object_map", self._object_map, source.objects(), "object", source.name
        )
        _require_same_keys(
            "generator_map",
            self._generator_map,
            _generator_keys(source),
            "generator",
            source.name,
        )
        for key, image in self._generator_map.items():
            try:
                target.dom(image)
                target.cod(image)
            except (AttributeError, TypeError):
                raise CategoryError(
                    f"the image of generator {key!r} is a {type(image).__name__},"
                    f" not a morphism of {target.name}; give a morphism of the"
                    " target category"
                ) from None
        self._images: dict[SourceMor, TargetMor] = {}

    @classmethod
    def identity(
        cls, source: Presentation | FiniteCategory
    ) -> GeneratedFunctor[Hashable, SourceMor]:
        """Return the identity functor of `source`, given on its generators."""
        keys = _generator_keys(source)
        return GeneratedFunctor(
            source,
            source,
            {x: x for x in source.objects()},
            {key: _generator_morphism(source, key) for key in keys},
            name=f"id_{source.name}",
        )

    def then(
        self, other: Functor[TargetOb, TargetMor, NextOb, NextMor]
    ) -> GeneratedFunctor[NextOb, NextMor]:
        """Return the composite "self then other", given on the same generators.

        Its object map is x -> other(self(x)) and each generator g goes to
        other(self(g)), so ``F.then(H)`` is the classical H∘F.

        Raises
        ------
        CategoryError
            If the target of self is not the source of `other`.
        """
        if not (other.source is self._target or other.source == self._target):
            raise CategoryError(
                f"cannot compose {self.name} then {other.name}: the target of "
                f"{self.name} ({self._target.name}) is not the source of "
                f"{other.name} ({other.source.name})"
            )
        return GeneratedFunctor(
            self._source,
            other.target,
            {x: other.map_object(y) for x, y in self._object_map.items()},
            {
                key: other.map_morphism(image)
                for key, image in self._generator_map.items()
            },
            name=f"{self.name};{other.name}",
        )

    @property
    def source(self) -> Category[Hashable, SourceMor]:
        """The presented or finite category the functor starts from."""
        return self._category

    @property
    def target(self) -> Category[TargetOb, TargetMor]:
        """The category the functor lands in."""
        return self._target

    @property
    def object_map(self) -> Mapping[Hashable, TargetOb]:
        """The image of each object, as given."""
        return dict(self._object_map)

    @property
    def generator_map(self) -> Mapping[Hashable, TargetMor]:
        """The image of each generator, as given."""
        return dict(self._generator_map)

    def map_object(self, x: Hashable) -> TargetOb:
        """Return F(x)."""
        if x not in self._object_map:
            raise CategoryError(f"{x!r} is not an object of {self._source.name}")
        return self._object_map[x]

    def map_morphism(self, f: SourceMor) -> TargetMor:
        """Return F(f), the composite of the images along f's canonical path.

        Results are cached by f, which is safe because equal morphisms have
        equal canonical paths.
        """
        if f in self._images:
            return self._images[f]
        path = _canonical_path(self._source, f)
        if path:
            image = self._target.compose_all([self._generator_map[g] for g in path])
        else:
            image = self._target.identity(self.map_object(self._category.dom(f)))
        self._images[f] = image
        return image

    def generator_failures(self) -> LawReport:
        """Check that every generator's given image is the image of its normal form.

        The law ``functor.generator`` fails at a generator g whose image
        differs from F applied to the morphism g, which happens when the
        relations make g equal to an identity or to another generator and
        the given images disagree. Other generators always pass.
        """
        failures: list[LawFailure] = []
        for key, given in self._generator_map.items():
            computed = self.map_morphism(_generator_morphism(self._source, key))
            if not self._target.equal_morphisms(given, computed):
                failures.append(
                    LawFailure(
                        "functor.generator",
                        (key,),
                        given,
                        computed,
                        self._target.describe_difference(given, computed)
                        or f"the image given for {key!r} differs from the image "
                        f"of its normal form",
                    )
                )
        return LawReport(
            checked={"functor.generator": len(self._generator_map)},
            failures=tuple(failures),
        )

    def law_report(self) -> LawReport:
        """Check every functor law on all objects and generators of the source.

        Runs `functor_law_failures` on every object, every generator and
        every composable pair of generators (which also checks each defining
        relation), and adds `generator_failures`. Together these hold
        exactly when the images define a functor.
        """
        generators = [
            _generator_morphism(self._source, key) for key in self._generator_map
        ]
        pairs = [
            (f, g)
            for f in generators
            for g in generators
            if self._category.cod(f) == self._category.dom(g)
        ]
        core = functor_law_failures(self, self._source.objects(), generators, pairs)
        return merge_reports([core, self.generator_failures()])

    def __repr__(self) -> str:
        return (
            f"GeneratedFunctor({self.name!r}: {self._source.name} -> "
            f"{self._target.name})"
        )


def _generator_keys(source: Presentation | FiniteCategory) -> Sequence[Hashable]:
    if isinstance(source, Presentation):
        return source.generator_names()
    return source.generators()


def _generator_morphism(
    source: Presentation | FiniteCategory, key: Hashable
) -> SourceMor:
    if isinstance(source, Presentation):
        assert isinstance(key, str)
        return source.generator(key)
    return key


def _canonical_path(
    source: Presentation | FiniteCategory, f: SourceMor
) -> tuple[Hashable, ...]:
    """Return f's canonical path as generator keys (names for a presentation)."""
    if isinstance(source, Presentation):
        if not isinstance(f, Path) or f.presentation is not source:
            raise CategoryError(
                f"{f!r} is not a morphism of {source.name}; build it with "
                f"{source.name}'s path() or generator()"
            )
        return f.word
    return source.word(f)


def _require_same_keys(
    role: str,
    given: Mapping[Hashable, object],
    expected: Sequence[Hashable],
    kind: str,
    category: str,
) -> None:
    """Raise unless `given` has exactly the keys `expected`, naming a wrong key."""
    expected_set = set(expected)
    for key in expected:
        if key not in given:
            raise CategoryError(
                f"{role} has no image for the {kind} {key!r} of {category}; give "
                f"an image for every {kind}"
            )
    for key in given:
        if key not in expected_set:
            raise CategoryError(
                f"{role} has an image for {key!r}, which is not a {kind} of "
                f"{category}; {kind}s are {list(expected)}"
            )
