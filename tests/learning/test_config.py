"""Configs: presets are valid, and invalid values are rejected with a named field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from learning.config import (
    ConfigError,
    DataConfig,
    ExperimentConfig,
    OptimizerConfig,
    TrainConfig,
    load_config,
    preset,
)


@pytest.mark.parametrize(
    "name, runs", [("tiny", 3), ("quick", 12), ("full", 100), ("optimizers", 9)]
)
def test_preset_run_counts(name: str, runs: int) -> None:
    assert preset(name).n_runs == runs


def test_quick_mixes_seeds_and_optimizers() -> None:
    specs = preset("quick").train.run_specs()
    assert {s.optimizer.name for s in specs} == {"sgd", "adam"}
    assert len({s.init_seed for s in specs}) > 1
    assert len({s.name for s in specs}) == len(specs)


def test_unknown_preset_lists_choices() -> None:
    with pytest.raises(
        ConfigError, match="choose one of: full, optimizers, quick, tiny"
    ):
        preset("huge")


def test_mnist1d_sizes_must_divide_by_ten() -> None:
    with pytest.raises(ValidationError, match="multiple of 10"):
        DataConfig(n_train=1005, n_test=1000)


def test_probe_larger_than_test_rejected() -> None:
    with pytest.raises(ValidationError, match="probe_size = 500 exceeds n_test = 100"):
        DataConfig(n_train=100, n_test=100, probe_size=500)


def test_negative_learning_rate_rejected() -> None:
    with pytest.raises(ValidationError, match="lr"):
        OptimizerConfig(name="sgd", lr=-0.1)


def test_unknown_optimizer_rejected() -> None:
    with pytest.raises(ValidationError, match="'natural_gradient'"):
        OptimizerConfig(name="lbfgs", lr=0.1)  # type: ignore[arg-type]


def test_repeated_seed_rejected() -> None:
    with pytest.raises(ValidationError, match="init_seeds = \\[1, 1\\] repeats"):
        TrainConfig(init_seeds=[1, 1])


def test_misspelled_field_rejected() -> None:
    with pytest.raises(ValidationError, match="epoch"):
        ExperimentConfig.model_validate({"train": {"epoch": 3}})


def test_load_config_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(preset("tiny").model_dump(mode="json")))
    assert load_config(path) == preset("tiny")


def test_load_config_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.json")


def test_load_config_bad_json(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text("{nope")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(path)


def test_load_config_names_invalid_field(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"homotopy": {"tau": -1}}))
    with pytest.raises(ConfigError, match="homotopy.tau"):
        load_config(path)


def test_fingerprint_changes_with_section() -> None:
    a = preset("quick")
    b = a.model_copy(update={"homotopy": a.homotopy.model_copy(update={"tau": 0.3})})
    assert a.fingerprint("train") == b.fingerprint("train")
    assert a.fingerprint("homotopy") != b.fingerprint("homotopy")


@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_non_finite_tau_rejected(value: float) -> None:
    with pytest.raises(ValidationError, match="finite number"):
        ExperimentConfig.model_validate({"homotopy": {"tau": value}})


def test_digits_default_sizes_rejected_at_config() -> None:
    with pytest.raises(ValidationError, match="digits has 1797 examples"):
        DataConfig(name="digits")


@pytest.mark.parametrize(
    "section, value, kind",
    [
        ({"train": {"epochs": True}}, "True", "integer"),
        ({"train": {"batch_size": "100"}}, "'100'", "integer"),
        ({"train": {"epochs": 2.0}}, "2.0", "integer"),
        ({"model": {"batch_norm": 1}}, "1", "boolean"),
        ({"train": {"vectorized": "yes"}}, "'yes'", "boolean"),
    ],
)
def test_values_are_not_coerced(
    tmp_path: Path, section: dict[str, object], value: str, kind: str
) -> None:
    # A bool or a string where a number belongs is more likely a mistake
    # than a number, so it is refused instead of converted.
    path = tmp_path / "c.json"
    path.write_text(json.dumps(section))
    with pytest.raises(ConfigError, match=rf"valid {kind} \(got {value}\)"):
        load_config(path)


def test_integer_accepted_for_a_float_field() -> None:
    config = ExperimentConfig.model_validate_json(
        '{"train": {"optimizers": [{"name": "sgd", "lr": 1}]}}'
    )
    assert config.train.optimizers[0].lr == 1.0


def test_optimizer_label_names_differing_settings() -> None:
    train = TrainConfig(
        optimizers=[
            OptimizerConfig(name="sgd", lr=0.05),
            OptimizerConfig(name="sgd", lr=0.01, nesterov=True),
            OptimizerConfig(name="adam", lr=0.001),
        ]
    )
    labels = [train.optimizer_label(o) for o in train.optimizers]
    assert labels == [
        "sgd (lr=0.05, nesterov=False)",
        "sgd (lr=0.01, nesterov=True)",
        "adam",
    ]


def test_duplicate_key_rejected(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text('{"train": {"epochs": 2, "epochs": 3}}')
    with pytest.raises(ConfigError, match="'epochs' appears twice in the object with"):
        load_config(path)


def test_root_for_generated_data_rejected() -> None:
    with pytest.raises(ValidationError, match="'mnist1d' is not read from a folder"):
        DataConfig(root="/data")


def test_batch_larger_than_training_set_rejected() -> None:
    with pytest.raises(ValidationError, match="set batch_size to 600"):
        ExperimentConfig.model_validate(
            {"data": {"n_train": 600}, "train": {"batch_size": 601}}
        )


def test_same_optimizer_twice_rejected() -> None:
    with pytest.raises(ValidationError, match=r"'sgd' with the same settings twice"):
        TrainConfig(
            optimizers=[
                OptimizerConfig(name="sgd", lr=0.05),
                OptimizerConfig(name="sgd", lr=0.05),
            ]
        )


def test_empty_root_for_local_data_rejected() -> None:
    with pytest.raises(ValidationError, match="set data.root"):
        DataConfig(name="mnist", root="  ")
