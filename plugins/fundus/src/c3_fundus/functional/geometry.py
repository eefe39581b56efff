"""Pixel-coordinate grids shared by the illumination kernels."""

from __future__ import annotations

import torch
from torch import Tensor


def radial_distance(shape: tuple[int, int], centre: Tensor, device: torch.device) -> Tensor:
    """Distance in pixels of every pixel from per-sample centres ``centre (B, 2)`` (row, col) -> (B, H, W)."""
    h, w = shape
    yy = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1)
    xx = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w)
    cy, cx = centre[:, 0].view(-1, 1, 1), centre[:, 1].view(-1, 1, 1)
    return torch.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
