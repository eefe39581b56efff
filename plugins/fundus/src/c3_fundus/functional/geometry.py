"""Pixel-coordinate grids shared by the illumination, vignetting, flare and FOV kernels."""

from __future__ import annotations

import torch
from torch import Tensor


def radial_distance(shape: tuple[int, int], centre: Tensor, device: torch.device) -> Tensor:
    """Distance (px) of every pixel from per-sample centres ``centre (B, 2)`` (row, col) -> (B, H, W)."""
    h, w = shape
    yy = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1)
    xx = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w)
    cy, cx = centre[:, 0].view(-1, 1, 1), centre[:, 1].view(-1, 1, 1)
    return ((yy - cy) ** 2 + (xx - cx) ** 2).sqrt_()


def polar_angle(shape: tuple[int, int], centre: Tensor, device: torch.device) -> Tensor:
    """Angle (rad, atan2(row, col) about ``centre (B, 2)``) of every pixel -> (B, H, W)."""
    h, w = shape
    yy = torch.arange(h, device=device, dtype=torch.float32).view(1, h, 1)
    xx = torch.arange(w, device=device, dtype=torch.float32).view(1, 1, w)
    return torch.atan2(yy - centre[:, 0].view(-1, 1, 1), xx - centre[:, 1].view(-1, 1, 1))


def circular_aperture(shape: tuple[int, int], centre: Tensor, radius_px: Tensor, device: torch.device, soft_px: float = 0.5) -> Tensor:
    """A soft-edged disc (B, 1, H, W) in [0, 1]: 1 inside ``radius_px (B,)``, 0 outside."""
    r = radial_distance(shape, centre, device)
    return torch.sigmoid((radius_px.view(-1, 1, 1) - r) / soft_px).unsqueeze(1)


def image_centre(shape: tuple[int, int], batch: int, device: torch.device) -> Tensor:
    """The geometric image centre (row, col) repeated for ``batch`` -> (B, 2)."""
    h, w = shape
    return torch.tensor([(h - 1) / 2, (w - 1) / 2], device=device).expand(batch, 2)


def fov_radius(fov: Tensor) -> Tensor:
    """Radius (B,) (px, from the area) of FOV masks (B, 1, H, W): :func:`fov_geometry`'s radius alone."""
    area = (fov[:, 0] > 0.5).sum(dim=(1, 2)).to(torch.float32).clamp_min(1.0)
    return torch.sqrt(area / torch.pi)


def fov_geometry(fov: Tensor) -> tuple[Tensor, Tensor]:
    """Centre (B, 2) (row, col, px) and radius (B,) (px, from the area) of FOV masks (B, 1, H, W)."""
    h, w = fov.shape[-2:]
    m = (fov[:, 0] > 0.5).float()
    area = m.sum(dim=(1, 2)).clamp_min(1.0)
    yy = torch.arange(h, device=fov.device, dtype=torch.float32).view(1, h, 1)
    xx = torch.arange(w, device=fov.device, dtype=torch.float32).view(1, 1, w)
    centre = torch.stack([(m * yy).sum(dim=(1, 2)) / area, (m * xx).sum(dim=(1, 2)) / area], dim=1)
    return centre, torch.sqrt(area / torch.pi)
