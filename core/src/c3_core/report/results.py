"""Load a finished results folder into what the report shows (pseudonymised on the way in).

Reads ``run.json`` (or ``run-failed.json``), ``summary.json`` and per modality ``cases.csv``,
``counterfactuals.csv`` (streamed: memory holds a few numbers per case, the provenance of only
the gallery's cases) and ``failures.csv``. Raw exam ids stay inside :class:`GalleryCandidate`
(needed to find the case in its dataset) and never reach anything rendered.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from c3_core.report.errors import ReportError
from c3_core.report.pseudonym import Pseudonymiser

MAX_TABLE_ROWS = 5000  # per modality: the lowest-utility cases; cases.csv holds them all
GALLERY_CASES = 6
_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")


@dataclass
class CaseView:
    """One row of the per-exam robustness profile table (pseudonymous)."""

    exam: str
    utility: float
    score: float
    worst_ops: str
    worst_operator: str
    worst_severity: float
    n_counterfactuals: int
    n_admitted: int
    n_rejected: int
    n_flipped: int
    agreement: float
    worst_k: int = -1
    reasons: Counter[str] | None = None  # rejection reason kind -> count (None: none rejected)
    margin: float = float("nan")  # clean decision margin (classification; NaN otherwise)
    worst_margin: float = float("nan")  # worst margin over the admitted neighbourhood: C³'s per-exam verdict


@dataclass
class GalleryCandidate:
    """A worst case to replay: its dataset index, raw id (private) and worst counterfactual."""

    exam: str
    index: int
    raw_exam_id: str
    utility: float
    score: float
    cf: dict[str, Any] | None = None
    note: str = ""


@dataclass
class ModalityResults:
    """Everything the report shows for one modality."""

    name: str
    summary: dict[str, Any]
    cases: list[CaseView] = field(default_factory=list)  # the table's rows (capped at MAX_TABLE_ROWS)
    n_cases_total: int = 0
    utilities: list[float] = field(default_factory=list)  # every case's U(x), for the distribution
    scores: list[float] = field(default_factory=list)  # every case's s(x)
    gate_by_operator: dict[str, list[int]] = field(default_factory=dict)  # op -> [n, admitted, flipped]
    reasons: Counter[str] = field(default_factory=Counter)
    gallery: list[GalleryCandidate] = field(default_factory=list)
    failures: list[tuple[int, str]] = field(default_factory=list)  # (index, exception kind)

    @property
    def task(self) -> str:
        return str(self.summary.get("task", ""))


@dataclass
class RunResults:
    """A results folder: the manifest, each modality, and the modalities that failed."""

    root: Path
    manifest: dict[str, Any]
    modalities: dict[str, ModalityResults]
    failed: dict[str, str]
    status: str

    @property
    def request(self) -> dict[str, Any]:
        return dict(self.manifest.get("request") or {})


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportError(f"{path}: cannot read ({exc.strerror})") from None
    except ValueError as exc:
        raise ReportError(f"{path}: not valid JSON ({exc})") from None


def _rows(path: Path) -> Iterator[dict[str, str]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # provenance cells can be long
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            yield from csv.DictReader(fh)
    except OSError as exc:
        raise ReportError(f"{path}: cannot read ({exc.strerror})") from None
    except csv.Error as exc:
        raise ReportError(f"{path}: not a valid CSV ({exc})") from None


def _float(value: Any, default: float = float("nan")) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def _int(value: Any, default: int = 0) -> int:
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return default


def _true(value: Any) -> bool:
    return str(value).strip().lower() in {"true", "1", "yes"}


def reason_kind(reason: str) -> str:
    """A rejection reason with its numbers replaced by ``#``, so like reasons group together."""
    return _NUMBER.sub("#", reason.strip()) or "unspecified"


def exception_kind(reason: str) -> str:
    """``"ValueError"`` from ``"ValueError: ..."``: failure messages may name files or ids, so
    only their kind is shown."""
    head = reason.split(":", 1)[0].strip()
    return head if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", head) else "error"


def load_results(root: Path, pseudonymise: Pseudonymiser, gallery_cases: int = GALLERY_CASES) -> RunResults:
    """Read a results folder; raises :class:`ReportError` if it is not one."""
    if not root.is_dir():
        raise ReportError(f"{root}: no such results folder")
    manifest_path = next((p for p in (root / "run.json", root / "run-failed.json") if p.is_file()), None)
    if manifest_path is None:
        raise ReportError(f"{root}: not a finished c3 results folder (no run.json); run `c3 evaluate --out {root}`")
    manifest = _read_json(manifest_path)
    if not isinstance(manifest, dict):
        raise ReportError(f"{manifest_path}: expected a JSON object")
    top = _read_json(root / "summary.json") if (root / "summary.json").is_file() else {}
    if not isinstance(top, dict):
        raise ReportError(f"{root / 'summary.json'}: expected a JSON object keyed by modality")
    order = list((manifest.get("request") or {}).get("modalities") or []) + sorted(top)
    modalities: dict[str, ModalityResults] = {}
    failed = {str(m): str(v) for m, v in (manifest.get("failures") or {}).items()}
    for m in dict.fromkeys(order):
        if m in failed:
            continue
        per = root / m / "summary.json"
        summary = top.get(m) if isinstance(top.get(m), dict) else (_read_json(per) if per.is_file() else None)
        if not isinstance(summary, dict) or not (root / m / "cases.csv").is_file():
            failed.setdefault(m, "no results were written for this modality")
            continue
        modalities[m] = _load_modality(root / m, m, summary, pseudonymise, gallery_cases)
    if not modalities and not failed:
        raise ReportError(f"{root}: holds no modality results")
    return RunResults(root, manifest, modalities, failed, str(manifest.get("status", "unknown")))


def _load_modality(
    folder: Path, name: str, summary: dict[str, Any], pseudonymise: Pseudonymiser, gallery_cases: int
) -> ModalityResults:
    res = ModalityResults(name=name, summary=summary)
    if (folder / "failures.csv").is_file():
        res.failures = [(_int(r.get("index"), -1), exception_kind(r.get("reason", ""))) for r in _rows(folder / "failures.csv")]
    failed_idx = {i for i, _ in res.failures}
    raw_ids: list[str] = []
    indices: list[int] = []
    next_index = 0
    for row in _rows(folder / "cases.csv"):
        raw = row.get("exam_id", "")
        if "index" in row and row["index"] not in ("", None):
            idx = _int(row["index"], -1)
        else:  # cases.csv is in dataset order, without the failed indices
            while next_index in failed_idx:
                next_index += 1
            idx = next_index
        next_index = max(next_index, idx + 1)
        raw_ids.append(raw)
        indices.append(idx)
        res.cases.append(
            CaseView(
                exam=pseudonymise(raw),
                utility=_float(row.get("utility")),
                score=_float(row.get("score")),
                worst_ops=row.get("worst_ops", ""),
                worst_operator=row.get("worst_operator", ""),
                worst_severity=_float(row.get("worst_severity")),
                n_counterfactuals=_int(row.get("n_counterfactuals")),
                n_admitted=_int(row.get("n_admitted")),
                n_rejected=_int(row.get("n_rejected")),
                n_flipped=_int(row.get("n_flipped")),
                agreement=_float(row.get("agreement")),
                worst_k=_int(row.get("worst_k"), -1),
                margin=_float(row.get("margin")),
                worst_margin=_float(row.get("worst_margin")),
            )
        )
    res.n_cases_total = len(res.cases)
    res.utilities = [c.utility for c in res.cases]
    res.scores = [c.score for c in res.cases]
    order = sorted(range(len(res.cases)), key=lambda i: (_nan_last(res.cases[i].utility), res.cases[i].exam))
    chosen = order[:gallery_cases]
    by_raw = {raw_ids[i]: i for i in chosen}
    candidate_cfs: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_exam = {raw: i for i, raw in enumerate(raw_ids)}
    gate: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
    cf_path = folder / "counterfactuals.csv"
    if cf_path.is_file():
        for row in _rows(cf_path):
            raw = row.get("exam_id", "")
            admitted = _true(row.get("admitted"))
            g = gate[row.get("operator", "") or "?"]
            g[0] += 1
            if admitted:
                g[1] += 1
                g[2] += int(_true(row.get("flipped")))
            else:
                kind = reason_kind(pseudonymise.scrub(row.get("reason", ""), (raw,)))
                res.reasons[kind] += 1
                i = by_exam.get(raw)
                if i is not None:
                    case = res.cases[i]
                    case.reasons = case.reasons or Counter()
                    case.reasons[kind] += 1
            if raw in by_raw:
                candidate_cfs[raw].append(
                    {
                        "k": _int(row.get("k"), -1),
                        "ops": row.get("ops", ""),
                        "score": _float(row.get("score")),
                        "admitted": admitted,
                        "reason": row.get("reason", ""),
                        "provenance": row.get("provenance", ""),
                    }
                )
    res.gate_by_operator = {op: v for op, v in sorted(gate.items())}
    for i in chosen:
        raw = raw_ids[i]
        case = res.cases[i]
        cand = GalleryCandidate(case.exam, indices[i], raw, case.utility, case.score)
        cand.cf, cand.note = _worst_counterfactual(candidate_cfs.get(raw, []), case.worst_k)
        res.gallery.append(cand)
    if len(res.cases) > MAX_TABLE_ROWS:
        res.cases = [res.cases[i] for i in order[:MAX_TABLE_ROWS]]
    return res


def _worst_counterfactual(cfs: list[dict[str, Any]], worst_k: int) -> tuple[dict[str, Any] | None, str]:
    """The counterfactual the gallery shows: the one that set U(x) (``worst_k``), or, when the
    original itself is the minimum (``worst_k`` = -1), the lowest-scoring one there is."""
    if not cfs:
        return None, "no counterfactual rows for this case"
    exact = [c for c in cfs if c["k"] == worst_k and worst_k >= 0]
    if exact:
        return exact[0], "the admitted counterfactual that sets U(x)"
    admitted = [c for c in cfs if c["admitted"]]
    pool = admitted or cfs
    worst = min(pool, key=lambda c: (_nan_last(c["score"]), c["k"]))
    if not admitted:
        return worst, "every counterfactual was rejected; U(x) is the original's score — shown: the lowest-scoring rejected one"
    return worst, "the original is the case's minimum; shown: its lowest-scoring admitted counterfactual"


def _nan_last(value: float) -> float:
    return float("inf") if value != value else value
