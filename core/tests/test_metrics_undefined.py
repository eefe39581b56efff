"""The shape of undefined metrics in summaries: null in place, the reason at the same path."""

from __future__ import annotations

import json
import math

import pytest
import torch

from c3_core.metrics.classification import auroc
from c3_core.metrics.errors import UndefinedMetricError
from c3_core.metrics.undefined import (
    Reasons,
    attempt,
    cohort_mean,
    iter_reasons,
    non_finite_reason,
    probability_problem,
    ratio,
    reason_at,
    undefined_reason,
    unless,
)


def _undefined() -> float:
    raise UndefinedMetricError.because("AUROC", "only one class is present (0 positive, 3 negative)")


def test_attempt_returns_the_value_or_the_reason() -> None:
    assert attempt(lambda: 0.5) == (0.5, None)
    assert attempt(_undefined) == (None, "only one class is present (0 positive, 3 negative)")
    with pytest.raises(ValueError, match="finite"):  # invalid input is not "undefined": it still raises
        attempt(lambda: auroc(torch.tensor([math.nan, 1.0]), torch.tensor([0, 1])))


def test_reasons_mirror_the_paths_of_their_metrics() -> None:
    why = Reasons()
    assert why.compute(("auroc_macro",), _undefined) is None
    assert why.compute(("ece",), lambda: 0.1) == 0.1
    assert why.keep(("auroc", "Edema"), None, "no case is labelled") is None
    assert why.keep(("auroc", "Effusion"), 0.8, "ignored: the value is defined") == 0.8
    why.add(("severity_response", "mri.noise", 2, "flip_rate"), "nothing admitted")
    assert why.keep(("brier",), None, None) is None  # a null always gets some reason
    tree = why.to_dict()
    assert tree == {
        "auroc_macro": "only one class is present (0 positive, 3 negative)",
        "auroc": {"Edema": "no case is labelled"},
        "severity_response": {"mri.noise": {"2": {"flip_rate": "nothing admitted"}}},
        "brier": "undefined for this cohort",
    }
    summary = {"auroc": {"Edema": None}, "undefined": tree}
    assert undefined_reason(summary, "auroc", "Edema") == "no case is labelled"
    assert undefined_reason(summary, "severity_response", "mri.noise", 2, "flip_rate") == "nothing admitted"
    assert undefined_reason(summary, "auroc", "Effusion") is None and undefined_reason({}, "x") is None
    assert reason_at(tree, ("auroc",)) is None  # a subtree is not a reason
    assert dict(iter_reasons(tree))[("auroc", "Edema")] == "no case is labelled"
    with pytest.raises(ValueError, match="path"):
        why.add((), "no path")


def test_finite_turns_nan_into_null_with_a_reason() -> None:
    why = Reasons()
    out = why.finite({"a": math.nan, "b": [1.0, math.inf], "c": {"d": 2}, "n": 3, "ok": True, "undefined": {}})
    assert out == {"a": None, "b": [1.0, None], "c": {"d": 2}, "n": 3, "ok": True, "undefined": {}}
    json.dumps(out, allow_nan=False)
    assert set(why.to_dict()) == {"a", "b"} and "NaN" in why.to_dict()["a"] and "1" in why.to_dict()["b"]


def test_cohort_guards_raise_with_their_reasons() -> None:
    assert cohort_mean(torch.tensor([1.0, 3.0]), "Dice") == 2.0
    assert attempt(lambda: cohort_mean(torch.empty(0), "Dice"))[1] == "no case was evaluated"
    assert attempt(lambda: cohort_mean(torch.tensor([1.0, math.nan]), "Dice"))[1] == (
        "1 of 2 cases have a non-finite Dice (NaN/inf: see cases.csv)"
    )
    assert ratio(1, 4, "flip rate", "nothing admitted") == 0.25
    assert attempt(lambda: ratio(0, 0, "flip rate", "nothing admitted"))[1] == "nothing admitted"
    assert non_finite_reason(torch.tensor([[1.0, math.inf], [0.0, 0.0]]), "volume") is not None
    assert probability_problem(torch.tensor([[0.2, 0.8], [0.5, 0.5]])) is None
    assert probability_problem(torch.tensor([[0.2, math.nan], [1.5, 0.5]])) == (
        "the model gave 2 of 2 cases probabilities that are NaN/inf or outside [0, 1]"
    )
    assert unless(None, "ECE", lambda: 0.1)() == 0.1
    assert attempt(unless("the model gave NaN", "ECE", lambda: 0.1)) == (None, "the model gave NaN")
