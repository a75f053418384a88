"""Natural transformations, their compositions, and composite functors.

A natural transformation alpha: F => G between functors F, G: C -> D gives,
for every object x of C, a component alpha_x: F(x) -> G(x) in D. Composition
is diagrammatic throughout, as in `categories.category`: f;g is "f then g".

Laws checked by `naturality_failures`:

- ``transformation.component``: dom(alpha_x) = F(x) and cod(alpha_x) = G(x);
- ``transformation.naturality``: F(f);alpha_y = alpha_x;G(f) for f: x -> y.

Checking naturality on a set of generators of C suffices, because both sides
of the square respect composition. Functors compose as `ComposedFunctor(F, H)`,
"F then H", so the classical H∘F is written F;H.

`NaturalTransformation` compares by identity under ``==``, while
`ComposedFunctor` and `IdentityFunctor` compare structurally. Extensional
equality, agreement on every object and morphism, is the separate operation
`equal_functors` or `equal_transformations`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from categories.category import Category
from categories.errors import CategoryError
from categories.functor import Functor
from categories.laws import LawFailure, LawReport

__all__ = [
    "ComposedFunctor",
    "IdentityFunctor",
    "NaturalTransformation",
    "describe_functor_difference",
    "describe_transformation_difference",
    "equal_functors",
    "equal_transformations",
    "horizontal",
    "identity_transformation",
    "is_natural",
    "naturality_failures",
    "same_category",
    "vertical",
    "whisker_left",
    "whisker_right",
]

# Objects and morphisms of the categories B -> C -> D -> E that functors and
# transformations here run between.
BOb = TypeVar("BOb")
BMor = TypeVar("BMor")
COb = TypeVar("COb")
CMor = TypeVar("CMor")
DOb = TypeVar("DOb")
DMor = TypeVar("DMor")
EOb = TypeVar("EOb")
EMor = TypeVar("EMor")


def same_category(first: Category[Any, Any], second: Category[Any, Any]) -> bool:
    """Return whether two category objects denote the same category.

    They do when they are the same Python object or compare equal with ``==``.
    """
    return first is second or bool(first == second)


def _category_name(category: Category[Any, Any]) -> str:
    return f"{category.name} ({type(category).__name__})"


def _require_same_category(
    first: Category[Any, Any], second: Category[Any, Any], context: str
) -> None:
    if not same_category(first, second):
        raise CategoryError(
            f"{context}: {_category_name(first)} and {_category_name(second)} are"
            " different categories; use the same category object, or give the"
            " category class an __eq__ that identifies them"
        )


class IdentityFunctor(Functor[COb, CMor, COb, CMor]):
    """The identity functor on a category: every object and morphism to itself.

    Two identity functors are ``==`` when their categories are.
    """

    def __init__(self, category: Category[COb, CMor]) -> None:
        self._category = category
        self.name = f"id_{category.name}"

    @property
    def source(self) -> Category[COb, CMor]:
        """The category, as domain."""
        return self._category

    @property
    def target(self) -> Category[COb, CMor]:
        """The category, as codomain."""
        return self._category

    def map_object(self, x: COb) -> COb:
        """Return `x`."""
        return x

    def map_morphism(self, f: CMor) -> CMor:
        """Return `f`."""
        return f

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, IdentityFunctor):
            return NotImplemented
        return same_category(self._category, other._category)

    def __hash__(self) -> int:
        # Constant, because same_category may identify categories that hash
        # differently or do not hash at all; equal functors must hash equally.
        return hash(IdentityFunctor)

    def __repr__(self) -> str:
        return f"IdentityFunctor({self._category.name})"


class ComposedFunctor(Functor[COb, CMor, EOb, EMor]):
    """The composite F;H, "F then H", of F: C -> D and H: D -> E.

    It sends x to H(F(x)) and f to H(F(f)), so it is the classical H∘F. Two
    composites are ``==`` when their first and second functors are ``==``.

    Raises
    ------
    CategoryError
        If the target of `first` is not the source of `second`.
    """

    def __init__(
        self,
        first: Functor[COb, CMor, DOb, DMor],
        second: Functor[DOb, DMor, EOb, EMor],
    ) -> None:
        _require_same_category(
            first.target,
            second.source,
            f"cannot compose {first.name} then {second.name}: the target of"
            f" {first.name} must be the source of {second.name}, but",
        )
        self.first = first
        self.second = second
        self.name = f"{first.name};{second.name}"

    @property
    def source(self) -> Category[COb, CMor]:
        """The source of the first functor."""
        return self.first.source

    @property
    def target(self) -> Category[EOb, EMor]:
        """The target of the second functor."""
        return self.second.target

    def map_object(self, x: COb) -> EOb:
        """Return H(F(x))."""
        return self.second.map_object(self.first.map_object(x))

    def map_morphism(self, f: CMor) -> EMor:
        """Return H(F(f))."""
        return self.second.map_morphism(self.first.map_morphism(f))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ComposedFunctor):
            return NotImplemented
        return bool(self.first == other.first and self.second == other.second)

    def __hash__(self) -> int:
        return hash((ComposedFunctor, self.first, self.second))

    def __repr__(self) -> str:
        return f"ComposedFunctor({self.first.name}, {self.second.name})"


class NaturalTransformation(Generic[COb, CMor, DOb, DMor]):
    """A natural transformation alpha: F => G between functors F, G: C -> D.

    Parameters
    ----------
    source : Functor
        The functor F.
    target : Functor
        The functor G, with the same source C and target D as F.
    components : mapping or callable
        The component alpha_x: F(x) -> G(x) for each object x of C, as a
        mapping from objects to morphisms of D or as a function of x.
    name : str
        A name used in reports and error messages.

    Raises
    ------
    CategoryError
        If F and G have different sources or targets, or if `components` is
        a mapping and C lists its objects but some have no component. The
        message names the missing objects. A callable is not evaluated here,
        so a missing component then surfaces when it is first requested.

    Notes
    -----
    Construction does not check naturality or the typing of components; call
    `naturality_failures` for that.
    """

    def __init__(
        self,
        source: Functor[COb, CMor, DOb, DMor],
        target: Functor[COb, CMor, DOb, DMor],
        components: Mapping[COb, DMor] | Callable[[COb], DMor],
        name: str = "alpha",
    ) -> None:
        context = (
            f"natural transformation {name}: {source.name} => {target.name} needs"
            " functors with the same source and target"
        )
        _require_same_category(source.source, target.source, context)
        _require_same_category(source.target, target.target, context)
        self.source = source
        self.target = target
        self.name = name
        self._components = components
        if isinstance(components, Mapping):
            self._require_every_component(components)

    @property
    def domain(self) -> Category[COb, CMor]:
        """The category C on which the components are indexed."""
        return self.source.source

    @property
    def codomain(self) -> Category[DOb, DMor]:
        """The category D in which the components live."""
        return self.source.target

    def _require_every_component(self, components: Mapping[COb, DMor]) -> None:
        listed = self.domain.objects()
        if listed is None:
            return
        missing = [x for x in listed if not self._has_key(components, x)]
        if missing:
            raise CategoryError(
                f"natural transformation {self.name} has no component at the"
                f" object(s) {missing!r} of {_category_name(self.domain)}; add a"
                " component F(x) -> G(x) for each of them"
            )
        extra = [
            k
            for k in components
            if not any(self.domain.equal_objects(k, x) for x in listed)
        ]
        if extra:
            raise CategoryError(
                f"natural transformation {self.name} has components at {extra!r},"
                f" which are not objects of {_category_name(self.domain)}"
            )
        for key, value in components.items():
            try:
                self.codomain.dom(value)
                self.codomain.cod(value)
            except (AttributeError, TypeError):
                raise CategoryError(
                    f"the component of {self.name} at {key!r} is a"
                    f" {type(value).__name__}, not a morphism of"
                    f" {_category_name(self.codomain)}"
                ) from None

    def _has_key(self, components: Mapping[COb, DMor], x: COb) -> bool:
        return self._find_key(components, x) is not _MISSING

    def _find_key(self, components: Mapping[COb, DMor], x: COb) -> Any:
        # Try a direct lookup first. Then compare with the domain's own object
        # equality, which may be coarser than == (a tolerance or a normal form).
        try:
            if x in components:
                return x
        except TypeError:  # an unhashable object can still match by equality
            pass
        for key in components:
            if self.domain.equal_objects(key, x):
                return key
        return _MISSING

    def component(self, x: COb) -> DMor:
        """Return the component alpha_x: F(x) -> G(x).

        Raises
        ------
        CategoryError
            If `components` is a mapping without an entry for `x`.
        """
        components = self._components
        if not isinstance(components, Mapping):
            try:
                return components(x)
            except (KeyError, IndexError) as error:
                raise CategoryError(
                    f"natural transformation {self.name} has no component at"
                    f" {x!r}: its component function raised {error!r}"
                ) from None
        key = self._find_key(components, x)
        if key is _MISSING:
            raise CategoryError(
                f"natural transformation {self.name} has no component at {x!r};"
                f" it has components at {list(components)!r}"
            )
        value: DMor = components[key]
        return value

    def __repr__(self) -> str:
        return (
            f"NaturalTransformation({self.name}: {self.source.name} =>"
            f" {self.target.name})"
        )


class _Missing:
    """The marker for a lookup that found no component."""


_MISSING = _Missing()


def _objects_to_check(
    category: Category[COb, CMor],
    morphisms: Sequence[CMor],
    objects: Iterable[COb] | None,
) -> list[COb]:
    """List the given objects, or else the listed ones and the ends of `morphisms`."""
    if objects is not None:
        candidates = list(objects)
    else:
        candidates = list(category.objects() or ())
        for f in morphisms:
            candidates += [category.dom(f), category.cod(f)]
    distinct: list[COb] = []
    for x in candidates:
        if not any(category.equal_objects(x, y) for y in distinct):
            distinct.append(x)
    return distinct


def naturality_failures(
    alpha: NaturalTransformation[COb, CMor, DOb, DMor],
    morphisms: Sequence[CMor] | None = None,
    objects: Iterable[COb] | None = None,
) -> LawReport:
    """Check that every component is typed and every naturality square commutes.

    Parameters
    ----------
    alpha : NaturalTransformation
        The transformation alpha: F => G under test, with F, G: C -> D.
    morphisms : sequence, optional
        Morphisms f: x -> y of C whose squares F(f);alpha_y = alpha_x;G(f)
        are checked. By default the generators of C, which suffice.
    objects : iterable, optional
        Objects x of C on which alpha_x: F(x) -> G(x) is checked. By default
        the objects C lists, together with the domains and codomains of
        `morphisms`.

    Returns
    -------
    LawReport
        Counts per law and every failure. A naturality failure has witness
        ``(f,)``, lhs F(f);alpha_y and rhs alpha_x;G(f). A component failure
        has witness ``(x,)``, with the component's domain against F(x) or its
        codomain against G(x).

    Raises
    ------
    CategoryError
        If `morphisms` is not given and C has no finite set of generators.
    """
    source_category, target_category = alpha.domain, alpha.codomain
    functor_f, functor_g = alpha.source, alpha.target
    if morphisms is None:
        generators = source_category.generators()
        if generators is None:
            raise CategoryError(
                f"{_category_name(source_category)} has no finite set of"
                f" generators, so naturality of {alpha.name} cannot be checked on"
                " them; pass the morphisms to check as naturality_failures(alpha,"
                " morphisms=[...])"
            )
        morphisms = list(generators)

    failures: list[LawFailure] = []
    checked = {"transformation.component": 0, "transformation.naturality": 0}

    for x in _objects_to_check(source_category, morphisms, objects):
        component = alpha.component(x)
        ends = [
            (target_category.dom(component), functor_f.map_object(x), "domain", "F"),
            (target_category.cod(component), functor_g.map_object(x), "codomain", "G"),
        ]
        for actual, expected, end, functor in ends:
            checked["transformation.component"] += 1
            if not target_category.equal_objects(actual, expected):
                failures.append(
                    LawFailure(
                        "transformation.component",
                        (x,),
                        actual,
                        expected,
                        f"the {end} of {alpha.name}_x is not {functor}(x)",
                    )
                )

    for f in morphisms:
        checked["transformation.naturality"] += 1
        failure = _square_failure(alpha, f)
        if failure is not None:
            failures.append(failure)

    return LawReport(checked=checked, failures=tuple(failures))


def _square_failure(
    alpha: NaturalTransformation[COb, CMor, DOb, DMor], f: CMor
) -> LawFailure | None:
    """Return the failure of the naturality square at `f`, or None if it commutes."""
    source_category, target_category = alpha.domain, alpha.codomain
    image_f = alpha.source.map_morphism(f)
    image_g = alpha.target.map_morphism(f)
    component_dom = alpha.component(source_category.dom(f))
    component_cod = alpha.component(source_category.cod(f))

    law = "transformation.naturality"
    if not target_category.composable(image_f, component_cod):
        return LawFailure(
            law, (f,), image_f, component_cod, "F(f) and alpha_y are not composable"
        )
    if not target_category.composable(component_dom, image_g):
        return LawFailure(
            law, (f,), component_dom, image_g, "alpha_x and G(f) are not composable"
        )
    lhs = target_category.compose(image_f, component_cod)
    rhs = target_category.compose(component_dom, image_g)
    if target_category.equal_morphisms(lhs, rhs):
        return None
    detail = target_category.describe_difference(lhs, rhs)
    return LawFailure(law, (f,), lhs, rhs, detail)


def is_natural(
    alpha: NaturalTransformation[COb, CMor, DOb, DMor],
    morphisms: Sequence[CMor] | None = None,
    objects: Iterable[COb] | None = None,
) -> bool:
    """Return whether `naturality_failures` finds no failure."""
    return naturality_failures(alpha, morphisms, objects).ok


# Extensional equality.


def _comparison_sample(
    category: Category[COb, CMor],
    objects: Sequence[COb] | None,
    morphisms: Sequence[CMor] | None,
) -> tuple[Sequence[COb], Sequence[CMor]] | None:
    """Return objects and morphisms to compare on, or None if none can be found.

    Given objects and morphisms are used as they are. Missing objects default
    to the listed ones, and missing morphisms to the generators or else to
    every listed morphism between the objects.
    """
    if objects is None:
        objects = category.objects()
        if objects is None:
            return None
    if morphisms is None:
        generators = category.generators()
        if generators is not None:
            morphisms = generators
        else:
            every: list[CMor] = []
            for x in objects:
                for y in objects:
                    hom = category.hom(x, y)
                    if hom is None:
                        return None
                    every += list(hom)
            morphisms = every
    return objects, morphisms


def _not_enumerable(category: Category[Any, Any], what: str) -> CategoryError:
    return CategoryError(
        f"cannot compare {what} out of {_category_name(category)}: it does not list"
        " its objects and hom-sets; pass the objects and morphisms to compare on"
    )


def _functor_difference(
    first: Functor[COb, CMor, DOb, DMor],
    second: Functor[COb, CMor, DOb, DMor],
    objects: Sequence[COb],
    morphisms: Sequence[CMor],
) -> str | None:
    """Describe the first object or morphism on which two functors differ."""
    if not same_category(first.source, second.source):
        return "their sources differ"
    if not same_category(first.target, second.target):
        return "their targets differ"
    target = first.target
    for x in objects:
        image_first, image_second = first.map_object(x), second.map_object(x)
        if not target.equal_objects(image_first, image_second):
            return f"at object {x!r}: {image_first!r} != {image_second!r}"
    for f in morphisms:
        arrow_first, arrow_second = first.map_morphism(f), second.map_morphism(f)
        if not target.equal_morphisms(arrow_first, arrow_second):
            return f"at morphism {f!r}: {arrow_first!r} != {arrow_second!r}"
    return None


def equal_functors(
    first: Functor[COb, CMor, DOb, DMor],
    second: Functor[COb, CMor, DOb, DMor],
    objects: Sequence[COb] | None = None,
    morphisms: Sequence[CMor] | None = None,
) -> bool:
    """Return whether two functors agree on the given objects and morphisms.

    Parameters
    ----------
    first, second : Functor
        Functors to compare. Different sources or targets make them unequal.
    objects, morphisms : sequence, optional
        What to compare on. By default the objects the source lists, and its
        generators, or every listed morphism when it has no generators.
        Agreement on generators implies agreement on every morphism only if
        both are functors.

    Raises
    ------
    CategoryError
        If the source cannot be enumerated and `objects` or `morphisms` is
        missing.
    """
    if first is second:
        return True
    sample = _comparison_sample(first.source, objects, morphisms)
    if sample is None:
        raise _not_enumerable(first.source, "functors")
    return _functor_difference(first, second, *sample) is None


def equal_transformations(
    first: NaturalTransformation[COb, CMor, DOb, DMor],
    second: NaturalTransformation[COb, CMor, DOb, DMor],
    objects: Sequence[COb] | None = None,
    morphisms: Sequence[CMor] | None = None,
) -> bool:
    """Return whether two transformations have equal functors and components.

    Parameters
    ----------
    first, second : NaturalTransformation
        Transformations to compare.
    objects : sequence, optional
        Objects on which the functors and components are compared; by default
        every object the domain category lists.
    morphisms : sequence, optional
        Morphisms on which the source and target functors are compared, as in
        `equal_functors`.

    Raises
    ------
    CategoryError
        If the domain category cannot be enumerated and `objects` or
        `morphisms` is missing.
    """
    if first is second:
        return True
    sample = _comparison_sample(first.domain, objects, morphisms)
    if sample is None:
        raise _not_enumerable(first.domain, "natural transformations")
    return _transformation_difference(first, second, *sample) is None


def _transformation_difference(
    first: NaturalTransformation[COb, CMor, DOb, DMor],
    second: NaturalTransformation[COb, CMor, DOb, DMor],
    objects: Sequence[COb],
    morphisms: Sequence[CMor],
) -> str | None:
    """Describe the first way in which two transformations differ."""
    for role, one, other in [
        ("source", first.source, second.source),
        ("target", first.target, second.target),
    ]:
        difference = _functor_difference(one, other, objects, morphisms)
        if difference is not None:
            return f"their {role} functors differ {difference}"
    codomain = first.codomain
    for x in objects:
        one_component, other_component = first.component(x), second.component(x)
        if not codomain.equal_morphisms(one_component, other_component):
            return f"at object {x!r}: {one_component!r} != {other_component!r}"
    return None


def describe_functor_difference(
    first: Functor[COb, CMor, DOb, DMor],
    second: Functor[COb, CMor, DOb, DMor],
    objects: Sequence[COb] | None = None,
    morphisms: Sequence[CMor] | None = None,
) -> str:
    """Return where two functors first differ, or an empty string.

    It compares on what `equal_functors` compares on, and returns an empty
    string when that cannot be enumerated.
    """
    sample = _comparison_sample(first.source, objects, morphisms)
    if sample is None:
        return ""
    return _functor_difference(first, second, *sample) or ""


def describe_transformation_difference(
    first: NaturalTransformation[COb, CMor, DOb, DMor],
    second: NaturalTransformation[COb, CMor, DOb, DMor],
    objects: Sequence[COb] | None = None,
    morphisms: Sequence[CMor] | None = None,
) -> str:
    """Return where two transformations first differ, or an empty string.

    It compares on what `equal_transformations` compares on, and returns an
    empty string when that cannot be enumerated.
    """
    sample = _comparison_sample(first.domain, objects, morphisms)
    if sample is None:
        return ""
    return _transformation_difference(first, second, *sample) or ""


def _require_same_functor(
    first: Functor[COb, CMor, DOb, DMor],
    second: Functor[COb, CMor, DOb, DMor],
    context: str,
) -> None:
    """Raise unless two functors agree wherever their source can be enumerated."""
    if first is second or first == second:
        return
    sample = _comparison_sample(first.source, None, None)
    if sample is None:
        # NOTE: functors out of a category that cannot be enumerated are not
        # compared here. A mismatch then raises CompositionError from the
        # target category once a component is computed.
        _require_same_category(first.source, second.source, context)
        _require_same_category(first.target, second.target, context)
        return
    difference = _functor_difference(first, second, *sample)
    if difference is not None:
        raise CategoryError(
            f"{context}: {first.name} and {second.name} differ {difference}"
        )


# Compositions.


def identity_transformation(
    functor: Functor[COb, CMor, DOb, DMor],
) -> NaturalTransformation[COb, CMor, DOb, DMor]:
    """Build the identity transformation F => F, with components id_{F(x)}."""
    target = functor.target

    def component(x: COb) -> DMor:
        return target.identity(functor.map_object(x))

    return NaturalTransformation(functor, functor, component, name=f"id_{functor.name}")


def vertical(
    alpha: NaturalTransformation[COb, CMor, DOb, DMor],
    beta: NaturalTransformation[COb, CMor, DOb, DMor],
) -> NaturalTransformation[COb, CMor, DOb, DMor]:
    """Compose alpha: F => G then beta: G => H into F => H, with alpha_x;beta_x.

    Raises
    ------
    CategoryError
        If the target of alpha and the source of beta differ on an object or
        generator, where their source category can be enumerated.
    """
    _require_same_functor(
        alpha.target,
        beta.source,
        f"cannot compose {alpha.name} then {beta.name} vertically: the target"
        f" functor of {alpha.name} must be the source functor of {beta.name}",
    )
    codomain = alpha.codomain

    def component(x: COb) -> DMor:
        return codomain.compose(alpha.component(x), beta.component(x))

    return NaturalTransformation(
        alpha.source, beta.target, component, name=f"({alpha.name};{beta.name})"
    )


def whisker_left(
    functor: Functor[BOb, BMor, COb, CMor],
    alpha: NaturalTransformation[COb, CMor, DOb, DMor],
) -> NaturalTransformation[BOb, BMor, DOb, DMor]:
    """Precompose alpha: F => G with H: B -> C, giving H;F => H;G.

    Classically this is alpha H: F∘H => G∘H. Its component at b is
    alpha_{H(b)}.

    Raises
    ------
    CategoryError
        If the target of H is not the domain category of alpha.
    """
    source = ComposedFunctor(functor, alpha.source)
    target = ComposedFunctor(functor, alpha.target)

    def component(b: BOb) -> DMor:
        return alpha.component(functor.map_object(b))

    return NaturalTransformation(
        source, target, component, name=f"({functor.name}*{alpha.name})"
    )


def whisker_right(
    alpha: NaturalTransformation[COb, CMor, DOb, DMor],
    functor: Functor[DOb, DMor, EOb, EMor],
) -> NaturalTransformation[COb, CMor, EOb, EMor]:
    """Postcompose alpha: F => G with K: D -> E, giving F;K => G;K.

    Classically this is K alpha: K∘F => K∘G. Its component at x is
    K(alpha_x).

    Raises
    ------
    CategoryError
        If the source of K is not the codomain category of alpha.
    """
    source = ComposedFunctor(alpha.source, functor)
    target = ComposedFunctor(alpha.target, functor)

    def component(x: COb) -> EMor:
        return functor.map_morphism(alpha.component(x))

    return NaturalTransformation(
        source, target, component, name=f"({alpha.name}*{functor.name})"
    )


def horizontal(
    alpha: NaturalTransformation[COb, CMor, DOb, DMor],
    beta: NaturalTransformation[DOb, DMor, EOb, EMor],
) -> NaturalTransformation[COb, CMor, EOb, EMor]:
    """Compose alpha: F => G (C -> D) and beta: H => K (D -> E) side by side.

    The result is F;H => G;K. Its component at x is H(alpha_x);beta_{G(x)}.
    When beta is natural at alpha_x this equals beta_{F(x)};K(alpha_x), the
    other way around the square; for unnatural inputs the two may differ, and
    this function uses the first.

    Raises
    ------
    CategoryError
        If the codomain category of alpha is not the domain category of beta.
    """
    source = ComposedFunctor(alpha.source, beta.source)
    target = ComposedFunctor(alpha.target, beta.target)
    outer = beta.codomain

    def component(x: COb) -> EMor:
        moved = beta.source.map_morphism(alpha.component(x))
        return outer.compose(moved, beta.component(alpha.target.map_object(x)))

    return NaturalTransformation(
        source, target, component, name=f"({alpha.name}*{beta.name})"
    )
