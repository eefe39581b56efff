"""The validity gate, its calibration on human-audited anchors, and the anchor CSV reader."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from c3_core.gate import (
    Anchor,
    AnchorFileError,
    CalibrationError,
    CalibrationResult,
    ClassificationGate,
    GateDecision,
    SegmentationGate,
    calibrate,
    load_anchors_csv,
    max_probability_shift,
    teacher_iou,
)

# -- classification, single label --------------------------------------------------------------


def test_single_label_gate_rejects_planted_label_changes() -> None:
    gate = ClassificationGate(delta=0.2, multilabel=False, class_names=["grade0", "grade1", "grade2"])
    ref = torch.tensor([[0.30, 0.45, 0.25]])
    cf = torch.tensor(
        [
            [
                [0.30, 0.45, 0.25],  # identical: admitted
                [0.40, 0.35, 0.25],  # argmax flip 1 -> 0 with a small |Δp| = 0.10
                [0.08, 0.70, 0.22],  # same class but |Δp| = 0.25 > δ
                [0.72, 0.05, 0.23],  # both
            ]
        ]
    )
    d = gate(ref, cf)
    assert d.admitted.tolist() == [[True, False, False, False]]
    assert d.reasons[0][0] is None
    assert d.reasons[0][1] == "predicted class changed 1 → 0 ('grade1' → 'grade0')"
    assert d.reasons[0][2] == "max |Δp| 0.250 > δ 0.200 (class 'grade1')"
    assert d.reasons[0][3] == (
        "max |Δp| 0.420 > δ 0.200 (class 'grade0'); predicted class changed 1 → 0 ('grade1' → 'grade0')"
    )
    assert d.kinds[0][3] == ("prob_shift", "class_change")
    assert d.reason_counts() == {"prob_shift": 2, "class_change": 2}
    assert d.admission_rate() == pytest.approx(0.25)
    assert torch.allclose(d.statistic, torch.tensor([[0.0, 0.10, 0.25, 0.42]]), atol=1e-6)


def test_gate_admits_identical_counterfactuals() -> None:
    probs = torch.softmax(torch.randn(5, 4, generator=torch.Generator().manual_seed(0)), 1)
    d = ClassificationGate(delta=0.0, multilabel=False)(probs, probs.unsqueeze(1).expand(5, 3, 4))
    assert d.admitted.all() and d.reason_counts() == {} and d.admission_rate() == 1.0
    assert all(r is None for row in d.reasons for r in row)


def test_shift_exactly_at_delta_is_admitted() -> None:
    ref = torch.tensor([[0.7, 0.3]])
    cf = torch.tensor([[[0.5, 0.5]]])  # float32 0.7 − 0.5 is not exactly 0.2
    assert ClassificationGate(delta=0.2, multilabel=False)(ref, cf).admitted.item()


def test_reason_shows_enough_digits_to_tell_value_from_threshold() -> None:
    ref = torch.tensor([[0.9, 0.1]], dtype=torch.float64)
    cf = torch.tensor([[[0.6998, 0.3002]]], dtype=torch.float64)
    d = ClassificationGate(delta=0.2, multilabel=False)(ref, cf)
    assert d.reasons[0][0] == "max |Δp| 0.2002 > δ 0.2000 (class '0')"


def test_classification_gate_validation() -> None:
    with pytest.raises(ValueError, match=r"delta must be in \[0, 1\]"):
        ClassificationGate(delta=1.2, multilabel=False)
    with pytest.raises(ValueError, match="threshold"):
        ClassificationGate(delta=0.1, multilabel=True, threshold=-0.1)
    gate = ClassificationGate(delta=0.1, multilabel=False, class_names=["a", "b"])
    with pytest.raises(ValueError, match=r"expected probs_ref \(B, C\) and probs_cf \(B, K, C\)"):
        gate(torch.full((2, 2), 0.5), torch.full((2, 2), 0.5))
    with pytest.raises(ValueError, match="2 class names for 3 classes"):
        gate(torch.full((1, 3), 1 / 3), torch.full((1, 1, 3), 1 / 3))
    with pytest.raises(ValueError, match="not logits"):
        gate(torch.tensor([[2.0, -1.0]]), torch.full((1, 1, 2), 0.5))


# -- classification, multi label ---------------------------------------------------------------


def test_multilabel_gate_positive_set_change() -> None:
    names = ["Atelectasis", "Cardiomegaly", "Edema"]
    gate = ClassificationGate(delta=0.5, multilabel=True, class_names=names)
    ref = torch.tensor([[0.2, 0.6, 0.45]])
    cf = torch.tensor(
        [
            [
                [0.25, 0.62, 0.40],  # same positive set {Cardiomegaly}
                [0.20, 0.45, 0.55],  # +Edema −Cardiomegaly, small shifts
                [0.20, 0.90, 0.10],  # same set, Edema moves 0.35 < 0.5: admitted
            ]
        ]
    )
    d = gate(ref, cf)
    assert d.admitted.tolist() == [[True, False, True]]
    assert d.reasons[0][1] == "positive set changed: +Edema −Cardiomegaly"
    assert d.reason_counts() == {"positive_set_change": 1}
    strict = ClassificationGate(delta=0.2, multilabel=True, class_names=names)(ref, cf)
    assert strict.reasons[0][2] == "max |Δp| 0.350 > δ 0.200 (class 'Edema')"


def test_multilabel_gate_threshold() -> None:
    ref = torch.tensor([[0.35]])
    cf = torch.tensor([[[0.45]]])
    assert ClassificationGate(delta=0.2, multilabel=True)(ref, cf).admitted.item()
    d = ClassificationGate(delta=0.2, multilabel=True, threshold=0.4)(ref, cf)
    assert d.reasons[0][0] == "positive set changed: +0"


def test_max_probability_shift_kernel() -> None:
    ref = torch.tensor([[0.1, 0.6, 0.3]])
    cf = torch.tensor([[[0.1, 0.3, 0.6], [0.4, 0.5, 0.1]]])
    shift, where = max_probability_shift(ref, cf)
    assert torch.allclose(shift, torch.tensor([[0.3, 0.3]]), atol=1e-6)
    assert where.tolist() == [[1, 0]]  # a tie goes to the first class


# -- segmentation -------------------------------------------------------------------------------


def test_segmentation_gate_iou_rule() -> None:
    ref = torch.zeros(1, 1, 4, 4)
    ref[0, 0, :2, :2] = 0.9  # probabilities, binarised at 0.5
    cf = torch.zeros(1, 3, 1, 4, 4)
    cf[0, 0, 0, :2, :2] = 0.8  # identical mask -> IoU 1
    cf[0, 1, 0, :2, :1] = 1.0  # half of it -> IoU 0.5
    cf[0, 2, 0, :2, :2] = 0.4  # below the threshold -> empty vs non-empty, IoU 0
    d = SegmentationGate(tau=0.8)(ref, cf)
    assert d.admitted.tolist() == [[True, False, False]]
    assert d.statistic.tolist() == [[1.0, 0.5, 0.0]]
    assert d.reasons[0][1] == "teacher IoU 0.500 < τ 0.800"
    assert d.reason_counts() == {"teacher_iou": 2}


def test_segmentation_gate_both_empty_rule() -> None:
    ref = torch.zeros(1, 1, 3, 3, dtype=torch.bool)
    cf = torch.zeros(1, 1, 1, 3, 3, dtype=torch.bool)
    assert SegmentationGate(tau=0.9)(ref, cf).admitted.item()
    d = SegmentationGate(tau=0.9, empty_iou=0.0)(ref, cf)
    assert not d.admitted.item() and d.statistic.item() == 0.0
    assert d.reasons[0][0] == "teacher IoU 0.000 < τ 0.900"


def test_segmentation_gate_3d_and_tau_edges() -> None:
    g = torch.Generator().manual_seed(1)
    ref = torch.rand(2, 1, 4, 5, 6, generator=g) > 0.5
    cf = torch.rand(2, 3, 1, 4, 5, 6, generator=g) > 0.5
    assert SegmentationGate(tau=0.0)(ref, cf).admitted.all()
    same = SegmentationGate(tau=1.0)(ref, ref.unsqueeze(1).expand(2, 3, 1, 4, 5, 6))
    assert same.admitted.all()


def test_teacher_iou_kernel() -> None:
    a = torch.tensor([[True, True, False, False]])
    c = torch.tensor([[[True, False, True, False], [False, False, False, False]]])
    assert teacher_iou(a, c).tolist() == [[pytest.approx(1 / 3), 0.0]]
    empty = torch.zeros(1, 4, dtype=torch.bool)
    assert teacher_iou(empty, empty.unsqueeze(1), empty_iou=0.25).tolist() == [[0.25]]


def test_segmentation_gate_validation() -> None:
    with pytest.raises(ValueError, match=r"tau must be in \[0, 1\]"):
        SegmentationGate(tau=1.5)
    with pytest.raises(ValueError, match="empty_iou"):
        SegmentationGate(tau=0.5, empty_iou=2.0)
    with pytest.raises(ValueError, match=r"teacher_ref \(B, 1, \*spatial\)"):
        SegmentationGate(tau=0.5)(torch.zeros(1, 1, 4, 4), torch.zeros(1, 2, 1, 4, 5))
    with pytest.raises(ValueError, match=r"teacher_ref \(B, 1, \*spatial\)"):
        SegmentationGate(tau=0.5)(torch.zeros(1, 2, 4, 4), torch.zeros(1, 2, 2, 4, 4))
    with pytest.raises(ValueError, match="NaN"):
        SegmentationGate(tau=0.5)(torch.full((1, 1, 2, 2), float("nan")), torch.zeros(1, 1, 1, 2, 2))


# -- decisions ----------------------------------------------------------------------------------


def test_extra_rejections_merge_and_keep_reasons() -> None:
    gate = ClassificationGate(delta=0.1, multilabel=False, class_names=["no DR", "DR"])
    d = gate(torch.tensor([[0.75, 0.25]]), torch.tensor([[[0.75, 0.25], [0.5, 0.5], [0.6875, 0.3125]]]))
    assert d.admitted.tolist() == [[True, False, True]]
    merged = d.with_extra_rejections([[None, "lesion visibility 0.31 < 0.50", "lesion visibility 0.42 < 0.50"]])
    assert merged.admitted.tolist() == [[True, False, False]]
    assert merged.reasons[0][1] == "max |Δp| 0.250 > δ 0.100 (class 'no DR'); lesion visibility 0.31 < 0.50"
    assert merged.reasons[0][2] == "lesion visibility 0.42 < 0.50"
    assert merged.reason_counts() == {"prob_shift": 1, "operator_check": 2}
    assert d.admitted.tolist() == [[True, False, True]]  # the original decision is untouched
    assert torch.equal(merged.statistic, d.statistic)
    with pytest.raises(ValueError, match="1 x 3"):
        d.with_extra_rejections([[None, None]])
    with pytest.raises(ValueError, match="needs a reason"):
        d.with_extra_rejections([[None, "", None]])


def test_decision_invariants() -> None:
    ok = GateDecision.admit_all(2, 3)
    assert ok.admission_rate() == 1.0 and ok.shape == (2, 3) and ok.reason_counts() == {}
    assert GateDecision.admit_all(0, 0).admission_rate() == 0.0
    with pytest.raises(ValueError, match="needs a reason"):
        GateDecision(torch.tensor([[False]]), ((None,),), torch.zeros(1, 1))
    external = GateDecision(torch.tensor([[False]]), (("custom",),), torch.zeros(1, 1))
    assert external.reason_counts() == {"unspecified": 1}
    with pytest.raises(ValueError, match="statistic"):
        GateDecision(torch.tensor([[True]]), ((None,),), torch.zeros(2))


# -- calibration --------------------------------------------------------------------------------


def _precision(anchors: list[tuple[float, bool]], threshold: float, kind: str) -> tuple[int, int]:
    admitted = [v for s, v in anchors if (s <= threshold if kind == "classification" else s >= threshold)]
    return sum(admitted), len(admitted)


def test_calibrate_classification_known_answer() -> None:
    # shifts 0.00..0.59; truly valid below 0.30, plus one invalid planted at 0.05
    anchors = [(i / 100, i < 30) for i in range(60)] + [(0.05, False)]
    r = calibrate(anchors, target_precision=0.95)
    assert isinstance(r, CalibrationResult)
    assert r.threshold == pytest.approx(0.29)
    assert r.precision == pytest.approx(30 / 31) and r.recall == 1.0
    assert (r.n_admitted, r.n_anchors, r.kind, r.target_precision) == (31, 61, "classification", 0.95)
    # 0.30 adds an invalid anchor: 30/32 = 0.9375 < 0.95, so 0.29 is the loosest
    assert calibrate(anchors, target_precision=0.9375).threshold == pytest.approx(0.30)
    # perfect precision only below the planted invalid anchor (ties at 0.05 go in together)
    strict = calibrate(anchors, target_precision=1.0)
    assert strict.threshold == pytest.approx(0.04) and strict.recall == pytest.approx(5 / 30)
    assert r.to_dict() == {
        "threshold": r.threshold,
        "precision": r.precision,
        "recall": r.recall,
        "n_admitted": 31,
        "n_anchors": 61,
        "target_precision": 0.95,
        "kind": "classification",
    }


def test_calibrate_takes_loosest_even_past_a_dip() -> None:
    # precision over prefixes: 1, 0.5, 0.67, 0.75, 0.8 -> loosest reaching 0.75 is 0.5
    anchors = [(0.1, True), (0.2, False), (0.3, True), (0.4, True), (0.5, True), (0.6, False)]
    assert calibrate(anchors, 0.75).threshold == pytest.approx(0.5)


def test_calibrate_segmentation_admits_above_tau() -> None:
    anchors = [(0.95, True), (0.9, True), (0.8, True), (0.7, False), (0.6, True), (0.3, False)]
    r = calibrate(anchors, 0.9, kind="segmentation")
    assert r.threshold == pytest.approx(0.8) and r.n_admitted == 3 and r.recall == pytest.approx(3 / 4)
    assert calibrate(anchors, 0.8, kind="segmentation").threshold == pytest.approx(0.6)


def test_calibrate_min_admitted_and_anchor_kinds() -> None:
    anchors = [(0.01, True), (0.02, False), (0.03, True), (0.04, True)]
    assert calibrate(anchors, 1.0).threshold == pytest.approx(0.01)
    with pytest.raises(CalibrationError, match="best achievable 0.750"):
        calibrate(anchors, 1.0, min_admitted=2)
    with pytest.raises(CalibrationError, match="only 4"):
        calibrate(anchors, 0.5, min_admitted=5)
    mixed = [Anchor(0.1, True, "classification"), Anchor(0.9, True, "segmentation"), Anchor(0.2, True)]
    r = calibrate(mixed, 1.0)
    assert r.n_anchors == 2 and r.threshold == pytest.approx(0.2)
    with pytest.raises(CalibrationError, match="no segmentation anchors"):
        calibrate([Anchor(0.1, True, "classification")], 0.9, kind="segmentation")


def test_calibrate_impossible_and_bad_arguments() -> None:
    with pytest.raises(CalibrationError, match=r"best achievable 0\.500"):
        calibrate([(0.1, False), (0.2, True)], 0.9)
    with pytest.raises(CalibrationError, match="no classification anchors"):
        calibrate([], 0.9)
    assert issubclass(CalibrationError, ValueError)
    with pytest.raises(ValueError, match="target_precision"):
        calibrate([(0.1, True)], 1.5)
    with pytest.raises(ValueError, match="target_precision must be > 0"):
        calibrate([(0.1, True)], 0.0)
    with pytest.raises(ValueError, match="kind"):
        calibrate([(0.1, True)], 0.9, kind="detection")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="finite"):
        calibrate([(float("nan"), True)], 0.9)


def _brute_force(anchors: list[tuple[float, bool]], target: float, kind: str) -> float | None:
    """Loosest observed threshold meeting the target, by trying them all."""
    best = None
    for s in {s for s, _ in anchors}:
        good, n = _precision(anchors, s, kind)
        if n and good >= target * n - 1e-9:
            looser = best is None or (s > best if kind == "classification" else s < best)
            best = s if looser else best
    return best


anchor_lists = st.lists(
    st.tuples(st.sampled_from([i / 20 for i in range(21)]) | st.floats(0, 1), st.booleans()), min_size=1, max_size=40
)


@settings(max_examples=80, deadline=None)
@given(anchor_lists, st.floats(0.05, 1.0), st.sampled_from(["classification", "segmentation"]))
def test_calibrate_matches_brute_force(anchors, target, kind) -> None:  # noqa: ANN001
    expected = _brute_force(anchors, target, kind)
    if expected is None:
        with pytest.raises(CalibrationError):
            calibrate(anchors, target, kind=kind)
        return
    r = calibrate(anchors, target, kind=kind)
    assert r.threshold == expected
    good, n = _precision(anchors, r.threshold, kind)
    assert r.n_admitted == n and r.precision == pytest.approx(good / n) and r.precision >= target - 1e-9


@settings(max_examples=80, deadline=None)
@given(anchor_lists, st.floats(0.05, 1.0), st.floats(0.0, 0.5), st.sampled_from(["classification", "segmentation"]))
def test_raising_target_never_loosens(anchors, target, bump, kind) -> None:  # noqa: ANN001
    higher = min(1.0, target + bump)
    try:
        tight = calibrate(anchors, higher, kind=kind)
    except CalibrationError:
        return
    loose = calibrate(anchors, target, kind=kind)  # reachable: the tight threshold qualifies
    if kind == "classification":
        assert tight.threshold <= loose.threshold
    else:
        assert tight.threshold >= loose.threshold
    assert tight.n_admitted <= loose.n_admitted


def test_calibrated_delta_gates_like_the_anchors() -> None:
    # the gate admits exactly the anchors calibration admitted (statistic <= δ, float32 tensors)
    g = torch.Generator().manual_seed(3)
    stats = torch.rand(50, generator=g)
    anchors = [(float(s), bool(s < 0.4) or i % 7 == 0) for i, s in enumerate(stats)]
    r = calibrate(anchors, 0.9)
    ref = torch.tensor([[0.0]])
    cf = stats.view(1, 50, 1)
    d = ClassificationGate(delta=r.threshold, multilabel=True, threshold=1.0)(ref, cf)
    assert int(d.admitted.sum()) == r.n_admitted


# -- anchor files -------------------------------------------------------------------------------


def _write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "anchors.csv"
    f.write_text(text, encoding="utf-8")
    return f


def test_load_anchors_csv_reads_all_columns(tmp_path: Path) -> None:
    f = _write(
        tmp_path,
        "\ufeffStatistic , Valid,kind,exam_id,operator\n"
        "0.12,yes,classification,ex-001,cxr.low_dose\n"
        "\n"
        "0.30,FALSE,,ex-002,\n"
        "0.05,1,segmentation,ex-003,mri.bias_field\n",
    )
    anchors = load_anchors_csv(f)
    assert anchors == [
        Anchor(0.12, True, "classification", "ex-001", "cxr.low_dose"),
        Anchor(0.30, False, "", "ex-002", ""),
        Anchor(0.05, True, "segmentation", "ex-003", "mri.bias_field"),
    ]
    minimal = load_anchors_csv(_write(tmp_path, "valid,statistic\nno,0.4\ntrue,0.1\n"))
    assert [(a.statistic, a.valid) for a in minimal] == [(0.4, False), (0.1, True)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", r"anchors\.csv: empty file"),
        ("statistic,valid\n", r"anchors\.csv: no anchor rows"),
        ("stat,valid\n0.1,1\n", r"anchors\.csv: row 1: missing column\(s\) \['statistic'\]"),
        ("statistic,valid,valid\n0.1,1,1\n", r"anchors\.csv: row 1: duplicate column"),
        ("statistic,valid\n0.1,yes\n0.2,maybe\n", r"anchors\.csv: row 3: column 'valid' .* got 'maybe'"),
        ("statistic,valid\n0.1,yes\nabc,no\n", r"anchors\.csv: row 3: column 'statistic' is not a number: 'abc'"),
        ("statistic,valid\nnan,1\n", r"anchors\.csv: row 2: column 'statistic' is not finite: 'nan'"),
        (
            "statistic,valid\n0.1,1\n\n1.5,0\n",
            r"anchors\.csv: row 4: column 'statistic' must be in \[0, 1\], got '1\.5'",
        ),
        ("statistic,valid\n0.1,1,extra\n", r"anchors\.csv: row 2: expected 2 fields, got 3"),
        ("statistic,valid,kind\n0.1,1,detection\n", r"anchors\.csv: row 2: column 'kind' .* got 'detection'"),
        ("statistic,valid\n,1\n", r"anchors\.csv: row 2: column 'statistic' is not a number: ''"),
    ],
)
def test_anchor_file_errors_name_file_row_and_value(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(AnchorFileError, match=message):
        load_anchors_csv(_write(tmp_path, text))


def test_anchor_file_unreadable(tmp_path: Path) -> None:
    with pytest.raises(AnchorFileError, match=r"missing\.csv: cannot read"):
        load_anchors_csv(tmp_path / "missing.csv")
    bad = tmp_path / "anchors.csv"
    bad.write_bytes(b"statistic,valid\n\xff\xfe,1\n")
    with pytest.raises(AnchorFileError, match="UTF-8"):
        load_anchors_csv(bad)
    assert issubclass(AnchorFileError, ValueError)
