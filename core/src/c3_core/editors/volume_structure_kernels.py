"""Dimension-generic kernels of the structure editors (2-D images ``(B, C, H, W)`` and 3-D volumes
``(B, C, D, H, W)``): resampling to a working grid, binary dilation, the region blend weight,
soft and hard structure sizes, and the size floor on connected components.

The 2-D Seg-CFT editor (:mod:`c3_core.editors.structure`) keeps its own 2-D kernels; these take
any spatial rank, so the 3-D lesion-volume editor and the staged fit share one implementation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

_MAX_POOL = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
_ADAPTIVE_AVG = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}
_LINEAR = {1: "linear", 2: "bilinear", 3: "trilinear"}


def _dims(x: Tensor) -> int:
    d = x.ndim - 2
    if d not in _MAX_POOL:
        raise ValueError(f"expected (B, C, *spatial) with 1 to 3 spatial axes, got shape {tuple(x.shape)}")
    return d


def to_grid(u: Tensor, grid: Sequence[int]) -> Tensor:
    """Resample ``(B, C, *spatial)`` to ``grid``: the exact block average along shrinking axes when
    every axis shrinks (adaptive average pooling), else (bi/tri)linear interpolation."""
    d, grid = _dims(u), tuple(int(s) for s in grid)
    if len(grid) != d:
        raise ValueError(f"grid {grid} has {len(grid)} axes, the input {d} spatial axes")
    if tuple(u.shape[2:]) == grid:
        return u
    if all(a >= b for a, b in zip(u.shape[2:], grid)):
        return _ADAPTIVE_AVG[d](u, grid)
    return F.interpolate(u, size=grid, mode=_LINEAR[d], align_corners=False)


def from_grid(v: Tensor, shape: Sequence[int]) -> Tensor:
    """Working-grid maps back to the image grid ``shape`` ((bi/tri)linear, align_corners=False)."""
    d = _dims(v)
    if tuple(v.shape[2:]) == tuple(shape):
        return v
    return F.interpolate(v, size=tuple(int(s) for s in shape), mode=_LINEAR[d], align_corners=False)


def mask_to_grid(mask: Tensor, grid: Sequence[int]) -> Tensor:
    """Binary masks resampled to ``grid``: block (or linear) average of {0, 1}, then ``>= 0.5``."""
    return (to_grid(mask.float(), grid) >= 0.5).float()


def dilate(mask: Tensor, radius: int) -> Tensor:
    """Binary dilation of ``(B, M, *spatial)`` by a (2r+1)-voxel box (max pooling), float {0, 1}."""
    if radius <= 0:
        return mask.float()
    return _MAX_POOL[_dims(mask)](mask.float(), 2 * radius + 1, stride=1, padding=radius)


def region_weight(structure: Tensor, region_vox: int, feather_vox: int = 1) -> Tensor:
    """Blend weight in [0, 1], shaped like ``structure (B, 1, *spatial)`` (bool or {0, 1}): 1 within
    ``region_vox`` voxels of the structure (box distance), falling linearly over ``feather_vox``
    further voxels, and exactly 0 beyond ``region_vox + feather_vox``."""
    rings = [dilate(structure.float(), region_vox + k) for k in range(int(feather_vox) + 1)]
    return torch.stack(rings).mean(0).clamp(0.0, 1.0)


def soft_fraction(logits: Tensor) -> Tensor:
    """Differentiable size fraction per structure: ``mean(sigmoid(logits))`` over voxels, ``(B, S)``."""
    return torch.sigmoid(logits).flatten(2).mean(2)


def hard_voxels(logits: Tensor) -> Tensor:
    """Segmented size in voxels per structure (``logit > 0``), ``(B, S)`` float64."""
    return (logits > 0).flatten(2).sum(2).double()


def voxel_volume_ml(spacing: Sequence[float], image_shape: Sequence[int], grid: Sequence[int]) -> float:
    """Volume in mL of one working-grid voxel of an image of ``image_shape`` voxels at ``spacing`` mm."""
    if not len(spacing) == len(image_shape) == len(grid):
        raise ValueError(f"spacing {tuple(spacing)}, shape {tuple(image_shape)} and grid {tuple(grid)} differ in rank")
    mm3 = 1.0
    for sp, n, g in zip(spacing, image_shape, grid):
        mm3 *= float(sp) * int(n) / int(g)
    return mm3 / 1000.0


def drop_small_components(mask: Tensor, min_voxels: float) -> Tensor:
    """``mask (*spatial)`` (bool or {0, 1}) without the connected components (full connectivity:
    26-neighbourhood in 3-D) of fewer than ``min_voxels`` voxels; bool, on ``mask``'s device."""
    import numpy as np
    from scipy import ndimage

    m = mask.detach().cpu().numpy() > 0.5
    labels, n = ndimage.label(m, structure=np.ones((3,) * m.ndim, dtype=bool))
    if n == 0:
        return torch.zeros(mask.shape, dtype=torch.bool, device=mask.device)
    sizes = np.bincount(labels.ravel(), minlength=n + 1)
    keep = sizes >= float(min_voxels)
    keep[0] = False
    return torch.from_numpy(keep[labels]).to(mask.device)
