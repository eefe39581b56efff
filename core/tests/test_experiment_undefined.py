"""The experiment's table metrics and cells: undefined metrics are null with a reason, never a
traceback or NaN."""

from __future__ import annotations

import json
import math
from typing import Any

import torch

from c3_core.experiments import tables
from c3_core.experiments.casemetrics import bootstrap_intervals, case_table, table_metrics

NAN = math.nan


def _seg_rows(true_volumes: list[float]) -> list[dict[str, Any]]:
    return [{"exam_id": f"e{i}", "utility": 1.0, "n_admitted": 1, "n_flipped": 0, "dice": 1.0, "lesion_dice": 1.0,
             "hd95_mm": 0.0, "small_lesions": 0, "small_detected": 0, "true_volume_mm3": v, "pred_volume_mm3": 0.0}
            for i, v in enumerate(true_volumes)]


def _cls_rows(labels: list[int], p1: list[float]) -> list[dict[str, Any]]:
    return [{"exam_id": f"e{i}", "utility": 0.5, "n_admitted": 0, "n_flipped": 0, "prob_absent": 1 - p, "prob_present": p,
             "label": y, "pred": int(p >= 0.5)} for i, (y, p) in enumerate(zip(labels, p1))]


def test_healthy_controls_table_metrics() -> None:
    t = case_table("segmentation", ("lesion",), _seg_rows([0.0, 0.0, 0.0]))
    m = table_metrics(t)
    json.dumps(m, allow_nan=False)
    assert m["volume_slope"] is None and m["small_lesion_recall"] is None and m["dice"] == 1.0
    assert m["undefined"]["volume_slope"] == "every lesion mask is empty (no lesion volume to regress on)"
    assert m["undefined"]["small_lesion_recall"].startswith("the cohort has no small lesion")
    ci = bootstrap_intervals(t, torch.Generator().manual_seed(0), n_boot=20)
    json.dumps(ci, allow_nan=False)
    assert ci["volume_slope"] is None and ci["undefined"]["volume_slope"] == "defined in 0 of 20 bootstrap replicates (a CI needs at least 2)"
    assert ci["dice"] == (1.0, 1.0) and "dice" not in ci["undefined"]


def test_one_class_no_admitted_counterfactual_and_a_single_case() -> None:
    t = case_table("multiclass", ("absent", "present"), _cls_rows([0, 0, 0], [0.2, 0.4, 0.6]))
    m = table_metrics(t)
    assert m["auroc_macro"] is None and m["undefined"]["auroc_macro"].startswith("no class defines it")
    assert m["flip_rate"] is None and m["agreement"] is None
    assert m["undefined"]["flip_rate"] == "the gate admitted no counterfactual of any of the 3 cases"
    assert m["brier"] is not None and m["accuracy"] is not None
    one = case_table("multiclass", ("absent", "present"), _cls_rows([1], [0.7]))
    ci = bootstrap_intervals(one, torch.Generator().manual_seed(0), n_boot=10)
    assert ci["brier"] is None and ci["undefined"]["brier"] == "a bootstrap CI needs at least two cases (1 evaluated)"


def test_nan_probabilities_and_nan_labels() -> None:
    t = case_table("multiclass", ("absent", "present"), _cls_rows([0, 1], [0.2, NAN]))
    m = table_metrics(t)
    json.dumps(m, allow_nan=False)
    assert m["brier"] is None and "NaN/inf" in m["undefined"]["brier"] and m["auroc_macro"] is None
    rows = [{"exam_id": "a", "utility": 0.9, "n_admitted": 1, "n_flipped": 1, "prob_x": 0.3, "prob_y": 0.8, "label": [None, None]},
            {"exam_id": "b", "utility": 0.7, "n_admitted": 1, "n_flipped": 0, "prob_x": 0.6, "prob_y": 0.1, "label": [None, None]}]
    m = table_metrics(case_table("multilabel", ("x", "y"), rows))
    assert m["auroc[x]"] is None and m["undefined"]["auroc[x]"] == "no case is labelled"
    assert m["ece"] is None and m["brier"] is None and m["flip_rate"] == 0.5


def _runs(first: Any, second: Any, why: str | None = None) -> list[dict[str, Any]]:
    def run(seed: int, value: Any) -> dict[str, Any]:
        metrics = {"volume_slope": value, "undefined": {"volume_slope": why} if value is None and why else {}}
        return {"seed": seed, "conditions": {"x": {"metrics": metrics, "ci95": {}}}}

    return [run(0, first), run(1, second)]


def test_cells_say_why_or_how_many_seeds() -> None:
    reason = "every lesion mask is empty (no lesion volume to regress on)"
    assert tables.cell(_runs(None, None, reason), "x", "volume_slope") == f"undefined: {reason}"
    assert tables.cell(_runs(None, 0.9, reason), "x", "volume_slope") == "0.900 [1 of 2 seeds]"
    assert tables.cell(_runs(None, None), "x", "volume_slope") == "n/a"
    assert tables.cell(_runs(None, None, "a | b"), "x", "volume_slope") == "undefined: a \\| b"


def test_table_metrics_agree_with_the_evaluation_summary() -> None:
    """The same numbers (and the same nulls) as summary.json, for cohorts with undefined metrics."""
    from types import SimpleNamespace

    from c3_core.evaluation.summary import summarise

    def summary(task: str, names: tuple[str, ...], rows: list[dict[str, Any]]) -> dict[str, Any]:
        run = SimpleNamespace(modality="m", dataset="d", model="net", task=task, class_names=names,
                              spec=SimpleNamespace(k=1), gated_by="g")
        return summarise(run, rows, lambda: iter([]), seed=0)

    seg = [r | {"iou": 1.0, "lesion_f1": 1.0, "lesion_tp": 0, "lesion_fn": 0, "lesion_fp": 0, "score": 1.0}
           for r in _seg_rows([0.0, 0.0, 0.0])]
    cls = [r | {"score": 0.5} for r in _cls_rows([0, 0, 1], [0.2, 0.4, 0.6])]
    one_class = [r | {"score": 0.5} for r in _cls_rows([0, 0, 0], [0.2, 0.4, 0.6])]
    pairs = {"agreement": "neighbourhood_agreement", "flip_rate": "flip_rate", "auroc_macro": "auroc_macro",
             "ece": "ece", "brier": "brier", "lesion_dice": "lesion_dice_mean", "dice": "dice_volume_mean",
             "small_lesion_recall": "small_lesion_recall", "hd95_mm": "hd95_mm_mean", "volume_slope": "volume_slope"}
    for task, names, rows in (("segmentation", ("lesion",), seg), ("multiclass", ("absent", "present"), cls),
                              ("multiclass", ("absent", "present"), one_class)):
        s = summary(task, names, rows)
        m = table_metrics(case_table(task, names, rows))
        assert m["utility_mean"] == s["utility"]["mean"] and m["utility_p10"] == s["utility"]["p10"]
        for mine, theirs in pairs.items():
            if mine in m:
                assert m[mine] == s[theirs], (task, mine)
                assert (mine in m["undefined"]) == (theirs in s["undefined"]), (task, mine)
