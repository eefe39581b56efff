"""The validity gate (C³ paper §2.4): which counterfactuals count as label-preserving.

- Classification: ``‖p(x) − p(x')‖_∞ <= δ`` and the same predicted class (argmax); multi-label:
  the same ``‖·‖_∞`` test over findings and the same positive set (``p >= threshold``).
- Segmentation: ``IoU(m*(x), m*(x')) >= τ`` for a teacher's (or consensus) binarised masks.
- Operators may add their own rejections (e.g. a fundus lesion-visibility check).

Every rejection carries a human-readable reason and a machine-readable *kind*
(:data:`REASON_KINDS`). The gate also returns the number each test thresholds (the
*statistic*: max |Δp| for classification, teacher IoU for segmentation); :func:`calibrate` sets δ
or τ from human-audited anchors of that statistic, and :func:`load_anchors_csv` reads them.

Inputs to the gates are *probabilities* (or masks), never logits: a teacher's softmax/sigmoid
output. The pure kernels :func:`max_probability_shift` and :func:`teacher_iou` compute the
statistics; the gate classes add the decisions and the reasons.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor

#: Reason kinds, in the order :meth:`GateDecision.reason_counts` reports them.
REASON_KINDS: tuple[str, ...] = ("prob_shift", "class_change", "positive_set_change", "teacher_iou", "operator_check")

GateKind = Literal["classification", "segmentation"]
_GATE_KINDS = ("classification", "segmentation")

Cell = tuple[tuple[str, str], ...]  # ((kind, text), ...) for one counterfactual; () = admitted


class CalibrationError(ValueError):
    """No threshold reaches the target precision on the anchors (or there are none to use)."""


class AnchorFileError(ValueError):
    """A malformed anchor CSV; the message names the file, the row and the offending value."""


# -- the decision -------------------------------------------------------------------------------
@dataclass(frozen=True)
class GateDecision:
    """What the gate decided for B cases × K counterfactuals.

    Attributes:
        admitted: ``(B, K)`` bool.
        reasons: B×K nested tuple; ``None`` where admitted, otherwise the human-readable reason
            (several failing tests joined with ``"; "``).
        statistic: ``(B, K)`` float, the calibrated quantity: max |Δp| (classification) or
            teacher IoU (segmentation).
        kinds: B×K nested tuple of the reason kinds of each cell (``()`` where admitted), in the
            same order as the texts in ``reasons``. Built by the gates; when left empty, every
            rejected cell gets the kind ``"unspecified"``.
    """

    admitted: Tensor
    reasons: tuple[tuple[str | None, ...], ...]
    statistic: Tensor
    kinds: tuple[tuple[tuple[str, ...], ...], ...] = field(default=())

    def __post_init__(self) -> None:
        if self.admitted.dtype != torch.bool or self.admitted.ndim != 2:
            raise ValueError(
                f"admitted must be a (B, K) bool tensor, got {self.admitted.dtype} {tuple(self.admitted.shape)}"
            )
        b, k = self.admitted.shape
        if self.statistic.shape != (b, k):
            raise ValueError(f"statistic must be (B, K) = {(b, k)}, got {tuple(self.statistic.shape)}")
        if len(self.reasons) != b or any(len(row) != k for row in self.reasons):
            raise ValueError(f"reasons must be {b} x {k}")
        flags = self.admitted.tolist()
        for i, row in enumerate(self.reasons):
            for j, why in enumerate(row):
                if flags[i][j] != (why is None):
                    raise ValueError(f"case {i}, counterfactual {j}: a rejection needs a reason and an admission none")
        if not self.kinds:
            derived = tuple(tuple(() if why is None else ("unspecified",) for why in row) for row in self.reasons)
            object.__setattr__(self, "kinds", derived)
        elif len(self.kinds) != b or any(len(row) != k for row in self.kinds):
            raise ValueError(f"kinds must be {b} x {k}")

    @classmethod
    def admit_all(cls, b: int, k: int, statistic: Tensor | None = None) -> GateDecision:
        """Every counterfactual admitted (no learned test ran); statistic zeros unless given."""
        return cls(
            admitted=torch.ones((b, k), dtype=torch.bool),
            reasons=tuple((None,) * k for _ in range(b)),
            statistic=torch.zeros((b, k)) if statistic is None else statistic,
        )

    @classmethod
    def from_cells(cls, admitted: Tensor, cells: Sequence[Sequence[Cell]], statistic: Tensor) -> GateDecision:
        """Build from per-cell ``((kind, text), ...)`` tuples (``()`` = no failing test)."""
        return cls(
            admitted=admitted,
            reasons=tuple(tuple("; ".join(text for _, text in cell) or None for cell in row) for row in cells),
            statistic=statistic,
            kinds=tuple(tuple(tuple(kind for kind, _ in cell) for cell in row) for row in cells),
        )

    @property
    def shape(self) -> tuple[int, int]:
        """``(B, K)``."""
        b, k = self.admitted.shape
        return int(b), int(k)

    def admission_rate(self) -> float:
        """Share of counterfactuals admitted; 0.0 when there are none."""
        return float(self.admitted.float().mean()) if self.admitted.numel() else 0.0

    def reason_counts(self) -> dict[str, int]:
        """How many rejected counterfactuals failed each kind of test (only kinds that occur).

        A counterfactual failing two tests counts once under each.
        """
        counts: dict[str, int] = {}
        for row in self.kinds:
            for cell in row:
                for kind in cell:
                    counts[kind] = counts.get(kind, 0) + 1
        order = {kind: n for n, kind in enumerate(REASON_KINDS)}
        return dict(sorted(counts.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))

    def with_extra_rejections(self, extra: Sequence[Sequence[str | None]]) -> GateDecision:
        """Merge operator-declared rejections (kind ``"operator_check"``), keeping all reasons.

        ``extra`` is B×K: ``None`` (no objection) or a non-empty reason. A cell rejected by both
        keeps the gate's reason first, then the operator's, joined with ``"; "``.
        """
        b, k = self.shape
        if len(extra) != b or any(len(row) != k for row in extra):
            raise ValueError(f"extra rejections must be {b} x {k}")
        admitted = self.admitted.clone()
        reasons: list[tuple[str | None, ...]] = []
        kinds: list[tuple[tuple[str, ...], ...]] = []
        for i in range(b):
            r_row: list[str | None] = []
            k_row: list[tuple[str, ...]] = []
            for j in range(k):
                why, kind, more = self.reasons[i][j], self.kinds[i][j], extra[i][j]
                if more is not None:
                    if not isinstance(more, str) or not more.strip():
                        raise ValueError(
                            f"case {i}, counterfactual {j}: an operator rejection needs a reason, got {more!r}"
                        )
                    admitted[i, j] = False
                    why = more if why is None else f"{why}; {more}"
                    kind = (*kind, "operator_check")
                r_row.append(why)
                k_row.append(kind)
            reasons.append(tuple(r_row))
            kinds.append(tuple(k_row))
        return GateDecision(admitted, tuple(reasons), self.statistic, tuple(kinds))


# -- helpers ------------------------------------------------------------------------------------
def _unit(name: str, value: float) -> float:
    v = float(value)
    if not math.isfinite(v) or not 0.0 <= v <= 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return v


def _tolerance(t: Tensor) -> float:
    """Slack for ``<=``/``>=`` against a threshold: a few ulps of the statistic's dtype."""
    return 4.0 * torch.finfo(t.dtype).eps if t.is_floating_point() else 0.0


def _pair(value: float, bound: float) -> tuple[str, str]:
    """Format a statistic and its threshold with 3 decimals, more if they would print alike."""
    for digits in range(3, 8):
        a, b = f"{value:.{digits}f}", f"{bound:.{digits}f}"
        if a != b:
            return a, b
    return f"{value:.8g}", f"{bound:.8g}"


def _check_probabilities(name: str, p: Tensor) -> None:
    if not p.is_floating_point():
        raise ValueError(f"{name} must be floating-point probabilities, got {p.dtype}")
    if p.numel() and not bool(((p >= 0) & (p <= 1)).all()):
        raise ValueError(f"{name} must be probabilities in [0, 1] (softmax/sigmoid output, not logits or NaN)")


# -- kernels ------------------------------------------------------------------------------------
def max_probability_shift(probs_ref: Tensor, probs_cf: Tensor) -> tuple[Tensor, Tensor]:
    """``‖p(x) − p(x')‖_∞`` and the class where it is reached.

    Args:
        probs_ref: ``(B, C)`` probabilities of the originals.
        probs_cf: ``(B, K, C)`` probabilities of the counterfactuals.

    Returns:
        ``(shift (B, K), where (B, K) long)``; ``where`` is the first class reaching the maximum
        (deterministic on ties, which are the rule with two classes).
    """
    diff = (probs_cf - probs_ref.unsqueeze(1)).abs()
    shift = diff.amax(dim=2)
    where = (diff == shift.unsqueeze(2)).to(torch.uint8).argmax(dim=2)
    return shift, where


def teacher_iou(mask_ref: Tensor, mask_cf: Tensor, empty_iou: float = 1.0) -> Tensor:
    """IoU of binary masks: ``mask_ref (B, *sp)`` bool against ``mask_cf (B, K, *sp)`` bool -> ``(B, K)``.

    Both empty -> ``empty_iou`` (the teacher agrees there is nothing); one empty -> 0. Counts are
    exact (int64), the ratio is float32.
    """
    a = mask_ref.unsqueeze(1).flatten(2)
    c = mask_cf.flatten(2)
    inter = (a & c).sum(2)
    union = (a | c).sum(2)
    iou = inter.double() / union.clamp_min(1).double()
    return torch.where(union > 0, iou, torch.full_like(iou, empty_iou)).float()


# -- the gates ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ClassificationGate:
    """Gate on a teacher's class probabilities.

    Args:
        delta: δ in [0, 1]; admit when ``max_c |p_c(x) − p_c(x')| <= δ``.
        multilabel: False: also require the same argmax class; True: also require the same
            positive set ``{c : p_c >= threshold}``.
        threshold: decision threshold of the positive set (multi-label only), in [0, 1].
        class_names: optional names of the C classes/findings, used in the reasons.
    """

    delta: float
    multilabel: bool
    threshold: float = 0.5
    class_names: Sequence[str] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "delta", _unit("delta", self.delta))
        object.__setattr__(self, "threshold", _unit("threshold", self.threshold))
        object.__setattr__(self, "multilabel", bool(self.multilabel))
        if self.class_names is not None:
            object.__setattr__(self, "class_names", tuple(str(n) for n in self.class_names))

    def _name(self, c: int) -> str:
        return self.class_names[c] if self.class_names is not None else str(c)

    def __call__(self, probs_ref: Tensor, probs_cf: Tensor) -> GateDecision:
        """Gate ``K`` counterfactuals per case.

        Args:
            probs_ref: ``(B, C)`` probabilities on the originals.
            probs_cf: ``(B, K, C)`` probabilities on the counterfactuals.
        """
        if (
            probs_ref.ndim != 2
            or probs_cf.ndim != 3
            or probs_cf.shape[0] != probs_ref.shape[0]
            or probs_cf.shape[2] != probs_ref.shape[1]
        ):
            raise ValueError(
                f"expected probs_ref (B, C) and probs_cf (B, K, C), got {tuple(probs_ref.shape)} and {tuple(probs_cf.shape)}"
            )
        n_classes = probs_ref.shape[1]
        if self.class_names is not None and len(self.class_names) != n_classes:
            raise ValueError(f"{len(self.class_names)} class names for {n_classes} classes")
        _check_probabilities("probs_ref", probs_ref)
        _check_probabilities("probs_cf", probs_cf)

        shift, where = max_probability_shift(probs_ref, probs_cf)
        shift_ok = shift <= self.delta + _tolerance(shift)
        if self.multilabel:
            pos_ref = probs_ref >= self.threshold
            pos_cf = probs_cf >= self.threshold
            same = (pos_cf == pos_ref.unsqueeze(1)).all(2)
            pos_ref_l, pos_cf_l = pos_ref.tolist(), pos_cf.tolist()
        else:
            cls_ref = probs_ref.argmax(1)
            cls_cf = probs_cf.argmax(2)
            same = cls_cf == cls_ref.unsqueeze(1)
            cls_ref_l, cls_cf_l = cls_ref.tolist(), cls_cf.tolist()
        admitted = shift_ok & same

        shift_l, where_l, shift_ok_l, same_l = shift.tolist(), where.tolist(), shift_ok.tolist(), same.tolist()
        b, k = admitted.shape
        cells: list[list[Cell]] = []
        for i in range(b):
            row: list[Cell] = []
            for j in range(k):
                cell: list[tuple[str, str]] = []
                if not shift_ok_l[i][j]:
                    v, d = _pair(shift_l[i][j], self.delta)
                    cell.append(("prob_shift", f"max |Δp| {v} > δ {d} (class '{self._name(where_l[i][j])}')"))
                if not same_l[i][j]:
                    if self.multilabel:
                        ref_set, cf_set = pos_ref_l[i], pos_cf_l[i][j]
                        gained = [f"+{self._name(c)}" for c in range(n_classes) if cf_set[c] and not ref_set[c]]
                        lost = [f"−{self._name(c)}" for c in range(n_classes) if ref_set[c] and not cf_set[c]]
                        cell.append(("positive_set_change", f"positive set changed: {' '.join(gained + lost)}"))
                    else:
                        a, z = cls_ref_l[i], cls_cf_l[i][j]
                        cell.append(
                            (
                                "class_change",
                                f"predicted class changed {a} → {z} ('{self._name(a)}' → '{self._name(z)}')",
                            )
                        )
                row.append(tuple(cell))
            cells.append(row)
        return GateDecision.from_cells(admitted, cells, shift)


@dataclass(frozen=True)
class SegmentationGate:
    """Gate on a teacher's (or consensus) masks: admit when ``IoU(m*(x), m*(x')) >= τ``.

    Args:
        tau: τ in [0, 1].
        threshold: binarisation of probability inputs (``>= threshold``); bool masks are used
            as they are.
        empty_iou: IoU when both binarised masks are empty (explicit rule; default 1.0, the
            teacher agrees there is nothing to segment). In [0, 1].
    """

    tau: float
    threshold: float = 0.5
    empty_iou: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "tau", _unit("tau", self.tau))
        object.__setattr__(self, "threshold", _unit("threshold", self.threshold))
        object.__setattr__(self, "empty_iou", _unit("empty_iou", self.empty_iou))

    def _binarise(self, name: str, t: Tensor) -> Tensor:
        if t.dtype == torch.bool:
            return t
        if t.is_floating_point() and t.numel() and bool(torch.isnan(t).any()):
            raise ValueError(f"{name} contains NaN")
        return t >= self.threshold

    def __call__(self, teacher_ref: Tensor, teacher_cf: Tensor) -> GateDecision:
        """Gate ``K`` counterfactuals per case.

        Args:
            teacher_ref: ``(B, 1, *spatial)`` foreground probabilities or masks on the originals.
            teacher_cf: ``(B, K, 1, *spatial)`` on the counterfactuals.
        """
        if (
            teacher_ref.ndim < 3
            or teacher_ref.shape[1] != 1
            or teacher_cf.ndim != teacher_ref.ndim + 1
            or teacher_cf.shape[0] != teacher_ref.shape[0]
            or teacher_cf.shape[2:] != teacher_ref.shape[1:]
        ):
            raise ValueError(
                "expected teacher_ref (B, 1, *spatial) and teacher_cf (B, K, 1, *spatial), "
                f"got {tuple(teacher_ref.shape)} and {tuple(teacher_cf.shape)}"
            )
        iou = teacher_iou(
            self._binarise("teacher_ref", teacher_ref), self._binarise("teacher_cf", teacher_cf), self.empty_iou
        )
        admitted = iou >= self.tau - _tolerance(iou)
        iou_l, ok_l = iou.tolist(), admitted.tolist()
        cells: list[list[Cell]] = []
        for i, row in enumerate(iou_l):
            out: list[Cell] = []
            for j, value in enumerate(row):
                if ok_l[i][j]:
                    out.append(())
                else:
                    v, t = _pair(value, self.tau)
                    out.append((("teacher_iou", f"teacher IoU {v} < τ {t}"),))
            cells.append(out)
        return GateDecision.from_cells(admitted, cells, iou)


# -- calibration --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Anchor:
    """One human-audited counterfactual: the gate statistic and the auditor's verdict.

    ``kind`` ("classification", "segmentation" or "" for unstated), ``exam_id`` and ``operator``
    are optional provenance.
    """

    statistic: float
    valid: bool
    kind: str = ""
    exam_id: str = ""
    operator: str = ""


@dataclass(frozen=True)
class CalibrationResult:
    """The calibrated threshold and how it does on the anchors it was chosen on.

    ``threshold`` is δ (classification; admit ``statistic <= δ``) or τ (segmentation; admit
    ``statistic >= τ``). ``precision`` = share truly valid among admitted anchors, ``recall`` =
    share of truly valid anchors admitted.
    """

    threshold: float
    precision: float
    recall: float
    n_admitted: int
    n_anchors: int
    target_precision: float
    kind: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready mapping of every field."""
        return {
            "threshold": self.threshold,
            "precision": self.precision,
            "recall": self.recall,
            "n_admitted": self.n_admitted,
            "n_anchors": self.n_anchors,
            "target_precision": self.target_precision,
            "kind": self.kind,
        }


def _as_pairs(anchors: Iterable[Anchor | tuple[float, bool]], kind: str) -> list[tuple[float, bool]]:
    pairs: list[tuple[float, bool]] = []
    for n, a in enumerate(anchors):
        if isinstance(a, Anchor):
            if a.kind and a.kind != kind:
                continue  # an anchor audited for the other task
            stat, valid = float(a.statistic), bool(a.valid)
        else:
            stat, valid = float(a[0]), bool(a[1])
        if not math.isfinite(stat):
            raise ValueError(f"anchor {n}: statistic must be finite, got {stat!r}")
        pairs.append((stat, valid))
    return pairs


def calibrate(
    anchors: Iterable[Anchor | tuple[float, bool]],
    target_precision: float,
    kind: GateKind = "classification",
    min_admitted: int = 1,
) -> CalibrationResult:
    """The loosest threshold whose admitted anchors reach ``target_precision``.

    Classification admits ``statistic <= δ`` (loosest = largest δ); segmentation admits
    ``statistic >= τ`` (loosest = smallest τ). Candidates are the observed statistics; anchors
    with equal statistics are admitted together. Among candidates admitting at least
    ``min_admitted`` anchors whose precision (truly valid / admitted) is >= the target, the
    loosest wins. Raising the target can therefore only tighten the threshold.

    Args:
        anchors: :class:`Anchor` objects or ``(statistic, valid)`` pairs. Anchors whose ``kind``
            names the other task are skipped.
        target_precision: in (0, 1].
        kind: ``"classification"`` or ``"segmentation"``.
        min_admitted: smallest admitted set accepted (>= 1).

    Raises:
        CalibrationError: no anchors, or no candidate meets the target (the message gives the
            best precision achievable).
        ValueError: bad arguments or a non-finite statistic.
    """
    target = _unit("target_precision", target_precision)
    if target <= 0.0:
        raise ValueError("target_precision must be > 0 (0 would admit everything)")
    if kind not in _GATE_KINDS:
        raise ValueError(f"kind must be one of {_GATE_KINDS}, got {kind!r}")
    if isinstance(min_admitted, bool) or not isinstance(min_admitted, int) or min_admitted < 1:
        raise ValueError(f"min_admitted must be an int >= 1, got {min_admitted!r}")
    pairs = _as_pairs(anchors, kind)
    if not pairs:
        raise CalibrationError(f"no {kind} anchors to calibrate on")
    n_valid = sum(valid for _, valid in pairs)

    # Most admissible first: a threshold at an observed value admits a prefix (ties together).
    ordered = sorted(pairs, key=lambda p: p[0], reverse=kind == "segmentation")
    best: CalibrationResult | None = None
    best_precision: float | None = None
    admitted = good = 0
    for idx, (stat, valid) in enumerate(ordered):
        admitted += 1
        good += valid
        if idx + 1 < len(ordered) and ordered[idx + 1][0] == stat:
            continue
        if admitted < min_admitted:
            continue
        precision = good / admitted
        best_precision = precision if best_precision is None else max(best_precision, precision)
        if good >= target * admitted - 1e-9:
            best = CalibrationResult(stat, precision, good / n_valid, admitted, len(pairs), target, kind)
    if best is None:
        if best_precision is None:
            raise CalibrationError(f"min_admitted={min_admitted} but only {len(pairs)} {kind} anchors")
        raise CalibrationError(
            f"no {kind} threshold reaches precision {target:.3f} on {len(pairs)} anchors "
            f"(best achievable {best_precision:.3f} with at least {min_admitted} admitted)"
        )
    return best


# -- anchor files -------------------------------------------------------------------------------
_TRUE = frozenset({"1", "true", "yes", "y", "t", "valid"})
_FALSE = frozenset({"0", "false", "no", "n", "f", "invalid"})
_REQUIRED = ("statistic", "valid")
_OPTIONAL = ("kind", "exam_id", "operator")


def _verdict(raw: str) -> bool | None:
    v = raw.strip().lower()
    return True if v in _TRUE else False if v in _FALSE else None


def load_anchors_csv(path: str | Path) -> list[Anchor]:
    """Read human-audited anchors from a CSV.

    Columns (header row, names case- and space-insensitive): ``statistic`` (a number in [0, 1]:
    max |Δp| or teacher IoU) and ``valid`` (1/0, true/false, yes/no); optional ``kind``
    (classification / segmentation / empty), ``exam_id``, ``operator``. Rows are numbered as
    lines of the file, the header being row 1. Any bad row rejects the whole file.

    Raises:
        AnchorFileError: unreadable or empty file, missing column, a row with the wrong number of
            fields, a non-numeric / non-finite / out-of-range statistic, an unknown verdict or
            kind, or no data rows. The message names the file, the row, the column and the value.
    """
    p = Path(path)
    anchors: list[Anchor] = []
    try:
        with p.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise AnchorFileError(f"{p}: empty file (expected a header with columns {list(_REQUIRED)})")
            names = [h.strip().lower() for h in header]
            missing = [c for c in _REQUIRED if c not in names]
            if missing:
                raise AnchorFileError(f"{p}: row 1: missing column(s) {missing} (found {names})")
            dupes = sorted({n for n in names if n and names.count(n) > 1})
            if dupes:
                raise AnchorFileError(f"{p}: row 1: duplicate column(s) {dupes}")
            col = {n: i for i, n in enumerate(names)}
            for fields in reader:
                row_no = reader.line_num
                if not any(f.strip() for f in fields):
                    continue  # blank line
                if len(fields) != len(names):
                    raise AnchorFileError(f"{p}: row {row_no}: expected {len(names)} fields, got {len(fields)}")
                anchors.append(_parse_row(p, row_no, fields, col))
    except OSError as exc:
        raise AnchorFileError(f"{p}: cannot read anchors ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise AnchorFileError(f"{p}: not a UTF-8 text file") from None
    except csv.Error as exc:
        raise AnchorFileError(f"{p}: malformed CSV ({exc})") from None
    if not anchors:
        raise AnchorFileError(f"{p}: no anchor rows after the header")
    return anchors


def _parse_row(p: Path, row_no: int, fields: list[str], col: dict[str, int]) -> Anchor:
    raw_stat = fields[col["statistic"]].strip()
    try:
        stat = float(raw_stat)
    except ValueError:
        raise AnchorFileError(f"{p}: row {row_no}: column 'statistic' is not a number: {raw_stat!r}") from None
    if not math.isfinite(stat):
        raise AnchorFileError(f"{p}: row {row_no}: column 'statistic' is not finite: {raw_stat!r}")
    if not 0.0 <= stat <= 1.0:
        raise AnchorFileError(f"{p}: row {row_no}: column 'statistic' must be in [0, 1], got {raw_stat!r}")
    raw_valid = fields[col["valid"]]
    valid = _verdict(raw_valid)
    if valid is None:
        raise AnchorFileError(
            f"{p}: row {row_no}: column 'valid' must be 1/0, true/false or yes/no, got {raw_valid.strip()!r}"
        )
    extra = {name: fields[col[name]].strip() if name in col else "" for name in _OPTIONAL}
    kind = extra["kind"].lower()
    if kind not in ("", *_GATE_KINDS):
        raise AnchorFileError(
            f"{p}: row {row_no}: column 'kind' must be classification, segmentation or empty, got {extra['kind']!r}"
        )
    return Anchor(stat, valid, kind, extra["exam_id"], extra["operator"])
