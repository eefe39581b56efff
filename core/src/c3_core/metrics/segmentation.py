"""Segmentation metrics on binary masks ``(B, 1, *spatial)`` or ``(B, *spatial)``, 2-D or 3-D.

Empty-mask rules (never NaN): Dice/IoU — both empty -> ``empty_score`` (1.0), one empty -> 0.
HD95 — both empty -> 0 mm; exactly one empty -> ``empty_penalty_mm`` (default: the diagonal of
the image extent). Surface distances, HD95 and connected components run on the CPU with SciPy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor


def _as_bool(mask: Tensor, spatial_dims: int | None = None) -> Tensor:
    m = mask.detach()
    if m.ndim >= 4 and m.shape[1] == 1:
        m = m[:, 0]
    return m.bool()


def dice(pred: Tensor, target: Tensor, empty_score: float = 1.0) -> Tensor:
    """Volume-wise Dice per case (B,)."""
    p, t = _as_bool(pred).flatten(1), _as_bool(target).flatten(1)
    inter = (p & t).sum(1).double()
    total = p.sum(1).double() + t.sum(1).double()
    return torch.where(total > 0, 2 * inter / total.clamp_min(1), torch.full_like(total, empty_score))


def iou(pred: Tensor, target: Tensor, empty_score: float = 1.0) -> Tensor:
    """Intersection over union per case (B,)."""
    p, t = _as_bool(pred).flatten(1), _as_bool(target).flatten(1)
    inter = (p & t).sum(1).double()
    union = (p | t).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(union, empty_score))


def _surface(mask: np.ndarray) -> np.ndarray:
    """Boundary voxels: in the mask with at least one face-neighbour outside (or on the border)."""
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(mask.ndim, 1), border_value=0)
    return mask & ~eroded


def _surface_distances(a: np.ndarray, b: np.ndarray, spacing: Sequence[float]) -> np.ndarray:
    """Distances (mm) from each surface voxel of ``a`` to the nearest surface voxel of ``b``."""
    sa, sb = _surface(a), _surface(b)
    dist = ndimage.distance_transform_edt(~sb, sampling=spacing)
    return dist[sa]


def hausdorff95(pred: Tensor, target: Tensor, spacing: Sequence[float], empty_penalty_mm: float | None = None) -> Tensor:
    """Symmetric 95th-percentile Hausdorff distance in mm per case (B,).

    The 95th percentile is taken over each direction's surface distances and the larger of the
    two is reported (MONAI's ``compute_hausdorff_distance(percentile=95)`` convention).
    """
    p, t = _as_bool(pred).cpu().numpy(), _as_bool(target).cpu().numpy()
    out = []
    for i in range(p.shape[0]):
        a, b = p[i], t[i]
        if not a.any() and not b.any():
            out.append(0.0)
            continue
        if not a.any() or not b.any():
            diag = math.sqrt(sum((n * s) ** 2 for n, s in zip(a.shape, spacing)))
            out.append(diag if empty_penalty_mm is None else float(empty_penalty_mm))
            continue
        d1 = np.percentile(_surface_distances(a, b, spacing), 95)
        d2 = np.percentile(_surface_distances(b, a, spacing), 95)
        out.append(float(max(d1, d2)))
    return torch.tensor(out, dtype=torch.float64)


@dataclass(frozen=True)
class LesionStats:
    """Lesion-wise results of one case."""

    tp: int
    fn: int
    fp: int
    f1: float
    lesion_dice: float
    small_total: int
    small_detected: int
    lesions: tuple[tuple[float, bool], ...] = field(default_factory=tuple)  # (volume mm³, detected)


def lesion_wise(
    pred: Tensor,
    target: Tensor,
    spacing: Sequence[float],
    small_volume_mm3: float = 10.0,
    min_overlap_voxels: int = 1,
    full_connectivity: bool = True,
) -> list[LesionStats]:
    """Connected-component lesion metrics per case.

    Components use full connectivity (26 in 3-D, 8 in 2-D) unless ``full_connectivity=False``
    (6 / 4). A true lesion is *detected* when predicted components overlap it by at least
    ``min_overlap_voxels``; a predicted component overlapping no true lesion is a false positive.
    Lesion-wise Dice is the mean over true lesions of the Dice between the lesion and the union of
    the predicted components that overlap it (a missed lesion scores 0); no true and no predicted
    lesion -> 1, no true but some predicted -> 0. Small lesions: volume < ``small_volume_mm3``.
    """
    p, t = _as_bool(pred).cpu().numpy(), _as_bool(target).cpu().numpy()
    voxel = float(np.prod(spacing))
    results = []
    for i in range(p.shape[0]):
        structure = ndimage.generate_binary_structure(p[i].ndim, p[i].ndim if full_connectivity else 1)
        lab_t, n_t = ndimage.label(t[i], structure=structure)
        lab_p, n_p = ndimage.label(p[i], structure=structure)
        matched_pred: set[int] = set()
        dices, lesions = [], []
        tp = 0
        small_total = small_hit = 0
        for j in range(1, n_t + 1):
            region = lab_t == j
            overlap_ids, counts = np.unique(lab_p[region & (lab_p > 0)], return_counts=True)
            hits = [int(k) for k, c in zip(overlap_ids, counts) if c >= min_overlap_voxels]
            detected = bool(hits)
            volume = float(region.sum()) * voxel
            lesions.append((volume, detected))
            if volume < small_volume_mm3:
                small_total += 1
                small_hit += detected
            if detected:
                tp += 1
                matched_pred.update(hits)
                union_pred = np.isin(lab_p, hits)
                inter = float((union_pred & region).sum())
                dices.append(2 * inter / (float(union_pred.sum()) + float(region.sum())))
            else:
                dices.append(0.0)
        fn = n_t - tp
        fp = sum(1 for k in range(1, n_p + 1) if k not in matched_pred)
        if n_t == 0:
            lesion_dice = 1.0 if n_p == 0 else 0.0
        else:
            lesion_dice = float(np.mean(dices))
        f1 = 1.0 if (tp + fn + fp) == 0 else 2 * tp / (2 * tp + fn + fp)
        results.append(LesionStats(tp, fn, fp, f1, lesion_dice, small_total, small_hit, tuple(lesions)))
    return results


def volume_calibration_slope(pred_volumes_mm3: Tensor, true_volumes_mm3: Tensor) -> tuple[float, float]:
    """OLS of predicted on true lesion volume: returns (slope, intercept in mm³)."""
    x, y = true_volumes_mm3.double().flatten(), pred_volumes_mm3.double().flatten()
    if x.numel() < 2 or float(x.var()) == 0.0:
        raise ValueError("the volume calibration slope needs at least two cases with different true volumes")
    xm, ym = x.mean(), y.mean()
    slope = ((x - xm) * (y - ym)).sum() / ((x - xm) ** 2).sum()
    return float(slope), float(ym - slope * xm)
