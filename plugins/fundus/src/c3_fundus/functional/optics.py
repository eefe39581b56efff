"""Optical blur and veiling glare kernels."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def disc_kernel(radius_px: float, device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    """A normalised disc point-spread function of ``radius_px`` (anti-aliased by 4x supersampling)."""
    r = max(float(radius_px), 1e-3)
    half = int(torch.ceil(torch.tensor(r)).item())
    n = 2 * half + 1
    sub = 4
    coords = (torch.arange(n * sub, device=device, dtype=torch.float64) + 0.5) / sub - half - 0.5
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    inside = ((yy**2 + xx**2) <= r * r).double()
    k = inside.view(n, sub, n, sub).mean(dim=(1, 3))
    return (k / k.sum()).to(dtype)


def blur_per_sample(image: Tensor, kernels: list[Tensor]) -> Tensor:
    """Convolve sample i of (B, C, H, W) with ``kernels[i]`` (reflect padding), channels alike."""
    out = []
    for i, k in enumerate(kernels):
        p = k.shape[-1] // 2
        x = F.pad(image[i : i + 1], (p, p, p, p), mode="reflect") if p else image[i : i + 1]
        c = image.shape[1]
        out.append(F.conv2d(x, k.view(1, 1, *k.shape).repeat(c, 1, 1, 1), groups=c))
    return torch.cat(out, 0)


def veiling_glare(linear: Tensor, fraction: Tensor) -> Tensor:
    """Media haze: (1 − h) · x + h · (mean luminance-weighted veil); ``fraction`` (B,) in [0, 1)."""
    veil = linear.mean(dim=(2, 3), keepdim=True)
    h = fraction.view(-1, 1, 1, 1)
    return (1.0 - h) * linear + h * veil
