"""The catinv command line: help, config printing and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from learning.cli import main


def test_config_prints_preset(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["config", "--preset", "tiny"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["name"] == "tiny"


def test_bad_config_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"train": {"epochs": 0}}))
    assert main(["reproduce", "--config", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "train.epochs" in capsys.readouterr().err


def test_negative_tau_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["reproduce", "--preset", "tiny", "--tau", "-1", "--out", str(tmp_path)]
    )
    assert code == 2
    assert "tau" in capsys.readouterr().err


def test_unavailable_device_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["reproduce", "--preset", "tiny", "--device", "tpu", "--out", str(tmp_path)]
    )
    assert code == 2
    assert "tpu" in capsys.readouterr().err


def test_unknown_preset_is_usage_error() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "--preset", "huge", "--out", "x"])
    assert exit_info.value.code == 2


def test_out_is_required() -> None:
    with pytest.raises(SystemExit):
        main(["reproduce", "--preset", "tiny"])


def test_validation_error_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["reproduce", "--preset", "tiny", "--tau", "-1", "--out", str(tmp_path)])
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "homotopy.tau: Input should be greater than or equal to 0" in err
    assert "(got -1.0)" in err


def test_missing_local_data_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps({"data": {"name": "mnist", "root": str(tmp_path / "nowhere")}})
    )
    out = tmp_path / "out"
    assert main(["reproduce", "--config", str(config), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "mnist files not found" in err
    assert "writable" not in err
    assert not (out / "config.json").exists()


def test_misspelt_field_gets_a_suggestion(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.json"
    config.write_text(
        json.dumps(
            {
                "trian": {"epochs": 1},
                "model": {"hiden": 8},
                "train": {"optimizers": [{"name": "sgd", "lr": 0.1, "momentun": 0}]},
                "zzzz": 1,
            }
        )
    )
    assert main(["reproduce", "--config", str(config), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "trian: unknown field; did you mean 'train'?" in err
    assert "model.hiden: unknown field; did you mean 'hidden'?" in err
    assert "train.optimizers.0.momentun: unknown field; did you mean 'momentum'?" in err
    assert "zzzz: unknown field; the fields here are data, device," in err


def test_config_folder_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["reproduce", "--config", str(tmp_path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert f"config {tmp_path} is a folder; name a JSON file" in err
    assert "--out" not in err


def test_out_file_rejected_before_progress(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    assert main(["reproduce", "--preset", "tiny", "--out", str(path)]) == 2
    assert capsys.readouterr().err.startswith("catinv: error: --out")


def test_empty_out_is_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["reproduce", "--preset", "tiny", "--out", ""])
    assert exit_info.value.code == 2
    assert "the results folder is empty" in capsys.readouterr().err
