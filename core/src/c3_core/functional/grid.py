"""Working-grid kernels the learned editors share: resample to and from a square grid, dilate, feather."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor
from torch.nn import functional as F


def to_grid(u: Tensor, size: int) -> Tensor:
    """Resample ``(B, C, H, W)`` to ``(B, C, size, size)`` (bilinear, antialiased when shrinking)."""
    if tuple(u.shape[2:]) == (size, size):
        return u
    shrink = u.shape[2] > size or u.shape[3] > size
    return F.interpolate(u, size=(size, size), mode="bilinear", align_corners=False, antialias=shrink)


def from_grid(v: Tensor, shape: Sequence[int]) -> Tensor:
    """Resample working-grid maps back to the image grid ``shape`` ``(H, W)`` (bilinear)."""
    if tuple(v.shape[2:]) == tuple(shape):
        return v
    return F.interpolate(v, size=tuple(shape), mode="bilinear", align_corners=False)


def dilate(mask: Tensor, radius: int) -> Tensor:
    """Binary dilation of ``(B, M, H, W)`` masks by a (2r+1)-px square (max-pool; float32 out, the
    input itself for ``radius <= 0``)."""
    if radius <= 0:
        return mask
    return F.max_pool2d(mask.float(), 2 * radius + 1, stride=1, padding=radius)


def feather(mask: Tensor, radius: int) -> Tensor:
    """Soften a binary mask with a (2r+1)-px box filter applied twice (a triangle kernel).

    The result is 1 where the mask holds at least ``2r`` px inside its edge, 0 where it is more
    than ``2r`` px outside, and ramps smoothly in between.
    """
    if radius <= 0:
        return mask
    k = 2 * radius + 1
    out = mask
    for _ in range(2):
        out = F.avg_pool2d(F.pad(out, (radius,) * 4, mode="replicate"), k, stride=1)
    return out.clamp(0.0, 1.0)
