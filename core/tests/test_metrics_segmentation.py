"""Segmentation metrics agree with MONAI and with hand-computed lesion cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.metrics import DiceMetric, compute_hausdorff_distance, compute_iou

from c3_core.metrics import UndefinedMetricError
from c3_core.metrics.segmentation import (
    dice,
    hausdorff95,
    iou,
    lesion_wise,
    pooled_small_lesion_recall,
    volume_calibration_slope,
)

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning", "ignore::UserWarning")


def _blobs(shape: tuple[int, ...], seed: int, batch: int = 3, level: float = 0.52) -> torch.Tensor:
    """Random smooth blobs (several components, some touching the image border): (B, 1, *shape)."""
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand((batch, 1, *shape), generator=g)
    k = torch.ones((1, 1) + (5,) * len(shape)) / 5 ** len(shape)
    conv = torch.nn.functional.conv3d if len(shape) == 3 else torch.nn.functional.conv2d
    return conv(noise, k, padding=2) > level


@pytest.mark.parametrize(
    ("shape", "spacing", "seed"),
    [
        ((40, 36), (1.0, 0.7), 0),
        ((33, 29), (3.0, 0.5), 1),
        ((20, 24, 18), (1.0, 0.7, 2.5), 2),
        ((16, 18, 14), (0.8, 0.8, 3.0), 3),
    ],
)
def test_dice_iou_hd95_match_monai(shape: tuple[int, ...], spacing: tuple[float, ...], seed: int) -> None:
    pred, true = _blobs(shape, seed), _blobs(shape, seed + 100, level=0.51)
    assert pred.flatten(1).any(1).all() and true.flatten(1).any(1).all()
    dm = DiceMetric(include_background=True, reduction="none")
    assert torch.allclose(dice(pred, true), dm(pred.float(), true.float()).flatten().double(), atol=1e-6)
    assert torch.allclose(iou(pred, true), compute_iou(pred.float(), true.float()).flatten().double(), atol=1e-6)
    ref = compute_hausdorff_distance(
        pred.float(), true.float(), include_background=True, percentile=95, spacing=list(spacing)
    ).flatten()
    ours = hausdorff95(pred, true, spacing)
    assert torch.allclose(ours, ref.double(), atol=1e-4), (ours, ref)
    # no channel axis is accepted too, and the metric is symmetric
    assert torch.allclose(hausdorff95(pred[:, 0], true[:, 0], spacing), ours)
    assert torch.allclose(hausdorff95(true, pred, spacing), ours)


def test_hd95_hand_case_shifted_square() -> None:
    a = torch.zeros(1, 12, 12, dtype=torch.bool)
    a[0, 3:8, 3:8] = True
    b = torch.roll(a, 2, dims=1)  # shifted 2 rows = 6 mm at 3 mm row spacing
    hd = hausdorff95(a, b, (3.0, 1.0))
    ref = compute_hausdorff_distance(
        a[:, None].float(), b[:, None].float(), include_background=True, percentile=95, spacing=[3.0, 1.0]
    )
    assert hd.item() == pytest.approx(float(ref), abs=1e-5)
    assert 0 < hd.item() <= 6.0
    assert hausdorff95(a, a, (3.0, 1.0)).item() == 0.0


def test_empty_mask_rules() -> None:
    empty = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    full = empty.clone()
    full[..., 2:5, 2:5] = True
    assert dice(empty, empty).item() == 1.0 and iou(empty, empty).item() == 1.0
    assert dice(empty, empty, empty_score=0.0).item() == 0.0
    assert dice(full, empty).item() == 0.0 and iou(empty, full).item() == 0.0
    assert hausdorff95(empty, empty, (1.0, 1.0)).item() == 0.0
    diag = math.hypot(8 * 1.0, 8 * 2.0)  # image extent 8 mm x 16 mm
    assert hausdorff95(full, empty, (1.0, 2.0)).item() == pytest.approx(diag)
    assert hausdorff95(empty, full, (1.0, 2.0), empty_penalty_mm=50.0).item() == 50.0
    assert hausdorff95(torch.zeros(1, 4, 5, 6, dtype=torch.bool), torch.ones(1, 4, 5, 6), (1.0, 2.0, 3.0)).item() == (
        pytest.approx(math.sqrt(4**2 + 10**2 + 18**2))
    )
    # where MONAI gives NaN / inf, our rules give finite numbers
    both = torch.cat([empty, full]), torch.cat([empty, empty])
    assert torch.isnan(DiceMetric(include_background=True, reduction="none")(both[0].float(), both[1].float())).any()
    monai_hd = compute_hausdorff_distance(both[0].float(), both[1].float(), include_background=True, percentile=95)
    assert not torch.isfinite(monai_hd).all()
    for metric in (dice(*both), iou(*both), hausdorff95(*both, (1.0, 1.0))):
        assert torch.isfinite(metric).all()


def test_mask_validation() -> None:
    m = torch.zeros(1, 1, 4, 4)
    with pytest.raises(ValueError, match="binary"):
        dice(m + 0.5, m)
    with pytest.raises(ValueError, match="differ in shape"):
        iou(m, m[..., :3])
    with pytest.raises(ValueError, match="does not match"):
        hausdorff95(m[:, 0], m[:, 0], (1.0, 1.0, 1.0))  # (B, H, W) masks with 3-D spacing
    with pytest.raises(ValueError, match="2 or 3 entries"):
        lesion_wise(m, m, (1.0,))
    assert dice(m.int(), m.int()).item() == 1.0


# ---------------------------------------------------------------------------- lesion-wise


def test_lesion_wise_two_lesions_one_missed_and_a_false_positive() -> None:
    true = torch.zeros(1, 1, 20, 20, 20, dtype=torch.bool)
    true[0, 0, 2:6, 2:6, 2:6] = True  # 64 voxels
    true[0, 0, 12, 12, 12] = True  # 1 voxel, tiny
    pred = torch.zeros_like(true)
    pred[0, 0, 3:6, 2:6, 2:6] = True  # inside lesion 1 (48 voxels)
    pred[0, 0, 16:18, 16:18, 16:18] = True  # false positive
    spacing = (1.0, 1.0, 3.0)  # voxel = 3 mm³: lesion 1 = 192 mm³, lesion 2 = 3 mm³
    s = lesion_wise(pred, true, spacing)[0]
    assert (s.tp, s.fn, s.fp, s.n_true, s.n_pred) == (1, 1, 1, 2, 2)
    assert s.f1 == pytest.approx(2 / (2 + 1 + 1))
    assert s.lesion_dice == pytest.approx((2 * 48 / (48 + 64) + 0.0) / 2)
    assert (s.small_total, s.small_detected, s.small_recall) == (1, 0, 0.0)
    assert sorted(s.lesions) == [(3.0, False), (192.0, True)]


def test_tiny_lesion_threshold_at_anisotropic_spacing() -> None:
    spacing = (3.0, 0.5, 0.5)  # voxel = 0.75 mm³
    true = torch.zeros(1, 10, 20, 20, dtype=torch.bool)
    true[0, 1, 2:5, 2:6] = True  # 12 voxels = 9.0 mm³ -> small
    true[0, 6, 10:12, 10:17] = True  # 14 voxels = 10.5 mm³ -> not small
    pred = torch.zeros_like(true)
    pred[0, 1, 4, 5] = True  # one voxel inside the tiny lesion -> detected
    s = lesion_wise(pred, true, spacing)[0]
    assert sorted(s.lesions) == [(9.0, True), (10.5, False)]
    assert (s.small_total, s.small_detected) == (1, 1)
    assert (s.tp, s.fn, s.fp) == (1, 1, 0)
    assert s.lesion_dice == pytest.approx((2 * 1 / (1 + 12) + 0.0) / 2)
    # the threshold is configurable and strict (volume < threshold)
    s2 = lesion_wise(pred, true, spacing, small_volume_mm3=10.5)[0]
    assert s2.small_total == 1
    s3 = lesion_wise(pred, true, spacing, small_volume_mm3=10.6)[0]
    assert (s3.small_total, s3.small_detected) == (2, 1)
    assert pooled_small_lesion_recall([s, s3]) == pytest.approx(2 / 3)
    with pytest.raises(UndefinedMetricError):
        pooled_small_lesion_recall([lesion_wise(pred, true, spacing, small_volume_mm3=1.0)[0]])


def test_min_overlap_fraction_turns_a_weak_hit_into_miss_plus_fp() -> None:
    true = torch.zeros(1, 12, 12, dtype=torch.bool)
    true[0, 2:10, 2:10] = True  # 64 pixels
    pred = torch.zeros_like(true)
    pred[0, 0:4, 0:6] = True  # 2 x 4 = 8 pixels overlap (12.5 % of the lesion), 24 predicted
    s = lesion_wise(pred, true, (1.0, 1.0), min_overlap_fraction=0.1)[0]
    assert (s.tp, s.fn, s.fp) == (1, 0, 0) and s.lesion_dice == pytest.approx(2 * 8 / (24 + 64))
    s = lesion_wise(pred, true, (1.0, 1.0), min_overlap_fraction=0.2)[0]
    assert (s.tp, s.fn, s.fp) == (0, 1, 1) and s.lesion_dice == 0.0 and s.f1 == 0.0
    s = lesion_wise(pred, true, (1.0, 1.0), min_overlap_voxels=9)[0]
    assert (s.tp, s.fn, s.fp) == (0, 1, 1)


def test_connectivity_and_a_component_bridging_two_lesions() -> None:
    true = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    true[0, 0, 1, 1] = true[0, 0, 2, 2] = True  # diagonal neighbours
    assert lesion_wise(true, true, (1.0, 1.0))[0].n_true == 1  # 8-connectivity by default
    s = lesion_wise(true, true, (1.0, 1.0), connectivity=1)[0]  # 4-connectivity: two lesions
    assert (s.n_true, s.tp, s.fp, s.f1, s.lesion_dice) == (2, 2, 0, 1.0, 1.0)
    # one predicted component covering two separate true lesions detects both
    t = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    t[0, 0, 1, 1:3] = True
    t[0, 0, 1, 5:7] = True
    p = torch.zeros_like(t)
    p[0, 0, 1, 0:8] = True  # 8 pixels
    s = lesion_wise(p, t, (1.0, 1.0))[0]
    assert (s.tp, s.fn, s.fp, s.n_pred) == (2, 0, 0, 1)
    assert s.lesion_dice == pytest.approx(2 * 2 / (8 + 2))
    with pytest.raises(ValueError, match="connectivity"):
        lesion_wise(p, t, (1.0, 1.0), connectivity=3)


def test_lesion_wise_no_lesions_and_batches() -> None:
    z = torch.zeros(2, 1, 6, 6, dtype=torch.bool)
    p = z.clone()
    p[1, 0, 1, 1] = True
    s0, s1 = lesion_wise(p, z, (1.0, 1.0))
    assert (s0.lesion_dice, s0.f1, s0.tp, s0.fn, s0.fp) == (1.0, 1.0, 0, 0, 0)
    assert (s1.lesion_dice, s1.f1, s1.fp) == (0.0, 0.0, 1)
    assert s0.small_recall is None


def test_volume_slope() -> None:
    true = torch.tensor([10.0, 20.0, 40.0, 80.0])
    slope, intercept = volume_calibration_slope(0.5 * true + 3, true)
    assert slope == pytest.approx(0.5) and intercept == pytest.approx(3.0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(30, generator=g, dtype=torch.float64) * 1000
    y = 0.8 * x + torch.randn(30, generator=g, dtype=torch.float64) * 20
    ref_slope, ref_intercept = np.polyfit(x.numpy(), y.numpy(), 1)
    assert volume_calibration_slope(y, x) == pytest.approx((ref_slope, ref_intercept))
    with pytest.raises(UndefinedMetricError, match="two cases"):
        volume_calibration_slope(torch.tensor([1.0]), torch.tensor([1.0]))
    with pytest.raises(UndefinedMetricError):
        volume_calibration_slope(torch.tensor([1.0, 2.0]), torch.tensor([5.0, 5.0]))


def test_volume_slope_says_why_it_is_undefined() -> None:
    with pytest.raises(UndefinedMetricError) as err:
        volume_calibration_slope(torch.tensor([0.0, 3.0, 0.0]), torch.zeros(3))  # healthy controls
    assert err.value.reason == "every lesion mask is empty (no lesion volume to regress on)"
    with pytest.raises(UndefinedMetricError) as err:
        volume_calibration_slope(torch.tensor([1.0, 2.0]), torch.tensor([27.0, 27.0]))
    assert err.value.reason == "every true lesion volume is equal (27 mm³: no spread to regress on)"
    with pytest.raises(UndefinedMetricError) as err:
        volume_calibration_slope(torch.tensor([1.0]), torch.tensor([4.0]))
    assert err.value.reason == "a slope needs at least two cases (1 evaluated)"
    with pytest.raises(UndefinedMetricError, match="0 evaluated"):
        volume_calibration_slope(torch.empty(0), torch.empty(0))
    with pytest.raises(ValueError, match="finite"):
        volume_calibration_slope(torch.tensor([1.0, float("nan")]), torch.tensor([1.0, 2.0]))
    # every prediction equal (e.g. nothing predicted): the slope is defined, 0
    assert volume_calibration_slope(torch.zeros(3), torch.tensor([1.0, 2.0, 4.0])) == (0.0, 0.0)
    with pytest.raises(UndefinedMetricError) as err:
        pooled_small_lesion_recall([])
    assert err.value.reason == "the cohort has no small lesion"
