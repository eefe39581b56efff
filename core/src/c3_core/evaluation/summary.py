"""Aggregate metrics of one modality from its per-case rows (so merged or resumed tables give
the same numbers as one uninterrupted run)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
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


def _severity_response(cf_rows: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, float]]]:
    """Per operator: mean score drop, flip and admission rate per severity level (or quintile)."""
    by_op: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in cf_rows:
        by_op[r["operator"]].append(r)
    curves: dict[str, list[dict[str, float]]] = {}
    for op, rows in sorted(by_op.items()):
        sev = torch.tensor([float(r["severity"]) for r in rows], dtype=torch.float64)
        levels = torch.unique(sev)
        if len(levels) > 6:
            edges = torch.quantile(sev, torch.linspace(0, 1, 6, dtype=torch.float64))
            bins = torch.bucketize(sev, edges[1:-1], right=True)
        else:
            bins = torch.bucketize(sev, levels)
        points = []
        for b in torch.unique(bins).tolist():
            sel = [r for r, keep in zip(rows, (bins == b).tolist()) if keep]
            adm = [r for r in sel if r["admitted"]]
            points.append(
                {
                    "severity": float(sev[bins == b].mean()),
                    "n": len(sel),
                    "admitted_rate": len(adm) / len(sel),
                    "mean_score_drop": sum(r["score_drop"] for r in adm) / len(adm) if adm else 0.0,
                    "flip_rate": sum(r["flipped"] for r in adm) / len(adm) if adm else 0.0,
                }
            )
        curves[op] = sorted(points, key=lambda p: p["severity"])
    return curves


def _gate_stats(cf_rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    reasons: dict[str, int] = defaultdict(int)
    for r in cf_rows:
        if not r["admitted"]:
            reasons[r["reason"].split(" ")[0] if r["reason"] else "unspecified"] += 1
    n = len(cf_rows)
    admitted = sum(1 for r in cf_rows if r["admitted"])
    return {"counterfactuals": n, "admitted": admitted, "admission_rate": admitted / n if n else 0.0, "rejections": dict(reasons)}


def summarise(run: ModalityRun, seed: int) -> dict[str, Any]:
    """The modality summary: task metrics on originals plus neighbourhood robustness metrics.

    Computed from the per-case rows alone (``run.cases``, ``run.counterfactuals``), so a merged
    (sharded) or resumed table gives exactly the numbers of one uninterrupted run.
    """
    cases = run.cases
    g = torch.Generator().manual_seed(seed)
    util = torch.tensor([c["utility"] for c in cases], dtype=torch.float64)
    scores = torch.tensor([c["score"] for c in cases], dtype=torch.float64)
    admitted = sum(c["n_admitted"] for c in cases)
    flipped = sum(c["n_flipped"] for c in cases)
    with_cf = [c for c in cases if c["n_admitted"] > 0]
    out: dict[str, Any] = {
        "modality": run.modality,
        "task": run.task,
        "dataset": run.dataset,
        "model": run.model,
        "n_cases": len(cases),
        "k": run.spec.k,
        "gated_by": run.gated_by,
        "score_mean": float(scores.mean()),
        "utility": utility_summary(util, generator=g),
        "neighbourhood_agreement": (admitted - flipped) / admitted if admitted else None,
        "flip_rate": sum(1 for c in with_cf if c["n_flipped"] > 0) / len(with_cf) if with_cf else None,
        "gate": _gate_stats(run.counterfactuals),
        "severity_response": _severity_response(run.counterfactuals),
        "conventions": {
            "utility": "U(x) = min of the case score over the original and its admitted counterfactuals",
            "flip_rate": "share of cases with >= 1 admitted counterfactual whose prediction differs from the original's",
            "agreement": "share of admitted counterfactuals whose prediction equals the original's",
        },
    }
    if run.task == "segmentation":
        out.update(_segmentation_summary(cases))
    else:
        probs, labels = _probabilities_and_labels(run, cases)
        out.update(_classification_summary(run, probs, labels))
    return out


def _probabilities_and_labels(run: ModalityRun, cases: Sequence[dict[str, Any]]) -> tuple[Tensor, Tensor]:
    """Original-image probabilities (N, C) and labels from the case rows' ``prob_*`` and ``label``.

    Multi-label labels missing in the source (None) become NaN, which the metrics skip.
    """
    probs = torch.tensor([[float(c[f"prob_{n}"]) for n in run.class_names] for c in cases], dtype=torch.float64)
    if run.task == "multilabel":
        labels = torch.tensor(
            [[float("nan") if v is None else float(v) for v in c["label"]] for c in cases], dtype=torch.float64
        )
    else:
        labels = torch.tensor([int(c["label"]) for c in cases], dtype=torch.long)
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


def _segmentation_summary(cases: Sequence[dict[str, Any]]) -> dict[str, Any]:
    def mean(key: str) -> float:
        return sum(float(c[key]) for c in cases) / len(cases)

    tp = sum(c["lesion_tp"] for c in cases)
    fn = sum(c["lesion_fn"] for c in cases)
    fp = sum(c["lesion_fp"] for c in cases)
    small = sum(c["small_lesions"] for c in cases)
    small_hit = sum(c["small_detected"] for c in cases)
    true_v = torch.tensor([c["true_volume_mm3"] for c in cases], dtype=torch.float64)
    pred_v = torch.tensor([c["pred_volume_mm3"] for c in cases], dtype=torch.float64)
    slope, intercept = volume_calibration_slope(pred_v, true_v) if len(cases) > 1 else (None, None)
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
