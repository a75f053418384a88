"""The run store round-trips runs, detects corruption and ignores stale configs."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from learning.config import ExperimentConfig
from learning.data import Dataset
from learning.store import (
    RunStore,
    StoreCorruptError,
    read_array_cache,
    run_key,
    write_array_cache,
)
from learning.training import RunResult, train_run


@pytest.fixture(scope="module")
def run(
    small_config: ExperimentConfig, small_dataset: Dataset, cpu: torch.device
) -> RunResult:
    return train_run(
        small_config, small_dataset, small_config.train.run_specs()[0], cpu
    )


def test_round_trip(
    run: RunResult, tmp_path: Path, small_config: ExperimentConfig
) -> None:
    store = RunStore(tmp_path)
    key = run_key(small_config, run.spec)
    store.save(run, key)
    loaded = store.load(run.spec, key)
    assert loaded is not None
    assert loaded.trajectory == run.trajectory
    assert loaded.test_accuracy == run.test_accuracy
    assert (loaded.test_predictions == run.test_predictions).all()  # type: ignore[union-attr]


def test_missing_run_is_none(run: RunResult, tmp_path: Path) -> None:
    assert RunStore(tmp_path).load(run.spec, "any") is None


def test_other_key_is_none(run: RunResult, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.save(run, "old-key")
    assert store.load(run.spec, "new-key") is None


def test_corrupted_trajectory_rejected(run: RunResult, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.save(run, "k")
    path = store.folder(run.spec) / "trajectory.npz"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StoreCorruptError, match="checksum"):
        store.load(run.spec, "k")


def test_truncated_record_rejected(run: RunResult, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.save(run, "k")
    record = store.folder(run.spec) / "run.json"
    record.write_text(record.read_text()[:40])
    with pytest.raises(StoreCorruptError, match="not valid JSON"):
        store.load(run.spec, "k")


def test_key_depends_on_optimizer(small_config: ExperimentConfig) -> None:
    spec = small_config.train.run_specs()[0]
    other = spec.model_copy(
        update={"optimizer": spec.optimizer.model_copy(update={"lr": 0.5})}
    )
    assert run_key(small_config, spec) != run_key(small_config, other)


def test_key_ignores_analysis_settings(small_config: ExperimentConfig) -> None:
    spec = small_config.train.run_specs()[0]
    changed = small_config.model_copy(
        update={"homotopy": small_config.homotopy.model_copy(update={"tau": 0.7})}
    )
    assert run_key(small_config, spec) == run_key(changed, spec)


def test_record_missing_status_rejected(run: RunResult, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.save(run, "k")
    record = store.folder(run.spec) / "run.json"
    data = json.loads(record.read_text())
    del data["status"]
    record.write_text(json.dumps(data))
    with pytest.raises(StoreCorruptError, match="lacks the fields"):
        store.load(run.spec, "k")


def test_record_not_an_object_rejected(run: RunResult, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.save(run, "k")
    (store.folder(run.spec) / "run.json").write_text("[]")
    with pytest.raises(StoreCorruptError, match="run.json"):
        store.load(run.spec, "k")


def test_cache_round_trip_and_key(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    write_array_cache(path, "k1", np.arange(3.0))
    assert read_array_cache(path, "k2") is None
    cached = read_array_cache(path, "k1")
    assert cached is not None
    assert cached.tolist() == [0.0, 1.0, 2.0]


def test_unreadable_cache_is_miss(tmp_path: Path) -> None:
    path = tmp_path / "c.npz"
    path.write_bytes(b"garbage")
    assert read_array_cache(path, "k") is None


def test_written_files_follow_umask(run: RunResult, tmp_path: Path) -> None:
    umask = os.umask(0o022)
    try:
        store = RunStore(tmp_path)
        store.save(run, "k")
    finally:
        os.umask(umask)
    mode = (store.folder(run.spec) / "run.json").stat().st_mode & 0o777
    assert mode == 0o644
