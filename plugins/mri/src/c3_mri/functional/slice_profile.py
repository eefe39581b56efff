"""Slice profiles: convolution along the slice axis with a Gaussian or windowed-sinc profile."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))


def gaussian_profile(fwhm_px: float, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    """Normalised Gaussian kernel with the given FWHM in pixels (support ±3σ)."""
    sigma = max(fwhm_px / FWHM_PER_SIGMA, 1e-3)
    half = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-half, half + 1, device=device, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def convolve_axis(volume: Tensor, kernel: Tensor, axis: int) -> Tensor:
    """Convolve (B, C, *sp) along spatial ``axis`` with a 1-D kernel (replicate padding)."""
    x = volume.movedim(2 + axis, -1)
    shape = x.shape
    flat = x.reshape(-1, 1, shape[-1])
    p = kernel.numel() // 2
    out = F.conv1d(F.pad(flat, (p, p), mode="replicate"), kernel.view(1, 1, -1))
    return out.reshape(shape).movedim(-1, 2 + axis)
