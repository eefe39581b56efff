"""Separable Gaussian filtering and affine resampling used by several operators."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F


def gaussian_kernel1d(sigma_px: float, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    sigma = max(float(sigma_px), 1e-3)
    half = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-half, half + 1, device=device, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def gaussian_blur(image: Tensor, sigma_px: float) -> Tensor:
    """Blur (B, C, H, W) with an isotropic Gaussian (reflect padding), separably."""
    k = gaussian_kernel1d(sigma_px, image.device, image.dtype)
    p = k.numel() // 2
    c = image.shape[1]
    mode = "reflect" if p < min(image.shape[-2:]) else "replicate"
    x = F.conv2d(F.pad(image, (p, p, 0, 0), mode=mode), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, p, p), mode=mode), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def affine_matrices(angle_deg: Tensor, shift_frac: Tensor, scale: Tensor) -> Tensor:
    """(B, 2, 3) sampling matrices (normalised coordinates) for rotation, translation, magnification.

    The output at q samples the input at A q + t, so content is magnified by ``scale`` and moved
    by ``shift_frac`` (fraction of the half-width).
    """
    a = torch.deg2rad(angle_deg)
    c, s = torch.cos(a) / scale, torch.sin(a) / scale
    theta = torch.stack([torch.stack([c, -s, -shift_frac[:, 0]], 1), torch.stack([s, c, -shift_frac[:, 1]], 1)], 1)
    return theta


def resample(image: Tensor, theta: Tensor, mode: str = "bilinear", padding: str = "border") -> Tensor:
    grid = F.affine_grid(theta.to(image.dtype), list(image.shape), align_corners=False)
    return F.grid_sample(image, grid, mode=mode, padding_mode=padding, align_corners=False)
