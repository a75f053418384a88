"""JSON for presentations, functors into FinSet and natural transformations.

Each pydantic model mirrors one structure and checks it when validated:
unknown objects or generators, relations whose sides are not parallel
paths, values outside a codomain and missing components are reported as
validation errors. The error's location names the offending item (such as
``generator_map.d1.values.1``), and its message names it too (such as
``values[1] = 3``). Numbers must be JSON integers: strings, booleans and
floats are rejected, not converted. ``build()`` turns a valid model into the
core's objects; ``from_presentation``, ``from_function``, ``from_functor``
and ``from_transformation`` go the other way.

Objects are named by strings in JSON, because they are also keys of the
object and component maps.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails

from categories.finset import FinFunction, FinSet
from categories.generated import GeneratedFunctor
from categories.presentation import Presentation
from categories.transformation import NaturalTransformation


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _error_at(
    loc: tuple[int | str, ...], message: str, value: object
) -> ValidationError:
    """Build a value error located at `loc` inside the field being validated.

    pydantic-core reports a ValidationError raised inside a validator as its
    own errors, each location prefixed with the validated field's location
    (checked with pydantic 2.14), so ``(2, "cod")`` raised while validating
    ``generators`` is reported at ``generators.2.cod``.
    """
    detail = InitErrorDetails(
        type="value_error", loc=loc, input=value, ctx={"error": ValueError(message)}
    )
    return ValidationError.from_exception_data("ValueError", [detail])


class GeneratorModel(_Model):
    """A generating morphism ``name: dom -> cod``."""

    name: str = Field(min_length=1, pattern=r"^[^;]+$")
    dom: str
    cod: str


class RelationModel(_Model):
    """A defining relation ``lhs = rhs`` between paths of generator names."""

    lhs: list[str]
    rhs: list[str]
    name: str | None = None


class PresentationModel(_Model):
    """A finitely presented category."""

    name: str = "Presentation"
    objects: list[str] = Field(min_length=1)
    generators: list[GeneratorModel] = Field(default_factory=list)
    relations: list[RelationModel] = Field(default_factory=list)

    @field_validator("objects")
    @classmethod
    def _distinct_objects(cls, value: list[str]) -> list[str]:
        seen: set[str] = set()
        for index, obj in enumerate(value):
            if obj in seen:
                raise _error_at(
                    (index,), f"object {obj!r} is listed twice; list each once", obj
                )
            seen.add(obj)
        return value

    @field_validator("generators")
    @classmethod
    def _known_objects(
        cls, value: list[GeneratorModel], info: ValidationInfo
    ) -> list[GeneratorModel]:
        if "objects" not in info.data:
            return value  # objects already failed; its error is reported
        objects = set(info.data["objects"])
        names: set[str] = set()
        for index, generator in enumerate(value):
            for end in ("dom", "cod"):
                obj = getattr(generator, end)
                if obj not in objects:
                    raise _error_at(
                        (index, end),
                        f"generators[{index}].{end} = {obj!r} is not one of the"
                        f" objects {sorted(objects)}; add it to objects",
                        obj,
                    )
            if generator.name in names:
                raise _error_at(
                    (index, "name"),
                    f"generators[{index}].name = {generator.name!r} repeats a name",
                    generator.name,
                )
            names.add(generator.name)
        return value

    @field_validator("relations")
    @classmethod
    def _known_generators(
        cls, value: list[RelationModel], info: ValidationInfo
    ) -> list[RelationModel]:
        if "generators" not in info.data:
            return value  # generators already failed; its error is reported
        types = {g.name: (g.dom, g.cod) for g in info.data["generators"]}
        for index, relation in enumerate(value):
            ends = []
            for side in ("lhs", "rhs"):
                path = getattr(relation, side)
                for position, name in enumerate(path):
                    if name not in types:
                        raise _error_at(
                            (index, side, position),
                            f"relations[{index}].{side}[{position}] = {name!r} is"
                            f" not a generator; known generators: {sorted(types)}",
                            name,
                        )
                for a, b in itertools.pairwise(path):
                    if types[a][1] != types[b][0]:
                        raise _error_at(
                            (index, side),
                            f"relations[{index}].{side}: {a} ends at {types[a][1]!r}"
                            f" but {b} starts at {types[b][0]!r}, so the path is"
                            " not composable",
                            path,
                        )
                ends.append((types[path[0]][0], types[path[-1]][1]) if path else None)
            lhs_ends, rhs_ends = ends
            if lhs_ends is None and rhs_ends is None:
                raise _error_at(
                    (index,), f"relations[{index}]: both sides are empty", relation
                )
            if lhs_ends is None or rhs_ends is None:
                loop = lhs_ends or rhs_ends
                assert loop is not None
                if loop[0] != loop[1]:
                    raise _error_at(
                        (index,),
                        f"relations[{index}]: one side is an identity, so the"
                        f" other must be a loop, but it goes {loop[0]!r} ->"
                        f" {loop[1]!r}",
                        relation,
                    )
            elif lhs_ends != rhs_ends:
                raise _error_at(
                    (index,),
                    f"relations[{index}]: lhs goes {lhs_ends[0]!r} -> {lhs_ends[1]!r}"
                    f" but rhs goes {rhs_ends[0]!r} -> {rhs_ends[1]!r}; both sides"
                    " must be parallel paths",
                    relation,
                )
        return value

    def build(self) -> Presentation:
        """Return the `Presentation` this model describes."""
        relations: list[Any] = []
        for relation in self.relations:
            if relation.name is None:
                relations.append((relation.lhs, relation.rhs))
            else:
                relations.append((relation.name, relation.lhs, relation.rhs))
        return Presentation(
            self.objects,
            [(g.name, g.dom, g.cod) for g in self.generators],
            relations,
            name=self.name,
        )

    @classmethod
    def from_presentation(cls, presentation: Presentation) -> PresentationModel:
        """Return the model of a presentation; its objects must be strings."""
        for x in presentation.objects():
            if not isinstance(x, str):
                raise TypeError(
                    f"object {x!r} of {presentation.name} is a {type(x).__name__};"
                    " JSON names objects by strings, so rebuild the presentation"
                    " with string objects"
                )
        objects = [str(x) for x in presentation.objects()]
        generators = []
        for name in presentation.generator_names():
            dom, cod = presentation.generator_type(name)
            generators.append(GeneratorModel(name=name, dom=str(dom), cod=str(cod)))
        relations = [
            RelationModel(lhs=list(r.lhs), rhs=list(r.rhs), name=r.name)
            for r in presentation.defining_relations()
        ]
        return cls(
            name=presentation.name,
            objects=objects,
            generators=generators,
            relations=relations,
        )


class FinFunctionModel(_Model):
    """A function {0..n-1} -> {0..cod-1} given by its list of values."""

    values: list[int]
    cod: int = Field(ge=0)

    @model_validator(mode="after")
    def _in_codomain(self) -> FinFunctionModel:
        for index, v in enumerate(self.values):
            if not 0 <= v < self.cod:
                raise _error_at(
                    ("values", index),
                    f"values[{index}] = {v} is outside the codomain"
                    f" {{0, ..., {self.cod - 1}}} of size {self.cod}",
                    v,
                )
        return self

    def build(self) -> FinFunction:
        """Return the `FinFunction`."""
        return FinFunction(self.values, self.cod)

    @classmethod
    def from_function(cls, f: FinFunction) -> FinFunctionModel:
        """Return the model of a function."""
        return cls(values=f.tolist(), cod=f.cod)


class FinSetFunctorModel(_Model):
    """A functor from a presented category to FinSet, given on generators."""

    source: PresentationModel
    object_map: dict[str, int]
    generator_map: dict[str, FinFunctionModel]
    name: str = "F"

    @field_validator("object_map")
    @classmethod
    def _objects_covered(
        cls, value: dict[str, int], info: ValidationInfo
    ) -> dict[str, int]:
        source = info.data.get("source")
        if source is None:
            return value  # source already failed; its error is reported
        for obj in source.objects:
            if obj not in value:
                raise _error_at(
                    (obj,), f"object {obj!r} of the source has no image", value
                )
        for obj, size in value.items():
            if obj not in source.objects:
                raise _error_at((obj,), f"{obj!r} is not an object of the source", size)
            if size < 0:
                raise _error_at(
                    (obj,), f"the image of {obj!r} has negative size {size}", size
                )
        return value

    @field_validator("generator_map")
    @classmethod
    def _generators_typed(
        cls, value: dict[str, FinFunctionModel], info: ValidationInfo
    ) -> dict[str, FinFunctionModel]:
        source, sizes = info.data.get("source"), info.data.get("object_map")
        if source is None or sizes is None:
            return value
        types = {g.name: (g.dom, g.cod) for g in source.generators}
        for name in types:
            if name not in value:
                raise _error_at(
                    (name,), f"generator {name!r} of the source has no image", value
                )
        for name, image in value.items():
            if name not in types:
                raise _error_at(
                    (name,), f"{name!r} is not a generator of the source", image
                )
            dom, cod = types[name]
            if len(image.values) != sizes[dom] or image.cod != sizes[cod]:
                raise _error_at(
                    (name,),
                    f"{name}: {dom} -> {cod} must map to a function"
                    f" {sizes[dom]} -> {sizes[cod]}; got"
                    f" {len(image.values)} -> {image.cod}",
                    image,
                )
        return value

    @classmethod
    def from_functor(
        cls, functor: GeneratedFunctor[int, FinFunction]
    ) -> FinSetFunctorModel:
        """Return the model of a functor from a presentation to FinSet."""
        source = functor.source
        if not isinstance(source, Presentation):
            raise TypeError(
                f"functor {functor.name} starts at a {type(source).__name__}; only"
                " functors from a Presentation have a JSON model"
            )
        return cls(
            source=PresentationModel.from_presentation(source),
            object_map={str(x): int(n) for x, n in functor.object_map.items()},
            generator_map={
                str(name): FinFunctionModel.from_function(f)
                for name, f in functor.generator_map.items()
            },
            name=functor.name,
        )

    def build(
        self, source: Presentation | None = None
    ) -> GeneratedFunctor[int, FinFunction]:
        """Return the functor; pass `source` to reuse an already built presentation."""
        presentation = source if source is not None else self.source.build()
        object_map: dict[Hashable, int] = {k: v for k, v in self.object_map.items()}
        return GeneratedFunctor(
            presentation,
            FinSet(),
            object_map,
            {name: f.build() for name, f in self.generator_map.items()},
            name=self.name,
        )


class TransformationModel(_Model):
    """A natural transformation between two functors into FinSet."""

    source: FinSetFunctorModel
    target: FinSetFunctorModel
    components: dict[str, FinFunctionModel]
    name: str = "alpha"

    @field_validator("target")
    @classmethod
    def _same_source(
        cls, value: FinSetFunctorModel, info: ValidationInfo
    ) -> FinSetFunctorModel:
        source = info.data.get("source")
        if source is not None and source.source != value.source:
            raise _error_at(
                ("source",),
                "the two functors have different source presentations; give both"
                " the same source",
                value.source,
            )
        return value

    @field_validator("components")
    @classmethod
    def _components_typed(
        cls, value: dict[str, FinFunctionModel], info: ValidationInfo
    ) -> dict[str, FinFunctionModel]:
        source, target = info.data.get("source"), info.data.get("target")
        if source is None or target is None:
            return value
        for obj in source.source.objects:
            if obj not in value:
                raise _error_at((obj,), f"object {obj!r} has no component", value)
            component = value[obj]
            expected = (source.object_map[obj], target.object_map[obj])
            got = (len(component.values), component.cod)
            if got != expected:
                raise _error_at(
                    (obj,),
                    f"the component at {obj!r} must be a function"
                    f" {expected[0]} -> {expected[1]}; got {got[0]} -> {got[1]}",
                    component,
                )
        for obj, component in value.items():
            if obj not in source.source.objects:
                raise _error_at(
                    (obj,), f"{obj!r} is not an object of the source", component
                )
        return value

    @classmethod
    def from_transformation(
        cls, alpha: NaturalTransformation[Any, Any, int, FinFunction]
    ) -> TransformationModel:
        """Return the model of a transformation between functors into FinSet."""
        source, target = alpha.source, alpha.target
        if not isinstance(source, GeneratedFunctor) or not isinstance(
            target, GeneratedFunctor
        ):
            raise TypeError(
                "only transformations between functors given on generators"
                " (GeneratedFunctor) have a JSON model"
            )
        objects = source.source.objects() or ()
        return cls(
            source=FinSetFunctorModel.from_functor(source),
            target=FinSetFunctorModel.from_functor(target),
            components={
                str(x): FinFunctionModel.from_function(alpha.component(x))
                for x in objects
            },
            name=alpha.name,
        )

    def build(self) -> NaturalTransformation[Any, Any, int, FinFunction]:
        """Return the transformation; both functors share one presentation."""
        presentation = self.source.source.build()
        return NaturalTransformation(
            self.source.build(presentation),
            self.target.build(presentation),
            {obj: f.build() for obj, f in self.components.items()},
            name=self.name,
        )
