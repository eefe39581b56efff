"""The evaluation store's counterfactuals table (schema 2: one typed column per field).

Behaviour only: what is committed comes back equal, in key order and with its types (NaN for
NaN); bad rows are refused whole; a store written by schema 1 is refused with a clear error."""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from c3_core.cli import app
from c3_core.evaluation.store import CaseResult, ResultStore, StoreError

NAN, INF = float("nan"), float("inf")


def _cf(exam: str, k: int, **changes: Any) -> dict[str, Any]:
    """A counterfactual row as ``scoring.score_batch`` builds it (its keys, in its order)."""
    provenance = json.dumps({"exam_id": exam, "index": k, "member": 0, "seed": 12345678901234567,
                             "steps": [{"op_id": "toy.gain", "severity": 0.25, "params": {"note": "ä \"q\" \\"}}]},
                            sort_keys=True)
    row = {
        "exam_id": exam, "k": k, "ops": "toy.gain@0.25 + toy.noise@0.1", "operator": "toy.gain", "severity": 0.25,
        "admitted": True, "reason": "", "gate_statistic": 0.0123456789012345, "score": 0.9876543210987654,
        "score_drop": -1.5e-17, "flipped": False, "provenance": provenance,
    }
    row.update(changes)
    return row


def _case(idx: int, cfs: list[dict[str, Any]]) -> CaseResult:
    return CaseResult(idx, {"exam_id": f"case-{idx}", "score": 0.5}, cfs)


def _same(a: Any, b: Any) -> bool:
    """Equal values of the same type, NaN equal to NaN."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float) and math.isnan(a):
        return math.isnan(b)
    return bool(a == b)


def _assert_rows_equal(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert list(g) == list(w)  # the same keys, in the same order
        bad = {key: (g[key], w[key]) for key in w if not _same(g[key], w[key])}
        assert not bad, bad


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[ResultStore]:
    s = ResultStore(tmp_path / "results.sqlite", create=True)
    yield s
    s.close()


ODD_ROWS = [
    _cf("case-0", 0),
    _cf("case-0", 1, score=NAN, score_drop=NAN, admitted=False, reason="teacher disagrees", flipped=True),
    _cf("case-0", 2, score=INF, score_drop=-INF, gate_statistic=NAN, severity=NAN),
    _cf("case-0", 3, severity=1e-300, gate_statistic=-0.0, score=5e-324, score_drop=1.7976931348623157e308),
]


def test_rows_come_back_equal_in_key_order_with_their_types(store: ResultStore) -> None:
    later = [_cf("case-1", k, exam_id="case-1", score=0.1 * k) for k in range(2)]
    store.commit_batch("toy", [_case(1, later), _case(0, ODD_ROWS)], [])
    want = ODD_ROWS + later  # dataset order, then k
    _assert_rows_equal(list(store.iter_counterfactuals("toy")), want)
    _assert_rows_equal(store.counterfactuals("toy"), want)
    assert store.counterfactuals("other") == []


def test_rows_survive_closing_and_reopening(tmp_path: Path) -> None:
    first = ResultStore(tmp_path / "r.sqlite", create=True)
    first.commit_batch("toy", [_case(0, ODD_ROWS)], [])
    first.close()
    again = ResultStore(tmp_path / "r.sqlite", create=False)
    try:
        _assert_rows_equal(again.counterfactuals("toy"), ODD_ROWS)
    finally:
        again.close()


def test_outcomes_are_typed_tuples_in_row_order(store: ResultStore) -> None:
    store.commit_batch("toy", [_case(0, ODD_ROWS)], [])
    outcomes = list(store.iter_counterfactual_outcomes("toy"))
    want = [(r["operator"], r["severity"], r["admitted"], r["score_drop"], r["flipped"], r["reason"]) for r in ODD_ROWS]
    assert len(outcomes) == len(want)
    for got, expected in zip(outcomes, want):
        assert [type(v) for v in got] == [str, float, bool, float, bool, str]
        assert all(_same(g, e) for g, e in zip(got, expected)), (got, expected)


@pytest.mark.parametrize(
    ("row", "named"),
    [
        ({key: v for key, v in _cf("case-0", 0).items() if key != "provenance"}, "missing key(s) 'provenance'"),
        ({key: v for key, v in _cf("case-0", 0).items() if key not in ("score", "flipped")}, "'score', 'flipped'"),
        (_cf("case-0", 0, margin=0.3), "unexpected key(s) 'margin'"),
        (dict(reversed(list(_cf("case-0", 0).items()))), "order"),
    ],
)
def test_a_bad_row_is_refused_and_nothing_of_its_batch_is_committed(store: ResultStore, row: dict[str, Any], named: str) -> None:
    batch = [_case(0, [_cf("case-0", 0)]), _case(1, [row])]
    with pytest.raises(ValueError, match="case 1") as caught:
        store.commit_batch("toy", batch, [(2, "unreadable")])
    assert named in str(caught.value)
    assert store.finished_indices("toy") == set()
    assert store.counterfactuals("toy") == [] and store.n_failures("toy") == 0
    store.commit_batch("toy", [_case(0, [_cf("case-0", 0)])], [])  # the store is still usable
    assert store.finished_indices("toy") == {0}


def test_a_value_the_column_cannot_hold_is_a_write_error_not_a_duplicate(store: ResultStore) -> None:
    with pytest.raises(StoreError, match="cannot write") as caught:
        store.commit_batch("toy", [_case(0, [_cf("case-0", 0, reason=None)])], [])
    assert "committed twice" not in str(caught.value) and str(store.path) in str(caught.value)
    assert store.finished_indices("toy") == set()


def test_a_case_committed_twice_is_refused(store: ResultStore) -> None:
    store.commit_batch("toy", [_case(0, [_cf("case-0", 0)])], [])
    with pytest.raises(StoreError, match="committed twice"):
        store.commit_batch("toy", [_case(1, [_cf("case-1", 0)]), _case(0, [_cf("case-0", 0)])], [])
    assert store.finished_indices("toy") == {0}
    assert len(store.counterfactuals("toy")) == 1


# -- stores written by an earlier version ------------------------------------------------------

SCHEMA_1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cases (
    modality TEXT NOT NULL, idx INTEGER NOT NULL, exam_id TEXT NOT NULL, row TEXT NOT NULL,
    PRIMARY KEY (modality, idx));
CREATE TABLE counterfactuals (
    modality TEXT NOT NULL, idx INTEGER NOT NULL, k INTEGER NOT NULL, row TEXT NOT NULL,
    PRIMARY KEY (modality, idx, k));
CREATE TABLE failures (
    modality TEXT NOT NULL, idx INTEGER NOT NULL, reason TEXT NOT NULL, PRIMARY KEY (modality, idx));
CREATE TABLE modalities (modality TEXT PRIMARY KEY, status TEXT NOT NULL, detail TEXT NOT NULL);
"""


def _schema_1_store(folder: Path, *, recorded: bool) -> Path:
    """An interrupted run's store as version 1 wrote it (``recorded``: with its fingerprint and
    ``schema = 1``; without, only the JSON ``row`` column tells)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.sqlite"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_1)
    if recorded:
        request = {"modalities": ["toy"], "k": 1, "seed": 0}
        db.execute("INSERT INTO meta VALUES ('fingerprint', ?)", (json.dumps({"request": request}, sort_keys=True),))
        db.execute("INSERT INTO meta VALUES ('schema', '1')")
    db.execute("INSERT INTO cases VALUES ('toy', 0, 'case-0', ?)", (json.dumps({"exam_id": "case-0"}),))
    db.execute("INSERT INTO counterfactuals VALUES ('toy', 0, 0, ?)", (json.dumps(_cf("case-0", 0)),))
    db.commit()
    db.close()
    return path


@pytest.mark.parametrize("recorded", [True, False])
@pytest.mark.parametrize("create", [True, False])
def test_a_schema_1_store_is_refused_clearly_and_left_as_it_was(tmp_path: Path, recorded: bool, create: bool) -> None:
    path = _schema_1_store(tmp_path / "old", recorded=recorded)
    before = path.read_bytes()
    with pytest.raises(StoreError) as caught:
        ResultStore(path, create=create)
    message = str(caught.value)
    assert str(path) in message and "earlier version" in message
    assert "cannot be resumed" in message and "without --resume" in message
    assert path.read_bytes() == before


def test_resume_of_a_schema_1_run_says_so(tmp_path: Path) -> None:
    path = _schema_1_store(tmp_path / "old", recorded=True)
    result = CliRunner().invoke(app, ["evaluate", "--resume", str(path.parent)])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())  # the console may wrap the message
    assert "earlier version" in text and "without --resume" in text
    assert "sqlite3" not in text and "no such column" not in text


def test_a_store_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    ResultStore(tmp_path / "r.sqlite", create=True).close()
    db = sqlite3.connect(tmp_path / "r.sqlite")
    db.execute("UPDATE meta SET value = '3' WHERE key = 'schema'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="another version"):
        ResultStore(tmp_path / "r.sqlite", create=False)


def test_a_new_store_records_its_schema_and_reopens(tmp_path: Path) -> None:
    ResultStore(tmp_path / "r.sqlite", create=True).close()
    db = sqlite3.connect(tmp_path / "r.sqlite")
    assert db.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone() == ("2",)
    db.close()
    ResultStore(tmp_path / "r.sqlite", create=False).close()
