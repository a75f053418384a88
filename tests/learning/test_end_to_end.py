"""The main job on the tiny preset: a complete, consistent results folder, and resume."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import learning.analyses
import learning.experiment
from learning.config import ConfigError, OptimizerConfig, preset
from learning.data import load_dataset
from learning.experiment import reproduce, train_sweep
from learning.fisher import NonFiniteError
from learning.store import RunStore


@pytest.fixture(scope="module")
def tiny_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny")
    reproduce("tiny", out)
    return out


@pytest.fixture(scope="module")
def results(tiny_out: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((tiny_out / "results.json").read_text())
    return loaded


def test_folder_has_every_output(tiny_out: Path) -> None:
    for name in (
        "results.json",
        "report.md",
        "config.json",
        "barrier_matrix.png",
        "persistence_diagram.png",
        "gap_vs_persistence.png",
    ):
        assert (tiny_out / name).is_file(), name


def test_figures_are_png(tiny_out: Path) -> None:
    for name in (
        "barrier_matrix.png",
        "persistence_diagram.png",
        "gap_vs_persistence.png",
    ):
        assert (tiny_out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name


def test_classes_partition_runs(results: dict[str, Any]) -> None:
    classes = results["homotopy"]["classes"]
    members = sorted(m for c in classes for m in c)
    assert members == sorted(results["homotopy"]["runs"])
    assert len(results["homotopy"]["runs"]) == results["n_runs"] - results["n_diverged"]


def test_accuracies_are_fractions(results: dict[str, Any]) -> None:
    for run in results["runs"]:
        assert 0 <= run["train_accuracy"] <= 1
        assert 0 <= run["test_accuracy"] <= 1
    for stats in results["homotopy"]["class_stats"]:
        ci = stats["test_accuracy_ci95"]
        assert 0 <= ci["low"] <= stats["test_accuracy_mean"] <= ci["high"] <= 1


def test_r2_in_unit_interval(results: dict[str, Any]) -> None:
    r2 = results["topology"]["fit"]["r2"]
    assert r2 is not None
    assert 0 <= r2 <= 1


def test_functor_laws_hold(results: dict[str, Any]) -> None:
    laws = results["functor_laws"]
    assert laws["ok"]
    assert laws["functor"]["laws"]["functor.composition"]["checked"] > 0


def test_barrier_matrix_symmetric_nonnegative(results: dict[str, Any]) -> None:
    barriers = results["homotopy"]["barriers"]
    n = len(barriers)
    for i in range(n):
        assert barriers[i][i] == 0
        for j in range(n):
            assert barriers[i][j] == barriers[j][i]
            assert barriers[i][j] >= 0


def test_barriers_after_weight_matching(
    tiny_out: Path, results: dict[str, Any]
) -> None:
    """The tiny preset also matches every pair; matching never moves b away from a."""
    aligned = results["homotopy"]["modulo_permutations"]
    assert aligned["status"] == "computed"
    barriers = np.array(aligned["barriers"])
    before = np.array(aligned["distance_before"])
    after = np.array(aligned["distance_after"])
    n = len(results["homotopy"]["runs"])
    assert barriers.shape == before.shape == after.shape == (n, n)
    assert np.array_equal(barriers, barriers.T)
    assert (barriers >= 0).all()
    upper = np.triu_indices(n, k=1)
    assert (after[upper] <= before[upper] * (1 + 1e-9)).all()
    assert (after[upper] > 0).all()  # different initializations are not copies
    assert sum(len(c) for c in aligned["classes"]) == n
    report = (tiny_out / "report.md").read_text()
    assert "### Modulo permutations of hidden units" in report
    assert "classes modulo permutations (tau=" in report


def test_claims_only_in_claimed_fields(results: dict[str, Any]) -> None:
    assert results["topology"]["claim"]["claimed_r2"] == 0.82
    assert results["topology"]["fit"]["r2"] != 0.82


def test_report_shows_measured_and_claimed(
    tiny_out: Path, results: dict[str, Any]
) -> None:
    report = (tiny_out / "report.md").read_text()
    assert "| quantity | measured here | claimed | reading |" in report
    assert (
        "Training: mlp (2 hidden layers of 32 units, no BatchNorm), 3 epochs in"
        " batches of 50" in report
    )
    assert f"{results['topology']['fit']['r2']:.3f}" in report
    assert "![barrier matrix](barrier_matrix.png)" in report


def test_rerun_resumes_without_training(
    tiny_out: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail_if_trained(*args: object, **kwargs: object) -> None:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(learning.experiment, "train_run", fail_if_trained)
    again = reproduce("tiny", tiny_out)
    assert again["n_runs"] == 3


def test_diverging_run_left_out(tmp_path: Path) -> None:
    config = preset("tiny")
    train = config.train.model_copy(
        update={
            "optimizers": [
                OptimizerConfig(name="sgd", lr=0.05),
                OptimizerConfig(name="sgd", lr=1e12),
            ],
            "init_seeds": [0, 1],
        }
    )
    results = reproduce(config.model_copy(update={"train": train}), tmp_path)
    assert results["n_diverged"] == 2
    assert len(results["homotopy"]["excluded_runs"]) == 2
    assert len(results["homotopy"]["runs"]) == 2
    diverged = [r for r in results["runs"] if r["status"] == "diverged"]
    assert all(r["diverged_at_step"] is not None for r in diverged)


def test_cli_runs_tiny_preset(tmp_path: Path) -> None:
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "learning.cli",
            "reproduce",
            "--preset",
            "tiny",
            "--out",
            str(tmp_path),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr
    assert "measured here" in completed.stdout
    assert (tmp_path / "results.json").is_file()


def test_other_sweep_in_folder_rejected(tiny_out: Path) -> None:
    config = preset("tiny")
    other = config.model_copy(
        update={"train": config.train.model_copy(update={"epochs": 4})}
    )
    with pytest.raises(ConfigError, match="train settings"):
        reproduce(other, tiny_out)


def test_out_that_is_a_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ConfigError, match="is a file"):
        reproduce("tiny", path)


def test_corrupt_cache_recomputed(tmp_path: Path) -> None:
    reproduce("tiny", tmp_path)
    (tmp_path / "analysis" / "barriers.npz").write_bytes(b"not a zip file")
    again = reproduce("tiny", tmp_path)
    assert again["homotopy"]["status"] == "computed"


def test_all_diverged_report_has_no_dangling_figures(tmp_path: Path) -> None:
    config = preset("tiny")
    train = config.train.model_copy(
        update={"optimizers": [OptimizerConfig(name="sgd", lr=1e12)]}
    )
    results = reproduce(config.model_copy(update={"train": train}), tmp_path)
    report = (tmp_path / "report.md").read_text()
    assert results["n_diverged"] == 3
    assert "persistence_diagram.png" not in report
    assert "gap_vs_persistence.png" not in report


def test_environment_records_provenance(results: dict[str, Any]) -> None:
    env = results["environment"]
    assert "git_dirty" in env
    assert env["torch_threads"] >= 1


def test_vectorized_sweep_matches_loop(tmp_path: Path) -> None:
    config = preset("tiny")
    vectorized = config.model_copy(
        update={"train": config.train.model_copy(update={"vectorized": True})}
    )
    loop = reproduce(config, tmp_path / "loop")
    together = reproduce(vectorized, tmp_path / "vectorized")
    for a, b in zip(loop["runs"], together["runs"], strict=True):
        assert a["name"] == b["name"]
        assert a["test_accuracy"] == pytest.approx(b["test_accuracy"], abs=0.01)


def test_vectorized_batchnorm_sweep_trains_in_a_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = preset("tiny")
    vectorized = config.model_copy(
        update={
            "model": config.model.model_copy(update={"batch_norm": True}),
            "train": config.train.model_copy(update={"vectorized": True, "epochs": 1}),
        }
    )
    dataset = load_dataset(vectorized.data)
    with caplog.at_level("INFO", logger="learning.experiment"):
        runs = train_sweep(vectorized, dataset, RunStore(tmp_path), torch.device("cpu"))
    assert [run.status for run in runs] == ["complete"] * 3
    assert "cannot update the model's buffers" in caplog.text


def test_vectorized_sweep_logs_unsupported_optimizer(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    config = preset("tiny")
    train = config.train.model_copy(
        update={
            "vectorized": True,
            "epochs": 1,
            "init_seeds": [0],
            "optimizers": [
                OptimizerConfig(name="sgd", lr=0.05),
                OptimizerConfig(name="rmsprop", lr=0.001),
            ],
        }
    )
    vectorized = config.model_copy(update={"train": train})
    dataset = load_dataset(vectorized.data)
    with caplog.at_level("INFO", logger="learning.experiment"):
        runs = train_sweep(vectorized, dataset, RunStore(tmp_path), torch.device("cpu"))
    assert [run.status for run in runs] == ["complete"] * 2
    alone = [r.getMessage() for r in caplog.records if "on their own" in r.message]
    assert len(alone) == 1
    assert alone[0].startswith("training 1 run(s) on their own, because the")
    assert "optimizer 'rmsprop'" in alone[0]
    assert alone[0].endswith(f": {runs[1].name}")


def test_run_with_overflowing_gradients_left_out_of_fisher(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A finite loss does not guarantee finite per-example gradients: a run
    # whose weights grow to about 1e22 overflows them at the Fisher stage.
    real_length = learning.analyses.fisher_length
    calls: list[int] = []

    def overflowing_first(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise NonFiniteError("per-example gradients are not finite")
        return real_length(*args, **kwargs)

    monkeypatch.setattr(learning.analyses, "fisher_length", overflowing_first)
    config = preset("tiny")
    train = config.train.model_copy(update={"epochs": 1})
    results = reproduce(config.model_copy(update={"train": train}), tmp_path)
    fisher = results["fisher"]
    first = results["runs"][0]["name"]
    assert fisher["excluded_runs"] == [first]
    assert first not in {row["run"] for row in fisher["runs"]}
    report = (tmp_path / "report.md").read_text()
    assert f"gradients are not finite: {first}." in report


def test_empty_results_folder_rejected() -> None:
    with pytest.raises(ConfigError, match="the results folder is empty"):
        reproduce("tiny", "")


def test_unfitting_model_is_config_error(tmp_path: Path) -> None:
    config = preset("tiny")
    flat_cnn2d = config.model_copy(
        update={"model": config.model.model_copy(update={"kind": "cnn2d"})}
    )
    with pytest.raises(ConfigError, match="model.kind 'cnn2d' does not fit"):
        reproduce(flat_cnn2d, tmp_path / "out")
    assert not (tmp_path / "out" / "config.json").exists()


def test_fisher_lengths_reported(results: dict[str, Any]) -> None:
    fisher = results["fisher"]
    assert fisher["status"] == "computed"
    assert len(fisher["runs"]) == results["n_runs"] - results["n_diverged"]
    assert all(row["fisher_length"] > 0 for row in fisher["runs"])
    assert fisher["reading"].startswith("not testable")  # tiny has no natural gradient


def test_batchnorm_lines_recompute_statistics_at_the_ends(tmp_path: Path) -> None:
    """With BatchNorm the whole line, ends included, is normalized one way.

    Each end's loss on the line is then the loss with statistics recomputed
    on the training set, which differs from the loss with the stored running
    averages. "stored" keeps the latter, and the two are cached apart.
    """
    base = preset("tiny")
    model = base.model.model_copy(update={"batch_norm": True})
    results = {}
    for ends in ("recompute", "stored"):
        homotopy = base.homotopy.model_copy(update={"endpoint_statistics": ends})
        config = base.model_copy(update={"model": model, "homotopy": homotopy})
        results[ends] = reproduce(config, tmp_path / ends)
    recomputed = results["recompute"]["homotopy"]
    stored = results["stored"]["homotopy"]
    assert "at the ends recomputed too" in recomputed["definition"]
    assert "at the ends the networks' stored running averages" in stored["definition"]
    assert recomputed["barriers"] != stored["barriers"]
    aligned = recomputed["modulo_permutations"]
    assert aligned["status"] == "computed"


def test_summary_names_an_uncomputed_fisher_analysis() -> None:
    from learning.report import summary_rows

    loaded = {
        "n_runs": 1,
        "n_diverged": 0,
        "config": preset("tiny").model_dump(mode="json"),
        "functor_laws": {"functor": {"laws": {}}},
        "homotopy": {"status": "not computed: 1 finite run(s), need at least 2"},
        "topology": {"fit": {"r2": None, "n": 1}, "claim": {"claimed_r2": 0.82}},
        "fisher": {"status": "not computed: Fisher lengths of BatchNorm models"},
    }
    rows = {row[0]: row for row in summary_rows(loaded)}
    assert rows["shortest Fisher path per initialization"][1] == "not computed"


def test_two_settings_of_one_optimizer_kept_apart(tmp_path: Path) -> None:
    config = preset("tiny")
    train = config.train.model_copy(
        update={
            "epochs": 1,
            "init_seeds": [0, 1],
            "optimizers": [
                OptimizerConfig(name="sgd", lr=0.05),
                OptimizerConfig(name="sgd", lr=0.01),
            ],
        }
    )
    results = reproduce(config.model_copy(update={"train": train}), tmp_path)
    labels = {"sgd (lr=0.05)", "sgd (lr=0.01)"}
    assert {run["optimizer_label"] for run in results["runs"]} == labels
    assert set(results["topology"]["fit_by_optimizer"]) == labels
    assert set(results["fisher"]["shortest_by_optimizer"]) <= labels
    assert {row["optimizer_label"] for row in results["fisher"]["runs"]} == labels
    report = (tmp_path / "report.md").read_text()
    assert "total persistence, sgd (lr=0.05) runs only" in report
    assert "| sgd (lr=0.01) | complete |" in report  # the runs table
    assert any(f"| {label} | " in report for label in labels)  # the Fisher table
