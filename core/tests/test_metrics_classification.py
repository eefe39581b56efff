"""Classification and calibration metrics agree with scikit-learn and torchmetrics."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import metrics as skm
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

from c3_core.metrics.classification import (
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

NAN = float("nan")


# ---------------------------------------------------------------------------- AUROC / AUPRC


@pytest.mark.parametrize("seed", range(4))
def test_auroc_auprc_match_sklearn_with_ties(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    y = (torch.rand(300, generator=g) < 0.2 + 0.15 * seed).long()  # varying prevalence
    s = torch.round(torch.rand(300, generator=g) + 0.3 * y, decimals=1)  # many ties
    assert auroc(s, y) == pytest.approx(skm.roc_auc_score(y.numpy(), s.numpy()), abs=1e-12)
    assert auprc(s, y) == pytest.approx(skm.average_precision_score(y.numpy(), s.numpy()), abs=1e-12)
    c = torch.randn(300, generator=g, dtype=torch.float64) + y  # continuous, no ties
    assert auroc(c, y) == pytest.approx(skm.roc_auc_score(y.numpy(), c.numpy()), abs=1e-12)
    assert auprc(c, y) == pytest.approx(skm.average_precision_score(y.numpy(), c.numpy()), abs=1e-12)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 4), st.booleans()), min_size=2, max_size=30).filter(
        lambda rows: 0 < sum(b for _, b in rows) < len(rows)
    )
)
def test_auroc_auprc_property_against_sklearn(rows: list[tuple[int, bool]]) -> None:
    s = torch.tensor([float(a) for a, _ in rows])
    y = torch.tensor([int(b) for _, b in rows])
    assert auroc(s, y) == pytest.approx(skm.roc_auc_score(y.numpy(), s.numpy()), abs=1e-12)
    assert auprc(s, y) == pytest.approx(skm.average_precision_score(y.numpy(), s.numpy()), abs=1e-12)


def test_auroc_hand_computed_ties_count_half() -> None:
    # pairs (pos, neg): (0.8, 0.2) win, (0.8, 0.5) win, (0.5, 0.2) win, (0.5, 0.5) tie -> 3.5 / 4
    assert auroc(torch.tensor([0.2, 0.5, 0.5, 0.8]), torch.tensor([0, 0, 1, 1])) == pytest.approx(0.875)


def test_single_class_is_an_error_not_nan() -> None:
    with pytest.raises(UndefinedMetricError, match="only one class"):
        auroc(torch.rand(5), torch.ones(5))
    with pytest.raises(UndefinedMetricError):
        auroc(torch.rand(5), torch.zeros(5))
    with pytest.raises(UndefinedMetricError, match="no positive"):
        auprc(torch.rand(5), torch.zeros(5))
    # all-positive average precision is defined (1.0), as in sklearn
    s = torch.tensor([0.3, 0.1, 0.3, 0.9, 0.5])
    assert auprc(s, torch.ones(5)) == skm.average_precision_score(np.ones(5), s.numpy()) == 1.0
    assert issubclass(UndefinedMetricError, ValueError)


def test_binary_input_validation_and_nan_targets() -> None:
    with pytest.raises(ValueError, match="finite"):
        auroc(torch.tensor([0.1, NAN, 0.3]), torch.tensor([0, 1, 1]))
    with pytest.raises(ValueError, match="0 or 1"):
        auroc(torch.tensor([0.1, 0.2, 0.3]), torch.tensor([0, 2, 1]))
    s = torch.tensor([0.1, 0.9, 0.4, 0.8, 0.3])
    y = torch.tensor([0.0, 1.0, NAN, 1.0, NAN])
    assert auroc(s, y) == auroc(s[[0, 1, 3]], y[[0, 1, 3]]) == 1.0


def test_per_class_and_macro_multiclass_match_sklearn_ovr() -> None:
    g = torch.Generator().manual_seed(7)
    p = torch.softmax(torch.randn(200, 4, generator=g, dtype=torch.float64), 1)
    y = torch.randint(0, 4, (200,), generator=g)
    names = ["normal", "mild", "moderate", "severe"]
    roc = macro_auroc(p, y, names)
    assert roc.value == pytest.approx(skm.roc_auc_score(y.numpy(), p.numpy(), multi_class="ovr", average="macro"))
    assert roc.undefined == () and list(roc.per_class) == names
    onehot = np.eye(4)[y.numpy()]
    per_ap = skm.average_precision_score(onehot, p.numpy(), average=None)
    assert [per_class_auprc(p, y, names)[n] for n in names] == pytest.approx(list(per_ap))
    assert macro_auprc(p, y, names).value == pytest.approx(per_ap.mean())
    assert per_class_auroc(p, y) == pytest.approx(dict(zip("0123", skm.roc_auc_score(onehot, p.numpy(), average=None))))


def test_macro_auroc_multilabel_masks_nan_and_reports_undefined() -> None:
    g = torch.Generator().manual_seed(0)
    p = torch.rand(50, 3, generator=g)
    y = (torch.rand(50, 3, generator=g) < p).double()
    y[:, 2] = 1.0  # single class present -> undefined
    y[:5, 0] = NAN  # uncertain labels ignored for finding "a" only
    r = macro_auroc(p, y, ["a", "b", "c"])
    assert r.undefined == ("c",) and r.per_class["c"] is None
    keep = ~torch.isnan(y[:, 0])
    ref_a = skm.roc_auc_score(y[keep, 0].numpy(), p[keep, 0].numpy())
    ref_b = skm.roc_auc_score(y[:, 1].numpy(), p[:, 1].numpy())
    assert r.per_class["a"] == pytest.approx(ref_a) and r.per_class["b"] == pytest.approx(ref_b)
    assert r.value == pytest.approx((ref_a + ref_b) / 2)
    pr = macro_auprc(p, y, ["a", "b", "c"])
    assert pr.undefined == () and pr.per_class["c"] == 1.0  # all positive: AP defined


def test_macro_all_undefined_and_shape_errors() -> None:
    r = macro_auroc(torch.rand(6, 2), torch.ones(6, 2))
    assert r.value is None and r.undefined == ("0", "1")
    with pytest.raises(ValueError, match="class names"):
        macro_auroc(torch.rand(6, 2), torch.ones(6, 2), ["only-one"])
    with pytest.raises(ValueError, match="class indices"):
        macro_auroc(torch.rand(3, 2), torch.tensor([0, 1, 2]))


# ---------------------------------------------------------------------------- calibration


def _manual_ece(p: np.ndarray, acc: np.ndarray, n_bins: int) -> float:
    """Right-closed bins (b/n, (b+1)/n], 0 in the first bin."""
    idx = np.clip(np.ceil(p * n_bins).astype(int) - 1, 0, n_bins - 1)
    return sum(
        (idx == b).mean() * abs(acc[idx == b].mean() - p[idx == b].mean()) for b in range(n_bins) if (idx == b).any()
    )


def test_binary_ece_matches_torchmetrics_and_manual() -> None:
    g = torch.Generator().manual_seed(1)
    p = torch.rand(500, generator=g)
    y = (torch.rand(500, generator=g) < p**1.5).long()
    ours = expected_calibration_error(p, y, n_bins=15, mode="binary")
    # torchmetrics' binary calibration error calibrates p(positive) like our "binary" mode. Its
    # bins are left-closed [b/n, (b+1)/n) (ours right-closed); random float32 probabilities never
    # sit exactly on an edge, so the two agree here (see the edge test below for where they differ).
    assert ours == pytest.approx(float(binary_calibration_error(p, y, n_bins=15, norm="l1")), abs=1e-6)
    assert ours == pytest.approx(_manual_ece(p.double().numpy(), y.numpy().astype(float), 15), abs=1e-12)


def test_top_label_ece_matches_torchmetrics_multiclass() -> None:
    g = torch.Generator().manual_seed(2)
    p = torch.softmax(torch.randn(400, 5, generator=g) * 2, 1)
    y = torch.randint(0, 5, (400,), generator=g)
    ref = multiclass_calibration_error(p, y, num_classes=5, n_bins=15, norm="l1")
    ours = expected_calibration_error(p, y, 15, "top_label")
    assert ours == pytest.approx(float(ref), abs=1e-6)
    conf, pred = p.double().max(1)
    assert ours == pytest.approx(_manual_ece(conf.numpy(), (pred == y).double().numpy(), 15), abs=1e-12)
    curve = reliability_curve(p, y, 15, "top_label")
    assert sum(b["count"] for b in curve) == 400
    n = torch.tensor([b["count"] for b in curve], dtype=torch.float64)
    gaps = torch.tensor([abs(b["accuracy"] - b["confidence"]) for b in curve], dtype=torch.float64)
    assert float((n * gaps).sum() / 400) == pytest.approx(ours, abs=1e-12)


def test_bin_edges_are_right_closed_unlike_torchmetrics() -> None:
    # n_bins = 4: edges 0, .25, .5, .75, 1 (exact in binary floating point)
    p = torch.tensor([0.0, 0.25, 0.5, 0.6, 1.0], dtype=torch.float64)
    y = torch.tensor([0, 0, 1, 1, 1])
    curve = reliability_curve(p, y, n_bins=4, mode="binary")
    assert [(b["lower"], b["upper"], b["count"]) for b in curve] == [
        (0.0, 0.25, 2),
        (0.25, 0.5, 1),
        (0.5, 0.75, 1),
        (0.75, 1.0, 1),
    ]
    # ours: bins {0, .25} {.5} {.6} {1}
    expected = (2 * abs(0 - 0.125) + abs(1 - 0.5) + abs(1 - 0.6) + abs(1 - 1.0)) / 5
    assert expected_calibration_error(p, y, 4, "binary") == pytest.approx(expected)
    # torchmetrics: [0, .25) {0}, [.25, .5) {.25}, [.5, .75) {.5, .6}, and 1.0 in an extra bin
    tm = (abs(0 - 0) + abs(0 - 0.25) + 2 * abs(1 - 0.55) + abs(1 - 1.0)) / 5
    assert float(binary_calibration_error(p, y, n_bins=4, norm="l1")) == pytest.approx(tm)


def test_ece_validation_and_nan_targets() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        expected_calibration_error(torch.tensor([1.5, 0.2]), torch.tensor([1, 0]), mode="binary")
    with pytest.raises(ValueError, match="mode"):
        expected_calibration_error(torch.rand(3), torch.tensor([1, 0, 1]), mode="topk")  # type: ignore[arg-type]
    with pytest.raises(UndefinedMetricError):
        expected_calibration_error(torch.rand(2), torch.tensor([NAN, NAN]), mode="binary")
    p = torch.tensor([0.9, 0.1, 0.7, 0.3])
    y = torch.tensor([1.0, NAN, 0.0, NAN])
    assert expected_calibration_error(p, y, mode="binary") == pytest.approx(
        expected_calibration_error(p[[0, 2]], y[[0, 2]], mode="binary")
    )


def test_multilabel_ece_is_mean_of_binary_and_small_when_calibrated() -> None:
    g = torch.Generator().manual_seed(3)
    p = torch.rand(3000, 3, generator=g, dtype=torch.float64)
    y = (torch.rand(3000, 3, generator=g, dtype=torch.float64) < p).double()
    y[:100, 1] = NAN
    per = []
    for c in range(3):
        keep = ~torch.isnan(y[:, c])
        per.append(float(binary_calibration_error(p[keep, c], y[keep, c].long(), n_bins=15, norm="l1")))
    assert multilabel_ece(p, y) == pytest.approx(sum(per) / 3, abs=1e-9)
    assert multilabel_ece(p, y) < 0.05
    y[:, 2] = NAN  # a finding with no labelled case is skipped
    assert multilabel_ece(p, y) == pytest.approx(sum(per[:2]) / 2, abs=1e-9)


# ---------------------------------------------------------------------------- Brier, kappa


def test_brier_matches_sklearn() -> None:
    g = torch.Generator().manual_seed(4)
    p = torch.rand(100, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (100,), generator=g)
    assert brier_score(p, y) == pytest.approx(skm.brier_score_loss(y.numpy(), p.numpy()))
    pm = torch.softmax(torch.randn(100, 4, generator=g, dtype=torch.float64), 1)
    ym = torch.randint(0, 4, (100,), generator=g)
    ref = skm.brier_score_loss(ym.numpy(), pm.numpy(), labels=[0, 1, 2, 3], scale_by_half=False)
    assert brier_score(pm, ym) == pytest.approx(ref)
    assert brier_score(pm, ym) == pytest.approx(((pm.numpy() - np.eye(4)[ym.numpy()]) ** 2).sum(1).mean())


def test_brier_multilabel_ignores_nan() -> None:
    p = torch.tensor([[0.8, 0.3], [0.1, 0.6]])
    y = torch.tensor([[1.0, NAN], [0.0, 1.0]])
    assert brier_score(p, y) == pytest.approx((0.04 + 0.01 + 0.16) / 3)
    with pytest.raises(UndefinedMetricError):
        brier_score(p, torch.full_like(p, NAN))


def test_brier_refuses_nan_and_out_of_range_probabilities() -> None:
    y = torch.tensor([1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="finite"):
        brier_score(torch.tensor([0.9, NAN, 0.4]), y)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score(torch.tensor([0.9, 1.2, 0.4]), y)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score(torch.tensor([0.9, -0.1, 0.4]), y)
    with pytest.raises(ValueError, match="0 or 1"):
        brier_score(torch.tensor([0.9, 0.1, 0.4]), torch.tensor([1.0, 2.0, 0.0]))
    pm = torch.tensor([[0.7, 0.3], [NAN, 0.5]])
    with pytest.raises(ValueError, match="finite"):
        brier_score(pm, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score(torch.tensor([[1.5, -0.5]]), torch.tensor([0]))
    # an unlabelled entry's probability does not enter the score, so it is not checked either
    assert brier_score(torch.tensor([0.5, NAN]), torch.tensor([1.0, NAN])) == pytest.approx(0.25)
    with pytest.raises(UndefinedMetricError, match="no case") as err:
        brier_score(torch.empty(0, 3), torch.empty(0, dtype=torch.long))
    assert err.value.reason == "there is no case"


def test_undefined_errors_carry_their_reason() -> None:
    with pytest.raises(UndefinedMetricError) as err:
        auroc(torch.rand(3), torch.zeros(3))
    assert err.value.reason == "only one class is present (0 positive, 3 negative)"
    assert str(err.value) == "AUROC is undefined: only one class is present (0 positive, 3 negative)"
    with pytest.raises(UndefinedMetricError) as err:
        auroc(torch.rand(3), torch.full((3,), NAN))
    assert err.value.reason == "no case is labelled"
    with pytest.raises(UndefinedMetricError) as err:
        auprc(torch.rand(3), torch.zeros(3))
    assert err.value.reason == "there is no positive case (3 negative)"
    with pytest.raises(UndefinedMetricError) as err:
        quadratic_weighted_kappa(torch.tensor([1, 1]), torch.tensor([1, 1]), 3)
    assert "one and the same grade" in err.value.reason
    with pytest.raises(UndefinedMetricError) as err:
        multilabel_ece(torch.rand(2, 2), torch.full((2, 2), NAN))
    assert err.value.reason == "no finding has a labelled case"
    assert UndefinedMetricError("plain message").reason == "plain message"


def test_macro_results_say_why_a_class_is_undefined() -> None:
    probs = torch.tensor([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1]])
    r = macro_auroc(probs, torch.tensor([0, 0, 1]), ["a", "b", "c"])
    assert r.value is not None and r.reason is None
    assert r.undefined == ("c",) and r.reasons == {"c": "only one class is present (0 positive, 3 negative)"}
    one = macro_auroc(probs, torch.tensor([0, 0, 0]), ["a", "b", "c"])
    assert one.value is None and one.reason is not None and one.reason.startswith("no class defines it (a: only one")
    pr = macro_auprc(probs, torch.tensor([0, 0, 0]), ["a", "b", "c"])
    assert pr.value == 1.0 and set(pr.reasons) == {"b", "c"}
    nolabels = macro_auroc(probs[:, :2], torch.full((3, 2), NAN), ["x", "y"])
    assert nolabels.value is None and nolabels.reasons == {"x": "no case is labelled", "y": "no case is labelled"}


def test_constant_predictions_are_defined_not_nan() -> None:
    p = torch.full((4,), 0.5)
    y = torch.tensor([0, 1, 0, 1])
    assert auroc(p, y) == 0.5 and auprc(p, y) == 0.5
    assert expected_calibration_error(p, y, mode="binary") == pytest.approx(0.0)
    assert quadratic_weighted_kappa(torch.zeros(4, dtype=torch.long), y, 2) == pytest.approx(0.0)


def test_quadratic_kappa_matches_sklearn() -> None:
    g = torch.Generator().manual_seed(5)
    a = torch.randint(0, 5, (300,), generator=g)
    b = torch.clamp(a + torch.randint(-1, 2, (300,), generator=g), 0, 4)
    ref = skm.cohen_kappa_score(a.numpy(), b.numpy(), weights="quadratic")
    assert quadratic_weighted_kappa(a, b, 5) == pytest.approx(ref)
    # grades absent from both raters still count on the scale: sklearn needs labels= for that
    a2, b2 = a.clamp(max=2), b.clamp(max=2)
    ref2 = skm.cohen_kappa_score(a2.numpy(), b2.numpy(), weights="quadratic", labels=list(range(5)))
    assert quadratic_weighted_kappa(a2, b2, 5) == pytest.approx(ref2)
    assert quadratic_weighted_kappa(a, a, 5) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="grades must be in 0..4"):
        quadratic_weighted_kappa(torch.tensor([5]), torch.tensor([0]), 5)
    with pytest.raises(UndefinedMetricError):
        quadratic_weighted_kappa(torch.tensor([2, 2]), torch.tensor([2, 2]), 5)


# ---------------------------------------------------------------------------- package hygiene


def test_metrics_package_imports_only_torch() -> None:
    """``import c3_core.metrics`` must not pull SciPy/NumPy-heavy modules at import time."""
    pkg = Path(__file__).resolve().parents[1] / "src" / "c3_core" / "metrics"
    allowed = {"__future__", "collections", "dataclasses", "typing", "torch", "c3_core"}
    for module in ("__init__", "classification", "agreement", "utility_stats", "errors"):
        tree = ast.parse((pkg / f"{module}.py").read_text())
        for node in tree.body:
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= allowed, f"{module}.py imports {roots - allowed} at module level"
