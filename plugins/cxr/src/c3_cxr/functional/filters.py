"""Image-domain kernels of the radiographic chain: affine resampling and FFT filters (Gaussian MTF,
detector aperture, pixel-pitch change), all batched with per-case parameters."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F


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


def _padded_spectrum_filter(image: Tensor, transfer: Callable[[Tensor, Tensor], Tensor], pad: int) -> Tensor:
    """Multiply the spectrum of reflect-padded ``image`` by ``transfer(fy, fx)`` (cycles/px).

    ``pad`` must not depend on the other cases of the batch (results must be batch-invariant).
    """
    h, w = image.shape[-2:]
    pad = max(0, min(pad, h - 1, w - 1))
    x = F.pad(image, (pad, pad, pad, pad), mode="reflect") if pad > 0 else image
    hp, wp = x.shape[-2:]
    fy = torch.fft.fftfreq(hp, device=image.device, dtype=image.dtype).view(1, 1, -1, 1)
    fx = torch.fft.rfftfreq(wp, device=image.device, dtype=image.dtype).view(1, 1, 1, -1)
    out = torch.fft.irfft2(torch.fft.rfft2(x) * transfer(fy, fx), s=(hp, wp))
    return out[..., pad : pad + h, pad : pad + w]


def gaussian_blur_batched(image: Tensor, sigma_px: Tensor) -> Tensor:
    """Blur ``(B, C, H, W)`` with a per-case isotropic Gaussian of σ ``sigma_px (B,)`` pixels.

    Applied as its MTF exp(−2π²σ²f²) on an FFT of the image reflect-padded by half its size
    (exact for 3σ up to that pad); σ = 0 is the identity.
    """
    s = sigma_px.to(image.dtype).view(-1, 1, 1, 1)
    return _padded_spectrum_filter(image, lambda fy, fx: torch.exp(-2 * math.pi**2 * s**2 * (fy**2 + fx**2)), min(image.shape[-2:]) // 2)


def aperture_change(image: Tensor, ratio: Tensor) -> Tensor:
    """Change a square detector aperture from 1 px to ``ratio (B,)`` px: MTF sinc(r f) / sinc(f)
    per axis (|f| ≤ ½ cycle/px, where sinc(f) ≥ 2/π, so the division is safe)."""
    r = ratio.to(image.dtype).view(-1, 1, 1, 1)

    def transfer(fy: Tensor, fx: Tensor) -> Tensor:
        return torch.sinc(r * fy) / torch.sinc(fy) * torch.sinc(r * fx) / torch.sinc(fx)

    return _padded_spectrum_filter(image, transfer, 8)


def _coarse_nodes(n: int, ratio: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """For fine pixels 0…n−1: the two bracketing coarse-grid nodes (fine coordinates) and the
    linear weight of the second; the coarse grid has pitch ``ratio`` and a node at pixel n // 2."""
    x = torch.arange(n, device=ratio.device, dtype=ratio.dtype).view(1, -1)
    c = float(n // 2)
    u = (x - c) / ratio.view(-1, 1)
    u0 = torch.floor(u)
    p0 = c + u0 * ratio.view(-1, 1)
    return p0, p0 + ratio.view(-1, 1), u - u0


def change_pixel_pitch(image: Tensor, ratio: Tensor) -> Tensor:
    """Acquire at ``ratio`` × the pixel pitch (aperture widened likewise), then display on the
    original grid by bilinear interpolation between the coarse samples. ratio 1 is the identity."""
    b, _, h, w = image.shape
    r = ratio.to(image.dtype)
    blurred = aperture_change(image, r)
    y0, y1, wy = _coarse_nodes(h, r)
    x0, x1, wx = _coarse_nodes(w, r)

    def at(py: Tensor, px: Tensor) -> Tensor:
        gy = ((2 * py + 1) / h - 1).view(b, h, 1).expand(b, h, w)
        gx = ((2 * px + 1) / w - 1).view(b, 1, w).expand(b, h, w)
        return F.grid_sample(blurred, torch.stack((gx, gy), dim=-1), mode="bilinear", padding_mode="border", align_corners=False)

    wy, wx = wy.view(b, 1, h, 1), wx.view(b, 1, 1, w)
    return (1 - wy) * ((1 - wx) * at(y0, x0) + wx * at(y0, x1)) + wy * ((1 - wx) * at(y1, x0) + wx * at(y1, x1))
