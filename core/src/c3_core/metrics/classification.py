"""Discrimination and calibration metrics for binary, multiclass, graded and multi-label tasks.

Conventions
-----------
* Scores/probabilities are torch tensors; everything is computed in float64 and returned as a
  Python ``float`` (or a small dataclass of floats).
* Targets are ``{0, 1}`` for binary metrics, class indices ``(N,)`` for multiclass metrics, or
  multi-label indicators ``(N, C)`` in ``{0, 1, NaN}`` where NaN means "uncertain / not labelled"
  and is masked out per finding.
* A metric that is undefined for its input raises :class:`UndefinedMetricError`; nothing returns a
  silent NaN.
* Calibration uses ``n_bins`` equal-width bins on [0, 1] that are closed on the right:
  bin 0 = [0, 1/n], bin b = (b/n, (b+1)/n] for b >= 1. A confidence of exactly 0 falls in the
  first bin and exactly 1 in the last. (torchmetrics uses left-closed bins [b/n, (b+1)/n) and a
  separate bin for confidence 1.0; the two agree unless a confidence sits exactly on an edge.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from c3_core.metrics.errors import UndefinedMetricError

CalibrationMode = Literal["top_label", "binary"]

__all__ = [
    "CalibrationMode",
    "MacroResult",
    "auprc",
    "auroc",
    "brier_score",
    "expected_calibration_error",
    "macro_auprc",
    "macro_auroc",
    "multilabel_ece",
    "per_class_auprc",
    "per_class_auroc",
    "quadratic_weighted_kappa",
    "reliability_curve",
]


# --------------------------------------------------------------------------------------------
# binary ranking metrics
# --------------------------------------------------------------------------------------------


def _check_finite(values: Tensor, what: str) -> None:
    """ValueError unless every entry of ``values`` is finite."""
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"{what} must be finite (NaN/inf found)")


def _check_probabilities(p: Tensor) -> None:
    """ValueError unless every entry is a finite probability in [0, 1]."""
    _check_finite(p, "probabilities")
    if not bool(((p >= 0) & (p <= 1)).all()):
        raise ValueError("probabilities must lie in [0, 1] (apply softmax/sigmoid first)")


def _check_binary_targets(t: Tensor) -> None:
    """ValueError unless every (labelled) target is 0 or 1."""
    if not bool(((t == 0) | (t == 1)).all()):
        raise ValueError("binary targets must be 0 or 1 (NaN = ignore)")


def _binary_inputs(scores: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Flatten to float64 on the CPU-or-device of the input, drop NaN targets, validate."""
    s = scores.detach().flatten().double()
    t = targets.detach().flatten().double()
    if s.shape != t.shape:
        raise ValueError(f"scores ({s.numel()}) and targets ({t.numel()}) differ in length")
    keep = ~torch.isnan(t)
    s, t = s[keep], t[keep]
    _check_finite(s, "scores")
    _check_binary_targets(t)
    return s, t


def _one_class_reason(n_pos: float, n_neg: float) -> str:
    """Why a two-class metric is undefined for these class counts."""
    if n_pos + n_neg == 0:
        return "no case is labelled"
    return f"only one class is present ({int(n_pos)} positive, {int(n_neg)} negative)"


def auroc(scores: Tensor, targets: Tensor) -> float:
    """Exact area under the ROC curve of ``scores`` (N,) for ``targets`` (N,) in {0, 1}.

    Computed as the Mann–Whitney U statistic with mid-ranks, i.e. a tied (positive, negative)
    pair counts 1/2 — identical to the trapezoidal ROC area of ``sklearn.metrics.roc_auc_score``.
    NaN targets are ignored. Raises :class:`UndefinedMetricError` unless both classes are present.
    """
    s, t = _binary_inputs(scores, targets)
    n_pos = float(t.sum())
    n_neg = t.numel() - n_pos
    if n_pos == 0 or n_neg == 0:
        raise UndefinedMetricError.because("AUROC", _one_class_reason(n_pos, n_neg))
    sorted_s, order = torch.sort(s)
    _, inverse, counts = torch.unique_consecutive(sorted_s, return_inverse=True, return_counts=True)
    ends = torch.cumsum(counts, 0).double()  # 1-based rank of the last element of each tie group
    mid_rank = ends - (counts.double() - 1.0) / 2.0
    ranks = torch.empty_like(s)
    ranks[order] = mid_rank[inverse]
    u = float(ranks[t == 1].sum()) - n_pos * (n_pos + 1.0) / 2.0
    return u / (n_pos * n_neg)


def auprc(scores: Tensor, targets: Tensor) -> float:
    """Average precision AP = Σ_n (R_n − R_{n−1}) · P_n over distinct score thresholds.

    Same definition as ``sklearn.metrics.average_precision_score``: step-wise, no interpolation,
    tied scores form one threshold. NaN targets are ignored. Defined whenever at least one
    positive is present (all-positive input gives 1.0); with no positive it raises
    :class:`UndefinedMetricError` (sklearn would warn and return 0).
    """
    s, t = _binary_inputs(scores, targets)
    n_pos = float(t.sum())
    if n_pos == 0:
        reason = "no case is labelled" if t.numel() == 0 else f"there is no positive case ({t.numel()} negative)"
        raise UndefinedMetricError.because("AUPRC (average precision)", reason)
    s, order = torch.sort(s, descending=True, stable=True)
    t = t[order]
    tp = torch.cumsum(t, 0)
    fp = torch.cumsum(1.0 - t, 0)
    last_of_group = torch.ones_like(s, dtype=torch.bool)
    last_of_group[:-1] = s[1:] != s[:-1]  # evaluate once per distinct threshold
    tp, fp = tp[last_of_group], fp[last_of_group]
    precision = tp / (tp + fp)
    recall = tp / n_pos
    d_recall = torch.diff(recall, prepend=recall.new_zeros(1))
    return float((d_recall * precision).sum())


# --------------------------------------------------------------------------------------------
# per-class and macro averages
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MacroResult:
    """Macro average over the classes where the metric is defined.

    ``value`` is ``None`` only when the metric is undefined for every class; ``per_class`` maps
    each class name to its value (``None`` = undefined), ``undefined`` lists those names and
    ``reasons`` says why for each of them.
    """

    value: float | None
    per_class: dict[str, float | None]
    undefined: tuple[str, ...]
    reasons: dict[str, str] = field(default_factory=dict)

    @classmethod
    def all_undefined(cls, class_names: Sequence[str], reason: str) -> MacroResult:
        """Every class undefined for one ``reason`` (e.g. the model's probabilities are NaN)."""
        names = list(class_names)
        return cls(None, dict.fromkeys(names), tuple(names), dict.fromkeys(names, reason))

    @property
    def reason(self) -> str | None:
        """Why ``value`` is None (None while it is defined)."""
        if self.value is not None:
            return None
        if not self.per_class:
            return "there is no class"
        causes = "; ".join(f"{name}: {self.reasons.get(name, 'undefined')}" for name in self.undefined)
        return f"no class defines it ({causes})"


def _one_vs_rest(probs: Tensor, targets: Tensor) -> Tensor:
    """(N, C) float64 indicators from class indices (N,) or multi-label targets (N, C)."""
    if probs.ndim != 2:
        raise ValueError(f"probs must be (N, C), got shape {tuple(probs.shape)}")
    n, c = probs.shape
    if targets.ndim == 1:
        if targets.shape[0] != n:
            raise ValueError("probs and targets differ in the number of cases")
        idx = targets.long()
        if bool(((idx < 0) | (idx >= c)).any()):
            raise ValueError(f"class indices must be in 0..{c - 1}")
        return torch.nn.functional.one_hot(idx, c).double()
    if tuple(targets.shape) != (n, c):
        raise ValueError(f"multi-label targets must be {(n, c)}, got {tuple(targets.shape)}")
    return targets.double()


def _names(n_classes: int, class_names: Sequence[str] | None) -> list[str]:
    if class_names is None:
        return [str(c) for c in range(n_classes)]
    names = list(class_names)
    if len(names) != n_classes:
        raise ValueError(f"{len(names)} class names for {n_classes} classes")
    return names


def _per_class_with_reasons(
    metric: Callable[[Tensor, Tensor], float], probs: Tensor, targets: Tensor, class_names: Sequence[str] | None
) -> tuple[dict[str, float | None], dict[str, str]]:
    """Per class: the metric (None where undefined) and the reason of each undefined class."""
    y = _one_vs_rest(probs, targets)
    values: dict[str, float | None] = {}
    reasons: dict[str, str] = {}
    for c, name in enumerate(_names(probs.shape[1], class_names)):
        try:
            values[name] = metric(probs[:, c], y[:, c])
        except UndefinedMetricError as exc:
            values[name] = None
            reasons[name] = exc.reason
    return values, reasons


def _per_class(
    metric: Callable[[Tensor, Tensor], float], probs: Tensor, targets: Tensor, class_names: Sequence[str] | None
) -> dict[str, float | None]:
    return _per_class_with_reasons(metric, probs, targets, class_names)[0]


def _macro(per_class: dict[str, float | None], reasons: dict[str, str]) -> MacroResult:
    defined = [v for v in per_class.values() if v is not None]
    return MacroResult(
        value=sum(defined) / len(defined) if defined else None,
        per_class=per_class,
        undefined=tuple(n for n, v in per_class.items() if v is None),
        reasons=reasons,
    )


def per_class_auroc(
    probs: Tensor, targets: Tensor, class_names: Sequence[str] | None = None
) -> dict[str, float | None]:
    """One-vs-rest AUROC of each column of ``probs`` (N, C); ``None`` where undefined.

    ``targets``: class indices (N,) or multi-label (N, C) in {0, 1, NaN} (NaN rows are masked
    per class). ``class_names`` default to ``"0".."C-1"``.
    """
    return _per_class(auroc, probs, targets, class_names)


def per_class_auprc(
    probs: Tensor, targets: Tensor, class_names: Sequence[str] | None = None
) -> dict[str, float | None]:
    """One-vs-rest average precision of each class; ``None`` where undefined (no positive)."""
    return _per_class(auprc, probs, targets, class_names)


def macro_auroc(probs: Tensor, targets: Tensor, class_names: Sequence[str] | None = None) -> MacroResult:
    """Unweighted mean of :func:`per_class_auroc` over the classes where it is defined."""
    return _macro(*_per_class_with_reasons(auroc, probs, targets, class_names))


def macro_auprc(probs: Tensor, targets: Tensor, class_names: Sequence[str] | None = None) -> MacroResult:
    """Unweighted mean of :func:`per_class_auprc` over the classes where it is defined."""
    return _macro(*_per_class_with_reasons(auprc, probs, targets, class_names))


# --------------------------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------------------------


def _bin_index(conf: Tensor, n_bins: int) -> Tensor:
    """Right-closed equal-width bins: [0, 1/n] -> 0, (b/n, (b+1)/n] -> b."""
    if n_bins < 1:
        raise ValueError("n_bins must be >= 1")
    upper_edges = torch.linspace(0.0, 1.0, n_bins + 1, dtype=conf.dtype, device=conf.device)[1:]
    return torch.bucketize(conf, upper_edges, right=False).clamp_(max=n_bins - 1)


def _conf_acc(probs: Tensor, targets: Tensor, mode: CalibrationMode) -> tuple[Tensor, Tensor]:
    """Per-case (confidence, correctness/outcome) in float64 for the chosen mode."""
    p = probs.detach().double()
    if mode == "top_label":
        if p.ndim != 2 or targets.ndim != 1 or targets.shape[0] != p.shape[0]:
            raise ValueError("top_label mode needs probs (N, C) and class-index targets (N,)")
        conf, pred = p.max(1)
        acc = (pred == targets.detach().long()).double()
    elif mode == "binary":
        p, t = p.flatten(), targets.detach().double().flatten()
        if p.shape != t.shape:
            raise ValueError("binary mode needs probs and targets of the same number of elements")
        keep = ~torch.isnan(t)
        conf, acc = p[keep], t[keep]
        _check_binary_targets(acc)
    else:
        raise ValueError(f"mode must be 'top_label' or 'binary', got {mode!r}")
    _check_probabilities(conf)
    return conf, acc


def _binned(conf: Tensor, acc: Tensor, n_bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per bin: count, sum of confidence, sum of accuracy (float64, length n_bins)."""
    idx = _bin_index(conf, n_bins)
    count = torch.bincount(idx, minlength=n_bins).double()
    sum_conf = torch.bincount(idx, weights=conf, minlength=n_bins)
    sum_acc = torch.bincount(idx, weights=acc, minlength=n_bins)
    return count, sum_conf, sum_acc


def reliability_curve(
    probs: Tensor, targets: Tensor, n_bins: int = 15, mode: CalibrationMode = "top_label"
) -> list[dict[str, float]]:
    """Reliability diagram data: one dict per *non-empty* bin, in increasing confidence.

    Keys: ``lower``/``upper`` (bin edges; the bin is (lower, upper], the first one [0, upper]),
    ``count`` (cases), ``confidence`` (mean confidence), ``accuracy`` (top_label: share correct;
    binary: observed frequency of target 1). Same bins and modes as
    :func:`expected_calibration_error`.
    """
    conf, acc = _conf_acc(probs, targets, mode)
    count, sum_conf, sum_acc = _binned(conf, acc, n_bins)
    out: list[dict[str, float]] = []
    for b in torch.nonzero(count > 0).flatten().tolist():
        n = float(count[b])
        out.append(
            {
                "lower": b / n_bins,
                "upper": (b + 1) / n_bins,
                "count": int(n),
                "confidence": float(sum_conf[b]) / n,
                "accuracy": float(sum_acc[b]) / n,
            }
        )
    return out


def expected_calibration_error(
    probs: Tensor, targets: Tensor, n_bins: int = 15, mode: CalibrationMode = "top_label"
) -> float:
    """Binned ECE = Σ_b (n_b / N) · |acc_b − conf_b|  (L1, equal-width right-closed bins).

    ``top_label`` (multiclass): probs (N, C), targets class indices (N,); confidence = max
    probability, accuracy = [argmax == target].
    ``binary``: probs and targets of equal size (any shape, flattened); confidence = p(positive),
    accuracy = observed frequency of target 1 in the bin — calibration of the positive-class
    probability (NaN targets ignored). Raises :class:`UndefinedMetricError` with no usable case.
    """
    conf, acc = _conf_acc(probs, targets, mode)
    if conf.numel() == 0:
        raise UndefinedMetricError.because("ECE", "no case is labelled")
    count, sum_conf, sum_acc = _binned(conf, acc, n_bins)
    return float((sum_acc - sum_conf).abs().sum() / count.sum())


def multilabel_ece(probs: Tensor, targets: Tensor, n_bins: int = 15) -> float:
    """Mean over findings of the binary-mode ECE of each column of ``probs`` (N, C).

    NaN targets are ignored per finding; findings with no labelled case are skipped. Raises
    :class:`UndefinedMetricError` if no finding has a labelled case.
    """
    if probs.ndim != 2 or probs.shape != targets.shape:
        raise ValueError("multilabel_ece needs probs and targets of the same shape (N, C)")
    values = []
    for c in range(probs.shape[1]):
        try:
            values.append(expected_calibration_error(probs[:, c], targets[:, c], n_bins, "binary"))
        except UndefinedMetricError:
            continue
    if not values:
        raise UndefinedMetricError.because("multi-label ECE", "no finding has a labelled case")
    return sum(values) / len(values)


# --------------------------------------------------------------------------------------------
# proper scoring and agreement with graders
# --------------------------------------------------------------------------------------------


def brier_score(probs: Tensor, targets: Tensor) -> float:
    """Brier score (lower is better).

    * Multiclass — probs (N, C), targets class indices (N,): mean over cases of
      Σ_c (p_c − onehot_c)², range [0, 2].
    * Binary / multi-label — probs and targets of the same shape, targets in {0, 1, NaN}:
      mean of (p − y)² over all labelled entries (cases × findings), range [0, 1]; this equals
      ``sklearn.metrics.brier_score_loss`` in the binary case. NaN targets are ignored.

    Probabilities that enter the score must be finite and in [0, 1] and binary targets 0 or 1
    (ValueError otherwise, like the other metrics); no case / no labelled entry raises
    :class:`UndefinedMetricError`.
    """
    p = probs.detach().double()
    if p.ndim == 2 and targets.ndim == 1:
        onehot = _one_vs_rest(p, targets)
        if p.shape[0] == 0:
            raise UndefinedMetricError.because("Brier score", "there is no case")
        _check_probabilities(p)
        return float(((p - onehot) ** 2).sum(1).mean())
    t = targets.detach().double()
    if p.shape != t.shape:
        raise ValueError(f"probs {tuple(p.shape)} and targets {tuple(t.shape)} do not match")
    keep = ~torch.isnan(t)
    if not bool(keep.any()):
        raise UndefinedMetricError.because("Brier score", "no entry is labelled")
    p, t = p[keep], t[keep]
    _check_probabilities(p)
    _check_binary_targets(t)
    return float(((p - t) ** 2).mean())


def quadratic_weighted_kappa(pred_grades: Tensor, true_grades: Tensor, n_grades: int) -> float:
    """Cohen's kappa with quadratic disagreement weights w_ij = (i − j)² / (n_grades − 1)².

    Grades are integers 0..n_grades−1 (the full scale, even if some grades are unobserved).
    Equals ``sklearn.metrics.cohen_kappa_score(..., weights="quadratic", labels=range(n_grades))``.
    Raises :class:`UndefinedMetricError` when the chance-expected disagreement is zero (e.g. both
    raters give one and the same grade to every case).
    """
    a, b = pred_grades.detach().long().flatten(), true_grades.detach().long().flatten()
    if a.shape != b.shape or a.numel() == 0:
        raise ValueError("pred and true grades must be non-empty and of the same length")
    if n_grades < 2:
        raise ValueError("n_grades must be >= 2")
    if bool(((a < 0) | (a >= n_grades) | (b < 0) | (b >= n_grades)).any()):
        raise ValueError(f"grades must be in 0..{n_grades - 1}")
    observed = torch.bincount(a * n_grades + b, minlength=n_grades * n_grades).double().reshape(n_grades, n_grades)
    expected = torch.outer(observed.sum(1), observed.sum(0)) / a.numel()
    g = torch.arange(n_grades, dtype=torch.float64, device=observed.device)
    w = (g[:, None] - g[None, :]) ** 2 / (n_grades - 1) ** 2
    denom = float((w * expected).sum())
    if denom == 0.0:
        raise UndefinedMetricError.because(
            "quadratic kappa",
            "the model and the labels give every case one and the same grade (no disagreement is expected by chance)",
        )
    return 1.0 - float((w * observed).sum()) / denom
