"""The run store: finished runs on disk, so an interrupted sweep resumes.

Layout under the results folder::

    runs/<run id>/checkpoints.npy  checkpoints, float32 of shape (k, P)
    runs/<run id>/trajectory.npz   steps, test predictions
    runs/<run id>/run.json         spec, status, metrics, history, key, checksums
    runs/index.sqlite              the run index (`learning.index`), derived

``checkpoints.npy`` is a plain ``.npy`` file, so ``np.load(path,
mmap_mode="r")`` maps it without reading it, and `RunStore.open_trajectory`
reads single checkpoints or slices of runs far larger than memory.

``run.json`` is written last, so a run counts as finished only when every
file is complete. Every file is written to a temporary name, flushed with
fsync and renamed into place, which is atomic on POSIX file systems.
``run.json`` records the SHA-256 of ``trajectory.npz`` and of
``checkpoints.npy``; a mismatch on load is reported as corruption instead of
being silently retrained over or used.

The run folders are the source of truth. ``index.sqlite`` is derived from
their ``run.json`` files and is rebuilt from them when it is missing,
corrupted or stale, so deleting it loses nothing.

Folders written before ``checkpoints.npy`` existed (layout 1) keep the
checkpoints in ``trajectory.npz`` under ``points``. They still load, eagerly;
`RunStore.migrate` rewrites one in the current layout (2).
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import sqlite3
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO, Literal, Self

import numpy as np
import torch

from learning.config import ExperimentConfig, RunSpec
from learning.index import RunIndex, row_from_record
from learning.param import Trajectory
from learning.training import RunResult

logger = logging.getLogger(__name__)

CHECKPOINTS_FILENAME = "checkpoints.npy"
TRAJECTORY_FILENAME = "trajectory.npz"
RECORD_FILENAME = "run.json"
LAYOUT = 2
"""Layout version that `RunStore.save` writes; `RunStore.load` reads 1 and 2."""

# Checkpoints are written in blocks of about this many bytes, so saving
# never keeps a second full copy of a trajectory in memory.
_BLOCK_BYTES = 16 << 20


class StoreCorruptError(RuntimeError):
    """Raised when a stored run's files fail their checksum or cannot be parsed."""


@contextmanager
def _atomic_file(path: Path) -> Iterator[BinaryIO]:
    """Open a temporary file that replaces `path` when the block exits cleanly.

    The data is flushed with fsync before the rename and the folder after
    it, so after a crash `path` contains either the old or the new file. On an
    exception the temporary file is removed and `path` is left unchanged.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file as 0600; give it the mode a plain open() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def _fsync_directory(folder: Path) -> None:
    # A rename is durable only once the folder's entry is flushed too.
    # Some platforms and file systems cannot open or fsync a folder, and
    # there the rename is as durable as the file system makes it.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file and an atomic rename."""
    with _atomic_file(path) as handle:
        handle.write(data)


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


class LazyTrajectory:
    """A stored run's checkpoints, read from disk only when indexed.

    For a run in the current layout the rows come from a read-only memory
    map of ``checkpoints.npy``, so opening does not read the data and
    indexing reads only the selected rows. Each index returns a new CPU
    tensor that owns a copy of those rows. Pages read through the map count
    toward the process's resident set while the map is open, but they are
    file-backed: the kernel can drop them without swapping, and `close`
    unmaps them.

    Parameters
    ----------
    steps
        Optimizer step of each checkpoint, starting at 0 and increasing.
    checkpoints
        Array of shape (len(steps), P): a memory map or, for a run in the
        old layout, an in-memory array.
    path
        The file the checkpoints come from, for messages.
    """

    def __init__(
        self,
        steps: tuple[int, ...],
        checkpoints: np.ndarray,
        path: Path,
        buffers: torch.Tensor | None = None,
    ) -> None:
        self.buffers = buffers  # BatchNorm statistics per checkpoint, or None
        if checkpoints.ndim != 2 or checkpoints.shape[0] != len(steps):
            raise ValueError(
                f"checkpoints of shape {checkpoints.shape} do not match"
                f" {len(steps)} steps; expected ({len(steps)}, P)"
            )
        self.steps = steps
        self.path = path
        self._checkpoints: np.ndarray | None = checkpoints

    def _array(self) -> np.ndarray:
        if self._checkpoints is None:
            raise ValueError(f"the trajectory of {self.path} is closed; open it again")
        return self._checkpoints

    def __len__(self) -> int:
        return len(self.steps)

    @property
    def n_params(self) -> int:
        """Length P of each checkpoint's flat parameter vector."""
        return int(self._array().shape[1])

    @property
    def shape(self) -> tuple[int, int]:
        """Number of checkpoints and parameters, (k, P)."""
        rows, columns = self._array().shape
        return int(rows), int(columns)

    def __getitem__(self, index: int | slice | Sequence[int]) -> torch.Tensor:
        """Read checkpoints: one (shape (P,)), a slice or a list of rows (shape (n, P))."""
        array = self._array()
        if isinstance(index, int | slice | np.integer):
            selected = array[index]
        else:
            selected = array[list(index)]
        # np.array copies, so the tensor does not keep the file mapped.
        return torch.from_numpy(np.array(selected, dtype=np.float32))

    def at_step(self, step: int) -> torch.Tensor:
        """Read the checkpoint recorded at optimizer step `step`."""
        try:
            row = self.steps.index(step)
        except ValueError:
            raise ValueError(
                f"step {step} is not a checkpoint of {self.path}; the stored"
                f" steps run from {self.steps[0]} to {self.steps[-1]}"
                f" ({len(self.steps)} checkpoints)"
            ) from None
        return self[row]

    def load(self) -> Trajectory:
        """Read every checkpoint into memory as a `Trajectory`."""
        return Trajectory(self.steps, self[:], self.buffers)

    def close(self) -> None:
        """Release the memory map; later reads raise ValueError."""
        self._checkpoints = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._checkpoints is None else f"shape={self.shape}"
        return f"LazyTrajectory({self.path}, {state})"


class RunStore:
    """Finished runs of one results folder, with an SQLite index of them."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root) / "runs"
        self._index: RunIndex | None = None

    def folder(self, spec: RunSpec) -> Path:
        """Return the folder of a run."""
        return self.root / spec.name

    @property
    def index(self) -> RunIndex:
        """The run index, opened on first use and rebuilt if it cannot be trusted."""
        if self._index is None:
            self._index = RunIndex.open(self)
        return self._index

    def close(self) -> None:
        """Close the index's database connection, if it is open."""
        if self._index is not None:
            self._index.close()
            self._index = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def save(self, result: RunResult, key: str) -> None:
        """Write a finished (complete or diverged) run and update the index.

        Checkpoints are converted to float32 and written in blocks of about
        16 MiB, so a trajectory whose points are a memory-mapped tensor is
        never copied whole. The index row is written last, in one
        transaction. An index that cannot be updated is logged as a warning
        and rebuilt when next opened, because the files are complete.
        """
        index = self._index_for_update()
        folder = self.folder(result.spec)
        folder.mkdir(parents=True, exist_ok=True)
        record_path = folder / RECORD_FILENAME
        # Remove the old record first: a crash while the data files are
        # replaced then leaves a folder without run.json, which counts as
        # not stored and is retrained, never as a run failing its checksums.
        if record_path.exists():
            record_path.unlink()
            _fsync_directory(folder)

        points = result.trajectory.points
        checkpoints_sha256 = _write_checkpoints(folder / CHECKPOINTS_FILENAME, points)
        arrays: dict[str, np.ndarray] = {
            "steps": np.asarray(result.trajectory.steps, dtype=np.int64),
        }
        if result.test_predictions is not None:
            arrays["test_predictions"] = result.test_predictions
        if result.trajectory.buffers is not None:
            # BatchNorm statistics are small beside the parameters, so they
            # stay in the checksummed npz instead of a memory-mapped file.
            arrays["buffers"] = result.trajectory.buffers.numpy().astype(np.float32)
        trajectory_path = folder / TRAJECTORY_FILENAME
        with _atomic_file(trajectory_path) as handle:
            np.savez(handle, **arrays)  # type: ignore[arg-type]

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
            "layout": LAYOUT,
            "n_checkpoints": int(points.shape[0]),
            "n_params": int(points.shape[1]),
            "trajectory_sha256": _sha256(trajectory_path),
            "checkpoints_sha256": checkpoints_sha256,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        atomic_write_json(record_path, record)

        if index is not None:
            self._update_index(index, folder.name, record, record_path)

    def _index_for_update(self) -> RunIndex | None:
        try:
            return self.index
        except sqlite3.Error as error:
            logger.warning(
                "run index in %s cannot be opened (%s); saving the run without"
                " it, and the index is rebuilt from the run folders when next"
                " opened",
                self.root,
                error,
            )
            return None

    def _update_index(
        self, index: RunIndex, name: str, record: dict[str, Any], record_path: Path
    ) -> None:
        try:
            row = row_from_record(name, record, record_path.stat().st_mtime_ns)
            index.upsert(row)
        except sqlite3.Error as error:
            # The row is now stale, which the next RunIndex.open detects by
            # the run.json modification time and repairs by rebuilding.
            logger.warning(
                "run index %s was not updated for run %s (%s); the run's files"
                " are saved, and the index is rebuilt from them when next"
                " opened",
                index.path,
                name,
                error,
            )
            self.close()

    def load(self, spec: RunSpec, key: str) -> RunResult | None:
        """Return a stored run, or None if it is missing or was made with another config.

        Every checkpoint is read into memory; `open_trajectory` reads them
        one at a time instead.

        Raises
        ------
        StoreCorruptError
            If the run's files exist but fail their checksum or cannot be read.
        """
        record = self._read_record(spec, key)
        if record is None:
            return None
        folder = self.folder(spec)
        record_path = folder / RECORD_FILENAME
        if record.get("layout", 1) == 1:
            steps, points, predictions = _read_trajectory_npz(
                folder, record, with_points=True
            )
            assert points is not None  # with_points=True reads them or raises
        else:
            steps, _, predictions = _read_trajectory_npz(
                folder, record, with_points=False
            )
            checkpoints_path = folder / CHECKPOINTS_FILENAME
            _verify_checksum(
                checkpoints_path, record["checkpoints_sha256"], record_path
            )
            array = _open_checkpoints(checkpoints_path, record, len(steps), None)
            points = torch.from_numpy(array)
        # The npz passed its checksum in _read_trajectory_npz above.
        buffers = _read_buffers(folder)
        return RunResult(
            spec=spec,
            status=record["status"],
            trajectory=Trajectory(steps, points, buffers),
            diverged_at_step=record["diverged_at_step"],
            train_loss=record["train_loss"],
            train_accuracy=record["train_accuracy"],
            test_loss=record["test_loss"],
            test_accuracy=record["test_accuracy"],
            test_predictions=predictions,
            history=record["history"],
            seconds=record["seconds"],
        )

    def open_trajectory(
        self, spec: RunSpec, key: str, *, verify: bool = True
    ) -> LazyTrajectory | None:
        """Open a stored run's checkpoints for reading one at a time.

        Parameters
        ----------
        spec, key
            The run and its key, as for `load`.
        verify
            Check ``checkpoints.npy`` against its SHA-256 before mapping it.
            Hashing streams the file in 1 MiB blocks, so it needs no memory
            for the data, but it reads every byte once.

        Returns
        -------
        LazyTrajectory or None
            None if the run is missing or was made with another config. A
            run in the old layout is read into memory, because the
            checkpoints inside a zip file cannot be memory-mapped.

        Raises
        ------
        StoreCorruptError
            If a file fails its checksum, is truncated or cannot be parsed.
        """
        record = self._read_record(spec, key)
        if record is None:
            return None
        folder = self.folder(spec)
        if record.get("layout", 1) == 1:
            logger.info(
                "run %s is in the old layout, so its checkpoints are read into"
                " memory; RunStore.migrate rewrites it for memory-mapped reads",
                spec.name,
            )
            steps, points, _ = _read_trajectory_npz(folder, record, with_points=True)
            assert points is not None  # with_points=True reads them or raises
            return LazyTrajectory(
                steps,
                points.numpy(),
                folder / TRAJECTORY_FILENAME,
                _read_buffers(folder),
            )

        steps, _, _ = _read_trajectory_npz(folder, record, with_points=False)
        checkpoints_path = folder / CHECKPOINTS_FILENAME
        if verify:
            _verify_checksum(
                checkpoints_path, record["checkpoints_sha256"], folder / RECORD_FILENAME
            )
        # NOTE: with verify=False only the header and the file's length are
        # checked, so flipped bytes inside the data are read as they are.
        array = _open_checkpoints(checkpoints_path, record, len(steps), "r")
        return LazyTrajectory(steps, array, checkpoints_path, _read_buffers(folder))

    def migrate(self, spec: RunSpec, key: str) -> bool:
        """Rewrite a run stored in the old layout in the current one.

        Returns
        -------
        bool
            True if the run was rewritten; False if it is missing, was made
            with another config, or is already in the current layout.
        """
        record = self._read_record(spec, key)
        if record is None or record.get("layout", 1) != 1:
            return False
        run = self.load(spec, key)
        assert run is not None  # _read_record found the run under this key
        self.save(run, key)
        return True

    def iter_records(self) -> Iterator[tuple[str, dict[str, Any], int]]:
        """Yield the name, ``run.json`` record and its mtime (ns) of every stored run.

        Runs come in name order. A record in the old layout gets the
        ``n_checkpoints``, ``n_params``, ``layout`` and ``created`` fields
        from its files. A folder whose ``run.json`` cannot be parsed as a
        JSON object is skipped with a warning, since `load` reports it.
        """
        for name, record_path in self._record_paths():
            try:
                mtime_ns = record_path.stat().st_mtime_ns
                record = json.loads(record_path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
                logger.warning(
                    "skipping unreadable run record %s (%s)", record_path, error
                )
                continue
            if not isinstance(record, dict):
                logger.warning(
                    "skipping run record %s, which is not a JSON object", record_path
                )
                continue
            if record.get("layout", 1) == 1:
                record = _with_legacy_fields(record_path.parent, record, mtime_ns)
            yield name, record, mtime_ns

    def record_times(self) -> dict[str, int]:
        """Return the ``run.json`` modification time (ns) of every stored run."""
        times = {}
        for name, record_path in self._record_paths():
            try:
                times[name] = record_path.stat().st_mtime_ns
            except FileNotFoundError:
                continue
        return times

    def _record_paths(self) -> list[tuple[str, Path]]:
        if not self.root.is_dir():
            return []
        return [
            (folder.name, folder / RECORD_FILENAME)
            for folder in sorted(self.root.iterdir())
            if not folder.name.startswith(".") and (folder / RECORD_FILENAME).is_file()
        ]

    def _read_record(self, spec: RunSpec, key: str) -> dict[str, Any] | None:
        folder = self.folder(spec)
        record_path = folder / RECORD_FILENAME
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

        layout = record.get("layout", 1)
        if layout not in (1, LAYOUT):
            raise StoreCorruptError(
                f"{record_path} has layout {layout!r}, but this version reads"
                f" layouts 1 and {LAYOUT}; update the library or delete {folder}"
                " to retrain this run"
            )
        if layout == LAYOUT and "checkpoints_sha256" not in record:
            raise StoreCorruptError(
                f"{record_path} lacks the field 'checkpoints_sha256'; delete"
                f" {folder} to retrain this run"
            )

        if record.get("key") != key:
            logger.info(
                "stored run %s was made with another config; retraining", spec.name
            )
            return None
        checked: dict[str, Any] = record
        return checked


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


def _write_checkpoints(path: Path, points: torch.Tensor) -> str:
    """Write `points` as a float32 .npy file, atomically; return its SHA-256."""
    if points.ndim != 2:
        raise ValueError(
            f"checkpoints must have shape (k, P); got {tuple(points.shape)}"
        )
    rows, size = (int(n) for n in points.shape)
    block_rows = max(1, _BLOCK_BYTES // max(1, 4 * size))
    digest = hashlib.sha256()
    with _atomic_file(path) as handle:
        writer = _HashingWriter(handle, digest)
        header = {"descr": "<f4", "fortran_order": False, "shape": (rows, size)}
        np.lib.format.write_array_header_1_0(writer, header)
        for start in range(0, rows, block_rows):
            block = points[start : start + block_rows].detach()
            values = block.to(device="cpu", dtype=torch.float32).numpy()
            writer.write(np.ascontiguousarray(values, dtype="<f4").tobytes())
    return digest.hexdigest()


class _HashingWriter:
    """A write-only file that hashes what passes through it."""

    def __init__(self, handle: BinaryIO, digest: Any) -> None:
        self.handle = handle
        self.digest = digest

    def write(self, data: bytes) -> int:
        self.digest.update(data)
        return self.handle.write(data)


def _open_checkpoints(
    path: Path, record: dict[str, Any], rows: int, mmap_mode: Literal["r"] | None
) -> np.ndarray:
    """Read or map ``checkpoints.npy`` and check its dtype and shape."""
    fix = f"delete {path.parent} to retrain this run"
    try:
        array = np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except FileNotFoundError:
        raise StoreCorruptError(f"{path} is missing; {fix}") from None
    except (OSError, ValueError, EOFError) as error:
        raise StoreCorruptError(
            f"{path} is not a readable .npy file, possibly truncated ({error}); {fix}"
        ) from None
    size = record.get("n_params")
    if (
        not isinstance(array, np.ndarray)
        or array.dtype != np.float32
        or array.ndim != 2
        or array.shape[0] != rows
        or (isinstance(size, int) and array.shape[1] != size)
        or not array.flags.c_contiguous
    ):
        found = (
            f"dtype {array.dtype}, shape {array.shape}"
            if isinstance(array, np.ndarray)
            else type(array).__name__
        )
        raise StoreCorruptError(
            f"{path} contains {found}; expected C-ordered float32 of shape"
            f" ({rows}, {size}); {fix}"
        )
    return array


def _read_buffers(folder: Path) -> torch.Tensor | None:
    """Return the BatchNorm statistics stored with a run, or None."""
    with np.load(folder / TRAJECTORY_FILENAME, allow_pickle=False) as arrays:
        if "buffers" not in arrays:
            return None
        return torch.from_numpy(arrays["buffers"].copy())


def _read_trajectory_npz(
    folder: Path, record: dict[str, Any], *, with_points: bool
) -> tuple[tuple[int, ...], torch.Tensor | None, np.ndarray | None]:
    """Read steps, test predictions and, in the old layout, the checkpoints.

    This is the old layout's whole reader, because there ``trajectory.npz``
    also contains the checkpoints, under ``points``.
    """
    path = folder / TRAJECTORY_FILENAME
    _verify_checksum(path, record["trajectory_sha256"], folder / RECORD_FILENAME)
    try:
        with np.load(path, allow_pickle=False) as arrays:
            steps = tuple(int(s) for s in arrays["steps"])
            points = torch.from_numpy(arrays["points"].copy()) if with_points else None
            predictions = (
                arrays["test_predictions"].copy()
                if "test_predictions" in arrays
                else None
            )
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as error:
        raise StoreCorruptError(
            f"{path} cannot be read ({error!r}); delete {folder} to retrain this run"
        ) from None
    return steps, points, predictions


def _verify_checksum(path: Path, expected: object, record_path: Path) -> None:
    if not path.exists() or _sha256(path) != expected:
        raise StoreCorruptError(
            f"{path} is missing or does not match the checksum in"
            f" {record_path}, so it is corrupted or truncated; delete"
            f" {path.parent} to retrain this run"
        )


def _with_legacy_fields(
    folder: Path, record: dict[str, Any], mtime_ns: int
) -> dict[str, Any]:
    """Add the index fields that an old-layout record lacks, read from its files."""
    path = folder / TRAJECTORY_FILENAME
    n_checkpoints: int | None = None
    n_params: int | None = None
    try:
        with np.load(path, allow_pickle=False) as arrays:
            n_checkpoints = len(arrays["steps"])
        with zipfile.ZipFile(path) as archive, archive.open("points.npy") as member:
            # Only the header is read, because it contains the shape.
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape = np.lib.format.read_array_header_1_0(member)[0]
            else:
                shape = np.lib.format.read_array_header_2_0(member)[0]
            n_params = int(shape[1])
    except (OSError, ValueError, KeyError, IndexError, zipfile.BadZipFile) as error:
        logger.warning(
            "failed to read the shape of %s (%s); its index row gets no"
            " n_checkpoints or n_params",
            path,
            error,
        )
    created = datetime.fromtimestamp(mtime_ns / 1e9, UTC).isoformat(timespec="seconds")
    return {
        **record,
        "layout": 1,
        "n_checkpoints": n_checkpoints,
        "n_params": n_params,
        "created": created,
    }


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
