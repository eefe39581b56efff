"""Field-of-view geometry: magnification (crop), decentration and a new circular aperture."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def zoom_grid(shape: tuple[int, int], zoom: Tensor, shift: Tensor) -> Tensor:
    """A sampling grid (B, H, W, 2) that magnifies by ``zoom (B,)`` about the centre moved by ``shift``.

    ``shift (B, 2)`` (row, col) is where the new image centre lies in the old image, as a
    fraction of (H, W). Output pixel p samples the old image at c + (p − c) / zoom + shift.
    """
    h, w = shape
    b = zoom.shape[0]
    theta = torch.zeros(b, 2, 3, device=zoom.device, dtype=torch.float32)
    theta[:, 0, 0] = 1.0 / zoom
    theta[:, 1, 1] = 1.0 / zoom
    theta[:, 0, 2] = 2.0 * shift[:, 1]
    theta[:, 1, 2] = 2.0 * shift[:, 0]
    return F.affine_grid(theta, [b, 1, h, w], align_corners=False)


def resample(x: Tensor, grid: Tensor) -> Tensor:
    """Bilinear resampling of (B, C, H, W) at ``grid``; outside the old image is 0 (no light)."""
    return F.grid_sample(x, grid.to(x.dtype), mode="bilinear", padding_mode="zeros", align_corners=False)
