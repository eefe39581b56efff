"""Classification and calibration metrics agree with scikit-learn and torchmetrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn import metrics as skm
from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

from c3_core.metrics.classification import (
    auprc,
    auroc,
    brier_score,
    expected_calibration_error,
    macro_auroc,
    multilabel_ece,
    quadratic_weighted_kappa,
    reliability_curve,
)
from c3_core.metrics.errors import UndefinedMetricError


@pytest.mark.parametrize("seed", range(5))
def test_auroc_auprc_match_sklearn_with_ties(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (200,), generator=g)
    s = torch.round(torch.rand(200, generator=g) + 0.3 * y, decimals=1)  # many ties
    assert auroc(s, y) == pytest.approx(skm.roc_auc_score(y.numpy(), s.numpy()), abs=1e-12)
    assert auprc(s, y) == pytest.approx(skm.average_precision_score(y.numpy(), s.numpy()), abs=1e-12)


def test_single_class_is_an_error_not_nan() -> None:
    with pytest.raises(UndefinedMetricError):
        auroc(torch.rand(5), torch.ones(5))


def test_macro_auroc_multilabel_ignores_nan_and_reports_undefined() -> None:
    g = torch.Generator().manual_seed(0)
    p = torch.rand(50, 3, generator=g)
    y = (torch.rand(50, 3, generator=g) < p).double()
    y[:, 2] = 1.0
    y[:5, 0] = float("nan")
    r = macro_auroc(p, y, ["a", "b", "c"])
    assert r.undefined == ("c",) and r.per_class["c"] is None
    keep = ~torch.isnan(y[:, 0])
    ref_a = skm.roc_auc_score(y[keep, 0].numpy(), p[keep, 0].numpy())
    ref_b = skm.roc_auc_score(y[:, 1].numpy(), p[:, 1].numpy())
    assert r.value == pytest.approx((ref_a + ref_b) / 2)


def test_binary_ece_matches_torchmetrics() -> None:
    g = torch.Generator().manual_seed(1)
    p = torch.rand(500, generator=g)
    y = (torch.rand(500, generator=g) < p**1.5).long()
    ref = binary_calibration_error(p, y, n_bins=15, norm="l1")
    # torchmetrics' binary ECE calibrates p(positive), like our "binary" mode. Its bins are
    # [a, b) and ours (a, b]; random float32 probabilities never sit exactly on an edge.
    assert expected_calibration_error(p, y, n_bins=15, mode="binary") == pytest.approx(float(ref), abs=1e-6)
    manual = 0.0
    idx = np.clip(np.ceil(p.numpy() * 15).astype(int) - 1, 0, 14)
    for b in range(15):
        sel = idx == b
        if sel.any():
            manual += sel.mean() * abs(y.numpy()[sel].mean() - p.numpy()[sel].mean())
    assert expected_calibration_error(p, y, n_bins=15, mode="binary") == pytest.approx(manual, abs=1e-6)


def test_top_label_ece_matches_torchmetrics_multiclass() -> None:
    g = torch.Generator().manual_seed(2)
    p = torch.softmax(torch.randn(400, 5, generator=g) * 2, 1)
    y = torch.randint(0, 5, (400,), generator=g)
    ref = multiclass_calibration_error(p, y, num_classes=5, n_bins=15, norm="l1")
    assert expected_calibration_error(p, y, 15, "top_label") == pytest.approx(float(ref), abs=1e-6)
    curve = reliability_curve(p, y, 15, "top_label")
    assert sum(b["count"] for b in curve) == 400


def test_perfect_calibration_has_small_ece_and_multilabel_mean() -> None:
    g = torch.Generator().manual_seed(3)
    p = torch.rand(20000, 2, generator=g, dtype=torch.float64)
    y = (torch.rand(20000, 2, generator=g, dtype=torch.float64) < p).double()
    assert multilabel_ece(p, y) < 0.02


def test_brier_matches_sklearn() -> None:
    g = torch.Generator().manual_seed(4)
    p = torch.rand(100, generator=g)
    y = torch.randint(0, 2, (100,), generator=g)
    assert brier_score(p, y) == pytest.approx(skm.brier_score_loss(y.numpy(), p.numpy()))
    pm = torch.softmax(torch.randn(100, 4, generator=g), 1)
    ym = torch.randint(0, 4, (100,), generator=g)
    onehot = np.eye(4)[ym.numpy()]
    assert brier_score(pm, ym) == pytest.approx(((pm.numpy() - onehot) ** 2).sum(1).mean())


def test_quadratic_kappa_matches_sklearn() -> None:
    g = torch.Generator().manual_seed(5)
    a = torch.randint(0, 5, (300,), generator=g)
    b = torch.clamp(a + torch.randint(-1, 2, (300,), generator=g), 0, 4)
    ref = skm.cohen_kappa_score(a.numpy(), b.numpy(), weights="quadratic")
    assert quadratic_weighted_kappa(a, b, 5) == pytest.approx(ref)
    with pytest.raises(ValueError, match="grades must be in 0..4"):
        quadratic_weighted_kappa(torch.tensor([5]), torch.tensor([0]), 5)
