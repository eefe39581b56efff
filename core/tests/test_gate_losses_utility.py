"""Consistency losses, the validity gate and its calibration, shift-stable utility."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.special import rel_entr

from c3_core.gate import (
    AnchorFileError,
    CalibrationError,
    ClassificationGate,
    SegmentationGate,
    calibrate,
    load_anchors_csv,
)
from c3_core.losses import (
    BernoulliKL,
    CategoricalKL,
    ConsistencyObjective,
    SoftDiceDistance,
    bernoulli_kl,
    categorical_kl,
    soft_dice_distance,
)
from c3_core.metrics.utility_stats import utility_summary
from c3_core.utility import dice_score, one_minus_brier, shift_stable_utility, true_class_probability


def test_kl_zero_for_identical_positive_otherwise_and_matches_scipy() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    assert torch.allclose(categorical_kl(a, a), torch.zeros(6), atol=1e-6)
    kl = categorical_kl(a, b)
    assert (kl > 0).all()
    p, q = torch.softmax(a, 1).numpy(), torch.softmax(b, 1).numpy()
    assert torch.allclose(kl, torch.tensor(rel_entr(p, q).sum(1), dtype=kl.dtype), atol=1e-5)
    assert not torch.allclose(kl, categorical_kl(b, a))  # KL is not symmetric


def test_bernoulli_kl_sums_findings() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g)
    assert torch.allclose(bernoulli_kl(a, a), torch.zeros(5), atol=1e-6)
    p, q = torch.sigmoid(a).numpy(), torch.sigmoid(b).numpy()
    ref = (rel_entr(p, q) + rel_entr(1 - p, 1 - q)).sum(1)
    assert torch.allclose(bernoulli_kl(a, b), torch.tensor(ref, dtype=torch.float32), atol=1e-5)


def test_soft_dice_distance_formula() -> None:
    a = torch.tensor([[[1.0, 1.0, 0.0, 0.0]]])
    b = torch.tensor([[[1.0, 0.0, 1.0, 0.0]]])
    assert soft_dice_distance(a, a, eps=0.0).item() == pytest.approx(0.0)
    assert soft_dice_distance(a, b, eps=1.0).item() == pytest.approx(1 - (2 * 1 + 1) / (2 + 2 + 1))


@pytest.mark.parametrize("module", [CategoricalKL(), BernoulliKL(), SoftDiceDistance()])
def test_losses_pass_gradients(module: torch.nn.Module) -> None:
    g = torch.Generator().manual_seed(2)
    shape = (3, 1, 4, 4) if isinstance(module, SoftDiceDistance) else (3, 4)
    a = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(shape, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, y: module(x, y), (a, b))


def test_consistency_objective_ignores_rejected() -> None:
    g = torch.Generator().manual_seed(3)
    ref = torch.randn(2, 3, generator=g, requires_grad=True)
    cf = torch.randn(2, 4, 3, generator=g)
    y = torch.tensor([0, 2])
    obj = ConsistencyObjective(torch.nn.CrossEntropyLoss(), CategoricalKL(reduction="none"), lam=0.5)
    none = obj(ref, y, cf, torch.zeros(2, 4, dtype=torch.bool))
    assert none.consistency.item() == 0.0 and torch.allclose(none.total, none.supervised)
    some = obj(ref, y, cf, torch.tensor([[True, False, False, False], [False] * 4]))
    assert some.consistency.item() == pytest.approx(categorical_kl(ref[:1], cf[0, :1]).item(), rel=1e-5)
    some.total.backward()
    assert ref.grad is not None and torch.isfinite(ref.grad).all()
    with pytest.raises(ValueError, match="reduction='none'"):
        ConsistencyObjective(torch.nn.CrossEntropyLoss(), CategoricalKL(), 1.0)


def test_gate_rejects_planted_label_change_with_reasons() -> None:
    gate = ClassificationGate(delta=0.2, multilabel=False, class_names=["healthy", "disease"])
    ref = torch.tensor([[0.55, 0.45]])
    cf = torch.tensor([[[0.55, 0.45], [0.45, 0.55], [0.95, 0.05]]])
    d = gate(ref, cf)
    assert d.admitted.tolist() == [[True, False, False]]
    assert d.reasons[0][0] is None
    assert "predicted class changed 0 → 1 ('healthy' → 'disease')" in d.reasons[0][1]
    assert "max |Δp| 0.400 > δ 0.200" in d.reasons[0][2]
    assert d.reason_counts() == {"prob_shift": 1, "class_change": 1}


def test_multilabel_gate_and_operator_rejections() -> None:
    gate = ClassificationGate(delta=0.5, multilabel=True, class_names=["Edema", "Effusion"])
    d = gate(torch.tensor([[0.6, 0.2]]), torch.tensor([[[0.4, 0.55], [0.62, 0.25]]]))
    assert d.admitted.tolist() == [[False, True]]
    assert d.reasons[0][0] == "positive set changed: +Effusion −Edema"
    d2 = d.with_extra_rejections([[None, "lesion visibility 0.31 < 0.50"]])
    assert d2.admitted.tolist() == [[False, False]] and d2.reason_counts()["operator_check"] == 1


def test_segmentation_gate_iou_and_empty_rule() -> None:
    ref = torch.zeros(2, 1, 4, 4)
    ref[0, 0, :2, :2] = 1
    cf = torch.zeros(2, 2, 1, 4, 4)
    cf[0, 0, 0, :2, :2] = 1
    cf[0, 1, 0, :2, :1] = 1
    d = SegmentationGate(tau=0.8)(ref, cf)
    assert d.admitted.tolist() == [[True, False], [True, True]]
    assert d.reasons[0][1] == "teacher IoU 0.500 < τ 0.800"
    with pytest.raises(ValueError, match="tau must be in"):
        SegmentationGate(tau=1.5)


def test_calibrate_picks_loosest_threshold() -> None:
    anchors = [(i / 100, i < 30) for i in range(60)] + [(0.05, False)]
    r = calibrate(anchors, target_precision=0.95)
    assert r.threshold == pytest.approx(0.29) and r.precision == pytest.approx(30 / 31)
    assert r.recall == 1.0
    strict = calibrate(anchors, target_precision=1.0)
    assert strict.threshold == pytest.approx(0.04)
    seg = calibrate([(0.9, True), (0.8, True), (0.7, False), (0.6, True)], 0.9, kind="segmentation")
    assert seg.threshold == pytest.approx(0.8)
    with pytest.raises(CalibrationError, match="best achievable"):
        calibrate([(0.1, False), (0.2, True)], 0.9)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.booleans()), min_size=1, max_size=40), st.floats(0.3, 0.9), st.floats(0.0, 0.1))
def test_raising_target_never_loosens(anchors, target, bump) -> None:  # noqa: ANN001
    try:
        tight = calibrate(anchors, min(1.0, target + bump))
    except CalibrationError:
        return
    loose = calibrate(anchors, target)
    assert tight.threshold <= loose.threshold
    admitted = [v for s, v in anchors if s <= loose.threshold]
    assert sum(admitted) / len(admitted) >= target - 1e-9


def test_anchor_csv_errors_name_file_and_row(tmp_path: Path) -> None:
    f = tmp_path / "anchors.csv"
    f.write_text("statistic,valid\n0.1,yes\n0.2,maybe\n")
    with pytest.raises(AnchorFileError, match=r"anchors.csv: row 3: column 'valid'"):
        load_anchors_csv(f)
    f.write_text("stat,valid\n")
    with pytest.raises(AnchorFileError, match="missing column"):
        load_anchors_csv(f)
    f.write_text("statistic,valid\nnan,1\n")
    with pytest.raises(AnchorFileError, match="row 2"):
        load_anchors_csv(f)
    f.write_text("statistic,valid,exam_id\n0.1,1,e1\n0.3,0,e2\n")
    assert [a.valid for a in load_anchors_csv(f)] == [True, False]


def test_utility_is_min_over_admitted_including_original() -> None:
    s0 = torch.tensor([0.9, 0.6, 0.8])
    scf = torch.tensor([[0.5, 0.95], [0.7, 0.2], [0.85, 0.9]])
    adm = torch.tensor([[False, True], [True, True], [True, True]])
    r = shift_stable_utility(s0, scf, adm)
    assert r.utility.tolist() == pytest.approx([0.9, 0.2, 0.8])
    assert r.argmin.tolist() == [-1, 1, -1]
    assert (r.utility <= s0).all()


def test_scores() -> None:
    p = torch.tensor([[0.7, 0.2, 0.1]])
    assert true_class_probability(p, torch.tensor([1])).item() == pytest.approx(0.2)
    assert one_minus_brier(p, torch.tensor([0])).item() == pytest.approx(1 - (0.09 + 0.04 + 0.01) / 2)
    ml = one_minus_brier(torch.tensor([[0.8, 0.3]]), torch.tensor([[1.0, float("nan")]]))
    assert ml.item() == pytest.approx(1 - 0.04)
    m = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    assert dice_score(m, m).item() == 1.0


def test_utility_summary_bootstrap_is_seeded() -> None:
    u = torch.rand(200, generator=torch.Generator().manual_seed(0))
    a = utility_summary(u, torch.Generator().manual_seed(1), n_boot=300)
    b = utility_summary(u, torch.Generator().manual_seed(1), n_boot=300)
    assert a == b
    assert a["mean_ci"][0] <= a["mean"] <= a["mean_ci"][1]
    assert a["p10_ci"][0] <= a["p10"] <= a["p10_ci"][1]
