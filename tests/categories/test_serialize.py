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
