"""Parallel-beam CT in torch: forward projection, ramp filtering and back-projection.

Conventions (all lengths in pixels, so line integrals are dimensionless when the image holds
μ·pixel_mm): pixel (row i, column j) sits at x = j − (W−1)/2, y = i − (H−1)/2. The ray at angle θ
and detector offset t is {t (cos θ, sin θ) + s (−sin θ, cos θ)}; angles cover [0, π). Detector bins
are 1 px wide, odd in number and span the image diagonal, so no ray misses the image.

Filtered back-projection follows the discrete ramp of Kak & Slaney (ch. 3): the spatial kernel
h[0] = 1/4, h[n odd] = −1/(π n)², h[n even] = 0, applied by zero-padded FFT, then
f(x, y) = π / A · Σ_θ q_θ(x cos θ + y sin θ).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

ANGLE_CHUNK = 24  # angles per grid_sample call (bounds memory, not a loop over voxels)


def detector_bins(height: int, width: int) -> int:
    """Odd number of 1-px detector bins covering the image diagonal."""
    d = int(math.ceil(math.hypot(height, width))) + 2
    return d + 1 if d % 2 == 0 else d


def default_angles(height: int, width: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """⌈π/2 · max(H, W)⌉ equally spaced angles in [0, π) (the usual angular sampling for FBP)."""
    n = int(math.ceil(math.pi / 2 * max(height, width)))
    return torch.arange(n, device=device, dtype=torch.float64).mul(math.pi / n).to(dtype)


def radon(image: Tensor, angles: Tensor, n_bins: int | None = None) -> Tensor:
    """Line integrals of ``image (N, 1, H, W)`` (per-pixel attenuation) → sinogram ``(N, 1, A, D)``.

    Rays are sampled every pixel with bilinear interpolation; outside the image is zero.
    """
    n, _, h, w = image.shape
    d = n_bins or detector_bins(h, w)
    dev, dt = image.device, image.dtype
    t = torch.arange(d, device=dev, dtype=dt) - (d - 1) / 2
    out = []
    for chunk in angles.to(device=dev, dtype=dt).split(ANGLE_CHUNK):
        c, s = chunk.cos().view(-1, 1, 1), chunk.sin().view(-1, 1, 1)
        x = t.view(1, 1, -1) * c - t.view(1, -1, 1) * s  # (A, S, T): s along the ray, t across
        y = t.view(1, 1, -1) * s + t.view(1, -1, 1) * c
        grid = torch.stack((2 * x / w, 2 * y / h), dim=-1).reshape(1, -1, d, 2).expand(n, -1, -1, -1)
        samples = F.grid_sample(image, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out.append(samples.view(n, 1, chunk.numel(), d, d).sum(dim=3))
    return torch.cat(out, dim=2)


def ramp_response(n_bins: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> tuple[Tensor, Tensor]:
    """(frequency response of the discrete ramp, |frequency| in cycles/px), both of FFT length L ≥ 2D."""
    length = 1 << int(math.ceil(math.log2(2 * n_bins)))
    k = torch.arange(length, device=device, dtype=torch.float64)
    m = torch.where(k < length / 2, k, k - length)
    h = torch.zeros(length, device=device, dtype=torch.float64)
    odd = m.remainder(2) == 1
    h[odd] = -1.0 / (math.pi * m[odd]) ** 2
    h[0] = 0.25
    response = torch.fft.fft(h).real
    freq = torch.fft.fftfreq(length, device=device, dtype=torch.float64).abs()
    return response.to(dtype), freq.to(dtype)


def filter_sinogram(sinogram: Tensor, window: Tensor | None = None) -> Tensor:
    """Ramp-filter every projection of ``sinogram (N, 1, A, D)``.

    ``window`` multiplies the ramp: a tensor broadcastable to ``(N, 1, 1, L)`` over the FFT
    frequencies returned by :func:`ramp_response` (None = the plain Ram-Lak ramp).
    """
    d = sinogram.shape[-1]
    response, _ = ramp_response(d, sinogram.device, sinogram.dtype)
    length = response.numel()
    if window is not None:
        response = response * window
    spectrum = torch.fft.fft(F.pad(sinogram, (0, length - d)), dim=-1) * response
    return torch.fft.ifft(spectrum, dim=-1).real[..., :d].contiguous()


def backproject(filtered: Tensor, angles: Tensor, height: int, width: int) -> Tensor:
    """π/A · Σ_θ q_θ(x cos θ + y sin θ) on an ``H × W`` grid → ``(N, 1, H, W)``."""
    n, _, a, d = filtered.shape
    dev, dt = filtered.device, filtered.dtype
    xs = (torch.arange(width, device=dev, dtype=dt) - (width - 1) / 2).view(1, 1, -1)
    ys = (torch.arange(height, device=dev, dtype=dt) - (height - 1) / 2).view(1, -1, 1)
    total = torch.zeros(n, 1, height * width, device=dev, dtype=dt)
    angles = angles.to(device=dev, dtype=dt)
    for start in range(0, a, ANGLE_CHUNK):
        chunk = angles[start : start + ANGLE_CHUNK]
        c, s = chunk.cos().view(-1, 1, 1), chunk.sin().view(-1, 1, 1)
        u = xs * c + ys * s + (d - 1) / 2  # detector coordinate in bins, (A, H, W)
        rows = torch.arange(start, start + chunk.numel(), device=dev, dtype=dt).view(-1, 1, 1).expand_as(u)
        grid = torch.stack(((2 * u + 1) / d - 1, (2 * rows + 1) / a - 1), dim=-1).reshape(1, chunk.numel(), -1, 2)
        samples = F.grid_sample(filtered, grid.expand(n, -1, -1, -1), mode="bilinear", padding_mode="zeros", align_corners=False)
        total = total + samples.sum(dim=2)
    return (total * (math.pi / a)).view(n, 1, height, width)


def fbp(sinogram: Tensor, angles: Tensor, height: int, width: int, window: Tensor | None = None) -> Tensor:
    """Filtered back-projection of ``sinogram (N, 1, A, D)`` onto ``H × W``."""
    return backproject(filter_sinogram(sinogram, window), angles, height, width)


def kernel_window(freq: Tensor, change: Tensor, boost: float = 1.0) -> Tensor:
    """Reconstruction-kernel apodisation over |frequency| (cycles/px, Nyquist 0.5), per case.

    ``change (N,)`` in [−1, 1]: 0 is the Ram-Lak ramp; −1 is a full Hann window (soft-tissue
    kernel, zero at Nyquist), blended linearly in between; +1 boosts the ramp by
    ``1 + boost · (f / 0.5)²`` (edge-enhancing bone kernel). Returns ``(N, 1, 1, L)``.
    """
    c = change.view(-1, 1, 1, 1).to(freq.dtype)
    f = (freq / 0.5).clamp(max=1.0).view(1, 1, 1, -1)
    hann = 0.5 * (1 + torch.cos(math.pi * f))
    soft = 1 + c.abs() * (hann - 1)
    sharp = 1 + c * boost * f**2
    return torch.where(c < 0, soft, sharp)
