"""The table's metrics from an evaluation's per-case rows, and their case-bootstrap CIs.

The rows are the ones ``c3 evaluate`` stores (``cases.csv``): probabilities, labels, utility,
admitted and flipped counterfactual counts, and for segmentation the per-case Dice, lesion
counts, HD95 and volumes. Every metric here is the same formula as the evaluation summary
(:mod:`c3_core.evaluation.summary`; a test checks they agree), written over an index vector so
that a bootstrap replicate is the same function on resampled cases.

Bootstrap: ``n_boot`` replicates resample the N cases with replacement (``torch.randint`` from
the caller's generator); the interval is the percentile pair of the replicates in which the
metric is defined (e.g. a replicate with no positive case has no AUROC and is left out).

Undefined metrics (one class present, no small lesion, every lesion mask empty, every label
NaN, ...) are None, and the result's ``"undefined"`` entry maps each to its reason, the shape of
:mod:`c3_core.metrics.undefined`; so are CIs that fewer than two replicates define.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from c3_core.metrics.classification import (
    MacroResult,
    auroc,
    brier_score,
    expected_calibration_error,
    macro_auroc,
    multilabel_ece,
)
from c3_core.metrics.segmentation import volume_calibration_slope
from c3_core.metrics.undefined import (
    UNDEFINED_KEY,
    Reasons,
    cohort_mean,
    non_finite_reason,
    probability_problem,
    ratio,
    unless,
)
from c3_core.metrics.utility_stats import percentile
from c3_core.reference_training import one_thread

ECE_BINS = 15  # the evaluation summary's binning: 15 equal-width bins on [0, 1]
SMALL_LESION_MM3 = 10.0  # the evaluation's small-lesion threshold (lesion_wise's default)
Metrics = dict[str, float | None]


@dataclass(frozen=True)
class CaseTable:
    """Per-case columns of one evaluation as tensors (N cases)."""

    task: str
    class_names: tuple[str, ...]
    exam_ids: tuple[str, ...]
    utility: Tensor  # (N,) float64
    n_admitted: Tensor  # (N,) int64
    n_flipped: Tensor  # (N,) int64
    probs: Tensor | None = None  # (N, C) float64, classification
    labels: Tensor | None = None  # (N,) int64 or (N, C) float64 with NaN = unlabelled
    seg: dict[str, Tensor] | None = None  # segmentation columns, (N,) float64 each

    @property
    def n(self) -> int:
        return int(self.utility.numel())


SEG_COLUMNS = ("dice", "lesion_dice", "hd95_mm", "small_lesions", "small_detected", "true_volume_mm3", "pred_volume_mm3")


def case_table(task: str, class_names: Sequence[str], rows: Iterable[dict[str, Any]]) -> CaseTable:
    """Columns of the stored per-case rows (in the store's order). Raises ValueError if empty."""
    rows = list(rows)
    if not rows:
        raise ValueError("no evaluated case to compute metrics from")
    f64 = torch.float64
    common = {
        "exam_ids": tuple(str(r["exam_id"]) for r in rows),
        "utility": torch.tensor([float(r["utility"]) for r in rows], dtype=f64),
        "n_admitted": torch.tensor([int(r["n_admitted"]) for r in rows], dtype=torch.long),
        "n_flipped": torch.tensor([int(r["n_flipped"]) for r in rows], dtype=torch.long),
    }
    names = tuple(class_names)
    if task == "segmentation":
        seg = {c: torch.tensor([float(r[c]) for r in rows], dtype=f64) for c in SEG_COLUMNS}
        return CaseTable(task, names, seg=seg, **common)
    probs = torch.tensor([[float(r[f"prob_{n}"]) for n in names] for r in rows], dtype=f64)
    if task == "multilabel":
        labels = torch.tensor([[float("nan") if v is None else float(v) for v in r["label"]] for r in rows], dtype=f64)
    else:
        labels = torch.tensor([int(r["label"]) for r in rows], dtype=torch.long)
    return CaseTable(task, names, probs=probs, labels=labels, **common)


def _percentile10(u: Tensor) -> float:
    """The 10th percentile of a non-empty, finite per-case column."""
    return float(percentile(u, 10.0))


Wanted = frozenset[str] | None  # the metrics to compute (None: every one)


def _keep(wanted: Wanted, out: Metrics) -> Metrics:
    return out if wanted is None else {k: v for k, v in out.items() if k in wanted}


def _neighbourhood(t: CaseTable, idx: Tensor, why: Reasons, wanted: Wanted = None) -> Metrics:
    if wanted is not None:  # the utility's 10th percentile alone is selectable
        u = t.utility[idx]
        return _keep(wanted, {"utility_p10": why.compute(("utility_p10",), unless(
            non_finite_reason(u, "utility"), "utility p10", lambda: _percentile10(u)))})
    adm, flip = t.n_admitted[idx], t.n_flipped[idx]
    total = int(adm.sum())
    with_cf = adm > 0
    u = t.utility[idx]
    none = f"the gate admitted no counterfactual of any of the {idx.numel()} cases"
    util_problem = non_finite_reason(u, "utility")
    return {
        "agreement": why.compute(("agreement",), lambda: ratio(total - int(flip.sum()), total, "agreement", none)),
        "flip_rate": why.compute(("flip_rate",), lambda: ratio(
            int((flip[with_cf] > 0).sum()), int(with_cf.sum()), "the flip rate", none)),
        "utility_mean": why.compute(("utility_mean",), lambda: cohort_mean(u, "utility")),
        "utility_p10": why.compute(("utility_p10",), unless(util_problem, "utility p10", lambda: _percentile10(u))),
    }


def _macro_auroc(p: Tensor, y: Tensor, names: list[str], problem: str | None) -> MacroResult:
    """Macro AUROC, or every class undefined for ``problem``."""
    if problem is None:
        return macro_auroc(p, y, names)
    return MacroResult.all_undefined(names, problem)


def _classification(t: CaseTable, idx: Tensor, why: Reasons, wanted: Wanted = None) -> Metrics:
    p, y = t.probs[idx], t.labels[idx]  # type: ignore[index]
    names = list(t.class_names)
    problem = probability_problem(p)

    def want(key: str) -> bool:
        return wanted is None or key in wanted

    out: Metrics = {}
    if want("auroc_macro"):
        roc = _macro_auroc(p, y, names, problem)
        out["auroc_macro"] = why.keep(("auroc_macro",), roc.value, roc.reason)
    if t.task == "multilabel":
        if wanted is None:
            for name in names:
                out[f"auroc[{name}]"] = why.keep((f"auroc[{name}]",), roc.per_class[name], roc.reasons.get(name))
        if want("ece"):
            out["ece"] = why.compute(("ece",), unless(problem, "ECE", lambda: multilabel_ece(p, y, n_bins=ECE_BINS)))
    else:
        if want("ece"):
            out["ece"] = why.compute(("ece",), unless(problem, "ECE", lambda: expected_calibration_error(
                p, y, n_bins=ECE_BINS, mode="top_label")))
        if want("accuracy"):
            out["accuracy"] = why.compute(("accuracy",), unless(
                problem, "accuracy", lambda: cohort_mean((p.argmax(1) == y).double(), "accuracy")))
        if len(names) > 2 and want("referable_auroc"):  # classes with index >= 2 against the rest (the summary's)
            out["referable_auroc"] = why.compute(("referable_auroc",), unless(
                problem, "referable AUROC", lambda: auroc(p[:, 2:].sum(1), (y >= 2).double())))
    if want("brier"):
        out["brier"] = why.compute(("brier",), unless(problem, "Brier score", lambda: brier_score(p, y)))
    return out


def _segmentation(t: CaseTable, idx: Tensor, why: Reasons) -> Metrics:
    s = {k: v[idx] for k, v in t.seg.items()}  # type: ignore[union-attr]
    small = float(s["small_lesions"].sum())
    no_small = f"the cohort has no small lesion (volume < {SMALL_LESION_MM3:g} mm³)"
    volumes = torch.stack([s["true_volume_mm3"], s["pred_volume_mm3"]], 1)
    return {
        "lesion_dice": why.compute(("lesion_dice",), lambda: cohort_mean(s["lesion_dice"], "lesion-wise Dice")),
        "dice": why.compute(("dice",), lambda: cohort_mean(s["dice"], "Dice")),
        "small_lesion_recall": why.compute(("small_lesion_recall",), lambda: ratio(
            float(s["small_detected"].sum()), small, "small-lesion recall", no_small)),
        "hd95_mm": why.compute(("hd95_mm",), lambda: cohort_mean(s["hd95_mm"], "HD95")),
        "volume_slope": why.compute(("volume_slope",), unless(
            non_finite_reason(volumes, "lesion volume"), "the volume calibration slope",
            lambda: volume_calibration_slope(s["pred_volume_mm3"], s["true_volume_mm3"])[0])),
    }


def _metrics(t: CaseTable, idx: Tensor, why: Reasons, wanted: Wanted = None) -> Metrics:
    """The values of every metric (or of ``wanted``) on cases ``idx``; reasons for the undefined ones into ``why``."""
    with one_thread():
        if t.task == "segmentation":
            task_metrics = _keep(wanted, _segmentation(t, idx, why))
        else:
            task_metrics = _classification(t, idx, why, wanted)
        return {**task_metrics, **_neighbourhood(t, idx, why, wanted)}


SELECTABLE = frozenset({"auroc_macro", "referable_auroc", "ece", "utility_p10", "lesion_dice", "dice"})


def selected_metrics(t: CaseTable, idx: Tensor, keys: Iterable[str]) -> Metrics:
    """Only the metrics ``keys`` on cases ``idx`` (None where undefined): what a bootstrap of a few
    metrics needs, at a fraction of :func:`table_metrics`'s cost. Raises ValueError for a key
    outside :data:`SELECTABLE`."""
    wanted = frozenset(keys)
    if not wanted <= SELECTABLE:
        raise ValueError(f"selected_metrics: {sorted(wanted - SELECTABLE)} not selectable (choose from {sorted(SELECTABLE)})")
    return _metrics(t, idx, Reasons(), wanted)


def table_metrics(t: CaseTable, idx: Tensor | None = None) -> dict[str, Any]:
    """Every metric of the table on cases ``idx`` (all cases when None), undefined ones None with
    their reasons under ``"undefined"``."""
    why = Reasons()
    values = _metrics(t, torch.arange(t.n) if idx is None else idx, why)
    return {**values, UNDEFINED_KEY: why.to_dict()}


def bootstrap_intervals(
    t: CaseTable, generator: torch.Generator, n_boot: int = 200, ci: float = 0.95
) -> dict[str, Any]:
    """Percentile-bootstrap ``(lo, hi)`` of every metric; None where fewer than 2 replicates define
    it, with the reason under ``"undefined"``."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    if not 0.0 < ci < 1.0:
        raise ValueError(f"ci must be in (0, 1), got {ci}")
    reps: dict[str, list[float]] = {}
    with one_thread():
        for _ in range(n_boot):
            idx = torch.randint(0, t.n, (t.n,), generator=generator)
            for key, value in _metrics(t, idx, Reasons()).items():
                if value is not None and value == value:  # defined and not NaN
                    reps.setdefault(key, []).append(float(value))
    alpha = (1.0 - ci) / 2.0
    out: dict[str, Any] = {}
    why = Reasons()
    for key in _metrics(t, torch.arange(t.n), Reasons()):
        values = reps.get(key, [])
        if t.n < 2:
            out[key] = None
            why.add((key,), f"a bootstrap CI needs at least two cases ({t.n} evaluated)")
            continue
        if len(values) < 2:
            out[key] = None
            why.add((key,), f"defined in {len(values)} of {n_boot} bootstrap replicates (a CI needs at least 2)")
            continue
        v = torch.tensor(values, dtype=torch.float64)
        lo, hi = torch.quantile(v, torch.tensor([alpha, 1.0 - alpha], dtype=torch.float64)).tolist()
        out[key] = (lo, hi)
    out[UNDEFINED_KEY] = why.to_dict()
    return out


def prediction_flips(clean: Iterable[dict[str, Any]], shifted: Iterable[dict[str, Any]]) -> float | None:
    """Share of exams whose predicted class (multiclass) or positive set (multilabel) differs
    between the clean and the shifted image; None when the rows carry no prediction
    (segmentation) or share no exam."""
    before = {r["exam_id"]: r.get("pred") for r in clean}
    pairs = [(before[r["exam_id"]], r.get("pred")) for r in shifted if r["exam_id"] in before]
    pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
    if not pairs:
        return None
    return sum(1 for a, b in pairs if a != b) / len(pairs)
