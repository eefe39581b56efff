"""Segmentation metrics agree with MONAI and with hand-computed lesion cases."""

from __future__ import annotations

import pytest
import torch
from monai.metrics import DiceMetric, compute_hausdorff_distance, compute_iou

from c3_core.metrics.segmentation import dice, hausdorff95, iou, lesion_wise, volume_calibration_slope


def _blobs(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    noise = torch.rand((2, 1, *shape), generator=g)
    k = torch.ones((1, 1) + (5,) * len(shape)) / 5 ** len(shape)
    conv = torch.nn.functional.conv3d if len(shape) == 3 else torch.nn.functional.conv2d
    return conv(noise, k, padding=2) > 0.52


@pytest.mark.parametrize("shape", [(40, 36), (20, 24, 18)])
def test_dice_iou_hd95_match_monai(shape: tuple[int, ...]) -> None:
    pred, true = _blobs(shape, 0), _blobs(shape, 1)
    spacing = (1.0, 0.7, 2.5)[: len(shape)]
    dm = DiceMetric(include_background=True, reduction="none")
    assert torch.allclose(dice(pred, true), dm(pred.float(), true.float()).flatten().double(), atol=1e-6)
    assert torch.allclose(iou(pred, true), compute_iou(pred.float(), true.float()).flatten().double(), atol=1e-6)
    ref = compute_hausdorff_distance(pred.float(), true.float(), percentile=95, spacing=list(spacing)).flatten()
    assert torch.allclose(hausdorff95(pred, true, spacing), ref.double(), atol=1e-4)


def test_empty_mask_rules() -> None:
    empty = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    full = empty.clone()
    full[..., 2:5, 2:5] = True
    assert dice(empty, empty).item() == 1.0 and dice(full, empty).item() == 0.0
    assert iou(empty, empty).item() == 1.0
    assert hausdorff95(empty, empty, (1.0, 1.0)).item() == 0.0
    assert hausdorff95(full, empty, (1.0, 2.0)).item() == pytest.approx((8**2 + 16**2) ** 0.5)
    assert not torch.isnan(dice(empty, full)).any()


def test_lesion_wise_two_lesions_one_missed_and_a_false_positive() -> None:
    true = torch.zeros(1, 1, 20, 20, 20, dtype=torch.bool)
    true[0, 0, 2:6, 2:6, 2:6] = True  # 64 voxels
    true[0, 0, 12, 12, 12] = True  # 1 voxel, tiny
    pred = torch.zeros_like(true)
    pred[0, 0, 3:6, 2:6, 2:6] = True  # overlaps lesion 1 (48 voxels)
    pred[0, 0, 16:18, 16:18, 16:18] = True  # false positive
    spacing = (1.0, 1.0, 3.0)  # voxel = 3 mm³: lesion 1 = 192 mm³, lesion 2 = 3 mm³
    s = lesion_wise(pred, true, spacing)[0]
    assert (s.tp, s.fn, s.fp) == (1, 1, 1)
    assert s.f1 == pytest.approx(2 / (2 + 1 + 1))
    assert s.lesion_dice == pytest.approx((2 * 48 / (48 + 64) + 0.0) / 2)
    assert (s.small_total, s.small_detected) == (1, 0)
    assert sorted(v for v, _ in s.lesions) == [3.0, 192.0]


def test_lesion_wise_no_lesions() -> None:
    z = torch.zeros(1, 1, 6, 6, dtype=torch.bool)
    assert lesion_wise(z, z, (1.0, 1.0))[0].lesion_dice == 1.0
    p = z.clone()
    p[0, 0, 1, 1] = True
    s = lesion_wise(p, z, (1.0, 1.0))[0]
    assert s.lesion_dice == 0.0 and s.fp == 1


def test_volume_slope() -> None:
    true = torch.tensor([10.0, 20.0, 40.0, 80.0])
    slope, intercept = volume_calibration_slope(0.5 * true + 3, true)
    assert slope == pytest.approx(0.5) and intercept == pytest.approx(3.0)
    with pytest.raises(ValueError, match="two cases"):
        volume_calibration_slope(torch.tensor([1.0]), torch.tensor([1.0]))
