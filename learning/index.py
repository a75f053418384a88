"""An SQLite index of the runs in a results folder, for queries across runs.

The index is one database file, ``runs/index.sqlite``, with one row per run:
its name and key, status, seeds, optimizer, final metrics, the number of
checkpoints and the SHA-256 of its files. `learning.store.RunStore.save`
updates the row of a run in one transaction after the run's files are in
place.

The run folders are the source of truth and the index is derived from them.
`RunIndex.rebuild` recreates every row from the folders' ``run.json`` files,
so deleting ``index.sqlite`` loses nothing. `RunIndex.open` rebuilds the
index when the file is missing, cannot be read as a database, has an older
schema, or lists other runs (or other versions of ``run.json``) than the
folders hold.

Queries bind every value as an SQL parameter. Column names, which SQL cannot
bind, are checked against `QUERY_COLUMNS` before they reach the statement.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self, get_args

from learning.training import RunStatus

if TYPE_CHECKING:
    from learning.store import RunStore

logger = logging.getLogger(__name__)

INDEX_FILENAME = "index.sqlite"

# Bump when the columns change: an index with another user_version is
# dropped and rebuilt from the run folders.
SCHEMA_VERSION = 1

# Name and SQLite type of each column, in table order.
_COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "TEXT PRIMARY KEY"),
    ("key", "TEXT NOT NULL"),
    ("status", "TEXT NOT NULL"),
    ("diverged_at_step", "INTEGER"),
    ("init_seed", "INTEGER"),
    ("data_seed", "INTEGER"),
    ("optimizer", "TEXT"),
    ("lr", "REAL"),
    ("train_loss", "REAL"),
    ("train_accuracy", "REAL"),
    ("test_loss", "REAL"),
    ("test_accuracy", "REAL"),
    ("generalization_gap", "REAL"),
    ("seconds", "REAL"),
    ("n_checkpoints", "INTEGER"),
    ("n_params", "INTEGER"),
    ("layout", "INTEGER"),
    ("trajectory_sha256", "TEXT"),
    ("checkpoints_sha256", "TEXT"),
    ("created", "TEXT"),
    ("record_mtime_ns", "INTEGER"),
    ("spec_json", "TEXT NOT NULL"),
    ("metrics_json", "TEXT NOT NULL"),
)

COLUMNS: tuple[str, ...] = tuple(name for name, _ in _COLUMNS)
"""Every column of the ``runs`` table, in table order."""

QUERY_COLUMNS: frozenset[str] = frozenset(COLUMNS) - {"spec_json", "metrics_json"}
"""Columns that `RunIndex.query` accepts as `where` keys and `order_by` names.

The two JSON columns are left out because comparing JSON text is rarely
what a caller means; their decoded values come back in every row.
"""

STATUSES: tuple[str, ...] = get_args(RunStatus)
"""Statuses that a stored run can have."""

Scalar = str | int | float | bool | None


@dataclass(frozen=True)
class Between:
    """A closed range of column values for `RunIndex.query`; None leaves a side open.

    Both bounds are numbers, or both are strings (ISO 8601 times in the
    ``created`` column compare correctly as strings). Rows whose value is
    NULL, such as the metrics of a diverged run, are never in a range.
    """

    low: float | str | None = None
    high: float | str | None = None

    def __post_init__(self) -> None:
        for bound in (self.low, self.high):
            if isinstance(bound, bool) or not isinstance(
                bound, int | float | str | None
            ):
                raise TypeError(
                    f"a Between bound must be a number, a string or None;"
                    f" got {bound!r} of type {type(bound).__name__}"
                )
            if isinstance(bound, float) and math.isnan(bound):
                raise ValueError("a Between bound must not be NaN; use None for open")
        if self.low is None and self.high is None:
            raise ValueError(
                "Between needs at least one bound; to select rows with any"
                " value, leave the column out of `where`"
            )
        if self.low is None or self.high is None:
            return
        numeric = isinstance(self.low, int | float) and isinstance(
            self.high, int | float
        )
        textual = isinstance(self.low, str) and isinstance(self.high, str)
        if not (numeric or textual):
            raise TypeError(
                f"Between bounds must be both numbers or both strings;"
                f" got {self.low!r} and {self.high!r}"
            )
        if self.low > self.high:  # type: ignore[operator]
            raise ValueError(
                f"Between low bound {self.low!r} is above the high bound"
                f" {self.high!r}; swap them"
            )


WhereValue = Scalar | Between | Sequence[Scalar] | frozenset[Scalar] | set[Scalar]
"""A condition on one column: a value (equality; None selects NULL), a
`Between` range, or a list, tuple or set of values (membership)."""


def row_from_record(
    name: str, record: Mapping[str, Any], record_mtime_ns: int | None
) -> dict[str, Any]:
    """Build the index row of one run from its ``run.json`` record.

    Parameters
    ----------
    name
        The run's folder name, which is its id.
    record
        The parsed ``run.json``. Fields that an older layout lacks
        (``n_checkpoints``, ``created``, ...) become NULL.
    record_mtime_ns
        Modification time of ``run.json`` in nanoseconds, which
        `RunIndex.open` compares with the file's to detect a stale row.

    Returns
    -------
    dict
        One value per entry of `COLUMNS`.
    """
    spec = record.get("spec")
    spec = spec if isinstance(spec, dict) else {}
    optimizer = spec.get("optimizer")
    optimizer = optimizer if isinstance(optimizer, dict) else {}
    train_accuracy = record.get("train_accuracy")
    test_accuracy = record.get("test_accuracy")
    gap = (
        train_accuracy - test_accuracy
        if isinstance(train_accuracy, int | float)
        and isinstance(test_accuracy, int | float)
        else None
    )
    metrics = {
        "train_loss": record.get("train_loss"),
        "train_accuracy": train_accuracy,
        "test_loss": record.get("test_loss"),
        "test_accuracy": test_accuracy,
        "generalization_gap": gap,
        "seconds": record.get("seconds"),
        "history": record.get("history"),
    }
    return {
        "name": name,
        "key": record.get("key"),
        "status": record.get("status"),
        "diverged_at_step": record.get("diverged_at_step"),
        "init_seed": spec.get("init_seed"),
        "data_seed": spec.get("data_seed"),
        "optimizer": optimizer.get("name"),
        "lr": optimizer.get("lr"),
        "train_loss": metrics["train_loss"],
        "train_accuracy": train_accuracy,
        "test_loss": metrics["test_loss"],
        "test_accuracy": test_accuracy,
        "generalization_gap": gap,
        "seconds": metrics["seconds"],
        "n_checkpoints": record.get("n_checkpoints"),
        "n_params": record.get("n_params"),
        "layout": record.get("layout", 1),
        "trajectory_sha256": record.get("trajectory_sha256"),
        "checkpoints_sha256": record.get("checkpoints_sha256"),
        "created": record.get("created"),
        "record_mtime_ns": record_mtime_ns,
        "spec_json": json.dumps(spec, sort_keys=True),
        "metrics_json": json.dumps(metrics, sort_keys=True),
    }


class RunIndex:
    """The SQLite index of one results folder's runs (``runs/index.sqlite``).

    Open it with `RunIndex.open`, which repairs a missing, corrupted or
    stale file; the constructor only opens the file and checks it. The
    connection uses write-ahead logging (WAL), so readers in other
    processes do not block a writer.
    """

    def __init__(self, path: Path) -> None:
        """Open or create the index database at `path` and check it.

        Raises
        ------
        sqlite3.DatabaseError
            If the file is not an SQLite database or fails SQLite's
            ``quick_check``. `RunIndex.open` handles this by rebuilding.
        """
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.created_schema = False
        # isolation_level=None leaves transactions to `_transaction`, which
        # states them explicitly; timeout is how long (in seconds) a write
        # waits for another process's lock.
        self._connection = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None
        )
        try:
            self._check_and_prepare()
        except BaseException:
            self._connection.close()
            raise

    @classmethod
    def open(cls, store: RunStore) -> RunIndex:
        """Open the index of `store`, rebuilding it when it cannot be trusted.

        The index is rebuilt from the run folders in four cases. The file
        is missing, or it is not a readable SQLite database (logged as a
        warning), or it has another schema version. Or its rows do not
        match the folders: a run is missing or extra, or its ``run.json``
        has another modification time.

        Raises
        ------
        sqlite3.OperationalError
            If the file is locked by another process for longer than 30 s
            or cannot be opened; the file is then left as it is.
        """
        path = store.root / INDEX_FILENAME
        if not path.exists():
            # A write-ahead log left without its database would be replayed
            # into the new, empty file.
            _remove_database_files(path)
        index: RunIndex | None = None
        try:
            index = cls(path)
            if index.created_schema:
                reason = "built"
            elif index.record_times() != store.record_times():
                reason = "did not match the run folders; rebuilt"
            else:
                return index
        except sqlite3.OperationalError:
            # Locked, busy or unreadable: not evidence of corruption, and
            # another process may be using the file, so it is left alone.
            if index is not None:
                index.close()
            raise
        except sqlite3.DatabaseError as error:
            # SQLITE_CORRUPT and SQLITE_NOTADB arrive as DatabaseError.
            logger.warning(
                "run index %s is corrupted (%s); deleting it and rebuilding it"
                " from the run folders",
                path,
                error,
            )
            if index is not None:
                index.close()
            _remove_database_files(path)
            index = cls(path)
            reason = "rebuilt"
        count = index.rebuild(store)
        if count:
            logger.info("run index %s %s from %d runs", path, reason, count)
        else:
            logger.info("run index %s %s; no runs are stored yet", path, reason)
        return index

    def _check_and_prepare(self) -> None:
        connection = self._connection
        mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()
        logger.debug("run index %s journal mode: %s", self.path, mode)
        check = [row[0] for row in connection.execute("PRAGMA quick_check")]
        if check != ["ok"]:
            raise sqlite3.DatabaseError(f"quick_check reported {check[:3]}")

        version = connection.execute("PRAGMA user_version").fetchone()[0]
        columns = [row[1] for row in connection.execute("PRAGMA table_info(runs)")]
        if version == SCHEMA_VERSION and tuple(columns) == COLUMNS:
            return
        with self._transaction():
            connection.execute("DROP TABLE IF EXISTS runs")
            definitions = ", ".join(f"{name} {kind}" for name, kind in _COLUMNS)
            connection.execute(f"CREATE TABLE runs ({definitions})")
            # PRAGMA cannot bind parameters; SCHEMA_VERSION is a constant.
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
        self.created_schema = True

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock at once, so two writers wait
        # for each other instead of failing half-way with SQLITE_BUSY.
        self._connection.execute("BEGIN IMMEDIATE")
        try:
            yield self._connection
        except BaseException:
            self._connection.execute("ROLLBACK")
            raise
        self._connection.execute("COMMIT")

    def close(self) -> None:
        """Close the database connection; later calls fail."""
        self._connection.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __len__(self) -> int:
        count: int = self._connection.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        return count

    def upsert(self, row: Mapping[str, Any]) -> None:
        """Insert or replace one run's row (see `row_from_record`) in a transaction."""
        with self._transaction() as connection:
            _insert(connection, [row])

    def rebuild(self, store: RunStore) -> int:
        """Recreate every row from the run folders of `store`; return the row count.

        Only ``run.json`` files are read, so rebuilding is cheap however
        large the checkpoints are; it does not verify checkpoint checksums,
        which `RunStore.load` and `RunStore.open_trajectory` do. A folder
        whose ``run.json`` cannot be read is skipped with a warning.
        """
        rows = [
            row_from_record(name, record, mtime_ns)
            for name, record, mtime_ns in store.iter_records()
        ]
        with self._transaction() as connection:
            connection.execute("DELETE FROM runs")
            _insert(connection, rows)
        return len(rows)

    def record_times(self) -> dict[str, int | None]:
        """Return the ``run.json`` modification time (ns) of each indexed run."""
        return dict(self._connection.execute("SELECT name, record_mtime_ns FROM runs"))

    def query(
        self,
        status: str | None = None,
        optimizer: str | None = None,
        where: Mapping[str, WhereValue] | None = None,
        order_by: str | Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Select runs by status, optimizer and column conditions.

        Parameters
        ----------
        status
            Keep runs with this status ("complete" or "diverged").
        optimizer
            Keep runs with this optimizer name ("sgd", "adam", ...).
        where
            Column name to condition, all of which must hold: a value
            (equality, None selects NULL), a `Between` range, or a list,
            tuple or set of values (membership). Keys must be in
            `QUERY_COLUMNS`.
        order_by
            A column name, or several, each ascending or, with a leading
            "-", descending. NULL values (metrics of diverged runs) sort
            last either way, and ties are broken by run name.
        limit
            Return at most this many rows.

        Returns
        -------
        list of dict
            One dict per run with every column, except that ``spec_json``
            and ``metrics_json`` are decoded into ``spec`` and ``metrics``.

        Raises
        ------
        ValueError
            If a column name is not in `QUERY_COLUMNS`, `status` is unknown
            or `limit` is negative.
        TypeError
            If a condition's value is not a number, string, bool, None,
            `Between` or collection of those, or an `order_by` entry is not
            a string.
        """
        clauses: list[str] = []
        parameters: list[Scalar] = []
        if status is not None:
            if status not in STATUSES:
                raise ValueError(
                    f"unknown status {status!r}; use one of {list(STATUSES)}"
                )
            clauses.append("status = ?")
            parameters.append(status)
        if optimizer is not None:
            clauses.append("optimizer = ?")
            parameters.append(_check_scalar("optimizer", optimizer))
        for column, value in (where or {}).items():
            clause, values = _condition(column, value)
            clauses.append(clause)
            parameters.extend(values)

        sql = f"SELECT {', '.join(COLUMNS)} FROM runs"
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY " + _order_clause(order_by)
        if limit is not None:
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
                raise ValueError(f"limit must be an int >= 0; got {limit!r}")
            sql += " LIMIT ?"
            parameters.append(limit)

        rows = []
        for values in self._connection.execute(sql, parameters):
            row = dict(zip(COLUMNS, values, strict=True))
            row["spec"] = json.loads(row.pop("spec_json"))
            row["metrics"] = json.loads(row.pop("metrics_json"))
            rows.append(row)
        return rows


def _insert(connection: sqlite3.Connection, rows: Sequence[Mapping[str, Any]]) -> None:
    placeholders = ", ".join("?" for _ in COLUMNS)
    connection.executemany(
        f"INSERT OR REPLACE INTO runs ({', '.join(COLUMNS)}) VALUES ({placeholders})",
        [tuple(row[column] for column in COLUMNS) for row in rows],
    )


def _check_column(column: object) -> str:
    if not isinstance(column, str) or column not in QUERY_COLUMNS:
        raise ValueError(
            f"unknown run index column {column!r}; allowed columns are"
            f" {sorted(QUERY_COLUMNS)}"
        )
    return column


def _check_scalar(column: str, value: object) -> Scalar:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(
        f"the condition on column {column!r} must be a number, string, bool,"
        f" None, Between or a collection of those; got {value!r} of type"
        f" {type(value).__name__}"
    )


def _condition(column: str, value: WhereValue) -> tuple[str, list[Scalar]]:
    """Return the SQL condition on `column` and the parameters it binds."""
    name = _check_column(column)
    if value is None:
        return f"{name} IS NULL", []
    if isinstance(value, Between):
        parts = []
        parameters: list[Scalar] = []
        if value.low is not None:
            parts.append(f"{name} >= ?")
            parameters.append(value.low)
        if value.high is not None:
            parts.append(f"{name} <= ?")
            parameters.append(value.high)
        return "(" + " AND ".join(parts) + ")", parameters
    if isinstance(value, list | tuple | set | frozenset):
        members = [_check_scalar(name, member) for member in value]
        if not members:
            # An empty membership test selects nothing, as `x IN ()` would.
            return "0", []
        return f"{name} IN ({', '.join('?' for _ in members)})", members
    return f"{name} = ?", [_check_scalar(name, value)]


def _order_clause(order_by: str | Sequence[str] | None) -> str:
    names = [order_by] if isinstance(order_by, str) else list(order_by or [])
    terms = []
    for item in names:
        if not isinstance(item, str):
            raise TypeError(
                f"order_by entries must be column names; got {item!r} of type"
                f" {type(item).__name__}"
            )
        descending = item.startswith("-")
        name = _check_column(item[1:] if descending else item)
        direction = "DESC" if descending else "ASC"
        # `x IS NULL` is 0 for values and 1 for NULL, so NULLs sort last.
        terms.append(f"{name} IS NULL, {name} {direction}")
    terms.append("name ASC")
    return ", ".join(terms)


def _remove_database_files(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
