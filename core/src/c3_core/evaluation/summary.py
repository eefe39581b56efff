"""Aggregate metrics of one modality from its per-case rows (so merged or resumed tables give
the same numbers as one uninterrupted run).

A metric the cohort leaves undefined (one class present, no positive, a single case, every
lesion mask empty, every label NaN, ...) is ``None`` and its reason sits at the same path under
the summary's ``"undefined"`` entry (:mod:`c3_core.metrics.undefined`); no value is ever NaN.
"""

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
    MacroResult,
    auroc,
    brier_score,
    expected_calibration_error,
    macro_auprc,
    macro_auroc,
    multilabel_ece,
    quadratic_weighted_kappa,
    reliability_curve,
)
from c3_core.metrics.segmentation import dice, hausdorff95, iou, lesion_wise, volume_calibration_slope
from c3_core.metrics.undefined import (
    UNDEFINED_KEY,
    Reasons,
    attempt,
    cohort_mean,
    iter_reasons,
    non_finite_reason,
    probability_problem,
    ratio,
    unless,
)
from c3_core.metrics.utility_stats import utility_summary

if TYPE_CHECKING:
    from c3_core.evaluation.records import ModalityRun

ECE_BINS = 15
N_BOOT, CI_LEVEL = 1000, 0.95
SMALL_LESION_MM3 = 10.0  # a lesion below this volume is "small" (lesion_wise's default)


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
        lw = lesion_wise(pred[i : i + 1], true[i : i + 1], sp, small_volume_mm3=SMALL_LESION_MM3)[0]
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


Outcome = tuple[str, float, bool, float, bool, str]  # operator, severity, admitted, score_drop, flipped, reason


class _OperatorOutcomes:
    """One operator's counterfactuals in stream order: severity and score drop (float64), admitted
    and flipped (one byte each)."""

    __slots__ = ("severity", "drop", "admitted", "flipped")

    def __init__(self) -> None:
        self.severity, self.drop = array("d"), array("d")
        self.admitted, self.flipped = bytearray(), bytearray()


class _GateCounts:
    """Counterfactuals drawn and admitted, and rejections per reason (its first word)."""

    def __init__(self) -> None:
        self.n = self.admitted = 0
        self.reasons: dict[str, int] = defaultdict(int)


def _collect(outcomes: Iterable[Outcome], gate: _GateCounts) -> dict[str, _OperatorOutcomes]:
    """One pass over the counterfactuals (SQLite extracting each field from a row's JSON is the
    cost): per operator, in order of first appearance, what the severity response needs; the
    gate's decisions counted into ``gate``. Memory: two floats and two bytes per counterfactual."""
    by_op: dict[str, _OperatorOutcomes] = defaultdict(_OperatorOutcomes)
    reasons, n, admitted = gate.reasons, 0, 0
    for op, sev, adm, drop, flipped, reason in outcomes:
        o = by_op[op]
        o.severity.append(sev)
        o.drop.append(drop)
        o.admitted.append(1 if adm else 0)
        o.flipped.append(1 if flipped else 0)
        n += 1
        if adm:
            admitted += 1
        else:
            reasons[reason.split(" ")[0] if reason else "unspecified"] += 1
    gate.n += n
    gate.admitted += admitted
    return by_op


def _severity_edges(by_op: dict[str, _OperatorOutcomes]) -> dict[str, tuple[list[float], bool]]:
    """Per operator, the bin of a severity: its level when the operator has at most 6 distinct
    levels, else its quintile (inner quantile edges, right-closed bins)."""
    edges: dict[str, tuple[list[float], bool]] = {}
    for op, o in by_op.items():
        sev = _tensor(o.severity, torch.float64)  # torch.tensor(array) would build a list of floats first
        levels = torch.unique(sev)
        if len(levels) > 6:
            edges[op] = (torch.quantile(sev, torch.linspace(0, 1, 6, dtype=torch.float64))[1:-1].tolist(), True)
        else:
            edges[op] = (levels.tolist(), False)
    return edges


def _severity_sums(by_op: dict[str, _OperatorOutcomes], edges: dict[str, tuple[list[float], bool]]) -> dict[str, dict[int, list[float]]]:
    """Per operator and bin: n, severity sum, admitted, score-drop sum, flips (over admitted); each
    bin adds its counterfactuals in the order of the store."""
    acc: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(lambda: [0, 0.0, 0, 0.0, 0]))
    for op, o in by_op.items():
        e, quantiles = edges[op]
        place = bisect.bisect_right if quantiles else bisect.bisect_left
        bins = acc[op]
        for sev, drop, admitted, flipped in zip(o.severity, o.drop, o.admitted, o.flipped):
            a = bins[place(e, sev)]
            a[0] += 1
            a[1] += sev
            if admitted:
                a[2] += 1
                a[3] += drop
                a[4] += flipped
    return acc


def _severity_point(a: list[float]) -> dict[str, float | None]:
    """One point of a severity-response curve; drop and flip rate are None with nothing admitted."""
    return {
        "severity": a[1] / a[0],
        "n": int(a[0]),
        "admitted_rate": a[2] / a[0],
        "mean_score_drop": a[3] / a[2] if a[2] else None,
        "flip_rate": a[4] / a[2] if a[2] else None,
    }


def _severity_response(by_op: dict[str, _OperatorOutcomes], why: Reasons) -> dict[str, list[dict[str, float | None]]]:
    """Per operator: mean score drop, flip and admission rate per severity level (or quintile)."""
    acc = _severity_sums(by_op, _severity_edges(by_op))
    curves: dict[str, list[dict[str, float | None]]] = {}
    for op in sorted(acc):
        points = sorted((_severity_point(a) for _, a in sorted(acc[op].items())), key=lambda p: p["severity"])
        for i, point in enumerate(points):
            if point["mean_score_drop"] is None:
                reason = f"no counterfactual at this severity was admitted (0 of {point['n']})"
                why.add(("severity_response", op, i, "mean_score_drop"), reason)
                why.add(("severity_response", op, i, "flip_rate"), reason)
        curves[op] = points
    return curves


def _gate_stats(counts: _GateCounts, why: Reasons) -> dict[str, Any]:
    reasons, n, admitted = counts.reasons, counts.n, counts.admitted
    rate = why.compute(("gate", "admission_rate"),
                       lambda: ratio(admitted, n, "the admission rate", "no counterfactual was drawn"))
    return {"counterfactuals": n, "admitted": admitted, "admission_rate": rate, "rejections": dict(reasons)}


def _utility(util: Tensor, generator: torch.Generator, why: Reasons) -> dict[str, Any]:
    """Mean and p10 of U(x) with bootstrap CIs; None with reasons where the cohort cannot give them."""
    problem = non_finite_reason(util, "utility")
    if problem is not None:
        for key in ("mean", "mean_ci", "p10", "p10_ci"):
            why.add(("utility", key), problem)
        return {"n": int(util.numel()), "mean": None, "mean_ci": None, "p10": None, "p10_ci": None,
                "ci_level": CI_LEVEL, "n_boot": N_BOOT, "ci_method": "percentile bootstrap over cases"}
    out = utility_summary(util, generator=generator, n_boot=N_BOOT, ci=CI_LEVEL)
    if util.numel() < 2:
        for key in ("mean_ci", "p10_ci"):
            out[key] = None
            why.add(("utility", key), f"a bootstrap CI needs at least two cases ({util.numel()} evaluated)")
    return out


def _neighbourhood(table: _CaseTable, why: Reasons) -> dict[str, float | None]:
    """Agreement over admitted counterfactuals and flip rate over cases with one, from counts."""
    admitted, flipped = table.sums["n_admitted"], table.sums["n_flipped"]
    drawn = f"the gate admitted no counterfactual of any of the {table.n} cases"
    return {
        "neighbourhood_agreement": why.compute(
            ("neighbourhood_agreement",),
            lambda: ratio(admitted - flipped, admitted, "neighbourhood agreement", drawn)),
        "flip_rate": why.compute(
            ("flip_rate",),
            lambda: ratio(table.with_flip, table.with_admitted, "the flip rate", drawn)),
    }


#: Per-case values a segmentation summary averages (float64 columns, NaN for a missing value).
SEGMENTATION_MEANS = ("dice", "iou", "lesion_dice", "lesion_f1", "hd95_mm", "true_volume_mm3", "pred_volume_mm3")
#: Per-case counts the summary only adds up: summed as the cases stream by, never held per case.
SUMMED_COLUMNS = ("n_admitted", "n_flipped")
SEGMENTATION_COUNTS = ("lesion_tp", "lesion_fn", "lesion_fp", "small_lesions", "small_detected")


class _CaseTable:
    """What one pass over the case rows leaves: the per-case columns the metrics need, packed
    (``columns``: float64 ``array("d")``, a multi-class label int64 ``array("q")``; 8 bytes a
    value), and the integer columns the summary only adds up, summed (``sums``, Python ints:
    exact), with the number of cases that have an admitted counterfactual and, of those, a flip.

    A metric reads its columns with :meth:`take`, which frees them: the summary holds per case
    only what the metrics still to come need."""

    __slots__ = ("columns", "sums", "n", "with_admitted", "with_flip")

    def __init__(self, columns: dict[str, array], summed: Iterable[str]) -> None:
        self.columns = columns
        self.sums: dict[str, int] = dict.fromkeys(summed, 0)
        self.n = self.with_admitted = self.with_flip = 0

    def take(self, key: str, dtype: torch.dtype) -> Tensor:
        """Column ``key`` as a tensor of ``dtype`` (a copy, 8 bytes a value); the column is dropped."""
        return _tensor(self.columns.pop(key), dtype)


def _columns(run: ModalityRun, cases: Iterable[dict[str, Any]]) -> _CaseTable:
    """One pass over the case rows (dataset order): the packed columns and the sums of
    :class:`_CaseTable`.

    Packed: utility and score, then the segmentation means or the ``prob_*`` columns and the
    label (multi-label: the C values of a case in a row, a missing one NaN; multi-class: the
    class index, int64). Summed: ``n_admitted``, ``n_flipped`` and the segmentation counts.
    The per-case memory is 8 bytes a packed value (lists of Python numbers took about 32) and
    nothing for a summed one.
    """
    segmentation, multilabel = run.task == "segmentation", run.task == "multilabel"
    floats = ["utility", "score"] + (list(SEGMENTATION_MEANS) if segmentation else [f"prob_{n}" for n in run.class_names])
    summed = SUMMED_COLUMNS + (SEGMENTATION_COUNTS if segmentation else ())
    columns = {key: array("d") for key in floats}
    labels = None if segmentation else columns.setdefault("label", array("d" if multilabel else "q"))
    table = _CaseTable(columns, summed)
    sums, nan = table.sums, float("nan")
    for c in cases:
        for key in floats:
            v = c[key]
            columns[key].append(nan if v is None else float(v))
        for key in summed:
            sums[key] += int(c[key])
        if int(c["n_admitted"]) > 0:
            table.with_admitted += 1
            table.with_flip += int(c["n_flipped"]) > 0
        if labels is not None:
            if multilabel:
                labels.extend(nan if x is None else float(x) for x in c["label"])
            else:
                labels.append(int(c["label"]))
        table.n += 1
    return table


def _tensor(column: array, dtype: torch.dtype) -> Tensor:
    """A packed column as a tensor of ``dtype`` (a copy: the column can go)."""
    packed = torch.float64 if column.typecode == "d" else torch.int64
    values = torch.frombuffer(column, dtype=packed).clone() if len(column) else torch.empty(0, dtype=packed)
    return values.to(dtype)


#: The summary's parts in the order their undefined reasons are recorded (the order of its keys).
_PARTS = ("score_mean", "utility", "neighbourhood", "gate", "severity_response", "task")


def _merged(parts: dict[str, Reasons]) -> Reasons:
    """One tree of reasons: each part's added in :data:`_PARTS` order (parts hold disjoint paths)."""
    whole = Reasons()
    for name in _PARTS:
        for path, reason in iter_reasons(parts[name].to_dict()):
            whole.add(path, reason)
    return whole


def _task_summary(run: ModalityRun, table: _CaseTable, why: Reasons) -> dict[str, Any]:
    """Segmentation or classification metrics; takes (frees) the columns they read."""
    if run.task == "segmentation":
        return _segmentation_summary(table, why)
    probs, labels = _probabilities_and_labels(run, table)
    return _classification_summary(run, probs, labels, why)


def summarise(
    run: ModalityRun, cases: Iterable[dict[str, Any]], outcomes: Callable[[], Iterable[Outcome]], seed: int
) -> dict[str, Any]:
    """The modality summary: task metrics on originals plus neighbourhood robustness metrics.

    Computed from the per-case table alone, streamed once (``cases``, in dataset order) plus
    one pass over the counterfactual outcomes, so a merged (sharded) or resumed table gives
    exactly the numbers of one uninterrupted run. Memory: integer counts are summed as the cases
    stream by, and the metrics run one after another, each freeing the per-case values only it
    needs: the task metrics (8 bytes a packed value: utility, score, C probabilities and C labels
    of a classification case), then the severity response (two floats and two bytes per
    counterfactual), then the utility bootstrap (8 bytes per case beside its resamples, a few MiB;
    see :mod:`c3_core.metrics.utility_stats`). The undefined reasons keep the order of the keys.
    Undefined metrics are None with their reasons under ``"undefined"``; raises ValueError
    only when there is no case at all.
    """
    table = _columns(run, cases)
    n = table.n
    if n == 0:
        raise ValueError(f"{run.modality}: no evaluated case to summarise")
    why = {part: Reasons() for part in _PARTS}
    util = table.take("utility", torch.float64)
    score_mean = _column_mean(table, "score", "score_mean", "score", why["score_mean"])
    neighbourhood = _neighbourhood(table, why["neighbourhood"])
    task = _task_summary(run, table, why["task"])
    del table
    gate_counts = _GateCounts()
    severity = _severity_response(_collect(outcomes(), gate_counts), why["severity_response"])  # the one pass
    utility = _utility(util, torch.Generator().manual_seed(seed), why["utility"])
    del util
    out: dict[str, Any] = {
        "modality": run.modality,
        "task": run.task,
        "dataset": run.dataset,
        "model": run.model,
        "n_cases": n,
        "k": run.spec.k,
        "gated_by": run.gated_by,
        "score_mean": score_mean,
        "utility": utility,
        **neighbourhood,
        "gate": _gate_stats(gate_counts, why["gate"]),
        "severity_response": severity,
        "conventions": {
            "utility": "U(x) = min of the case score over the original and its admitted counterfactuals",
            "flip_rate": "share of cases with >= 1 admitted counterfactual whose prediction differs from the original's",
            "agreement": "share of admitted counterfactuals whose prediction equals the original's",
            "undefined": "a metric the cohort leaves undefined is null; its reason is at the same path under 'undefined'",
        },
        **task,
    }
    reasons = _merged(why)
    out = reasons.finite(out)
    out[UNDEFINED_KEY] = reasons.to_dict()
    return out


def _probabilities_and_labels(run: ModalityRun, table: _CaseTable) -> tuple[Tensor, Tensor]:
    """Original-image probabilities (N, C) float64 and labels, taken from the ``prob_*`` and
    ``label`` columns (each column is copied in, then freed).

    Multi-label labels missing in the source (None) become NaN, which the metrics skip.
    """
    probs = torch.empty((table.n, len(run.class_names)), dtype=torch.float64)
    for c, name in enumerate(run.class_names):
        probs[:, c] = table.take(f"prob_{name}", torch.float64)
    if run.task == "multilabel":
        labels = table.take("label", torch.float64).view(table.n, -1)
    else:
        labels = table.take("label", torch.long)
    return probs, labels


def _macro_result(metric: Callable[..., MacroResult], probs: Tensor, y: Tensor, names: list[str], problem: str | None) -> MacroResult:
    """``metric(probs, y, names)``, or every class undefined for ``problem``."""
    if problem is None:
        return metric(probs, y, names)
    return MacroResult.all_undefined(names, problem)


def _macro_entries(key: str, result: MacroResult, why: Reasons) -> dict[str, Any]:
    """``<key>_macro`` and the per-class ``<key>`` of a macro result, reasons recorded."""
    why.keep((f"{key}_macro",), result.value, result.reason)
    for name, value in result.per_class.items():
        why.keep((key, name), value, result.reasons.get(name))
    return {f"{key}_macro": result.value, key: result.per_class}


def _multilabel_metrics(probs: Tensor, y: Tensor, names: list[str], problem: str | None, why: Reasons) -> dict[str, Any]:
    """ECE (mean per-finding binary ECE) and the per-finding reliability curves."""

    def reliability() -> dict[str, Any]:
        return {n: reliability_curve(probs[:, c], y[:, c], n_bins=ECE_BINS, mode="binary") for c, n in enumerate(names)}

    return {
        "ece": why.compute(("ece",), unless(problem, "ECE", lambda: multilabel_ece(probs, y, n_bins=ECE_BINS))),
        "reliability": why.compute(("reliability",), unless(problem, "the reliability curve", reliability)),
    }


def _graded_metrics(probs: Tensor, y: Tensor, names: list[str], problem: str | None, why: Reasons) -> dict[str, Any]:
    """Top-label ECE and reliability, accuracy, quadratic kappa and (graded scales) referable AUROC."""
    pred = probs.argmax(1)
    out: dict[str, Any] = {
        "ece": why.compute(("ece",), unless(problem, "ECE", lambda: expected_calibration_error(
            probs, y, n_bins=ECE_BINS, mode="top_label"))),
        "reliability": why.compute(("reliability",), unless(problem, "the reliability curve", lambda: {
            "top_label": reliability_curve(probs, y, n_bins=ECE_BINS, mode="top_label")})),
        "accuracy": why.compute(("accuracy",), unless(problem, "accuracy", lambda: cohort_mean((pred == y).double(), "accuracy"))),
        "quadratic_weighted_kappa": why.compute(("quadratic_weighted_kappa",), unless(
            problem, "quadratic kappa", lambda: quadratic_weighted_kappa(pred, y, len(names)))),
    }
    if len(names) > 2:
        positive = list(range(2, len(names)))
        out["referable_auroc"] = why.compute(("referable_auroc",), unless(
            problem, "referable AUROC", lambda: auroc(probs[:, positive].sum(1), (y >= 2).double())))
        out["referable_definition"] = f"classes {[names[c] for c in positive]} (index >= 2) vs the rest"
    return out


def _classification_summary(run: ModalityRun, probs: Tensor, labels: Tensor, why: Reasons) -> dict[str, Any]:
    names = list(run.class_names)
    problem = probability_problem(probs)
    y = labels.double() if run.task == "multilabel" else labels.long()
    if run.task == "multilabel":
        out = _multilabel_metrics(probs, y, names, problem, why)
    else:
        out = _graded_metrics(probs, y, names, problem, why)
    out.update(_macro_entries("auroc", _macro_result(macro_auroc, probs, y, names, problem), why))
    out.update(_macro_entries("auprc", _macro_result(macro_auprc, probs, y, names, problem), why))
    out["brier"] = why.compute(("brier",), unless(problem, "Brier score", lambda: brier_score(probs, y)))
    out["ece_binning"] = f"{ECE_BINS} equal-width bins on [0, 1]"
    return out


def _volume_calibration(table: _CaseTable, why: Reasons) -> dict[str, float | None]:
    """Slope and intercept of predicted on true lesion volume (None with the reason when every
    true volume is equal, e.g. healthy controls, or the cohort has a single case)."""
    true_v = table.take("true_volume_mm3", torch.float64)
    pred_v = table.take("pred_volume_mm3", torch.float64)
    problem = non_finite_reason(torch.stack([true_v, pred_v], 1), "lesion volume")
    fit, reason = attempt(unless(problem, "the volume calibration slope", lambda: volume_calibration_slope(pred_v, true_v)))
    slope, intercept = fit if fit is not None else (None, None)
    return {
        "volume_slope": why.keep(("volume_slope",), slope, reason),
        "volume_intercept_mm3": why.keep(("volume_intercept_mm3",), intercept, reason),
    }


def _column_mean(table: _CaseTable, column: str, key: str, what: str, why: Reasons) -> float | None:
    """The cohort mean of ``column`` written as ``key`` (None with the reason if undefined); the
    column is freed."""
    values = table.take(column, torch.float64)
    return why.compute((key,), lambda: cohort_mean(values, what))


def _segmentation_summary(table: _CaseTable, why: Reasons) -> dict[str, Any]:
    """Volume- and lesion-wise means, pooled lesion F1 and small-lesion recall, volume calibration.

    Empty masks follow the per-case rules (Dice 1 and HD95 0 when both are empty, lesion F1 1
    with no true and no predicted lesion), so a cohort of healthy controls has them all."""
    sums = table.sums
    tp, fn, fp = sums["lesion_tp"], sums["lesion_fn"], sums["lesion_fp"]
    small, small_hit = sums["small_lesions"], sums["small_detected"]
    no_small = f"the cohort has no small lesion (volume < {SMALL_LESION_MM3:g} mm³)"
    return {
        "dice_volume_mean": _column_mean(table, "dice", "dice_volume_mean", "Dice", why),
        "iou_mean": _column_mean(table, "iou", "iou_mean", "IoU", why),
        "lesion_dice_mean": _column_mean(table, "lesion_dice", "lesion_dice_mean", "lesion-wise Dice", why),
        "lesion_f1_mean": _column_mean(table, "lesion_f1", "lesion_f1_mean", "lesion F1", why),
        "lesion_f1_pooled": 2 * tp / (2 * tp + fn + fp) if (tp + fn + fp) else 1.0,
        "small_lesion_recall": why.compute(
            ("small_lesion_recall",), lambda: ratio(small_hit, small, "small-lesion recall", no_small)),
        "small_lesion_count": small,
        "hd95_mm_mean": _column_mean(table, "hd95_mm", "hd95_mm_mean", "HD95", why),
        **_volume_calibration(table, why),
    }
