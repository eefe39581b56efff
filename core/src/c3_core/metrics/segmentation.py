"""Segmentation metrics on binary masks, 2-D or 3-D, in physical units (mm, mm³).

Masks are bool or {0, 1} tensors shaped ``(B, *spatial)`` or ``(B, 1, *spatial)``; every metric
returns one value per case. ``spacing`` is the voxel size in mm per spatial axis, in the order of
the array axes, shared by all cases of the call.

Empty-mask rules (no metric ever returns NaN or inf):

* Dice / IoU: both masks empty -> ``empty_score`` (default 1.0: "correctly nothing");
  exactly one empty -> 0.0.
* HD95: both empty -> 0.0 mm; exactly one empty -> ``empty_penalty_mm`` (default: the diagonal
  of the image extent, sqrt(Σ (n_i · spacing_i)²)).
* Lesion-wise: see :func:`lesion_wise`.

Dice/IoU are pure torch; HD95 and connected components move the masks to the CPU and use SciPy
(imported lazily — not a hot path).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np
import torch
from torch import Tensor

from c3_core.metrics.errors import UndefinedMetricError

__all__ = [
    "LesionStats",
    "dice",
    "hausdorff95",
    "iou",
    "lesion_wise",
    "pooled_small_lesion_recall",
    "volume_calibration_slope",
]


def _ndimage() -> ModuleType:
    try:
        from scipy import ndimage
    except ImportError as exc:  # pragma: no cover - scipy is present wherever tests run
        raise ImportError("HD95 and lesion-wise metrics need SciPy (pip install scipy)") from exc
    return ndimage


def _binary(mask: Tensor) -> Tensor:
    m = mask.detach()
    if m.dtype != torch.bool:
        if not bool(((m == 0) | (m == 1)).all()):
            raise ValueError("masks must be binary (bool or {0, 1}); threshold probabilities first")
        m = m != 0
    return m


def _pair(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    if pred.ndim < 2:
        raise ValueError("masks need a batch axis: (B, *spatial) or (B, 1, *spatial)")
    return _binary(pred), _binary(target)


def _spatial_numpy(mask: Tensor, spacing: Sequence[float]) -> np.ndarray:
    """(B, *spatial) bool numpy array, dropping a singleton channel axis; checks ``spacing``."""
    d = len(spacing)
    if d not in (2, 3):
        raise ValueError(f"spacing must have 2 or 3 entries (mm per spatial axis), got {len(spacing)}")
    if any(not (float(s) > 0) for s in spacing):
        raise ValueError("spacing entries must be positive (mm)")
    if mask.ndim == d + 2:
        if mask.shape[1] != 1:
            raise ValueError(f"expected one channel, got shape {tuple(mask.shape)}")
        mask = mask[:, 0]
    elif mask.ndim != d + 1:
        raise ValueError(f"mask shape {tuple(mask.shape)} does not match {d}-D spacing")
    return mask.cpu().numpy()


def dice(pred: Tensor, target: Tensor, empty_score: float = 1.0) -> Tensor:
    """Volume-wise Dice 2|P∩T| / (|P|+|T|) per case, float64 ``(B,)``.

    All non-batch elements form one mask. Both empty -> ``empty_score``; one empty -> 0.0.
    """
    p, t = _pair(pred, target)
    p, t = p.flatten(1), t.flatten(1)
    inter = (p & t).sum(1).double()
    total = p.sum(1).double() + t.sum(1).double()
    return torch.where(total > 0, 2.0 * inter / total.clamp_min(1.0), torch.full_like(total, float(empty_score)))


def iou(pred: Tensor, target: Tensor, empty_score: float = 1.0) -> Tensor:
    """Intersection over union |P∩T| / |P∪T| per case, float64 ``(B,)``.

    Both empty -> ``empty_score``; one empty -> 0.0.
    """
    p, t = _pair(pred, target)
    p, t = p.flatten(1), t.flatten(1)
    inter = (p & t).sum(1).double()
    union = (p | t).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1.0), torch.full_like(union, float(empty_score)))


# --------------------------------------------------------------------------------------------
# surface distance
# --------------------------------------------------------------------------------------------


def _crop_box(a: np.ndarray, b: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of a|b grown by one voxel (clipped to the image)."""
    coords = np.argwhere(a | b)
    lo = np.maximum(coords.min(0) - 1, 0)
    hi = np.minimum(coords.max(0) + 2, a.shape)
    return tuple(slice(int(x), int(y)) for x, y in zip(lo, hi))


def _edges(mask: np.ndarray, ndimage: ModuleType) -> np.ndarray:
    """Surface voxels: foreground voxels with a face-neighbour in the background, where outside
    the image counts as background (MONAI's ``get_mask_edges``: mask XOR binary_erosion)."""
    eroded = ndimage.binary_erosion(mask, structure=ndimage.generate_binary_structure(mask.ndim, 1), border_value=0)
    return mask & ~eroded


def hausdorff95(
    pred: Tensor,
    target: Tensor,
    spacing: Sequence[float],
    empty_penalty_mm: float | None = None,
    percentile: float = 95.0,
) -> Tensor:
    """Symmetric 95th-percentile Hausdorff distance in mm per case, float64 ``(B,)``.

    Surfaces are the voxels of each mask with a face-connected background neighbour (image
    border = background). For each direction, the Euclidean distances (scaled by ``spacing``)
    from every surface voxel of one mask to the nearest surface voxel of the other are taken;
    the ``percentile`` (linear interpolation) of each direction is computed and the larger is
    reported — the convention of MONAI ``compute_hausdorff_distance(percentile=95,
    include_background=True, spacing=spacing)``.
    Empty masks: both empty -> 0.0; exactly one empty -> ``empty_penalty_mm`` (default: the
    diagonal of the image extent in mm). MONAI returns NaN / inf in those cases.
    """
    ndimage = _ndimage()
    p, t = _pair(pred, target)
    pa, ta = _spatial_numpy(p, spacing), _spatial_numpy(t, spacing)
    sp = tuple(float(s) for s in spacing)
    if not 0.0 <= percentile <= 100.0:
        raise ValueError("percentile must be in [0, 100]")
    diagonal = math.sqrt(sum((n * s) ** 2 for n, s in zip(pa.shape[1:], sp)))
    penalty = diagonal if empty_penalty_mm is None else float(empty_penalty_mm)
    out = torch.empty(pa.shape[0], dtype=torch.float64)
    for i in range(pa.shape[0]):
        a, b = pa[i], ta[i]
        a_any, b_any = bool(a.any()), bool(b.any())
        if not a_any and not b_any:
            out[i] = 0.0
            continue
        if a_any != b_any:
            out[i] = penalty
            continue
        box = _crop_box(a, b)
        ea, eb = _edges(a[box], ndimage), _edges(b[box], ndimage)
        d_ab = ndimage.distance_transform_edt(~eb, sampling=sp)[ea]
        d_ba = ndimage.distance_transform_edt(~ea, sampling=sp)[eb]
        out[i] = max(float(np.percentile(d_ab, percentile)), float(np.percentile(d_ba, percentile)))
    return out


# --------------------------------------------------------------------------------------------
# lesion-wise detection
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LesionStats:
    """Lesion-wise results of one case (counts are kept so cohorts can be pooled).

    ``tp``/``fn`` count true lesions (detected / missed); ``fp`` counts predicted components
    matched to no detected true lesion; ``n_pred`` is the number of predicted components.
    ``lesions`` holds one ``(volume_mm3, detected)`` pair per true lesion.
    """

    tp: int
    fn: int
    fp: int
    f1: float
    lesion_dice: float
    small_total: int
    small_detected: int
    lesions: tuple[tuple[float, bool], ...]
    n_pred: int

    @property
    def n_true(self) -> int:
        """Number of true lesions."""
        return self.tp + self.fn

    @property
    def small_recall(self) -> float | None:
        """Detected / total small lesions of this case; ``None`` when it has none."""
        return self.small_detected / self.small_total if self.small_total else None


def lesion_wise(
    pred: Tensor,
    target: Tensor,
    spacing: Sequence[float],
    *,
    small_volume_mm3: float = 10.0,
    connectivity: int | None = None,
    min_overlap_voxels: int = 1,
    min_overlap_fraction: float = 0.0,
) -> list[LesionStats]:
    """Connected-component (lesion-wise) metrics per case.

    * Components: ``scipy.ndimage.label`` with the structuring element of rank ``connectivity``
      (``generate_binary_structure(ndim, connectivity)``); ``None`` = full connectivity
      (26-neighbourhood in 3-D, 8 in 2-D); 1 = faces only (6 / 4).
    * Matching: a predicted component *hits* a true lesion when they share at least
      ``min_overlap_voxels`` voxels (default 1). A true lesion is *detected* (TP) when it has at
      least one hit and its hits together cover at least ``min_overlap_fraction`` of its voxels
      (default 0.0, i.e. any overlap); otherwise it is missed (FN). A predicted component that
      hits no detected lesion is a false positive (FP). One component may detect several lesions.
    * F1 = 2TP / (2TP + FN + FP); no true and no predicted lesion -> 1.0.
    * Lesion-wise Dice: mean over true lesions of the Dice between the lesion and the union of
      its hitting components (a missed lesion scores 0); no true and no predicted lesion -> 1.0,
      no true lesion but some predicted -> 0.0.
    * Small lesions: volume (voxel count × prod(spacing)) strictly below ``small_volume_mm3``;
      ``small_total`` / ``small_detected`` are counts so that recall can be pooled over a cohort
      (:func:`pooled_small_lesion_recall`).
    """
    ndimage = _ndimage()
    p, t = _pair(pred, target)
    pa, ta = _spatial_numpy(p, spacing), _spatial_numpy(t, spacing)
    ndim = len(spacing)
    rank = ndim if connectivity is None else int(connectivity)
    if not 1 <= rank <= ndim:
        raise ValueError(f"connectivity must be in 1..{ndim}, got {connectivity}")
    if min_overlap_voxels < 1:
        raise ValueError("min_overlap_voxels must be >= 1")
    if not 0.0 <= min_overlap_fraction <= 1.0:
        raise ValueError("min_overlap_fraction must be in [0, 1]")
    structure = ndimage.generate_binary_structure(ndim, rank)
    voxel_mm3 = float(np.prod([float(s) for s in spacing]))
    return [
        _lesion_case(
            pa[i], ta[i], structure, ndimage, voxel_mm3, small_volume_mm3, min_overlap_voxels, min_overlap_fraction
        )
        for i in range(pa.shape[0])
    ]


def _lesion_case(
    p: np.ndarray,
    t: np.ndarray,
    structure: np.ndarray,
    ndimage: ModuleType,
    voxel_mm3: float,
    small_volume_mm3: float,
    min_overlap_voxels: int,
    min_overlap_fraction: float,
) -> LesionStats:
    lab_t, n_t = ndimage.label(t, structure=structure)
    lab_p, n_p = ndimage.label(p, structure=structure)
    size_t = np.bincount(lab_t.ravel(), minlength=n_t + 1)
    size_p = np.bincount(lab_p.ravel(), minlength=n_p + 1)
    both = (lab_t > 0) & (lab_p > 0)
    pair_codes, overlap = np.unique(lab_t[both].astype(np.int64) * (n_p + 1) + lab_p[both], return_counts=True)
    pair_t, pair_p = pair_codes // (n_p + 1), pair_codes % (n_p + 1)
    strong = overlap >= min_overlap_voxels
    pair_t, pair_p, overlap = pair_t[strong], pair_p[strong], overlap[strong]

    matched: set[int] = set()
    dices: list[float] = []
    lesions: list[tuple[float, bool]] = []
    tp = small_total = small_detected = 0
    for j in range(1, n_t + 1):
        rows = pair_t == j
        hits = pair_p[rows]
        covered = int(overlap[rows].sum())
        detected = hits.size > 0 and covered >= min_overlap_fraction * int(size_t[j])
        volume = float(size_t[j]) * voxel_mm3
        lesions.append((volume, bool(detected)))
        if volume < small_volume_mm3:
            small_total += 1
            small_detected += int(detected)
        if detected:
            tp += 1
            matched.update(int(k) for k in hits)
            dices.append(2.0 * covered / (int(size_p[hits].sum()) + int(size_t[j])))
        else:
            dices.append(0.0)
    fn = n_t - tp
    fp = n_p - len(matched)
    f1 = 1.0 if tp + fn + fp == 0 else 2.0 * tp / (2 * tp + fn + fp)
    lesion_dice = (1.0 if n_p == 0 else 0.0) if n_t == 0 else float(np.mean(dices))
    return LesionStats(tp, fn, fp, f1, lesion_dice, small_total, small_detected, tuple(lesions), int(n_p))


def pooled_small_lesion_recall(stats: Iterable[LesionStats]) -> float:
    """Cohort small-lesion recall Σ small_detected / Σ small_total over cases.

    Raises :class:`UndefinedMetricError` when the cohort has no small lesion.
    """
    total = detected = 0
    for s in stats:
        total += s.small_total
        detected += s.small_detected
    if total == 0:
        raise UndefinedMetricError.because("small-lesion recall", "the cohort has no small lesion")
    return detected / total


def _no_volume_spread(true_volumes_mm3: Tensor) -> str | None:
    """Why no line can be fitted against these true volumes (None when one can)."""
    n = true_volumes_mm3.numel()
    if n < 2:
        return f"a slope needs at least two cases ({n} evaluated)"
    if float(((true_volumes_mm3 - true_volumes_mm3.mean()) ** 2).sum()) > 0.0:
        return None
    if float(true_volumes_mm3.abs().max()) == 0.0:
        return "every lesion mask is empty (no lesion volume to regress on)"
    return f"every true lesion volume is equal ({float(true_volumes_mm3[0]):g} mm³: no spread to regress on)"


def volume_calibration_slope(pred_volumes_mm3: Tensor, true_volumes_mm3: Tensor) -> tuple[float, float]:
    """Ordinary least squares of predicted on true volume: ``(slope, intercept_mm3)``.

    pred ≈ slope · true + intercept; slope 1 and intercept 0 is perfect volume calibration.
    Raises :class:`UndefinedMetricError` with fewer than two cases or constant true volumes (e.g.
    a cohort of healthy controls, every mask empty), ValueError for non-finite volumes.
    """
    x = true_volumes_mm3.detach().double().flatten()
    y = pred_volumes_mm3.detach().double().flatten()
    if x.shape != y.shape:
        raise ValueError("pred and true volumes differ in length")
    if not bool(torch.isfinite(x).all() and torch.isfinite(y).all()):
        raise ValueError("volumes must be finite (NaN/inf found)")
    reason = _no_volume_spread(x)
    if reason is not None:
        raise UndefinedMetricError.because("the volume calibration slope", reason)
    xc, yc = x - x.mean(), y - y.mean()
    slope = (xc * yc).sum() / (xc * xc).sum()
    return float(slope), float(y.mean() - slope * x.mean())
