"""The C3 metric set: classification, calibration, neighbourhood, segmentation, bootstrap CIs.

Modules, one job each:

* :mod:`~c3_core.metrics.classification` — AUROC/AUPRC (per class, macro), ECE, reliability
  curves, Brier, quadratic-weighted kappa.
* :mod:`~c3_core.metrics.agreement` — neighbourhood agreement and flip rate.
* :mod:`~c3_core.metrics.margins` — decision margins: an exam's worst margin over its admitted
  neighbourhood (C³'s per-exam verdict), severity margins, entropy and ensemble / TTA spread.
* :mod:`~c3_core.metrics.utility_stats` — utility mean / 10th percentile, percentile bootstrap.
* :mod:`~c3_core.metrics.segmentation` — Dice, IoU, HD95, lesion-wise metrics, volume slope
  (needs SciPy; loaded on first access so ``import c3_core.metrics`` only needs torch).
* :mod:`~c3_core.metrics.undefined` — how summaries write an undefined metric: ``null`` and its
  reason at the same path under ``"undefined"``.

Undefined inputs raise :class:`UndefinedMetricError` (a ``ValueError`` whose ``reason`` says
why); nothing returns NaN.
"""

from __future__ import annotations

from typing import Any

from c3_core.metrics.agreement import PerCaseAgreement, flip_rate, neighbourhood_agreement, per_case_agreement
from c3_core.metrics.classification import (
    MacroResult,
    auprc,
    auroc,
    brier_score,
    expected_calibration_error,
    macro_auprc,
    macro_auroc,
    multilabel_ece,
    per_class_auprc,
    per_class_auroc,
    quadratic_weighted_kappa,
    reliability_curve,
)
from c3_core.metrics.errors import UndefinedMetricError
from c3_core.metrics.utility_stats import bootstrap_ci, percentile, utility_summary

_SEGMENTATION = (
    "LesionStats",
    "dice",
    "hausdorff95",
    "iou",
    "lesion_wise",
    "pooled_small_lesion_recall",
    "volume_calibration_slope",
)

__all__ = [
    "MacroResult",
    "PerCaseAgreement",
    "UndefinedMetricError",
    "auprc",
    "auroc",
    "bootstrap_ci",
    "brier_score",
    "expected_calibration_error",
    "flip_rate",
    "macro_auprc",
    "macro_auroc",
    "multilabel_ece",
    "neighbourhood_agreement",
    "per_case_agreement",
    "per_class_auprc",
    "per_class_auroc",
    "percentile",
    "quadratic_weighted_kappa",
    "reliability_curve",
    "utility_summary",
    *_SEGMENTATION,
]


def __getattr__(name: str) -> Any:
    if name in _SEGMENTATION:
        from c3_core.metrics import segmentation

        return getattr(segmentation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
