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


def fast_fft_length(n: int) -> int:
    """The smallest 2^a · 3^b · 5^c >= ``n`` (FFT lengths that pocketfft / MKL / cuFFT handle fastest)."""
    best = 1 << max(0, (n - 1).bit_length())
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _axis_pads(n: int, pad: int, fast: bool) -> tuple[int, int]:
    """(before, after) reflect pads for an axis of ``n`` px: ``pad`` each side (capped at n − 1,
    reflect's limit); with ``fast``, grown so that the padded length is a fast FFT length."""
    pad = max(0, min(pad, n - 1))
    if pad == 0 or not fast:
        return pad, pad
    extra = fast_fft_length(n + 2 * pad) - (n + 2 * pad)
    before, after = pad + extra // 2, pad + extra - extra // 2
    return (before, after) if after <= n - 1 else (pad, pad)


def _padded_spectrum_filter(
    image: Tensor, transfer: Callable[[Tensor, Tensor], Tensor], pad: int, fast: bool = False
) -> Tensor:
    """Multiply the spectrum of reflect-padded ``image`` by ``transfer(fy, fx)`` (cycles/px).

    ``pad`` (px each side) must not depend on the other cases of the batch beyond what the
    filter's support makes immaterial (results must be batch-invariant). ``fast``: pad a little
    more, up to a fast FFT length (only for filters whose kernel is negligible beyond ``pad``).
    """
    h, w = image.shape[-2:]
    top, bottom = _axis_pads(h, pad, fast)
    left, right = _axis_pads(w, pad, fast)
    x = F.pad(image, (left, right, top, bottom), mode="reflect") if (top or left) else image
    hp, wp = x.shape[-2:]
    fy = torch.fft.fftfreq(hp, device=image.device, dtype=image.dtype).view(1, 1, -1, 1)
    fx = torch.fft.rfftfreq(wp, device=image.device, dtype=image.dtype).view(1, 1, 1, -1)
    out = torch.fft.irfft2(torch.fft.rfft2(x) * transfer(fy, fx), s=(hp, wp))
    return out[..., top : top + h, left : left + w]


COMPACT_SIGMA_PX = 1.5  # from here the Gaussian MTF at Nyquist is below 2e-5: a compact kernel


def gaussian_blur_batched(image: Tensor, sigma_px: Tensor) -> Tensor:
    """Blur ``(B, C, H, W)`` with a per-case isotropic Gaussian of σ ``sigma_px (B,)`` pixels.

    Applied as its MTF exp(−2π²σ²f²) on an FFT of the image reflect-padded by half its size;
    σ = 0 is the identity. When every blurring case has σ >= 1.5 px the MTF is negligible at
    Nyquist and the kernel beyond 6σ below 1.6e-8 of its peak, so 6σ + 2 px of padding (of the
    widest case, rounded up to a fast FFT length) give the same result to float32 precision, at
    a fraction of the cost; below 1.5 px the MTF's cut at Nyquist gives the kernel long ripples
    and the half-size padding stays.
    """
    s = sigma_px.to(image.dtype).view(-1, 1, 1, 1)
    pad = min(image.shape[-2:]) // 2
    blurring = sigma_px[sigma_px > 0]
    compact = bool(blurring.numel()) and float(blurring.min()) >= COMPACT_SIGMA_PX
    if compact:
        pad = min(pad, math.ceil(6.0 * float(blurring.max())) + 2)
    return _padded_spectrum_filter(image, lambda fy, fx: torch.exp(-2 * math.pi**2 * s**2 * (fy**2 + fx**2)), pad, fast=compact)


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


def _axis_taps(p0: Tensor, p1: Tensor, weight: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """Source pixels (4, B, n) and weights (4, B, n) that read, along one axis of ``n`` px, the
    linear interpolation with ``weight`` between coarse nodes ``p0`` and ``p1`` (B, n), each node
    itself read bilinearly between its two fine neighbours (coordinates clamped to the border)."""
    index, weights = [], []
    for p, w in ((p0, 1 - weight), (p1, weight)):
        q = p.clamp(0, n - 1)
        f = torch.floor(q)
        t = q - f
        i = f.long()
        index += [i, (i + 1).clamp_max(n - 1)]
        weights += [w * (1 - t), w * t]
    return torch.stack(index), torch.stack(weights)


def _read_rows(x: Tensor, index: Tensor, weights: Tensor) -> Tensor:
    """Σ_k weights[k] · (rows index[k] of x), per case, for (B, C, H, W) and index/weights (K, B, H')."""
    out = []
    for i in range(x.shape[0]):  # whole-row copies per case (index_select), faster than an element gather
        rows = None
        for idx, w in zip(index[:, i], weights[:, i], strict=True):
            term = x[i].index_select(-2, idx).mul_(w.view(-1, 1))
            rows = term if rows is None else rows.add_(term)
        out.append(rows)
    return torch.stack(out)


def change_pixel_pitch(image: Tensor, ratio: Tensor) -> Tensor:
    """Acquire at ``ratio`` × the pixel pitch (aperture widened likewise), then display on the
    original grid by bilinear interpolation between the coarse samples. ratio 1 is the identity.

    The coarse samples are read bilinearly between fine pixels (clamped at the border) and
    interpolated linearly between coarse nodes; both steps are separable, so they run as
    gathers along the rows and then along the columns.
    """
    _, _, h, w = image.shape
    r = ratio.to(image.dtype)
    blurred = aperture_change(image, r)
    y0, y1, wy = _coarse_nodes(h, r)
    x0, x1, wx = _coarse_nodes(w, r)
    rows = _read_rows(blurred, *_axis_taps(y0, y1, wy, h))
    return _read_rows(rows.transpose(-1, -2).contiguous(), *_axis_taps(x0, x1, wx, w)).transpose(-1, -2).contiguous()
