"""Aggregate metrics of one modality from its per-case rows (so merged or resumed tables give
the same numbers as one uninterrupted run)."""

from __future__ import annotations

import bisect
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from c3_core.batch import Batch
from c3_core.metrics.classification import (
    brier_score,
    expected_calibration_error,
    macro_auprc,
    macro_auroc,
    multilabel_ece,
    quadratic_weighted_kappa,
    reliability_curve,
)
from c3_core.metrics.errors import UndefinedMetricError
from c3_core.metrics.segmentation import dice, hausdorff95, iou, lesion_wise, volume_calibration_slope
from c3_core.metrics.utility_stats import utility_summary

if TYPE_CHECKING:
    from c3_core.evaluation.runner import ModalityRun

ECE_BINS = 15


def segmentation_case_metrics(probs: Tensor, batch: Batch, threshold: float) -> list[dict[str, Any]]:
    """Volume-wise and lesion-wise metrics of each original case (masks on the CPU)."""
    pred = (probs[:, :1] >= threshold).cpu()
    true = (batch.mask[:, :1] >= 0.5).cpu()  # type: ignore[index]
    d = dice(pred, true)
    j = iou(pred, true)
    rows = []
    for i in range(batch.size):
        sp = batch.spacing[i]
        hd = hausdorff95(pred[i : i + 1], true[i : i + 1], sp)
        lw = lesion_wise(pred[i : i + 1], true[i : i + 1], sp)[0]
        voxel = float(torch.tensor(sp).prod())
        rows.append(
            {
                "dice": float(d[i]),
                "iou": float(j[i]),
                "hd95_mm": float(hd[0]),
                "lesion_tp": lw.tp,
                "lesion_fn": lw.fn,
                "lesion_fp": lw.fp,
                "lesion_f1": lw.f1,
                "lesion_dice": lw.lesion_dice,
                "small_lesions": lw.small_total,
                "small_detected": lw.small_detected,
                "true_volume_mm3": float(true[i].sum()) * voxel,
                "pred_volume_mm3": float(pred[i].sum()) * voxel,
            }
        )
    return rows


def _safe(fn, *args, **kwargs) -> float | None:  # noqa: ANN001
    try:
        return float(fn(*args, **kwargs))
    except UndefinedMetricError:
        return None


Outcome = tuple[str, float, bool, float, bool, str]  # operator, severity, admitted, score_drop, flipped, reason


def _severity_response(outcomes: Callable[[], Iterable[Outcome]]) -> dict[str, list[dict[str, float]]]:
    """Per operator: mean score drop, flip and admission rate per severity level (or quintile).

    Two streaming passes over the counterfactuals (severities first, to place the bin edges; then
    the sums per bin), so memory holds one float per counterfactual, not its row.
    """
    sev_by_op: dict[str, array] = defaultdict(lambda: array("d"))
    for op, sev, *_ in outcomes():
        sev_by_op[op].append(sev)
    # bin of a severity: its level when an operator has at most 6 distinct levels, else its
    # quintile (inner quantile edges, right-closed bins)
    edges: dict[str, tuple[list[float], bool]] = {}
    for op, values in sev_by_op.items():
        sev = torch.tensor(values, dtype=torch.float64)
        levels = torch.unique(sev)
        if len(levels) > 6:
            edges[op] = (torch.quantile(sev, torch.linspace(0, 1, 6, dtype=torch.float64))[1:-1].tolist(), True)
        else:
            edges[op] = (levels.tolist(), False)
    # per operator and bin: n, severity sum, admitted, score-drop sum, flips (over admitted)
    acc: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0, 0.0, 0, 0.0, 0]))
    for op, sev, admitted, drop, flipped, _reason in outcomes():
        e, quantiles = edges[op]
        b = bisect.bisect_right(e, sev) if quantiles else bisect.bisect_left(e, sev)
        a = acc[op][b]
        a[0] += 1
        a[1] += sev
        if admitted:
            a[2] += 1
            a[3] += drop
            a[4] += int(flipped)
    curves: dict[str, list[dict[str, float]]] = {}
    for op in sorted(acc):
        points = [
            {
                "severity": a[1] / a[0],
                "n": int(a[0]),
                "admitted_rate": a[2] / a[0],
                "mean_score_drop": a[3] / a[2] if a[2] else 0.0,
                "flip_rate": a[4] / a[2] if a[2] else 0.0,
            }
            for _, a in sorted(acc[op].items())
        ]
        curves[op] = sorted(points, key=lambda p: p["severity"])
    return curves


def _gate_stats(outcomes: Iterable[Outcome]) -> dict[str, Any]:
    reasons: dict[str, int] = defaultdict(int)
    n = admitted = 0
    for _op, _sev, adm, _drop, _flip, reason in outcomes:
        n += 1
        if adm:
            admitted += 1
        else:
            reasons[reason.split(" ")[0] if reason else "unspecified"] += 1
    return {"counterfactuals": n, "admitted": admitted, "admission_rate": admitted / n if n else 0.0, "rejections": dict(reasons)}


SEGMENTATION_COLUMNS = ("dice", "iou", "lesion_dice", "lesion_f1", "hd95_mm", "lesion_tp", "lesion_fn", "lesion_fp",
                        "small_lesions", "small_detected", "true_volume_mm3", "pred_volume_mm3")


def summarise(
    run: ModalityRun, cases: Iterable[dict[str, Any]], outcomes: Callable[[], Iterable[Outcome]], seed: int
) -> dict[str, Any]:
    """The modality summary: task metrics on originals plus neighbourhood robustness metrics.

    Computed from the per-case table alone, streamed once (``cases``, in dataset order) plus
    two passes over the counterfactual outcomes, so a merged (sharded) or resumed table gives
    exactly the numbers of one uninterrupted run, and memory holds a few numbers per case.
    """
    g = torch.Generator().manual_seed(seed)
    columns: dict[str, list[Any]] = defaultdict(list)
    wanted = ["utility", "score", "n_admitted", "n_flipped"]
    if run.task == "segmentation":
        wanted += list(SEGMENTATION_COLUMNS)
    else:
        wanted += [f"prob_{n}" for n in run.class_names] + ["label"]
    for c in cases:
        for key in wanted:
            columns[key].append(c[key])
    n = len(columns["utility"])
    util = torch.tensor(columns["utility"], dtype=torch.float64)
    scores = torch.tensor(columns["score"], dtype=torch.float64)
    admitted = sum(columns["n_admitted"])
    flipped = sum(columns["n_flipped"])
    with_cf = [f for a, f in zip(columns["n_admitted"], columns["n_flipped"]) if a > 0]
    out: dict[str, Any] = {
        "modality": run.modality,
        "task": run.task,
        "dataset": run.dataset,
        "model": run.model,
        "n_cases": n,
        "k": run.spec.k,
        "gated_by": run.gated_by,
        "score_mean": float(scores.mean()),
        "utility": utility_summary(util, generator=g),
        "neighbourhood_agreement": (admitted - flipped) / admitted if admitted else None,
        "flip_rate": sum(1 for f in with_cf if f > 0) / len(with_cf) if with_cf else None,
        "gate": _gate_stats(outcomes()),
        "severity_response": _severity_response(outcomes),
        "conventions": {
            "utility": "U(x) = min of the case score over the original and its admitted counterfactuals",
            "flip_rate": "share of cases with >= 1 admitted counterfactual whose prediction differs from the original's",
            "agreement": "share of admitted counterfactuals whose prediction equals the original's",
        },
    }
    if run.task == "segmentation":
        out.update(_segmentation_summary(columns, n))
    else:
        probs, labels = _probabilities_and_labels(run, columns)
        out.update(_classification_summary(run, probs, labels))
    return out


def _probabilities_and_labels(run: ModalityRun, columns: dict[str, list[Any]]) -> tuple[Tensor, Tensor]:
    """Original-image probabilities (N, C) and labels from the ``prob_*`` and ``label`` columns.

    Multi-label labels missing in the source (None) become NaN, which the metrics skip.
    """
    probs = torch.tensor([columns[f"prob_{n}"] for n in run.class_names], dtype=torch.float64).T.contiguous()
    if run.task == "multilabel":
        labels = torch.tensor(
            [[float("nan") if v is None else float(v) for v in row] for row in columns["label"]], dtype=torch.float64
        )
    else:
        labels = torch.tensor([int(v) for v in columns["label"]], dtype=torch.long)
    return probs, labels


def _classification_summary(run: ModalityRun, probs: Tensor, labels: Tensor) -> dict[str, Any]:
    names = list(run.class_names)
    out: dict[str, Any] = {}
    if run.task == "multilabel":
        y = labels.double()
        roc = macro_auroc(probs, y, names)
        pr = macro_auprc(probs, y, names)
        out["ece"] = multilabel_ece(probs, y, n_bins=ECE_BINS)
        out["reliability"] = {
            n: reliability_curve(probs[:, c], y[:, c], n_bins=ECE_BINS, mode="binary") for c, n in enumerate(names)
        }
    else:
        y = labels.long()
        roc = macro_auroc(probs, y, names)
        pr = macro_auprc(probs, y, names)
        out["ece"] = expected_calibration_error(probs, y, n_bins=ECE_BINS, mode="top_label")
        out["reliability"] = {"top_label": reliability_curve(probs, y, n_bins=ECE_BINS, mode="top_label")}
        out["accuracy"] = float((probs.argmax(1) == y).double().mean())
        out["quadratic_weighted_kappa"] = _safe(quadratic_weighted_kappa, probs.argmax(1), y, len(names))
        if len(names) > 2:
            positive = [c for c in range(len(names)) if c >= 2]
            p_pos = probs[:, positive].sum(1)
            y_pos = (y >= 2).double()
            from c3_core.metrics.classification import auroc

            out["referable_auroc"] = _safe(auroc, p_pos, y_pos)
            out["referable_definition"] = f"classes {[names[c] for c in positive]} (index >= 2) vs the rest"
    out["auroc_macro"] = roc.value
    out["auroc"] = roc.per_class
    out["auprc_macro"] = pr.value
    out["auprc"] = pr.per_class
    out["brier"] = float(brier_score(probs, labels.double() if run.task == "multilabel" else labels.long()))
    out["ece_binning"] = f"{ECE_BINS} equal-width bins on [0, 1]"
    return out


def _segmentation_summary(columns: dict[str, list[Any]], n: int) -> dict[str, Any]:
    def mean(key: str) -> float:
        return sum(float(v) for v in columns[key]) / n

    tp, fn, fp = sum(columns["lesion_tp"]), sum(columns["lesion_fn"]), sum(columns["lesion_fp"])
    small, small_hit = sum(columns["small_lesions"]), sum(columns["small_detected"])
    true_v = torch.tensor(columns["true_volume_mm3"], dtype=torch.float64)
    pred_v = torch.tensor(columns["pred_volume_mm3"], dtype=torch.float64)
    slope, intercept = volume_calibration_slope(pred_v, true_v) if n > 1 else (None, None)
    return {
        "dice_volume_mean": mean("dice"),
        "iou_mean": mean("iou"),
        "lesion_dice_mean": mean("lesion_dice"),
        "lesion_f1_mean": mean("lesion_f1"),
        "lesion_f1_pooled": 2 * tp / (2 * tp + fn + fp) if (tp + fn + fp) else 1.0,
        "small_lesion_recall": small_hit / small if small else None,
        "small_lesion_count": small,
        "hd95_mm_mean": mean("hd95_mm"),
        "volume_slope": None if slope is None else float(slope),
        "volume_intercept_mm3": None if intercept is None else float(intercept),
    }
