"""The durable per-case store of an evaluation: one SQLite file in the output folder.

Why SQLite: it ships with Python, a whole batch commits in one transaction (a crash or
``kill -9`` leaves either all of a batch or none of it), several ``torchrun`` processes can
append to the same file under its locking, and a user can query the results afterwards with
any SQLite client (``sqlite3 results.sqlite "select * from cases"``). Parquet parts would need
pyarrow and a hand-written manifest to get the same all-or-nothing commit.

Durability: the store is in WAL mode; a batch commit does not wait for the disk (``synchronous =
NORMAL``: atomic and durable against a crash of the process, while a power cut or OS crash may
lose the last batches committed, which ``--resume`` evaluates again to the same rows, since a
case's counterfactuals depend only on the seed, its id and k). The fingerprint and a modality's
status are committed with ``synchronous = FULL`` (waiting for the disk), which makes every batch
before them durable too. (An fsync per batch cost about 0.1 ms per case at batch size 32 on the
machine measured: a third of the host-work budget of issue 18.)

Tables (schema version ``SCHEMA_VERSION``, recorded in ``meta``):

* ``meta(key, value)``: the run's fingerprint (the request that ``--resume`` must match) and
  ``schema``;
* ``cases(modality, idx, exam_id, row)``: one row per evaluated case, ``idx`` its dataset index,
  ``row`` the JSON object that becomes its line of ``cases.csv``;
* ``counterfactuals(modality, idx, exam_id, k, ops, operator, severity, admitted, reason,
  gate_statistic, score, score_drop, flipped, provenance)``: one typed column per field of a
  counterfactual row (:data:`COUNTERFACTUAL_KEYS`, the columns of ``counterfactuals.csv``, in
  that order); ``severity``, ``gate_statistic``, ``score`` and ``score_drop`` are REAL, where
  SQLite keeps a NaN as NULL (read back as NaN); ``admitted`` and ``flipped`` are 0/1 (read back
  as bool); ``provenance`` is the JSON text the row carries. No JSON is encoded or parsed per
  counterfactual, and a summary reads the columns it needs directly;
* ``failures(modality, idx, reason)``: cases that could not be read or scored;
* ``modalities(modality, status, detail)``: ``complete`` once its summary was written.

A store of another schema version (version 1 kept each counterfactual as one JSON ``row``) is
refused when opened, with a :class:`StoreError` naming the file: such a run cannot be resumed.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from c3_core._jsonenc import dumps

STORE_NAME = "results.sqlite"
SCHEMA_VERSION = "2"

#: The fields of a counterfactual row (as ``scoring.score_batch`` builds it), in order, with their
#: SQLite column definitions; they are the columns of ``counterfactuals.csv``.
_COUNTERFACTUAL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("exam_id", "TEXT NOT NULL"),
    ("k", "INTEGER NOT NULL"),
    ("ops", "TEXT NOT NULL"),
    ("operator", "TEXT NOT NULL"),
    ("severity", "REAL"),  # REAL columns are nullable: SQLite stores a NaN as NULL
    ("admitted", "INTEGER NOT NULL"),  # 0/1
    ("reason", "TEXT NOT NULL"),
    ("gate_statistic", "REAL"),
    ("score", "REAL"),
    ("score_drop", "REAL"),
    ("flipped", "INTEGER NOT NULL"),  # 0/1
    ("provenance", "TEXT NOT NULL"),  # JSON text, stored as given
)
COUNTERFACTUAL_KEYS: tuple[str, ...] = tuple(name for name, _ in _COUNTERFACTUAL_COLUMNS)

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cases (
    modality TEXT NOT NULL, idx INTEGER NOT NULL, exam_id TEXT NOT NULL, row TEXT NOT NULL,
    PRIMARY KEY (modality, idx));
CREATE TABLE IF NOT EXISTS counterfactuals (
    modality TEXT NOT NULL, idx INTEGER NOT NULL,
    {", ".join(f"{name} {kind}" for name, kind in _COUNTERFACTUAL_COLUMNS)},
    PRIMARY KEY (modality, idx, k));
CREATE TABLE IF NOT EXISTS failures (
    modality TEXT NOT NULL, idx INTEGER NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (modality, idx));
CREATE TABLE IF NOT EXISTS modalities (modality TEXT PRIMARY KEY, status TEXT NOT NULL, detail TEXT NOT NULL);
"""

_INSERT_COUNTERFACTUAL = (
    f"INSERT INTO counterfactuals (modality, idx, {', '.join(COUNTERFACTUAL_KEYS)})"
    f" VALUES ({', '.join('?' * (len(COUNTERFACTUAL_KEYS) + 2))})"
)
_SELECT_COUNTERFACTUALS = (
    f"SELECT {', '.join(COUNTERFACTUAL_KEYS)} FROM counterfactuals WHERE modality = ? ORDER BY idx, k"
)


class StoreError(OSError):
    """The store cannot be opened or written, or belongs to a different run."""


@dataclass(frozen=True)
class CaseResult:
    """What one case contributes: its row and its K counterfactual rows."""

    idx: int
    case: dict[str, Any]
    counterfactuals: Sequence[dict[str, Any]]


class ResultStore:
    """Per-case results of one run, committed a batch at a time."""

    def __init__(self, path: Path, *, create: bool) -> None:
        if not create and not path.is_file():
            raise StoreError(f"{path}: no evaluation store here (nothing to resume)")
        self.path = path
        try:
            self._db = sqlite3.connect(path, timeout=300.0, isolation_level=None)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the evaluation store ({exc})") from None
        try:
            self._open()
        except BaseException:
            self._db.close()
            raise

    def _open(self) -> None:
        """Refuse a store of another schema version (leaving it untouched), set the connection
        up, create the tables."""
        try:
            found = _stored_schema(self._db)
            _check_schema(self.path, found)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # batches: see the module docstring
            self._db.executescript(_SCHEMA)
            if found is None:
                self._db.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: cannot open the evaluation store ({exc})") from None

    # -- fingerprint ---------------------------------------------------------------------
    def fingerprint(self) -> dict[str, Any] | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
        return None if row is None else json.loads(row[0])

    def set_fingerprint(self, fingerprint: dict[str, Any]) -> None:
        """Record the run's fingerprint, or check it equals the one already recorded."""
        text = json.dumps(fingerprint, sort_keys=True)
        with self._transaction(durable=True) as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'fingerprint'").fetchone()
            if row is None:
                db.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (text,))
                db.execute("INSERT OR REPLACE INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            elif row[0] != text:
                raise StoreError(f"{self.path}: belongs to a run with other options; it cannot be continued with these")

    # -- writes ------------------------------------------------------------------------------
    def commit_batch(self, modality: str, results: Sequence[CaseResult], failures: Sequence[tuple[int, str]]) -> None:
        """Commit a batch's cases, counterfactuals and failures in one transaction.

        Every counterfactual row must have exactly the keys :data:`COUNTERFACTUAL_KEYS`, in that
        order; otherwise ValueError names the case and the keys, and nothing of the batch is
        written."""
        cases = [(modality, r.idx, str(r.case["exam_id"]), _dump(r.case)) for r in results]
        counterfactuals = [_counterfactual_values(modality, r.idx, cf) for r in results for cf in r.counterfactuals]
        failed = [(modality, i, reason) for i, reason in failures]
        with self._transaction() as db:
            db.executemany("INSERT INTO cases VALUES (?, ?, ?, ?)", cases)
            db.executemany(_INSERT_COUNTERFACTUAL, counterfactuals)
            db.executemany("INSERT INTO failures VALUES (?, ?, ?)", failed)

    def set_status(self, modality: str, status: str, detail: str = "") -> None:
        with self._transaction(durable=True) as db:
            db.execute("INSERT OR REPLACE INTO modalities VALUES (?, ?, ?)", (modality, status, detail))

    # -- reads -------------------------------------------------------------------------------
    def status(self, modality: str) -> str | None:
        row = self._db.execute("SELECT status FROM modalities WHERE modality = ?", (modality,)).fetchone()
        return None if row is None else row[0]

    def finished_indices(self, modality: str) -> set[int]:
        """Dataset indices already committed (scored or failed) for ``modality``."""
        q = "SELECT idx FROM cases WHERE modality = ? UNION SELECT idx FROM failures WHERE modality = ?"
        return {int(r[0]) for r in self._db.execute(q, (modality, modality))}

    def cases(self, modality: str) -> list[dict[str, Any]]:
        """Case rows in dataset order."""
        q = "SELECT row FROM cases WHERE modality = ? ORDER BY idx"
        return [json.loads(r[0]) for r in self._db.execute(q, (modality,))]

    def counterfactuals(self, modality: str) -> list[dict[str, Any]]:
        """Counterfactual rows in dataset order, then k."""
        return list(self.iter_counterfactuals(modality))

    def iter_cases(self, modality: str) -> Iterator[dict[str, Any]]:
        """Case rows in dataset order, one at a time (memory does not grow with the cohort)."""
        q = "SELECT row FROM cases WHERE modality = ? ORDER BY idx"
        for (row,) in self._db.execute(q, (modality,)):
            yield json.loads(row)

    def iter_counterfactuals(self, modality: str) -> Iterator[dict[str, Any]]:
        """Counterfactual rows in dataset order, then k, one at a time: dicts with the keys
        :data:`COUNTERFACTUAL_KEYS` in order, equal to the rows committed (NaN for NaN)."""
        for values in self._db.execute(_SELECT_COUNTERFACTUALS, (modality,)):
            yield _counterfactual_row(values)

    def iter_counterfactual_outcomes(self, modality: str) -> Iterator[tuple[str, float, bool, float, bool, str]]:
        """(operator, severity, admitted, score_drop, flipped, reason) per counterfactual, in
        dataset order, then k; the provenance is not read."""
        q = (
            "SELECT operator, severity, admitted, score_drop, flipped, reason"
            " FROM counterfactuals WHERE modality = ? ORDER BY idx, k"
        )
        for op, sev, adm, drop, flip, reason in self._db.execute(q, (modality,)):
            yield op, _real(sev), bool(adm), _real(drop), bool(flip), reason

    def failures(self, modality: str) -> list[dict[str, Any]]:
        q = "SELECT idx, reason FROM failures WHERE modality = ? ORDER BY idx"
        return [{"index": int(i), "reason": r} for i, r in self._db.execute(q, (modality,))]

    def n_failures(self, modality: str) -> int:
        return int(self._db.execute("SELECT count(*) FROM failures WHERE modality = ?", (modality,)).fetchone()[0])

    def close(self) -> None:
        self._db.close()

    # -- internals ---------------------------------------------------------------------------
    def _transaction(self, durable: bool = False) -> _Transaction:
        return _Transaction(self._db, self.path, durable)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back on error; SQLite errors become StoreError.
    ``durable``: the commit waits for the disk (``synchronous = FULL`` for this transaction)."""

    def __init__(self, db: sqlite3.Connection, path: Path, durable: bool = False) -> None:
        self.db, self.path, self.durable = db, path, durable

    def __enter__(self) -> sqlite3.Connection:
        try:
            if self.durable:
                self.db.execute("PRAGMA synchronous=FULL")
            self.db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self._restore()
            raise StoreError(f"{self.path}: cannot write ({exc})") from None
        return self.db

    def _restore(self) -> None:
        if self.durable:
            try:
                self.db.execute("PRAGMA synchronous=NORMAL")
            except sqlite3.Error:
                pass

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        try:
            self._finish(exc_type, exc)
        finally:
            self._restore()

    def _finish(self, exc_type: type[BaseException] | None, exc: BaseException | None) -> None:
        if exc_type is None:
            try:
                self.db.execute("COMMIT")
                return
            except sqlite3.Error as error:
                self.db.execute("ROLLBACK")
                raise StoreError(f"{self.path}: cannot commit ({error})") from None
        self.db.execute("ROLLBACK")
        if isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc):
            raise StoreError(f"{self.path}: a case was committed twice ({exc})") from None
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"{self.path}: cannot write ({exc})") from None


def _dump(row: dict[str, Any]) -> str:
    return dumps(row)  # json.dumps(row, sort_keys=False, allow_nan=True), without its per-call set-up


def _stored_schema(db: sqlite3.Connection) -> str | None:
    """The schema version of the store ``db`` holds; None for a new (empty) one. Version 1 is
    recognised by its JSON ``row`` column as well (a store with no fingerprint has no version)."""
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if "counterfactuals" in tables:
        columns = {r[1] for r in db.execute("PRAGMA table_info(counterfactuals)")}
        if "row" in columns:
            return "1"
    if "meta" in tables:
        row = db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if row is not None:
            return str(row[0])
    return SCHEMA_VERSION if tables else None


def _check_schema(path: Path, found: str | None) -> None:
    """Raise StoreError unless ``found`` (a stored schema version, None: new) is this version's."""
    if found is None or found == SCHEMA_VERSION:
        return
    if found.isdigit() and int(found) < int(SCHEMA_VERSION):
        raise StoreError(
            f"{path}: written by an earlier version of C³ (store schema {found}; this version uses schema "
            f"{SCHEMA_VERSION}), so it cannot be resumed or read here; re-run without --resume into a new folder"
        )
    raise StoreError(
        f"{path}: written by another version of C³ (store schema {found!r}; this version uses schema "
        f"{SCHEMA_VERSION}); open it with that version"
    )


def _counterfactual_values(modality: str, idx: int, row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The ``counterfactuals`` columns of one row of case ``idx``, in table order; ValueError
    unless the row's keys are :data:`COUNTERFACTUAL_KEYS` in that order."""
    if tuple(row) != COUNTERFACTUAL_KEYS:
        raise ValueError(_key_mismatch(idx, row))
    return (modality, idx, *row.values())


def _key_mismatch(idx: int, row: Mapping[str, Any]) -> str:
    """What is wrong with the keys of a counterfactual row of case ``idx``."""
    missing = [key for key in COUNTERFACTUAL_KEYS if key not in row]
    unexpected = [key for key in row if key not in COUNTERFACTUAL_KEYS]
    problems = ([f"missing key(s) {', '.join(map(repr, missing))}"] if missing else []) + (
        [f"unexpected key(s) {', '.join(map(repr, unexpected))}"] if unexpected else []
    )
    if not problems:
        problems = [f"keys in the order {', '.join(row)}, not {', '.join(COUNTERFACTUAL_KEYS)}"]
    return f"counterfactual row k={row.get('k')!r} of case {idx} cannot be stored: {'; '.join(problems)}"


def _real(value: float | None) -> float:
    """A REAL column's value as float: NULL (how SQLite keeps a NaN) is NaN."""
    return math.nan if value is None else value


def _counterfactual_row(values: tuple[Any, ...]) -> dict[str, Any]:
    """The row dict of one ``SELECT`` of :data:`COUNTERFACTUAL_KEYS`, with the types
    ``score_batch`` gives (bools from 0/1, NaN from NULL; a REAL column gives float even for an
    int committed there). The keys are listed literally, for speed; a test checks their order."""
    exam_id, k, ops, operator, severity, admitted, reason, statistic, score, drop, flipped, provenance = values
    return {
        "exam_id": exam_id,
        "k": k,
        "ops": ops,
        "operator": operator,
        "severity": _real(severity),
        "admitted": bool(admitted),
        "reason": reason,
        "gate_statistic": _real(statistic),
        "score": _real(score),
        "score_drop": _real(drop),
        "flipped": bool(flipped),
        "provenance": provenance,
    }
