"""The run store round-trips runs, detects corruption and ignores stale configs.

It also reads single checkpoints lazily and still loads the old layout.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import learning.store
from learning.config import ExperimentConfig, OptimizerConfig, RunSpec
from learning.data import Dataset
from learning.param import Trajectory
from learning.store import (
    RunStore,
    StoreCorruptError,
    atomic_write_bytes,
    atomic_write_json,
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


# --- The current layout: checkpoints.npy, lazy reads, checksums -----------


def _synthetic_run(
    index: int = 0, rows: int = 5, size: int = 7, seed: int = 0
) -> RunResult:
    """Build a finished run without training, with random checkpoints."""
    generator = torch.Generator().manual_seed(seed)
    return RunResult(
        spec=RunSpec(
            index=index,
            init_seed=index,
            data_seed=0,
            optimizer=OptimizerConfig(name="sgd", lr=0.1),
        ),
        status="complete",
        trajectory=Trajectory(
            tuple(range(0, 3 * rows, 3)), torch.randn(rows, size, generator=generator)
        ),
        train_loss=0.5,
        train_accuracy=0.8,
        test_loss=0.7,
        test_accuracy=0.75,
        test_predictions=np.arange(6, dtype=np.int64),
        history=[{"epoch": 1.0, "train_loss": 0.5}],
        seconds=1.5,
    )


def test_save_writes_mappable_npy(run: RunResult, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.save(run, "k")
    path = store.folder(run.spec) / "checkpoints.npy"
    mapped = np.load(path, mmap_mode="r")
    assert isinstance(mapped, np.memmap)
    assert mapped.dtype == np.float32
    assert mapped.shape == tuple(run.trajectory.points.shape)
    assert np.array_equal(mapped, run.trajectory.points.numpy())


def test_record_has_checksum_per_file(run: RunResult, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.save(run, "k")
    folder = store.folder(run.spec)
    record = json.loads((folder / "run.json").read_text())
    for name, field in (
        ("trajectory.npz", "trajectory_sha256"),
        ("checkpoints.npy", "checkpoints_sha256"),
    ):
        digest = hashlib.sha256((folder / name).read_bytes()).hexdigest()
        assert record[field] == digest
    assert record["layout"] == 2
    assert record["n_checkpoints"] == len(run.trajectory.steps)
    assert record["n_params"] == run.trajectory.points.shape[1]


def test_lazy_matches_eager(run: RunResult, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    store.save(run, "k")
    eager = store.load(run.spec, "k")
    assert eager is not None
    points = eager.trajectory.points
    with store.open_trajectory(run.spec, "k") as lazy:  # type: ignore[union-attr]
        assert lazy.steps == eager.trajectory.steps
        assert len(lazy) == points.shape[0]
        assert lazy.shape == tuple(points.shape)
        for i in range(len(lazy)):
            assert torch.equal(lazy[i], points[i])
        assert torch.equal(lazy[-1], points[-1])
        assert torch.equal(lazy[1:3], points[1:3])
        assert torch.equal(lazy[[0, 2]], points[[0, 2]])
        assert torch.equal(lazy.at_step(lazy.steps[1]), points[1])
        assert lazy.load() == eager.trajectory


def test_lazy_rows_are_writable_copies(tmp_path: Path) -> None:
    run = _synthetic_run()
    store = RunStore(tmp_path)
    store.save(run, "k")
    lazy = store.open_trajectory(run.spec, "k")
    assert lazy is not None
    row = lazy[0]
    row += 1.0
    assert torch.equal(lazy[0], run.trajectory.points[0])


def test_lazy_unknown_step_rejected(tmp_path: Path) -> None:
    run = _synthetic_run()
    store = RunStore(tmp_path)
    store.save(run, "k")
    lazy = store.open_trajectory(run.spec, "k")
    assert lazy is not None
    with pytest.raises(ValueError, match="step 1 is not a checkpoint"):
        lazy.at_step(1)


def test_lazy_closed_rejects_reads(tmp_path: Path) -> None:
    run = _synthetic_run()
    store = RunStore(tmp_path)
    store.save(run, "k")
    lazy = store.open_trajectory(run.spec, "k")
    assert lazy is not None
    lazy.close()
    with pytest.raises(ValueError, match="closed"):
        lazy[0]


def test_open_trajectory_missing_or_stale(tmp_path: Path) -> None:
    run = _synthetic_run()
    store = RunStore(tmp_path)
    assert store.open_trajectory(run.spec, "k") is None
    store.save(run, "k")
    assert store.open_trajectory(run.spec, "other") is None


@given(
    rows=st.integers(1, 9),
    size=st.integers(1, 40),
    seed=st.integers(0, 2**16),
    block_bytes=st.sampled_from([4, 12, 100, 1 << 20]),
)
@settings(max_examples=25)
def test_lazy_rows_equal_saved_points(
    rows: int, size: int, seed: int, block_bytes: int
) -> None:
    # Small block sizes make save split the checkpoints over many writes.
    run = _synthetic_run(rows=rows, size=size, seed=seed)
    with (
        tempfile.TemporaryDirectory() as folder,
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setattr(learning.store, "_BLOCK_BYTES", block_bytes)
        store = RunStore(Path(folder))
        store.save(run, "k")
        lazy = store.open_trajectory(run.spec, "k")
        assert lazy is not None
        for i in range(rows):
            assert torch.equal(lazy[i], run.trajectory.points[i])
        loaded = store.load(run.spec, "k")
        assert loaded is not None
        assert loaded.trajectory == run.trajectory
        store.close()


def test_float64_points_stored_as_float32(tmp_path: Path) -> None:
    run = _synthetic_run()
    wide = Trajectory(run.trajectory.steps, run.trajectory.points.double())
    store = RunStore(tmp_path)
    store.save(dataclasses.replace(run, trajectory=wide), "k")
    loaded = store.load(run.spec, "k")
    assert loaded is not None
    assert loaded.trajectory.points.dtype == torch.float32
    assert torch.equal(loaded.trajectory.points, run.trajectory.points)


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def test_corrupted_checkpoints_rejected(tmp_path: Path) -> None:
    run = _synthetic_run()
    store = RunStore(tmp_path)
    store.save(run, "k")
    path = store.folder(run.spec) / "checkpoints.npy"
    _flip_byte(path, path.stat().st_size - 3)
    with pytest.raises(StoreCorruptError, match=r"checkpoints\.npy.*checksum"):
        store.load(run.spec, "k")
    with pytest.raises(StoreCorruptError, match=r"checkpoints\.npy.*checksum"):
        store.open_trajectory(run.spec, "k")


def test_truncated_checkpoints_rejected(tmp_path: Path) -> None:
    run = _synthetic_run()
    store = RunStore(tmp_path)
    store.save(run, "k")
    path = store.folder(run.spec) / "checkpoints.npy"
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - 8)
    with pytest.raises(StoreCorruptError, match="checksum"):
        store.load(run.spec, "k")
    with pytest.raises(StoreCorruptError, match=r"checkpoints\.npy.*truncated"):
        store.open_trajectory(run.spec, "k", verify=False)


def test_bad_header_rejected_unverified(tmp_path: Path) -> None:
    run = _synthetic_run()
    store = RunStore(tmp_path)
    store.save(run, "k")
    path = store.folder(run.spec) / "checkpoints.npy"
    _flip_byte(path, 0)
    with pytest.raises(StoreCorruptError, match="not a readable .npy file"):
        store.open_trajectory(run.spec, "k", verify=False)


def test_wrong_shape_rejected_unverified(tmp_path: Path) -> None:
    run = _synthetic_run(rows=5, size=7)
    store = RunStore(tmp_path)
    store.save(run, "k")
    path = store.folder(run.spec) / "checkpoints.npy"
    np.save(path, np.zeros((4, 7), dtype=np.float32))
    with pytest.raises(StoreCorruptError, match=r"shape \(4, 7\).*\(5, 7\)"):
        store.open_trajectory(run.spec, "k", verify=False)


def test_unverified_open_skips_checksum(tmp_path: Path) -> None:
    # The documented cost of verify=False: a flipped data byte goes unseen.
    run = _synthetic_run()
    store = RunStore(tmp_path)
    store.save(run, "k")
    path = store.folder(run.spec) / "checkpoints.npy"
    _flip_byte(path, path.stat().st_size - 1)
    lazy = store.open_trajectory(run.spec, "k", verify=False)
    assert lazy is not None
    assert not torch.equal(lazy[-1], run.trajectory.points[-1])


def test_missing_checkpoints_rejected(tmp_path: Path) -> None:
    run = _synthetic_run()
    store = RunStore(tmp_path)
    store.save(run, "k")
    (store.folder(run.spec) / "checkpoints.npy").unlink()
    with pytest.raises(StoreCorruptError, match=r"checkpoints\.npy is missing"):
        store.load(run.spec, "k")


def test_unknown_layout_rejected(tmp_path: Path) -> None:
    run = _synthetic_run()
    store = RunStore(tmp_path)
    store.save(run, "k")
    record_path = store.folder(run.spec) / "run.json"
    record = json.loads(record_path.read_text())
    record["layout"] = 3
    record_path.write_text(json.dumps(record))
    with pytest.raises(StoreCorruptError, match="layout 3"):
        store.load(run.spec, "k")


def test_resave_replaces_run(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    first = _synthetic_run(rows=5, seed=1)
    second = _synthetic_run(rows=3, seed=2)
    store.save(first, "old")
    store.save(second, "new")
    assert store.load(second.spec, "old") is None
    loaded = store.load(second.spec, "new")
    assert loaded is not None
    assert loaded.trajectory == second.trajectory


def test_save_leaves_no_temporary_files(tmp_path: Path) -> None:
    run = _synthetic_run()
    store = RunStore(tmp_path)
    store.save(run, "k")
    names = sorted(p.name for p in store.folder(run.spec).iterdir())
    assert names == ["checkpoints.npy", "run.json", "trajectory.npz"]


def test_failed_write_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "value.bin"
    atomic_write_bytes(path, b"old")

    class Interrupted(Exception):
        pass

    with pytest.raises(Interrupted), learning.store._atomic_file(path) as handle:
        handle.write(b"new, partly written")
        raise Interrupted
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["value.bin"]


# --- The old layout: checkpoints inside trajectory.npz ---------------------


def _save_old_layout(store: RunStore, result: RunResult, key: str) -> None:
    """Write a run as the store wrote it before checkpoints.npy existed."""
    folder = store.folder(result.spec)
    arrays: dict[str, np.ndarray] = {
        "steps": np.asarray(result.trajectory.steps, dtype=np.int64),
        "points": result.trajectory.points.numpy().astype(np.float32),
    }
    if result.test_predictions is not None:
        arrays["test_predictions"] = result.test_predictions
    trajectory_path = folder / "trajectory.npz"
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / ".trajectory.npz.tmp"
    with open(tmp, "wb") as handle:
        np.savez(handle, **arrays)  # type: ignore[arg-type]
    os.replace(tmp, trajectory_path)
    record = {
        "key": key,
        "spec": result.spec.model_dump(mode="json"),
        "status": result.status,
        "diverged_at_step": result.diverged_at_step,
        "train_loss": result.train_loss,
        "train_accuracy": result.train_accuracy,
        "test_loss": result.test_loss,
        "test_accuracy": result.test_accuracy,
        "history": result.history,
        "seconds": result.seconds,
        "trajectory_sha256": hashlib.sha256(trajectory_path.read_bytes()).hexdigest(),
    }
    atomic_write_json(folder / "run.json", record)


def test_old_layout_loads(run: RunResult, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    _save_old_layout(store, run, "k")
    loaded = store.load(run.spec, "k")
    assert loaded is not None
    assert loaded.trajectory == run.trajectory
    assert loaded.test_accuracy == run.test_accuracy
    assert loaded.history == run.history
    assert (loaded.test_predictions == run.test_predictions).all()  # type: ignore[union-attr]


def test_old_layout_opens_lazily(run: RunResult, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    _save_old_layout(store, run, "k")
    lazy = store.open_trajectory(run.spec, "k")
    assert lazy is not None
    assert lazy.steps == run.trajectory.steps
    assert torch.equal(lazy[-1], run.trajectory.points[-1])


def test_old_layout_corruption_rejected(run: RunResult, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    _save_old_layout(store, run, "k")
    path = store.folder(run.spec) / "trajectory.npz"
    _flip_byte(path, path.stat().st_size // 2)
    with pytest.raises(StoreCorruptError, match="checksum"):
        store.load(run.spec, "k")


def test_old_layout_indexed(run: RunResult, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    _save_old_layout(store, run, "k")
    [row] = store.index.query()
    assert row["name"] == run.spec.name
    assert row["layout"] == 1
    assert row["n_checkpoints"] == len(run.trajectory.steps)
    assert row["n_params"] == run.trajectory.points.shape[1]
    assert row["checkpoints_sha256"] is None
    assert row["test_accuracy"] == run.test_accuracy


def test_migrate_rewrites_old_layout(run: RunResult, tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    _save_old_layout(store, run, "k")
    assert store.migrate(run.spec, "k")
    assert not store.migrate(run.spec, "k")
    folder = store.folder(run.spec)
    assert (folder / "checkpoints.npy").exists()
    with np.load(folder / "trajectory.npz") as arrays:
        assert "points" not in arrays
    loaded = store.load(run.spec, "k")
    assert loaded is not None
    assert loaded.trajectory == run.trajectory
    [row] = store.index.query()
    assert row["layout"] == 2


# --- Memory: single checkpoints of a 200 MiB trajectory ---------------------

_MEMORY_PROBE = """
import json, resource, sys
from pathlib import Path

import numpy as np

from learning.config import RunSpec
from learning.store import RunStore


def peak() -> int:
    # ru_maxrss is in KiB on Linux.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


store = RunStore(Path(sys.argv[1]))
spec = RunSpec.model_validate_json(sys.argv[2])
before = peak()
rows_ok = []
with store.open_trajectory(spec, "k", verify=True) as lazy:
    for i in (0, len(lazy) // 2, len(lazy) - 1):
        rows_ok.append(bool((lazy[i] == float(i)).all()))
    rows_ok.append(bool((lazy.at_step(lazy.steps[1]) == 1.0).all()))
lazy_peak = peak()
eager = np.load(store.folder(spec) / "checkpoints.npy")
eager_peak = peak()
print(json.dumps({
    "before": before, "lazy": lazy_peak, "eager": eager_peak, "rows_ok": rows_ok,
}))
"""

# Linux carries a process's peak RSS across exec, so a probe started by
# pytest directly would report pytest's peak as its own. Started by this
# small launcher instead, it begins with the launcher's peak of a few MiB.
_LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


@pytest.mark.skipif(sys.platform != "linux", reason="reads Linux ru_maxrss")
def test_single_checkpoints_stay_small(tmp_path: Path) -> None:
    # 50 checkpoints of 2**20 float32 parameters: 200 MiB on disk. Row i is
    # the constant i. As an expanded view it costs no memory, and save
    # writes it out in 16 MiB blocks.
    rows, size = 50, 1 << 20
    file_bytes = rows * size * 4
    points = torch.arange(rows, dtype=torch.float32)[:, None].expand(rows, size)
    run = dataclasses.replace(
        _synthetic_run(), trajectory=Trajectory(tuple(range(rows)), points)
    )
    store = RunStore(tmp_path)
    try:
        store.save(run, "k")
        store.close()
        assert (store.folder(run.spec) / "checkpoints.npy").stat().st_size > file_bytes

        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                _LAUNCHER,
                sys.executable,
                "-c",
                _MEMORY_PROBE,
                str(tmp_path),
                run.spec.model_dump_json(),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        peaks = json.loads(probe.stdout)
        assert peaks["rows_ok"] == [True, True, True, True]
        # Four rows of 4 MiB are read and the file is hashed once. The
        # bound on the peak's growth is a quarter of the file, 50 MiB.
        assert peaks["lazy"] - peaks["before"] < file_bytes // 4
        # The control: reading the whole file raises the peak by its size.
        assert peaks["eager"] - peaks["before"] > 0.9 * file_bytes
    finally:
        shutil.rmtree(store.folder(run.spec), ignore_errors=True)
