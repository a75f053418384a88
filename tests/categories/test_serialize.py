"""JSON models: round trips, and validation errors that name the bad field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from categories import functor_law_failures
from categories.finset import FinFunction
from categories.serialize import (
    FinSetFunctorModel,
    PresentationModel,
    TransformationModel,
)
from categories.transformation import naturality_failures

SIMPLICIAL: dict[str, Any] = {
    "name": "truncated simplex",
    "objects": ["V", "E"],
    "generators": [
        {"name": "d0", "dom": "V", "cod": "E"},
        {"name": "d1", "dom": "V", "cod": "E"},
        {"name": "s0", "dom": "E", "cod": "V"},
    ],
    "relations": [{"lhs": ["d0", "s0"], "rhs": []}, {"lhs": ["d1", "s0"], "rhs": []}],
}

FUNCTOR: dict[str, Any] = {
    "source": SIMPLICIAL,
    "object_map": {"V": 2, "E": 3},
    "generator_map": {
        "d0": {"values": [0, 1], "cod": 3},
        "d1": {"values": [0, 2], "cod": 3},
        "s0": {"values": [0, 1, 1], "cod": 2},
    },
}


def test_presentation_round_trip() -> None:
    model = PresentationModel.model_validate(SIMPLICIAL)
    presentation = model.build()
    again = PresentationModel.from_presentation(presentation)
    rebuilt = again.build()
    assert [f.word for f in rebuilt.hom("V", "V")] == [
        f.word for f in presentation.hom("V", "V")
    ]
    assert json.loads(again.model_dump_json())["objects"] == ["V", "E"]


def test_presentation_unknown_object_named() -> None:
    bad = {**SIMPLICIAL, "generators": [{"name": "d0", "dom": "V", "cod": "X"}]}
    with pytest.raises(ValidationError, match=r"generators\[0\]\.cod = 'X'"):
        PresentationModel.model_validate(bad)


def test_presentation_unknown_generator_named() -> None:
    bad = {**SIMPLICIAL, "relations": [{"lhs": ["d0", "s9"], "rhs": []}]}
    with pytest.raises(ValidationError, match=r"relations\[0\]\.lhs\[1\] = 's9'"):
        PresentationModel.model_validate(bad)


def test_presentation_extra_field_named() -> None:
    with pytest.raises(ValidationError, match="morphisms"):
        PresentationModel.model_validate({**SIMPLICIAL, "morphisms": []})


def test_functor_builds_lawful_functor() -> None:
    functor = FinSetFunctorModel.model_validate(FUNCTOR).build()
    assert functor_law_failures(functor, [], [], []).ok


def test_functor_breaking_relation_reported() -> None:
    bad = json.loads(json.dumps(FUNCTOR))
    bad["generator_map"]["d1"]["values"] = [1, 2]
    functor = FinSetFunctorModel.model_validate(bad).build()
    report = functor_law_failures(functor, [], [], [])
    assert [f.law for f in report.failures] == ["functor.relation"]


def test_functor_value_outside_codomain_named() -> None:
    bad = json.loads(json.dumps(FUNCTOR))
    bad["generator_map"]["d1"]["values"] = [0, 3]
    with pytest.raises(ValidationError) as error:
        FinSetFunctorModel.model_validate(bad)
    text = str(error.value)
    assert "generator_map.d1" in text
    assert "values[1] = 3 is outside the codomain" in text


def test_functor_wrong_type_named() -> None:
    bad = json.loads(json.dumps(FUNCTOR))
    bad["generator_map"]["s0"] = {"values": [0, 1], "cod": 2}
    with pytest.raises(
        ValidationError, match="s0: E -> V must map to a function 3 -> 2"
    ):
        FinSetFunctorModel.model_validate(bad)


def test_functor_missing_object_named() -> None:
    bad = {**FUNCTOR, "object_map": {"V": 2}}
    with pytest.raises(ValidationError, match="object 'E' of the source has no image"):
        FinSetFunctorModel.model_validate(bad)


def test_transformation_round_trip_and_naturality() -> None:
    model = TransformationModel.model_validate(
        {
            "source": FUNCTOR,
            "target": FUNCTOR,
            "components": {
                "V": {"values": [0, 1], "cod": 2},
                "E": {"values": [0, 1, 2], "cod": 3},
            },
        }
    )
    alpha = model.build()
    assert naturality_failures(alpha).ok
    assert alpha.component("V") == FinFunction([0, 1], 2)


def test_transformation_missing_component_named() -> None:
    with pytest.raises(ValidationError, match="object 'E' has no component"):
        TransformationModel.model_validate(
            {
                "source": FUNCTOR,
                "target": FUNCTOR,
                "components": {"V": {"values": [0, 1], "cod": 2}},
            }
        )


def test_functor_model_round_trip() -> None:
    functor = FinSetFunctorModel.model_validate(FUNCTOR).build()
    again = FinSetFunctorModel.from_functor(functor)
    # Export fills in the relations' default names; after that it is stable.
    assert FinSetFunctorModel.from_functor(again.build()) == again
    assert (
        again.generator_map == FinSetFunctorModel.model_validate(FUNCTOR).generator_map
    )


def test_transformation_model_round_trip() -> None:
    data = {
        "source": FUNCTOR,
        "target": FUNCTOR,
        "components": {
            "V": {"values": [0, 1], "cod": 2},
            "E": {"values": [0, 1, 2], "cod": 3},
        },
    }
    alpha = TransformationModel.model_validate(data).build()
    again = TransformationModel.from_transformation(alpha)
    assert TransformationModel.from_transformation(again.build()) == again
    assert again.components == TransformationModel.model_validate(data).components


@pytest.mark.parametrize("value", ["1", True, 1.0])
def test_values_must_be_integers(value: object) -> None:
    bad = json.loads(json.dumps(FUNCTOR))
    bad["generator_map"]["d0"]["values"] = [0, value]
    with pytest.raises(ValidationError, match="generator_map.d0.values.1"):
        FinSetFunctorModel.model_validate(bad)


def test_relation_sides_must_be_parallel() -> None:
    bad = {**SIMPLICIAL, "relations": [{"lhs": ["d0"], "rhs": ["s0"]}]}
    with pytest.raises(ValidationError, match="both sides must be parallel"):
        PresentationModel.model_validate(bad)


def test_relation_path_must_compose() -> None:
    bad = {**SIMPLICIAL, "relations": [{"lhs": ["d0", "d1"], "rhs": []}]}
    with pytest.raises(ValidationError, match="not composable"):
        PresentationModel.model_validate(bad)


def test_identity_relation_needs_loop() -> None:
    bad = {**SIMPLICIAL, "relations": [{"lhs": ["d0"], "rhs": []}]}
    with pytest.raises(ValidationError, match="must be a loop"):
        PresentationModel.model_validate(bad)


def test_generator_name_without_semicolon() -> None:
    bad = {**SIMPLICIAL, "generators": [{"name": "a;b", "dom": "V", "cod": "E"}]}
    with pytest.raises(ValidationError, match="generators.0.name"):
        PresentationModel.model_validate(bad)


def test_bad_objects_do_not_cascade() -> None:
    bad = {**SIMPLICIAL, "objects": ["V", "V"]}
    with pytest.raises(ValidationError) as error:
        PresentationModel.model_validate(bad)
    assert error.value.error_count() == 1
    assert "listed twice" in str(error.value)


def test_int_objects_rejected_on_export() -> None:
    from categories import Presentation

    with pytest.raises(TypeError, match="strings"):
        PresentationModel.from_presentation(Presentation([0, 1], [("a", 0, 1)]))


def list_locations(error: ValidationError) -> list[tuple[int | str, ...]]:
    return [tuple(detail["loc"]) for detail in error.errors()]


TRANSFORMATION: dict[str, Any] = {
    "source": FUNCTOR,
    "target": FUNCTOR,
    "components": {
        "V": {"values": [0, 1], "cod": 2},
        "E": {"values": [0, 1, 2], "cod": 3},
    },
}


def replace_item(data: dict[str, Any], path: list[int | str], value: object) -> Any:
    """Return a deep copy of `data` with the item at `path` set to `value`."""
    result = json.loads(json.dumps(data))
    parent = result
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return result


@pytest.mark.parametrize(
    ("path", "value", "location"),
    [
        (["generators", 2, "cod"], "X", ("generators", 2, "cod")),
        (["generators", 1, "dom"], "X", ("generators", 1, "dom")),
        (["generators", 2, "name"], "d0", ("generators", 2, "name")),
        (["objects"], ["V", "E", "V"], ("objects", 2)),
        (["relations", 1, "lhs", 1], "s9", ("relations", 1, "lhs", 1)),
        (["relations", 1, "lhs"], ["d0", "d1"], ("relations", 1, "lhs")),
        (["relations", 1], {"lhs": [], "rhs": []}, ("relations", 1)),
        (["relations", 1], {"lhs": ["d0"], "rhs": []}, ("relations", 1)),
        (["relations", 1], {"lhs": ["d0"], "rhs": ["s0"]}, ("relations", 1)),
    ],
)
def test_presentation_error_located_at_item(
    path: list[int | str], value: object, location: tuple[int | str, ...]
) -> None:
    with pytest.raises(ValidationError) as error:
        PresentationModel.model_validate(replace_item(SIMPLICIAL, path, value))
    assert list_locations(error.value) == [location]


@pytest.mark.parametrize(
    ("path", "value", "location"),
    [
        (["generator_map", "d1", "values", 1], 3, ("generator_map", "d1", "values", 1)),
        (["generator_map", "s0", "values"], [0, 1], ("generator_map", "s0")),
        (["generator_map", "zz"], {"values": [0], "cod": 3}, ("generator_map", "zz")),
        (["object_map", "Z"], 1, ("object_map", "Z")),
        (["object_map", "E"], -1, ("object_map", "E")),
        (["source", "generators", 0, "cod"], "X", ("source", "generators", 0, "cod")),
    ],
)
def test_functor_error_located_at_item(
    path: list[int | str], value: object, location: tuple[int | str, ...]
) -> None:
    with pytest.raises(ValidationError) as error:
        FinSetFunctorModel.model_validate(replace_item(FUNCTOR, path, value))
    assert list_locations(error.value) == [location]


def test_functor_missing_images_located_at_key() -> None:
    no_object = {**FUNCTOR, "object_map": {"V": 2}}
    with pytest.raises(ValidationError) as error:
        FinSetFunctorModel.model_validate(no_object)
    assert list_locations(error.value) == [("object_map", "E")]

    generators = {k: v for k, v in FUNCTOR["generator_map"].items() if k != "s0"}
    no_generator = {**FUNCTOR, "generator_map": generators}
    with pytest.raises(ValidationError) as error:
        FinSetFunctorModel.model_validate(no_generator)
    assert list_locations(error.value) == [("generator_map", "s0")]


@pytest.mark.parametrize(
    ("path", "value", "location"),
    [
        (["components", "E"], {"values": [0, 1], "cod": 3}, ("components", "E")),
        (["components", "Q"], {"values": [0], "cod": 2}, ("components", "Q")),
        (["components", "E", "values", 2], 7, ("components", "E", "values", 2)),
        (["target", "source", "name"], "other", ("target", "source")),
    ],
)
def test_transformation_error_located_at_item(
    path: list[int | str], value: object, location: tuple[int | str, ...]
) -> None:
    with pytest.raises(ValidationError) as error:
        TransformationModel.model_validate(replace_item(TRANSFORMATION, path, value))
    assert list_locations(error.value) == [location]


def test_transformation_missing_component_located_at_key() -> None:
    bad = {**TRANSFORMATION, "components": {"V": {"values": [0, 1], "cod": 2}}}
    with pytest.raises(ValidationError) as error:
        TransformationModel.model_validate(bad)
    assert list_locations(error.value) == [("components", "E")]


def test_located_error_keeps_message_and_input() -> None:
    bad = replace_item(FUNCTOR, ["generator_map", "d1", "values", 1], 3)
    with pytest.raises(ValidationError) as error:
        FinSetFunctorModel.model_validate_json(json.dumps(bad))
    (detail,) = error.value.errors()
    assert detail["type"] == "value_error"
    assert detail["input"] == 3
    assert "values[1] = 3 is outside the codomain" in detail["msg"]
    assert "generator_map.d1.values.1" in str(error.value)
