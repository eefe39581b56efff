"""Sensor model: photon shot noise, read noise, fixed-pattern noise, Bayer mosaic and demosaic."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def bayer_masks(shape: tuple[int, int], device: torch.device) -> Tensor:
    """RGGB colour-filter-array masks (3, H, W) in {0, 1}."""
    h, w = shape
    y = torch.arange(h, device=device).view(h, 1) % 2
    x = torch.arange(w, device=device).view(1, w) % 2
    r = ((y == 0) & (x == 0)).float()
    b = ((y == 1) & (x == 1)).float()
    return torch.stack([r, 1.0 - r - b, b])


def mosaic(rgb: Tensor) -> Tensor:
    """Keep each pixel's CFA channel: (B, 3, H, W) -> sparse (B, 3, H, W)."""
    return rgb * bayer_masks(tuple(rgb.shape[-2:]), rgb.device)


def bilinear_demosaic(sparse: Tensor) -> Tensor:
    """Bilinear demosaicing of an RGGB mosaic (B, 3, H, W) with normalised convolution."""
    masks = bayer_masks(tuple(sparse.shape[-2:]), sparse.device).expand_as(sparse)
    k = torch.tensor([[0.25, 0.5, 0.25], [0.5, 1.0, 0.5], [0.25, 0.5, 0.25]], device=sparse.device, dtype=sparse.dtype)
    k = k.view(1, 1, 3, 3).repeat(3, 1, 1, 1)
    num = F.conv2d(F.pad(sparse, (1, 1, 1, 1), mode="reflect"), k, groups=3)
    den = F.conv2d(F.pad(masks, (1, 1, 1, 1), mode="reflect"), k, groups=3)
    return torch.where(masks > 0, sparse, num / den.clamp_min(1e-6))


def shot_and_read_noise(linear: Tensor, photons_at_white: Tensor, read_noise_e: Tensor, generator: torch.Generator) -> Tensor:
    """One sample (3, H, W): electrons ~ Poisson(x · N_white) + N(0, σ_read²), back to [0, 1] units."""
    electrons = torch.poisson(linear.clamp_min(0) * photons_at_white, generator=generator)
    electrons = electrons + read_noise_e * torch.randn(linear.shape, generator=generator, device=linear.device, dtype=linear.dtype)
    return electrons / photons_at_white


def fixed_pattern(shape: tuple[int, ...], prnu: float, dsnu: float, generator: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-pixel gain (PRNU, relative std) and offset (DSNU, in [0, 1] units) maps."""
    gain = 1.0 + prnu * torch.randn(shape, generator=generator, device=device)
    offset = dsnu * torch.randn(shape, generator=generator, device=device)
    return gain, offset
