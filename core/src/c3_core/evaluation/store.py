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

Tables (rows are JSON objects, the same dicts that become ``cases.csv`` / ``counterfactuals.csv``):

* ``meta(key, value)``: the run's fingerprint (the request that ``--resume`` must match);
* ``cases(modality, idx, exam_id, row)``: one row per evaluated case, ``idx`` its dataset index;
* ``counterfactuals(modality, idx, k, row)``;
* ``failures(modality, idx, reason)``: cases that could not be read or scored;
* ``modalities(modality, status, detail)``: ``complete`` once its summary was written.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from c3_core._jsonenc import dumps

STORE_NAME = "results.sqlite"
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS cases (
    modality TEXT NOT NULL, idx INTEGER NOT NULL, exam_id TEXT NOT NULL, row TEXT NOT NULL,
    PRIMARY KEY (modality, idx));
CREATE TABLE IF NOT EXISTS counterfactuals (
    modality TEXT NOT NULL, idx INTEGER NOT NULL, k INTEGER NOT NULL, row TEXT NOT NULL,
    PRIMARY KEY (modality, idx, k));
CREATE TABLE IF NOT EXISTS failures (
    modality TEXT NOT NULL, idx INTEGER NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (modality, idx));
CREATE TABLE IF NOT EXISTS modalities (modality TEXT PRIMARY KEY, status TEXT NOT NULL, detail TEXT NOT NULL);
"""


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
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # batches: see the module docstring
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open the evaluation store ({exc})") from None

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
        """Commit a batch's cases, counterfactuals and failures in one transaction."""
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO cases VALUES (?, ?, ?, ?)",
                [(modality, r.idx, str(r.case["exam_id"]), _dump(r.case)) for r in results],
            )
            db.executemany(
                "INSERT INTO counterfactuals VALUES (?, ?, ?, ?)",
                [(modality, r.idx, int(cf["k"]), _dump(cf)) for r in results for cf in r.counterfactuals],
            )
            db.executemany("INSERT INTO failures VALUES (?, ?, ?)", [(modality, i, reason) for i, reason in failures])

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
        q = "SELECT row FROM counterfactuals WHERE modality = ? ORDER BY idx, k"
        return [json.loads(r[0]) for r in self._db.execute(q, (modality,))]

    def iter_cases(self, modality: str) -> Iterator[dict[str, Any]]:
        """Case rows in dataset order, one at a time (memory does not grow with the cohort)."""
        q = "SELECT row FROM cases WHERE modality = ? ORDER BY idx"
        for (row,) in self._db.execute(q, (modality,)):
            yield json.loads(row)

    def iter_counterfactuals(self, modality: str) -> Iterator[dict[str, Any]]:
        """Counterfactual rows in dataset order, then k, one at a time."""
        q = "SELECT row FROM counterfactuals WHERE modality = ? ORDER BY idx, k"
        for (row,) in self._db.execute(q, (modality,)):
            yield json.loads(row)

    def iter_counterfactual_outcomes(self, modality: str) -> Iterator[tuple[str, float, bool, float, bool, str]]:
        """(operator, severity, admitted, score_drop, flipped, reason) per counterfactual, without
        parsing the provenance (SQLite's JSON functions pick the fields)."""
        q = (
            "SELECT json_extract(row, '$.operator'), json_extract(row, '$.severity'), json_extract(row, '$.admitted'),"
            " json_extract(row, '$.score_drop'), json_extract(row, '$.flipped'), json_extract(row, '$.reason')"
            " FROM counterfactuals WHERE modality = ? ORDER BY idx, k"
        )
        for op, sev, adm, drop, flip, reason in self._db.execute(q, (modality,)):
            yield str(op), float(sev), bool(adm), float(drop), bool(flip), reason or ""

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
        if isinstance(exc, sqlite3.IntegrityError):
            raise StoreError(f"{self.path}: a case was committed twice ({exc})") from None
        if isinstance(exc, sqlite3.Error):
            raise StoreError(f"{self.path}: cannot write ({exc})") from None


def _dump(row: dict[str, Any]) -> str:
    return dumps(row)  # json.dumps(row, sort_keys=False, allow_nan=True), without its per-call set-up

