"""The run index: rows after saves, safe queries, and rebuilds from the folders."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from learning.config import ExperimentConfig, OptimizerConfig, RunSpec
from learning.data import Dataset
from learning.experiment import train_sweep
from learning.index import QUERY_COLUMNS, Between, RunIndex
from learning.param import Trajectory
from learning.store import RunStore
from learning.training import RunResult

# name of optimizer, lr, status, train accuracy, test accuracy
_RUNS: list[tuple[str, float, str, float | None, float | None]] = [
    ("sgd", 0.1, "complete", 0.90, 0.80),
    ("sgd", 0.01, "complete", 0.70, 0.68),
    ("adam", 0.001, "complete", 0.95, 0.70),
    ("adam", 10.0, "diverged", None, None),
    ("rmsprop", 0.01, "complete", 0.85, 0.84),
]


def _make_run(
    index: int,
    optimizer: str,
    lr: float,
    status: str,
    train_accuracy: float | None,
    test_accuracy: float | None,
) -> RunResult:
    rows = 3 + index
    diverged = status == "diverged"
    return RunResult(
        spec=RunSpec(
            index=index,
            init_seed=index,
            data_seed=index % 2,
            optimizer=OptimizerConfig(name=optimizer, lr=lr),
        ),
        status=status,  # type: ignore[arg-type]
        trajectory=Trajectory(
            tuple(range(0, 2 * rows, 2)),
            torch.randn(rows, 6, generator=torch.Generator().manual_seed(index)),
        ),
        diverged_at_step=7 if diverged else None,
        train_loss=None if diverged else 1.0 - (train_accuracy or 0.0),
        train_accuracy=train_accuracy,
        test_loss=None if diverged else 1.0 - (test_accuracy or 0.0),
        test_accuracy=test_accuracy,
        history=[{"epoch": 1.0}],
        seconds=0.5 + index,
    )


def _fill(root: Path) -> tuple[RunStore, list[RunResult]]:
    store = RunStore(root)
    runs = [_make_run(i, *values) for i, values in enumerate(_RUNS)]
    for run in runs:
        store.save(run, f"key{run.spec.index}")
    return store, runs


@pytest.fixture
def filled(tmp_path: Path) -> Iterator[tuple[RunStore, list[RunResult]]]:
    store, runs = _fill(tmp_path)
    yield store, runs
    store.close()


@pytest.fixture(scope="module")
def shared(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[RunStore, list[RunResult]]]:
    # Module-scoped, because Hypothesis tests cannot take function-scoped
    # fixtures; the tests that use it only read.
    store, runs = _fill(tmp_path_factory.mktemp("shared"))
    yield store, runs
    store.close()


def _names(rows: list[dict[str, Any]]) -> list[str]:
    return [row["name"] for row in rows]


def _table_exists(store: RunStore) -> bool:
    with sqlite3.connect(store.root / "index.sqlite") as connection:
        found = connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'runs'"
        ).fetchall()
    return found == [("runs",)]


# --- Rows after saves --------------------------------------------------------


def test_rows_after_saves(filled: tuple[RunStore, list[RunResult]]) -> None:
    store, runs = filled
    rows = {row["name"]: row for row in store.index.query()}
    assert sorted(rows) == sorted(run.spec.name for run in runs)
    assert len(store.index) == len(runs)
    for run in runs:
        row = rows[run.spec.name]
        record = json.loads((store.folder(run.spec) / "run.json").read_text())
        assert row["key"] == f"key{run.spec.index}"
        assert row["status"] == run.status
        assert row["diverged_at_step"] == run.diverged_at_step
        assert row["init_seed"] == run.spec.init_seed
        assert row["data_seed"] == run.spec.data_seed
        assert row["optimizer"] == run.spec.optimizer.name
        assert row["lr"] == run.spec.optimizer.lr
        assert row["train_accuracy"] == run.train_accuracy
        assert row["test_accuracy"] == run.test_accuracy
        assert row["test_loss"] == run.test_loss
        assert row["generalization_gap"] == run.generalization_gap
        assert row["n_checkpoints"] == len(run.trajectory.steps)
        assert row["n_params"] == 6
        assert row["layout"] == 2
        assert row["trajectory_sha256"] == record["trajectory_sha256"]
        assert row["checkpoints_sha256"] == record["checkpoints_sha256"]
        assert row["spec"] == run.spec.model_dump(mode="json")
        assert row["metrics"]["history"] == run.history
        assert row["metrics"]["generalization_gap"] == run.generalization_gap
        assert datetime.fromisoformat(row["created"]).tzinfo is not None


def test_index_file_uses_wal(filled: tuple[RunStore, list[RunResult]]) -> None:
    store, _ = filled
    with sqlite3.connect(store.root / "index.sqlite") as connection:
        mode = connection.execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_resave_updates_row(filled: tuple[RunStore, list[RunResult]]) -> None:
    store, runs = filled
    store.save(runs[0], "changed")
    [row] = store.index.query(where={"name": runs[0].spec.name})
    assert row["key"] == "changed"
    assert len(store.index) == len(runs)


def test_sweep_fills_index(
    small_config: ExperimentConfig,
    small_dataset: Dataset,
    cpu: torch.device,
    tmp_path: Path,
) -> None:
    store = RunStore(tmp_path)
    runs = train_sweep(small_config, small_dataset, store, cpu)
    rows = store.index.query()
    assert _names(rows) == sorted(run.spec.name for run in runs)
    assert rows[0]["test_accuracy"] == runs[0].test_accuracy
    store.close()


# --- Queries -----------------------------------------------------------------


def test_query_rows_open_trajectories(
    filled: tuple[RunStore, list[RunResult]],
) -> None:
    store, runs = filled
    [best] = store.index.query(order_by="-test_accuracy", limit=1)
    spec = RunSpec.model_validate(best["spec"])
    assert spec == runs[4].spec
    lazy = store.open_trajectory(spec, best["key"])
    assert lazy is not None
    assert len(lazy) == best["n_checkpoints"]
    assert torch.equal(lazy[-1], runs[4].trajectory.points[-1])


def test_query_by_status(filled: tuple[RunStore, list[RunResult]]) -> None:
    store, runs = filled
    diverged = store.index.query(status="diverged")
    assert _names(diverged) == [runs[3].spec.name]
    assert len(store.index.query(status="complete")) == 4


def test_query_by_optimizer(filled: tuple[RunStore, list[RunResult]]) -> None:
    store, runs = filled
    assert _names(store.index.query(optimizer="adam")) == [
        runs[2].spec.name,
        runs[3].spec.name,
    ]
    assert _names(store.index.query(optimizer="adam", status="complete")) == [
        runs[2].spec.name
    ]


def test_query_metric_range(filled: tuple[RunStore, list[RunResult]]) -> None:
    store, runs = filled
    rows = store.index.query(where={"test_accuracy": Between(0.7, 0.81)})
    assert _names(rows) == [runs[0].spec.name, runs[2].spec.name]
    rows = store.index.query(where={"generalization_gap": Between(low=0.2)})
    assert _names(rows) == [runs[2].spec.name]
    rows = store.index.query(where={"lr": Between(high=0.01)})
    assert _names(rows) == [runs[1].spec.name, runs[2].spec.name, runs[4].spec.name]


def test_query_membership_and_null(filled: tuple[RunStore, list[RunResult]]) -> None:
    store, runs = filled
    rows = store.index.query(where={"optimizer": ["sgd", "rmsprop"]})
    assert len(rows) == 3
    assert store.index.query(where={"init_seed": []}) == []
    rows = store.index.query(where={"test_accuracy": None})
    assert _names(rows) == [runs[3].spec.name]


def test_query_order_and_limit(filled: tuple[RunStore, list[RunResult]]) -> None:
    store, runs = filled
    ascending = store.index.query(order_by="test_accuracy")
    descending = store.index.query(order_by="-test_accuracy")
    assert _names(ascending) == [runs[i].spec.name for i in (1, 2, 0, 4, 3)]
    # The diverged run has no accuracy and sorts last either way.
    assert _names(descending) == [runs[i].spec.name for i in (4, 0, 2, 1, 3)]
    top = store.index.query(status="complete", order_by="-test_accuracy", limit=2)
    assert _names(top) == [runs[4].spec.name, runs[0].spec.name]
    assert store.index.query(limit=0) == []


def test_query_order_by_several(filled: tuple[RunStore, list[RunResult]]) -> None:
    store, runs = filled
    rows = store.index.query(order_by=["optimizer", "-lr"])
    assert _names(rows) == [runs[i].spec.name for i in (3, 2, 4, 0, 1)]


@given(
    low=st.floats(0.0, 1.0) | st.none(),
    high=st.floats(0.0, 1.0) | st.none(),
)
@settings(max_examples=40)
def test_query_range_matches_filter(
    shared: tuple[RunStore, list[RunResult]], low: float | None, high: float | None
) -> None:
    store, runs = shared
    if (
        low is None
        and high is None
        or (low is not None and high is not None and low > high)
    ):
        return
    rows = store.index.query(where={"test_accuracy": Between(low, high)})
    expected = sorted(
        run.spec.name
        for run in runs
        if run.test_accuracy is not None
        and (low is None or run.test_accuracy >= low)
        and (high is None or run.test_accuracy <= high)
    )
    assert _names(rows) == expected


def test_between_rejects_bad_bounds() -> None:
    with pytest.raises(ValueError, match="at least one bound"):
        Between()
    with pytest.raises(ValueError, match="above the high bound"):
        Between(0.9, 0.1)
    with pytest.raises(ValueError, match="NaN"):
        Between(float("nan"), 1.0)
    with pytest.raises(TypeError, match="both numbers or both strings"):
        Between(0.1, "z")
    with pytest.raises(TypeError, match="bool"):
        Between(True, None)


def test_query_rejects_bad_arguments(
    filled: tuple[RunStore, list[RunResult]],
) -> None:
    index = filled[0].index
    with pytest.raises(ValueError, match="unknown status 'finished'"):
        index.query(status="finished")
    with pytest.raises(ValueError, match="limit must be an int >= 0; got -1"):
        index.query(limit=-1)
    with pytest.raises(TypeError, match="column 'lr'.*dict"):
        index.query(where={"lr": {"gt": 0.1}})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="unknown run index column 'spec_json'"):
        index.query(where={"spec_json": "{}"})


def test_unknown_column_message(filled: tuple[RunStore, list[RunResult]]) -> None:
    index = filled[0].index
    with pytest.raises(ValueError) as caught:
        index.query(where={"accuracy": 0.5})
    message = str(caught.value)
    assert "'accuracy'" in message
    for column in ("test_accuracy", "status", "optimizer"):
        assert column in message


# --- SQL injection -------------------------------------------------------------

_HOSTILE = [
    "name; DROP TABLE runs; --",
    "name) OR 1=1 --",
    "1=1",
    "test_accuracy DESC",
    "name, (SELECT sql FROM sqlite_master)",
    "'",
    "",
]


@pytest.mark.parametrize("column", _HOSTILE)
def test_injected_where_key_rejected(
    filled: tuple[RunStore, list[RunResult]], column: str
) -> None:
    store, runs = filled
    with pytest.raises(ValueError, match="unknown run index column"):
        store.index.query(where={column: 1})
    assert _table_exists(store)
    assert len(store.index.query()) == len(runs)


@pytest.mark.parametrize("column", _HOSTILE + ["-name; DROP TABLE runs"])
def test_injected_order_by_rejected(
    filled: tuple[RunStore, list[RunResult]], column: str
) -> None:
    store, runs = filled
    with pytest.raises(ValueError, match="unknown run index column"):
        store.index.query(order_by=column)
    with pytest.raises(ValueError, match="unknown run index column"):
        store.index.query(order_by=["name", column])
    assert _table_exists(store)
    assert len(store.index.query()) == len(runs)


def test_injected_values_are_bound(
    filled: tuple[RunStore, list[RunResult]],
) -> None:
    store, runs = filled
    attack = "x' OR '1'='1'; DROP TABLE runs; --"
    assert store.index.query(optimizer=attack) == []
    assert store.index.query(where={"name": attack}) == []
    assert store.index.query(where={"optimizer": [attack, "sgd"]}) != []
    assert store.index.query(where={"created": Between(attack, attack)}) == []
    with pytest.raises(ValueError, match="unknown status"):
        store.index.query(status=attack)
    with pytest.raises(ValueError, match="limit"):
        store.index.query(limit="1; DROP TABLE runs")  # type: ignore[arg-type]
    assert _table_exists(store)
    assert len(store.index.query()) == len(runs)


@given(key=st.text(max_size=30), value=st.text(max_size=30))
@settings(max_examples=60)
def test_arbitrary_text_is_safe(
    shared: tuple[RunStore, list[RunResult]], key: str, value: str
) -> None:
    store, runs = shared
    index = store.index
    if key in QUERY_COLUMNS:
        rows = index.query(where={key: value})
        assert all(str(row[key]) == value for row in rows)
    else:
        with pytest.raises(ValueError, match="unknown run index column"):
            index.query(where={key: value})
    assert index.query(optimizer=value) == [
        row for row in index.query() if row["optimizer"] == value
    ]
    assert len(index) == len(runs)
    assert _table_exists(store)


# --- Rebuilds ------------------------------------------------------------------


def _snapshot(store: RunStore) -> list[dict[str, Any]]:
    return store.index.query()


def test_rebuild_equals_saved_rows(
    filled: tuple[RunStore, list[RunResult]],
) -> None:
    store, _ = filled
    saved = _snapshot(store)
    assert store.index.rebuild(store) == len(saved)
    assert _snapshot(store) == saved


def test_rebuild_after_delete(tmp_path: Path) -> None:
    store, _ = _fill(tmp_path)
    saved = _snapshot(store)
    store.close()
    (store.root / "index.sqlite").unlink()

    reopened = RunStore(tmp_path)
    assert _snapshot(reopened) == saved
    reopened.close()


@pytest.mark.parametrize(
    "damage", ["garbage", "zeroed header", "zeroed table page", "empty file"]
)
def test_rebuild_after_corruption(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    store, _ = _fill(tmp_path)
    saved = _snapshot(store)
    store.close()
    path = store.root / "index.sqlite"
    data = bytearray(path.read_bytes())
    if damage == "garbage":
        data = bytearray(b"not a database at all" * 200)
    elif damage == "zeroed header":
        data[:100] = bytes(100)
    elif damage == "zeroed table page":
        # Page 2 (bytes 4096-8191 at SQLite's default page size) contains
        # the root of the table's b-tree.
        data[4096:8192] = b"\xa5" * 4096
    else:
        data = bytearray()
    path.write_bytes(bytes(data))

    reopened = RunStore(tmp_path)
    with caplog.at_level(logging.INFO, logger="learning.index"):
        rows = _snapshot(reopened)
    assert rows == saved
    if damage != "empty file":
        # An empty file is a valid empty database: rebuilt, not corrupted.
        assert "corrupted" in caplog.text
        assert any(r.levelno == logging.WARNING for r in caplog.records)
    reopened.close()


def test_stale_index_rebuilt(tmp_path: Path) -> None:
    store, runs = _fill(tmp_path)
    store.close()
    # Change the folders behind the index's back: drop one run, rewrite another.
    removed = store.folder(runs[0].spec)
    for child in removed.iterdir():
        child.unlink()
    removed.rmdir()
    record_path = store.folder(runs[1].spec) / "run.json"
    record = json.loads(record_path.read_text())
    record["key"] = "rewritten"
    record_path.write_text(json.dumps(record))

    reopened = RunStore(tmp_path)
    rows = reopened.index.query()
    assert runs[0].spec.name not in _names(rows)
    assert len(rows) == len(runs) - 1
    [row] = reopened.index.query(where={"name": runs[1].spec.name})
    assert row["key"] == "rewritten"
    reopened.close()


def test_failed_index_update_keeps_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    run = _make_run(0, *_RUNS[0])

    def fail(self: RunIndex, row: dict[str, Any]) -> None:
        raise sqlite3.OperationalError("database is locked")

    store = RunStore(tmp_path)
    with monkeypatch.context() as patch:
        patch.setattr(RunIndex, "upsert", fail)
        with caplog.at_level(logging.WARNING, logger="learning.store"):
            store.save(run, "k")
    assert "was not updated" in caplog.text
    assert store.load(run.spec, "k") is not None
    # The index was closed after the failure, so this access reopens it,
    # finds a run.json without a row and rebuilds.
    assert _names(store.index.query()) == [run.spec.name]
    store.close()


def test_unreadable_record_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store, runs = _fill(tmp_path)
    store.close()
    (store.folder(runs[2].spec) / "run.json").write_text("{truncated")
    (store.root / "index.sqlite").unlink()
    reopened = RunStore(tmp_path)
    with caplog.at_level(logging.WARNING, logger="learning.store"):
        rows = reopened.index.query()
    assert runs[2].spec.name not in _names(rows)
    assert len(rows) == len(runs) - 1
    assert "skipping unreadable run record" in caplog.text
    reopened.close()


def test_empty_store_has_empty_index(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    assert store.index.query() == []
    store.close()
