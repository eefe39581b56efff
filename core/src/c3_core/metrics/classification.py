"""Discrimination and calibration metrics for single-label, graded and multi-label tasks.

Inputs are torch tensors of probabilities; targets are class indices ``(N,)`` or multi-label
``(N, C)`` in {0, 1, NaN} (NaN = uncertain/ignored, masked per class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from c3_core.metrics.errors import UndefinedMetricError


def _binary_inputs(scores: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    s = scores.detach().double().flatten()
    t = targets.detach().double().flatten()
    if s.shape != t.shape:
        raise ValueError(f"scores {tuple(s.shape)} and targets {tuple(t.shape)} differ in length")
    keep = torch.isfinite(t)
    s, t = s[keep], t[keep]
    if not bool(((t == 0) | (t == 1)).all()):
        raise ValueError("binary targets must be 0 or 1 (NaN = ignore)")
    if t.numel() == 0 or bool((t == t[0]).all()):
        raise UndefinedMetricError("AUROC/AUPRC are undefined when only one class is present")
    return s, t


def auroc(scores: Tensor, targets: Tensor) -> float:
    """Area under the ROC curve, ties counted as 1/2 (the Mann–Whitney statistic)."""
    s, t = _binary_inputs(scores, targets)
    order = torch.argsort(s)
    ranks = torch.empty_like(s)
    sorted_s = s[order]
    # average ranks over ties
    _, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()
    avg = ends - (counts.double() - 1) / 2
    ranks[order] = avg[inverse]
    n_pos = t.sum()
    n_neg = t.numel() - n_pos
    return float((ranks[t == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auprc(scores: Tensor, targets: Tensor) -> float:
    """Average precision: sum over thresholds of (R_n − R_{n−1}) · P_n (no interpolation)."""
    s, t = _binary_inputs(scores, targets)
    order = torch.argsort(s, descending=True, stable=True)
    s, t = s[order], t[order]
    tp = torch.cumsum(t, 0)
    fp = torch.cumsum(1 - t, 0)
    last = torch.ones_like(s, dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]  # one point per distinct threshold
    tp, fp = tp[last], fp[last]
    precision = tp / (tp + fp)
    recall = tp / t.sum()
    prev = torch.cat([torch.zeros(1, dtype=recall.dtype), recall[:-1]])
    return float(((recall - prev) * precision).sum())


@dataclass(frozen=True)
class MacroResult:
    """A macro average over classes where the metric is defined, with per-class values."""

    value: float | None
    per_class: dict[str, float | None]
    undefined: tuple[str, ...]


def _one_vs_rest(probs: Tensor, targets: Tensor) -> Tensor:
    if targets.ndim == 1:
        return torch.nn.functional.one_hot(targets.long(), probs.shape[1]).double()
    return targets.double()


def _macro(metric, probs: Tensor, targets: Tensor, class_names: Sequence[str] | None) -> MacroResult:  # noqa: ANN001
    y = _one_vs_rest(probs, targets)
    names = list(class_names) if class_names is not None else [str(c) for c in range(probs.shape[1])]
    per: dict[str, float | None] = {}
    for c, name in enumerate(names):
        try:
            per[name] = metric(probs[:, c], y[:, c])
        except UndefinedMetricError:
            per[name] = None
    defined = [v for v in per.values() if v is not None]
    return MacroResult(
        value=sum(defined) / len(defined) if defined else None,
        per_class=per,
        undefined=tuple(n for n, v in per.items() if v is None),
    )


def macro_auroc(probs: Tensor, targets: Tensor, class_names: Sequence[str] | None = None) -> MacroResult:
    """One-vs-rest AUROC per class (multi-label: per finding) and their mean."""
    return _macro(auroc, probs, targets, class_names)


def macro_auprc(probs: Tensor, targets: Tensor, class_names: Sequence[str] | None = None) -> MacroResult:
    """One-vs-rest average precision per class and their mean."""
    return _macro(auprc, probs, targets, class_names)


def _bin_index(conf: Tensor, n_bins: int) -> Tensor:
    """Bins (0, 1/n], (1/n, 2/n], …; confidence 0 falls in the first bin."""
    return (torch.ceil(conf * n_bins).long() - 1).clamp(0, n_bins - 1)


def _conf_acc(probs: Tensor, targets: Tensor, mode: str) -> tuple[Tensor, Tensor]:
    if mode == "top_label":
        conf, pred = probs.double().max(1)
        return conf, (pred == targets.long()).double()
    if mode == "binary":
        p, t = probs.double().flatten(), targets.double().flatten()
        keep = torch.isfinite(t)
        return p[keep], t[keep]
    raise ValueError(f"mode must be 'top_label' or 'binary', got {mode!r}")


def reliability_curve(probs: Tensor, targets: Tensor, n_bins: int = 15, mode: Literal["top_label", "binary"] = "top_label") -> list[dict[str, float]]:
    """Per non-empty bin: count, mean confidence, accuracy (observed frequency), bin edges."""
    conf, acc = _conf_acc(probs, targets, mode)
    idx = _bin_index(conf, n_bins)
    out = []
    for b in range(n_bins):
        sel = idx == b
        n = int(sel.sum())
        if n:
            out.append({"lower": b / n_bins, "upper": (b + 1) / n_bins, "count": n,
                        "confidence": float(conf[sel].mean()), "accuracy": float(acc[sel].mean())})
    return out


def expected_calibration_error(probs: Tensor, targets: Tensor, n_bins: int = 15, mode: Literal["top_label", "binary"] = "top_label") -> float:
    """ECE = Σ_b (n_b / N) |acc_b − conf_b| over ``n_bins`` equal-width bins (0, 1/n], …, 0 in bin 1.

    ``top_label``: confidence = max probability, accuracy = argmax == target.
    ``binary``: confidence = p(positive), accuracy = frequency of target 1 in the bin.
    """
    conf, acc = _conf_acc(probs, targets, mode)
    if conf.numel() == 0:
        raise UndefinedMetricError("ECE of zero cases")
    idx = _bin_index(conf, n_bins)
    sum_conf = torch.bincount(idx, weights=conf, minlength=n_bins)
    sum_acc = torch.bincount(idx, weights=acc, minlength=n_bins)
    return float(((sum_acc - sum_conf).abs()).sum() / conf.numel())


def multilabel_ece(probs: Tensor, targets: Tensor, n_bins: int = 15) -> float:
    """Mean over findings of the binary ECE (findings with no labelled case are skipped)."""
    values = []
    for c in range(probs.shape[1]):
        try:
            values.append(expected_calibration_error(probs[:, c], targets[:, c], n_bins, "binary"))
        except UndefinedMetricError:
            continue
    if not values:
        raise UndefinedMetricError("no finding has a labelled case")
    return sum(values) / len(values)


def brier_score(probs: Tensor, targets: Tensor) -> float:
    """Multiclass (targets (N,)): mean over cases of Σ_c (p_c − onehot_c)².
    Binary / multi-label (targets shaped like probs): mean of (p − y)² over labelled entries."""
    p = probs.double()
    if targets.ndim == 1 and p.ndim == 2:
        onehot = torch.nn.functional.one_hot(targets.long(), p.shape[1]).double()
        return float(((p - onehot) ** 2).sum(1).mean())
    t = targets.double()
    keep = torch.isfinite(t)
    return float(((p[keep] - t[keep]) ** 2).mean())


def quadratic_weighted_kappa(pred_grades: Tensor, true_grades: Tensor, n_grades: int) -> float:
    """Cohen's kappa with quadratic weights w_ij = (i − j)² / (n − 1)²."""
    a, b = pred_grades.long().flatten(), true_grades.long().flatten()
    if a.shape != b.shape or a.numel() == 0:
        raise ValueError("pred and true grades must be non-empty and the same length")
    if bool((a < 0).any() | (a >= n_grades).any() | (b < 0).any() | (b >= n_grades).any()):
        raise ValueError(f"grades must be in 0..{n_grades - 1}")
    observed = torch.zeros((n_grades, n_grades), dtype=torch.float64)
    observed.index_put_((a, b), torch.ones_like(a, dtype=torch.float64), accumulate=True)
    expected = torch.outer(observed.sum(1), observed.sum(0)) / a.numel()
    i = torch.arange(n_grades, dtype=torch.float64)
    w = (i[:, None] - i[None, :]) ** 2 / max(n_grades - 1, 1) ** 2
    denom = (w * expected).sum()
    if float(denom) == 0.0:
        raise UndefinedMetricError("kappa is undefined when both raters use a single grade")
    return float(1 - (w * observed).sum() / denom)
