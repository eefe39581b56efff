"""Pure kernels: speckle fields, depth gain in dB, log compression."""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F


def psf_smooth(field: Tensor, sigma_axial_px: float, sigma_lateral_px: float) -> Tensor:
    """Smooth (…, H, W) with an anisotropic Gaussian PSF (axial = rows, lateral = columns)."""

    def kernel(sigma: float) -> Tensor:
        half = max(1, int(math.ceil(3 * sigma)))
        x = torch.arange(-half, half + 1, dtype=field.dtype, device=field.device)
        k = torch.exp(-0.5 * (x / max(sigma, 1e-3)) ** 2)
        return k / k.norm()  # unit energy keeps the variance of white noise

    ka, kl = kernel(sigma_axial_px), kernel(sigma_lateral_px)
    x = field.reshape(-1, 1, *field.shape[-2:])
    x = F.conv2d(F.pad(x, (0, 0, ka.numel() // 2, ka.numel() // 2), mode="circular"), ka.view(1, 1, -1, 1))
    x = F.conv2d(F.pad(x, (kl.numel() // 2, kl.numel() // 2, 0, 0), mode="circular"), kl.view(1, 1, 1, -1))
    return x.reshape(field.shape)


def rayleigh_speckle(shape: tuple[int, ...], generator: torch.Generator, sigma_axial_px: float, sigma_lateral_px: float, device: torch.device) -> Tensor:
    """|complex Gaussian| with unit mean square: fully developed speckle (Rayleigh amplitude)."""
    re = torch.randn(shape, generator=generator, device=device)
    im = torch.randn(shape, generator=generator, device=device)
    if sigma_axial_px > 0 or sigma_lateral_px > 0:
        re, im = psf_smooth(re, sigma_axial_px, sigma_lateral_px), psf_smooth(im, sigma_axial_px, sigma_lateral_px)
    return torch.sqrt((re**2 + im**2) / 2.0)


def k_distributed_speckle(shape: tuple[int, ...], alpha: float, generator: torch.Generator, sigma_axial_px: float, sigma_lateral_px: float, device: torch.device) -> Tensor:
    """K-distributed amplitude: Rayleigh × sqrt(Gamma(α, 1/α)) (α = scatterers per cell; α → ∞ is Rayleigh)."""
    ray = rayleigh_speckle(shape, generator, sigma_axial_px, sigma_lateral_px, device)
    gamma = torch._standard_gamma(torch.full(shape, float(alpha), device=device), generator=generator) / alpha
    return ray * gamma.sqrt()


def depth_gain_db(rows: int, row_mm: float, attenuation_db_cm_mhz: float, frequency_mhz: float, tgc_db_per_cm: float, device: torch.device) -> Tensor:
    """Net round-trip gain in dB per row: −2·α·f·z + TGC·z, z in cm."""
    z_cm = (torch.arange(rows, device=device, dtype=torch.float32) + 0.5) * row_mm / 10.0
    return -2.0 * attenuation_db_cm_mhz * frequency_mhz * z_cm + tgc_db_per_cm * z_cm


def log_compress(envelope: Tensor, dynamic_range_db: float = 50.0) -> Tensor:
    """B-mode display in [0, 1]: 20·log10(envelope / max) mapped over ``dynamic_range_db``."""
    ref = envelope.flatten(1).amax(1).clamp_min(1e-12).view(-1, *[1] * (envelope.ndim - 1))
    db = 20 * torch.log10(envelope.clamp_min(1e-12) / ref)
    return (db / dynamic_range_db + 1.0).clamp(0.0, 1.0)
