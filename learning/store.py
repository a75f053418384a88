"""The run store: finished runs on disk, so an interrupted sweep resumes.

Layout under the results folder::

    runs/<run id>/trajectory.npz   steps, checkpoints, test predictions
    runs/<run id>/run.json         spec, status, metrics, history, key, checksum

``run.json`` is written last, so a run counts as finished only when both
files are complete. Every file is written to a temporary name and renamed
into place, which is atomic on POSIX file systems. ``run.json`` records the
SHA-256 of ``trajectory.npz``; a mismatch on load is reported as corruption
instead of being silently retrained over or used.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from learning.config import ExperimentConfig, RunSpec
from learning.param import Trajectory
from learning.training import RunResult

logger = logging.getLogger(__name__)


class StoreCorruptError(RuntimeError):
    """Raised when a stored run's files fail their checksum or cannot be parsed."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file as 0600; give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, value: Any) -> None:
    """Write `value` as indented JSON, atomically."""
    atomic_write_bytes(
        path, (json.dumps(value, indent=2, sort_keys=False) + "\n").encode()
    )


def read_array_cache(path: Path, key: str) -> np.ndarray | None:
    """Return the array cached at `path` under `key`, or None.

    A missing file, a file cached under another key and an unreadable file
    all return None, so the caller recomputes; the last is logged as a
    warning, because a cache is never the only copy of a result.
    """
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as cached:
            if str(cached["key"]) != key:
                return None
            return np.asarray(cached["value"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as error:
        logger.warning("cache file %s is unreadable (%s); recomputing it", path, error)
        return None


def write_array_cache(path: Path, key: str, value: np.ndarray) -> None:
    """Cache an array at `path` under `key`, atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, key=np.array(key), value=value)
    atomic_write_bytes(path, buffer.getvalue())


def run_key(config: ExperimentConfig, spec: RunSpec) -> str:
    """Return the hash of everything that determines a run's trajectory."""
    train = config.train
    determining = {
        "data": config.data.model_dump(mode="json"),
        "model": config.model.model_dump(mode="json"),
        "epochs": train.epochs,
        "batch_size": train.batch_size,
        "checkpoint_every": train.checkpoint_every,
        # A vectorized pass rounds differently, so its trajectories differ in
        # the last bits from the loop's and are stored under their own key.
        "vectorized": train.vectorized,
        "init_seed": spec.init_seed,
        "data_seed": spec.data_seed,
        "optimizer": spec.optimizer.model_dump(mode="json"),
    }
    text = json.dumps(determining, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class RunStore:
    """Finished runs of one results folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "runs"

    def folder(self, spec: RunSpec) -> Path:
        """Return the folder of a run."""
        return self.root / spec.name

    def save(self, result: RunResult, key: str) -> None:
        """Write a finished (complete or diverged) run."""
        folder = self.folder(result.spec)
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
            "trajectory_sha256": _sha256(trajectory_path),
        }
        atomic_write_json(folder / "run.json", record)

    def load(self, spec: RunSpec, key: str) -> RunResult | None:
        """Return a stored run, or None if it is missing or was made with another config.

        Raises
        ------
        StoreCorruptError
            If the run's files exist but fail their checksum or cannot be read.
        """
        folder = self.folder(spec)
        record_path = folder / "run.json"
        if not record_path.exists():
            return None
        try:
            record = json.loads(record_path.read_text())
        except json.JSONDecodeError as error:
            raise StoreCorruptError(
                f"{record_path} is not valid JSON ({error}); delete {folder} to retrain"
                " this run"
            ) from None
        missing = [
            f for f in _RECORD_FIELDS if not isinstance(record, dict) or f not in record
        ]
        if missing or record["status"] not in ("complete", "diverged"):
            raise StoreCorruptError(
                f"{record_path} lacks the fields {missing} or has an unknown status;"
                f" delete {folder} to retrain this run"
            )
        if record.get("key") != key:
            logger.info(
                "stored run %s was made with another config; retraining", spec.name
            )
            return None

        trajectory_path = folder / "trajectory.npz"
        if not trajectory_path.exists() or _sha256(trajectory_path) != record.get(
            "trajectory_sha256"
        ):
            raise StoreCorruptError(
                f"{trajectory_path} is missing or does not match the checksum in"
                f" {record_path}; delete {folder} to retrain this run"
            )
        with np.load(trajectory_path) as arrays:
            steps = tuple(int(s) for s in arrays["steps"])
            points = torch.from_numpy(arrays["points"].copy())
            predictions = (
                arrays["test_predictions"].copy()
                if "test_predictions" in arrays
                else None
            )
        return RunResult(
            spec=spec,
            status=record["status"],
            trajectory=Trajectory(steps, points),
            diverged_at_step=record["diverged_at_step"],
            train_loss=record["train_loss"],
            train_accuracy=record["train_accuracy"],
            test_loss=record["test_loss"],
            test_accuracy=record["test_accuracy"],
            test_predictions=predictions,
            history=record["history"],
            seconds=record["seconds"],
        )


_RECORD_FIELDS = (
    "key",
    "status",
    "diverged_at_step",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "history",
    "seconds",
    "trajectory_sha256",
)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
