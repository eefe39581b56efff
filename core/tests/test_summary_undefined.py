"""Legitimate cohorts never crash the evaluation summary: every metric a cohort leaves undefined is
null with its reason under ``"undefined"`` (never a traceback, never NaN)."""

from __future__ import annotations

import json
import math
from types import SimpleNamespace
from typing import Any

import pytest

from c3_core.evaluation.session import _fmt, _headline
from c3_core.evaluation.summary import summarise

NAN = math.nan
DRAWN = [("op.a", 1.0, True, 0.1, False, ""), ("op.a", 2.0, True, 0.3, True, ""),
         ("op.b", 0.5, False, 0.0, False, "gate x"), ("op.b", 0.5, True, 0.05, False, "")]


def _run(task: str, names: tuple[str, ...]) -> Any:
    return SimpleNamespace(modality="m", dataset="d", model="net", task=task, class_names=names,
                           spec=SimpleNamespace(k=3), gated_by="operator checks only")


def _row(utility: float = 0.8, score: float = 0.9, n_admitted: int = 2, n_flipped: int = 0, **extra: Any) -> dict[str, Any]:
    return {"utility": utility, "score": score, "n_admitted": n_admitted, "n_flipped": n_flipped, **extra}


def _classes(label: Any, *probs: float) -> dict[str, Any]:
    names = ("a", "b", "c")[: len(probs)]
    return _row(label=label, **{f"prob_{n}": p for n, p in zip(names, probs)})


def _seg(true_v: float, pred_v: float, small: int = 0, hit: int = 0) -> dict[str, Any]:
    empty = true_v == 0 and pred_v == 0
    return _row(dice=1.0 if empty else 0.5, iou=1.0 if empty else 0.4, lesion_dice=1.0, lesion_f1=1.0, hd95_mm=0.0,
                lesion_tp=int(true_v > 0), lesion_fn=0, lesion_fp=0, small_lesions=small, small_detected=hit,
                true_volume_mm3=true_v, pred_volume_mm3=pred_v)


def _summary(task: str, names: tuple[str, ...], rows: list[dict[str, Any]], outcomes: list[Any] | None = None) -> dict[str, Any]:
    drawn = DRAWN if outcomes is None else outcomes
    s = summarise(_run(task, names), rows, lambda: iter(drawn), seed=0)
    json.dumps(s, allow_nan=False)  # what write_json does: NaN would raise here
    _assert_every_null_has_a_reason(s)
    return s


def _assert_every_null_has_a_reason(summary: dict[str, Any]) -> None:
    def walk(node: Any, reasons: Any, path: tuple[str, ...]) -> None:
        if node is None:
            assert isinstance(reasons, str) and reasons, f"{'.'.join(path)} is null without a reason"
        elif isinstance(node, dict):
            for k, v in node.items():
                if path or k != "undefined":
                    walk(v, reasons.get(str(k)) if isinstance(reasons, dict) else None, (*path, str(k)))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, reasons.get(str(i)) if isinstance(reasons, dict) else None, (*path, str(i)))

    walk(summary, summary["undefined"], ())


def test_a_fully_defined_cohort_has_an_empty_undefined_map() -> None:
    rows = [_classes(0, 0.8, 0.2), _classes(1, 0.3, 0.7), _classes(1, 0.6, 0.4), _classes(0, 0.9, 0.1)]
    s = _summary("multiclass", ("a", "b"), rows)
    assert s["undefined"] == {} and s["auroc_macro"] == pytest.approx(1.0)
    assert s["gate"]["admission_rate"] == pytest.approx(3 / 4)


def test_one_class_present() -> None:
    rows = [_classes(0, 0.8, 0.1, 0.1), _classes(0, 0.6, 0.3, 0.1), _classes(0, 0.7, 0.2, 0.1)]
    s = _summary("multiclass", ("a", "b", "c"), rows)
    why = s["undefined"]
    assert s["auroc_macro"] is None and why["auroc_macro"].startswith("no class defines it")
    assert s["auroc"] == {"a": None, "b": None, "c": None}
    assert why["auroc"]["a"] == "only one class is present (3 positive, 0 negative)"
    assert s["auprc"]["a"] == 1.0 and why["auprc"]["b"] == "there is no positive case (3 negative)"
    assert s["quadratic_weighted_kappa"] is None and "one and the same grade" in why["quadratic_weighted_kappa"]
    assert s["referable_auroc"] is None and why["referable_auroc"] == "only one class is present (0 positive, 3 negative)"
    assert s["accuracy"] == 1.0 and s["ece"] is not None and s["brier"] is not None


def test_a_class_without_positives_is_left_out_of_the_macro_average() -> None:
    rows = [_classes(0, 0.8, 0.1, 0.1), _classes(1, 0.2, 0.7, 0.1), _classes(0, 0.5, 0.4, 0.1)]
    s = _summary("multiclass", ("a", "b", "c"), rows)
    assert s["auroc_macro"] == pytest.approx(1.0) and s["auroc"]["c"] is None
    assert s["undefined"]["auroc"] == {"c": "only one class is present (0 positive, 3 negative)"}
    assert "auroc_macro" not in s["undefined"]


def test_a_single_case() -> None:
    s = _summary("multiclass", ("a", "b"), [_classes(1, 0.3, 0.7)])
    why = s["undefined"]
    assert s["utility"]["mean"] == 0.8 and s["utility"]["mean_ci"] is None and s["utility"]["p10_ci"] is None
    assert why["utility"]["mean_ci"] == "a bootstrap CI needs at least two cases (1 evaluated)"
    assert s["auroc_macro"] is None and s["accuracy"] == 1.0


def test_all_predictions_equal_are_numbers() -> None:
    rows = [_classes(0, 0.5, 0.5), _classes(1, 0.5, 0.5), _classes(0, 0.5, 0.5)]
    s = _summary("multiclass", ("a", "b"), rows)
    assert s["auroc_macro"] == 0.5 and s["quadratic_weighted_kappa"] == pytest.approx(0.0)
    assert s["undefined"] == {}


def test_multilabel_nan_labels() -> None:
    rows = [_row(label=[None, 1.0], prob_a=0.2, prob_b=0.9), _row(label=[None, 0.0], prob_a=0.6, prob_b=0.1)]
    s = _summary("multilabel", ("a", "b"), rows)
    assert s["auroc"]["a"] is None and s["undefined"]["auroc"]["a"] == "no case is labelled"
    assert s["auroc_macro"] == 1.0
    unlabelled = [_row(label=[None, None], prob_a=0.2, prob_b=0.9), _row(label=[None, None], prob_a=0.6, prob_b=0.1)]
    s = _summary("multilabel", ("a", "b"), unlabelled)
    why = s["undefined"]
    for key in ("auroc_macro", "auprc_macro", "ece", "brier"):
        assert s[key] is None and why[key], key
    assert why["ece"] == "no finding has a labelled case" and why["brier"] == "no entry is labelled"
    assert s["reliability"] == {"a": [], "b": []}


def test_non_finite_model_outputs_are_null_with_a_reason() -> None:
    rows = [_classes(0, 0.8, 0.2), _row(utility=NAN, score=NAN, label=1, prob_a=NAN, prob_b=NAN), _classes(1, 0.3, 0.7)]
    s = _summary("multiclass", ("a", "b"), rows)
    why = s["undefined"]
    model = "the model gave 1 of 3 cases probabilities that are NaN/inf or outside [0, 1]"
    assert s["auroc_macro"] is None and why["auroc"]["b"] == model
    assert s["brier"] is None and why["brier"] == model and s["ece"] is None and s["reliability"] is None
    assert s["score_mean"] is None and "1 of 3 cases have a non-finite score" in why["score_mean"]
    assert s["utility"]["mean"] is None and "non-finite utility" in why["utility"]["p10_ci"]


def test_healthy_controls_and_equal_volumes() -> None:
    s = _summary("segmentation", ("lesion",), [_seg(0.0, 0.0), _seg(0.0, 4.0), _seg(0.0, 0.0)])
    why = s["undefined"]
    assert s["volume_slope"] is None and s["volume_intercept_mm3"] is None
    assert why["volume_slope"] == why["volume_intercept_mm3"] == "every lesion mask is empty (no lesion volume to regress on)"
    assert s["small_lesion_recall"] is None and why["small_lesion_recall"] == "the cohort has no small lesion (volume < 10 mm³)"
    assert s["lesion_f1_pooled"] == 1.0 and s["hd95_mm_mean"] == 0.0  # the stated empty-mask conventions
    s = _summary("segmentation", ("lesion",), [_seg(27.0, 20.0, 1, 1), _seg(27.0, 30.0, 1, 0)])
    assert s["volume_slope"] is None and s["undefined"]["volume_slope"].startswith("every true lesion volume is equal")
    assert s["small_lesion_recall"] == 0.5
    s = _summary("segmentation", ("lesion",), [_seg(8.0, 8.0)])
    assert s["undefined"]["volume_slope"] == "a slope needs at least two cases (1 evaluated)"


def test_no_admitted_counterfactual() -> None:
    rows = [_classes(0, 0.8, 0.2) | {"n_admitted": 0}, _classes(1, 0.3, 0.7) | {"n_admitted": 0}]
    rejected = [("op.a", 1.0, False, 0.0, False, "gate x"), ("op.a", 2.0, False, 0.0, False, "gate y")]
    s = _summary("multiclass", ("a", "b"), rows, rejected)
    why = s["undefined"]
    assert s["flip_rate"] is None and s["neighbourhood_agreement"] is None
    assert why["flip_rate"] == "the gate admitted no counterfactual of any of the 2 cases"
    assert s["gate"]["admission_rate"] == 0.0
    points = s["severity_response"]["op.a"]
    assert [p["mean_score_drop"] for p in points] == [None, None] and [p["flip_rate"] for p in points] == [None, None]
    assert why["severity_response"]["op.a"]["1"]["flip_rate"] == "no counterfactual at this severity was admitted (0 of 1)"
    s = _summary("multiclass", ("a", "b"), rows, [])
    assert s["gate"]["admission_rate"] is None and s["undefined"]["gate"]["admission_rate"] == "no counterfactual was drawn"


def test_no_case_at_all_is_an_error() -> None:
    with pytest.raises(ValueError, match="no evaluated case"):
        summarise(_run("multiclass", ("a", "b")), [], lambda: iter([]), seed=0)


def test_the_headline_says_why() -> None:
    s = _summary("segmentation", ("lesion",), [_seg(0.0, 0.0)])
    line = _headline(s, 1.0)
    assert "Dice 1.000" in line and "utility mean 0.800" in line
    assert "utility.mean_ci, utility.p10_ci: undefined: a bootstrap CI needs at least two cases (1 evaluated)" in line
    assert "volume_slope, volume_intercept_mm3: undefined: a slope needs at least two cases (1 evaluated)" in line
    rows = [_classes(0, 0.8, 0.2) | {"n_admitted": 0}, _classes(0, 0.3, 0.7) | {"n_admitted": 0}]
    s = _summary("multiclass", ("a", "b"), rows)
    first = _headline(s, 1.0).splitlines()[0]
    assert "AUROC undefined: no class defines it" in first
    assert "flip rate undefined: the gate admitted no counterfactual of any of the 2 cases" in first
    assert _fmt(None) == "n/a" and _fmt(0.5) == "0.500" and _fmt(None, "why") == "undefined: why"


def test_the_summary_holds_each_case_value_packed_in_eight_bytes() -> None:
    from c3_core.evaluation.summary import _columns

    run = SimpleNamespace(task="multilabel", class_names=("a", "b"))
    row = {"utility": 0.5, "score": 0.6, "n_admitted": 3, "n_flipped": 1, "prob_a": 0.1, "prob_b": 0.9, "label": [1.0, None]}
    table = _columns(run, [row, row, row])  # type: ignore[arg-type]
    assert {c.itemsize for c in table.columns.values()} == {8}  # float64 / int64, not Python objects
    assert table.sums["n_admitted"] == 9 and isinstance(table.sums["n_admitted"], int)  # counts summed, as integers
    assert len(table.columns["label"]) == 6 and math.isnan(table.columns["label"][1])  # a missing label is NaN in its row
    multiclass = _columns(SimpleNamespace(task="multiclass", class_names=("a", "b")), [{**row, "label": 1}])  # type: ignore[arg-type]
    assert multiclass.columns["label"].typecode == "q" and multiclass.columns["label"][0] == 1
