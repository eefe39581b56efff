"""Site readiness: thresholds from a TOML file checked against a run's summaries.

Format: one table per modality, or ``[all]`` for every modality (a modality's own table wins
for the same key). Keys are a metric name plus ``_min`` (value >= threshold passes) or ``_max``
(value <= threshold passes)::

    [all]
    flip_rate_max = 0.3

    [cxr]
    utility_p10_min = 0.4
    ece_max = 0.1

An undefined metric (e.g. a flip rate with no admitted counterfactual) fails, with the reason the
summary gives, and so does a table for a modality the run did not evaluate: missing evidence is
not readiness. A malformed file, an unknown key or a metric that does not apply to the modality's
task is a usage error.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from c3_core.report.errors import ReportError
from c3_core.report.facts import reason

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CLASSIFICATION = frozenset({"multiclass", "multilabel"})
MULTICLASS = frozenset({"multiclass"})
SEGMENTATION = frozenset({"segmentation"})


def _get(*path: str | int) -> tuple[str | int, ...]:
    """The path of a metric in a modality summary."""
    return path


@dataclass(frozen=True)
class Metric:
    """A checkable summary number: where it lives and which tasks define it (None: all)."""

    description: str
    path: tuple[str | int, ...]
    tasks: frozenset[str] | None = None

    def get(self, summary: Mapping[str, Any]) -> Any:
        """The value in ``summary`` (None where the path is missing)."""
        value: Any = summary
        for key in self.path:
            try:
                value = value[key]
            except (KeyError, IndexError, TypeError):
                return None
        return value

    def undefined_note(self, summary: Mapping[str, Any]) -> str:
        """Why the value is missing: the summary's reason (a CI bound: its CI's), else a generic note."""
        why = reason(summary, *(str(k) for k in self.path if isinstance(k, str)))
        return f"undefined: {why}" if why else "undefined for this run"


METRICS: dict[str, Metric] = {
    "utility_mean": Metric("mean shift-stable utility", _get("utility", "mean")),
    "utility_mean_ci_low": Metric("lower 95% CI bound of mean utility", _get("utility", "mean_ci", 0)),
    "utility_p10": Metric("10th percentile of utility", _get("utility", "p10")),
    "utility_p10_ci_low": Metric("lower 95% CI bound of utility p10", _get("utility", "p10_ci", 0)),
    "score_mean": Metric("mean per-case score on originals", _get("score_mean")),
    "flip_rate": Metric("share of cases with a flipped admitted counterfactual", _get("flip_rate")),
    "agreement": Metric("neighbourhood agreement", _get("neighbourhood_agreement")),
    "admission_rate": Metric("share of counterfactuals the gate admitted", _get("gate", "admission_rate")),
    "n_cases": Metric("evaluated cases", _get("n_cases")),
    "failed_cases": Metric("cases that could not be read", _get("n_failed")),
    "auroc": Metric("macro AUROC", _get("auroc_macro"), CLASSIFICATION),
    "auprc": Metric("macro AUPRC", _get("auprc_macro"), CLASSIFICATION),
    "ece": Metric("expected calibration error", _get("ece"), CLASSIFICATION),
    "brier": Metric("Brier score", _get("brier"), CLASSIFICATION),
    "accuracy": Metric("accuracy", _get("accuracy"), MULTICLASS),
    "kappa": Metric("quadratic-weighted kappa", _get("quadratic_weighted_kappa"), MULTICLASS),
    "referable_auroc": Metric("referable-class AUROC", _get("referable_auroc"), MULTICLASS),
    "dice": Metric("mean volume Dice", _get("dice_volume_mean"), SEGMENTATION),
    "lesion_dice": Metric("mean lesion-wise Dice", _get("lesion_dice_mean"), SEGMENTATION),
    "lesion_f1": Metric("mean lesion F1", _get("lesion_f1_mean"), SEGMENTATION),
    "small_lesion_recall": Metric("small-lesion recall", _get("small_lesion_recall"), SEGMENTATION),
    "hd95_mm": Metric("mean HD95 (mm)", _get("hd95_mm_mean"), SEGMENTATION),
}


@dataclass(frozen=True)
class Threshold:
    section: str
    metric: str
    bound: str  # "min" or "max"
    value: float

    @property
    def key(self) -> str:
        return f"{self.metric}_{self.bound}"


@dataclass(frozen=True)
class CheckResult:
    """One line of the checklist."""

    modality: str
    metric: str
    bound: str
    threshold: float
    value: float | None
    passed: bool
    note: str = ""

    @property
    def op(self) -> str:
        return ">=" if self.bound == "min" else "<="

    def line(self) -> str:
        """``PASS  cxr  utility_p10  0.532 >= 0.400`` (plain ASCII, for logs and pipelines)."""
        value = "n/a" if self.value is None else f"{self.value:.4g}"
        note = f"  ({self.note})" if self.note else ""
        return f"{'PASS' if self.passed else 'FAIL'}  {self.modality:<8} {self.metric:<20} {value} {self.op} {self.threshold:.4g}{note}"

    def to_dict(self) -> dict[str, Any]:
        return {"modality": self.modality, "metric": self.metric, "op": self.op, "threshold": self.threshold,
                "value": self.value, "passed": self.passed, "note": self.note}


def load_thresholds(path: Path) -> list[Threshold]:
    """Parse and validate a thresholds file (names the file and key in every error)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ReportError(f"{path}: cannot read the thresholds file ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ReportError(f"{path}: not valid TOML (not UTF-8 text)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ReportError(f"{path}: not valid TOML ({exc})") from None
    thresholds: list[Threshold] = []
    for section, table in data.items():
        if not isinstance(table, dict):
            raise ReportError(f"{path}: top-level key {section!r} must be a table such as [cxr] or [all]")
        for key, value in table.items():
            metric, _, bound = key.rpartition("_")
            if bound not in ("min", "max") or metric not in METRICS:
                raise ReportError(
                    f"{path}: [{section}] unknown threshold {key!r}: a key is a metric plus _min or _max, "
                    f"metrics: {', '.join(METRICS)}"
                )
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ReportError(f"{path}: [{section}] {key} must be a finite number, got {value!r}")
            thresholds.append(Threshold(section, metric, bound, float(value)))
    if not thresholds:
        raise ReportError(f"{path}: defines no thresholds (e.g. [all] utility_p10_min = 0.4)")
    return thresholds


def check(path: Path, thresholds: list[Threshold], summaries: Mapping[str, Mapping[str, Any]]) -> list[CheckResult]:
    """The checklist: one result per (modality, key); raises :class:`ReportError` for a key that
    does not apply to its modality's task."""
    chosen: dict[tuple[str, str], Threshold] = {}
    for t in thresholds:  # [all] first, then the modality's own tables override
        if t.section == "all":
            targets = [m for m, s in summaries.items() if _applies(t.metric, s)]
            if not targets:
                raise ReportError(f"{path}: [all] {t.key} applies to none of this run's modalities ({', '.join(summaries) or 'none'})")
            for m in targets:
                chosen.setdefault((m, t.key), t)
    for t in thresholds:
        if t.section == "all":
            continue
        summary = summaries.get(t.section)
        if summary is not None and not _applies(t.metric, summary):
            raise ReportError(f"{path}: [{t.section}] {t.key} does not apply to {t.section} (task {summary.get('task')})")
        chosen[(t.section, t.key)] = t
    results = []
    for (modality, _key), t in chosen.items():
        summary = summaries.get(modality)
        if summary is None:
            results.append(CheckResult(modality, t.metric, t.bound, t.value, None, False, "not evaluated in this run"))
            continue
        raw = METRICS[t.metric].get(summary)
        value = float(raw) if isinstance(raw, int | float) and not isinstance(raw, bool) and math.isfinite(raw) else None
        if value is None:
            note = METRICS[t.metric].undefined_note(summary)
            results.append(CheckResult(modality, t.metric, t.bound, t.value, None, False, note))
            continue
        passed = value >= t.value if t.bound == "min" else value <= t.value
        results.append(CheckResult(modality, t.metric, t.bound, t.value, value, passed))
    order = {m: i for i, m in enumerate(summaries)}
    return sorted(results, key=lambda r: (order.get(r.modality, len(order)), r.modality, r.metric, r.bound))


def _applies(metric: str, summary: Mapping[str, Any]) -> bool:
    tasks = METRICS[metric].tasks
    return tasks is None or summary.get("task") in tasks
