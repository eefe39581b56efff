"""The validity gate: which counterfactuals count as label-preserving.

Classification: ||p(x) − p(x')||_∞ <= δ and the same predicted class (multi-label: the same
positive set). Segmentation: IoU of a teacher's masks on x and x' >= τ. Operators may add their
own rejections (e.g. lesion visibility). Every rejection carries a human-readable reason.
``calibrate`` picks δ or τ from human-audited anchors for a target precision.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

REASON_KINDS = ("prob_shift", "class_change", "positive_set_change", "teacher_iou", "operator_check")


class CalibrationError(ValueError):
    """No threshold reaches the target precision on the anchors."""


class AnchorFileError(ValueError):
    """A malformed anchor CSV; the message names the file and row."""


@dataclass(frozen=True)
class GateDecision:
    """``admitted`` (B, K) bool; ``reasons`` B×K (None if admitted); ``statistic`` (B, K)."""

    admitted: Tensor
    reasons: tuple[tuple[str | None, ...], ...]
    statistic: Tensor
    kinds: tuple[tuple[tuple[str, ...], ...], ...] = ()

    @classmethod
    def admit_all(cls, b: int, k: int, statistic: Tensor | None = None) -> GateDecision:
        """Every counterfactual admitted (no learned test ran); statistic NaN-free zeros."""
        return cls(
            admitted=torch.ones((b, k), dtype=torch.bool),
            reasons=tuple((None,) * k for _ in range(b)),
            statistic=torch.zeros((b, k)) if statistic is None else statistic,
            kinds=tuple(((),) * k for _ in range(b)),
        )

    def admission_rate(self) -> float:
        return float(self.admitted.float().mean()) if self.admitted.numel() else 0.0

    def reason_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(REASON_KINDS, 0)
        for row in self.kinds:
            for kinds in row:
                for kind in kinds:
                    counts[kind] += 1
        return {k: v for k, v in counts.items() if v}

    def with_extra_rejections(self, extra: Sequence[Sequence[str | None]]) -> GateDecision:
        """Merge operator-declared rejections (kind ``operator_check``), keeping all reasons."""
        b, k = self.admitted.shape
        if len(extra) != b or any(len(row) != k for row in extra):
            raise ValueError(f"extra rejections must be {b} x {k}")
        admitted = self.admitted.clone()
        reasons: list[tuple[str | None, ...]] = []
        kinds: list[tuple[tuple[str, ...], ...]] = []
        base_kinds = self.kinds or tuple(((),) * k for _ in range(b))
        for i in range(b):
            r_row, k_row = [], []
            for j in range(k):
                why, kind = self.reasons[i][j], base_kinds[i][j]
                if extra[i][j] is not None:
                    admitted[i, j] = False
                    why = extra[i][j] if why is None else f"{why}; {extra[i][j]}"
                    kind = (*kind, "operator_check")
                r_row.append(why)
                k_row.append(kind)
            reasons.append(tuple(r_row))
            kinds.append(tuple(k_row))
        return GateDecision(admitted, tuple(reasons), self.statistic, tuple(kinds))


def _check_unit(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return v


def _decision(admitted: Tensor, reasons: list[list[list[tuple[str, str]]]], statistic: Tensor) -> GateDecision:
    return GateDecision(
        admitted=admitted,
        reasons=tuple(tuple("; ".join(t for _, t in cell) or None for cell in row) for row in reasons),
        statistic=statistic,
        kinds=tuple(tuple(tuple(kd for kd, _ in cell) for cell in row) for row in reasons),
    )


class ClassificationGate:
    """Gate on a teacher's probabilities: ``probs_ref (B, C)`` and ``probs_cf (B, K, C)``."""

    def __init__(self, delta: float, multilabel: bool, threshold: float = 0.5, class_names: Sequence[str] | None = None) -> None:
        self.delta = _check_unit("delta", delta)
        self.threshold = _check_unit("threshold", threshold)
        self.multilabel = multilabel
        self.class_names = None if class_names is None else tuple(class_names)

    def _name(self, c: int) -> str:
        return self.class_names[c] if self.class_names and c < len(self.class_names) else str(c)

    def __call__(self, probs_ref: Tensor, probs_cf: Tensor) -> GateDecision:
        if probs_ref.ndim != 2 or probs_cf.ndim != 3 or probs_cf.shape[0] != probs_ref.shape[0] or probs_cf.shape[2] != probs_ref.shape[1]:
            raise ValueError(f"expected probs_ref (B, C) and probs_cf (B, K, C), got {tuple(probs_ref.shape)} and {tuple(probs_cf.shape)}")
        diff = (probs_cf - probs_ref[:, None]).abs()
        stat, where = diff.max(2)
        shift_ok = stat <= self.delta + 1e-12
        if self.multilabel:
            pos_ref = probs_ref >= self.threshold
            pos_cf = probs_cf >= self.threshold
            same = (pos_cf == pos_ref[:, None]).all(2)
        else:
            cls_ref = probs_ref.argmax(1)
            cls_cf = probs_cf.argmax(2)
            same = cls_cf == cls_ref[:, None]
        admitted = shift_ok & same
        b, k = admitted.shape
        reasons: list[list[list[tuple[str, str]]]] = []
        for i in range(b):
            row = []
            for j in range(k):
                cell: list[tuple[str, str]] = []
                if not bool(shift_ok[i, j]):
                    c = int(where[i, j])
                    cell.append(("prob_shift", f"max |Δp| {float(stat[i, j]):.3f} > δ {self.delta:.3f} (class '{self._name(c)}')"))
                if not bool(same[i, j]):
                    if self.multilabel:
                        gained = [self._name(c) for c in range(probs_ref.shape[1]) if bool(pos_cf[i, j, c]) and not bool(pos_ref[i, c])]
                        lost = [self._name(c) for c in range(probs_ref.shape[1]) if bool(pos_ref[i, c]) and not bool(pos_cf[i, j, c])]
                        text = " ".join([*(f"+{n}" for n in gained), *(f"−{n}" for n in lost)])
                        cell.append(("positive_set_change", f"positive set changed: {text}"))
                    else:
                        a, z = int(cls_ref[i]), int(cls_cf[i, j])
                        cell.append(("class_change", f"predicted class changed {a} → {z} ('{self._name(a)}' → '{self._name(z)}')"))
                row.append(cell)
            reasons.append(row)
        return _decision(admitted, reasons, stat)


class SegmentationGate:
    """Gate on a teacher's masks: ``teacher_ref (B, 1, *sp)``, ``teacher_cf (B, K, 1, *sp)``.

    Inputs are probabilities or masks, binarised at ``threshold``. Both masks empty -> IoU =
    ``empty_iou`` (default 1: the teacher agrees there is nothing).
    """

    def __init__(self, tau: float, threshold: float = 0.5, empty_iou: float = 1.0) -> None:
        self.tau = _check_unit("tau", tau)
        self.threshold = _check_unit("threshold", threshold)
        self.empty_iou = _check_unit("empty_iou", empty_iou)

    def __call__(self, teacher_ref: Tensor, teacher_cf: Tensor) -> GateDecision:
        if teacher_cf.ndim != teacher_ref.ndim + 1 or teacher_cf.shape[0] != teacher_ref.shape[0] or teacher_cf.shape[2:] != teacher_ref.shape[1:]:
            raise ValueError(f"expected teacher_ref (B, 1, *sp) and teacher_cf (B, K, 1, *sp), got {tuple(teacher_ref.shape)} and {tuple(teacher_cf.shape)}")
        a = (teacher_ref >= self.threshold)[:, None].flatten(2)
        c = (teacher_cf >= self.threshold).flatten(2)
        inter = (a & c).sum(2).double()
        union = (a | c).sum(2).double()
        iou = torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(union, self.empty_iou)).float()
        admitted = iou >= self.tau - 1e-12
        reasons = [
            [[] if bool(admitted[i, j]) else [("teacher_iou", f"teacher IoU {float(iou[i, j]):.3f} < τ {self.tau:.3f}")] for j in range(iou.shape[1])]
            for i in range(iou.shape[0])
        ]
        return _decision(admitted, reasons, iou)


# -- calibration ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Anchor:
    """One human-audited counterfactual: the gate statistic and the auditor's verdict."""

    statistic: float
    valid: bool
    kind: str = ""
    exam_id: str = ""
    operator: str = ""


@dataclass(frozen=True)
class CalibrationResult:
    threshold: float
    precision: float
    recall: float
    n_admitted: int
    n_anchors: int
    target_precision: float
    kind: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "precision": self.precision,
            "recall": self.recall,
            "n_admitted": self.n_admitted,
            "n_anchors": self.n_anchors,
            "target_precision": self.target_precision,
            "kind": self.kind,
        }


def calibrate(
    anchors: Sequence[Anchor] | Sequence[tuple[float, bool]],
    target_precision: float,
    kind: Literal["classification", "segmentation"] = "classification",
    min_admitted: int = 1,
) -> CalibrationResult:
    """The loosest threshold whose admitted anchors reach ``target_precision``.

    Classification admits statistic <= δ (loosest = largest δ); segmentation admits statistic >= τ
    (loosest = smallest τ). Candidates are the observed statistics.
    """
    target = _check_unit("target_precision", target_precision)
    if kind not in ("classification", "segmentation"):
        raise ValueError(f"kind must be 'classification' or 'segmentation', got {kind!r}")
    items = [(a.statistic, a.valid) if isinstance(a, Anchor) else (float(a[0]), bool(a[1])) for a in anchors]
    if not items:
        raise CalibrationError("no anchors to calibrate on")
    n_valid = sum(v for _, v in items)
    # order anchors from most to least admissible; a threshold admits a prefix (ties together)
    ordered = sorted(items, key=lambda t: t[0], reverse=kind == "segmentation")
    best: CalibrationResult | None = None
    best_precision = 0.0
    admitted = good = 0
    for idx, (stat, valid) in enumerate(ordered):
        admitted += 1
        good += valid
        if idx + 1 < len(ordered) and ordered[idx + 1][0] == stat:
            continue  # ties are admitted together
        precision = good / admitted
        best_precision = max(best_precision, precision)
        if precision >= target - 1e-12 and admitted >= min_admitted:
            best = CalibrationResult(stat, precision, good / n_valid if n_valid else 0.0, admitted, len(items), target, kind)
    if best is None:
        raise CalibrationError(
            f"no threshold reaches precision {target:.3f} on {len(items)} anchors (best achievable {best_precision:.3f})"
        )
    return best


_TRUE = {"1", "true", "yes", "y", "valid"}
_FALSE = {"0", "false", "no", "n", "invalid"}


def load_anchors_csv(path: str | Path) -> list[Anchor]:
    """Read anchors from a CSV with columns ``statistic`` and ``valid`` (plus optional
    ``kind``, ``exam_id``, ``operator``). Any bad row rejects the whole file."""
    p = Path(path)
    try:
        with p.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = reader.fieldnames or []
            missing = [c for c in ("statistic", "valid") if c not in fields]
            if missing:
                raise AnchorFileError(f"{p}: missing column(s) {missing} (found {fields})")
            anchors = []
            for row_no, row in enumerate(reader, start=2):
                raw_s, raw_v = (row.get("statistic") or "").strip(), (row.get("valid") or "").strip().lower()
                try:
                    stat = float(raw_s)
                except ValueError:
                    raise AnchorFileError(f"{p}: row {row_no}: column 'statistic' is not a number: {raw_s!r}") from None
                if not math.isfinite(stat):
                    raise AnchorFileError(f"{p}: row {row_no}: column 'statistic' is not finite: {raw_s!r}")
                if raw_v in _TRUE:
                    valid = True
                elif raw_v in _FALSE:
                    valid = False
                else:
                    raise AnchorFileError(f"{p}: row {row_no}: column 'valid' must be 1/0, true/false or yes/no, got {raw_v!r}")
                anchors.append(Anchor(stat, valid, row.get("kind") or "", row.get("exam_id") or "", row.get("operator") or ""))
    except OSError as exc:
        raise AnchorFileError(f"{p}: cannot read anchors ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise AnchorFileError(f"{p}: not a UTF-8 text CSV") from None
    if not anchors:
        raise AnchorFileError(f"{p}: no anchor rows")
    return anchors
