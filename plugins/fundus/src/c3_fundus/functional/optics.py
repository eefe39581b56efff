"""Optics kernels in linear light: defocus and motion PSFs, media haze, veiling glare, rim flare.

Distances are in pixels here; operators convert from micrometres on the retina using the
sample's pixel spacing.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

from c3_core.functional.separable import apply_separable, padded_filter_matrices
from c3_fundus.functional.geometry import polar_angle, radial_distance


def disc_kernel(radius_px: float, half: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """A normalised disc PSF of ``radius_px`` on a (2·half+1)² grid (4×4 supersampled, CPU)."""
    n = 2 * half + 1
    if radius_px <= 1e-3:
        k = torch.zeros(n, n, dtype=torch.float64)
        k[half, half] = 1.0
        return k.to(dtype)
    sub = 4
    coords = (torch.arange(n * sub, dtype=torch.float64) + 0.5) / sub - half - 0.5
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    inside = ((yy**2 + xx**2) <= radius_px**2).double()
    k = inside.view(n, sub, n, sub).mean(dim=(1, 3))
    if float(k.sum()) == 0.0:  # a blur circle smaller than the supersampling grid: a point
        k[half, half] = 1.0
    return (k / k.sum()).to(dtype)


def line_kernel(length_px: float, angle_deg: float, half: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """A normalised linear-motion PSF (uniform exposure along a segment), bilinear splatting."""
    n = 2 * half + 1
    k = torch.zeros(n * n, dtype=torch.float64)
    steps = max(2, int(math.ceil(length_px * 16)))
    t = torch.linspace(-length_px / 2, length_px / 2, steps, dtype=torch.float64)
    a = math.radians(angle_deg)
    y, x = t * math.sin(a) + half, t * math.cos(a) + half
    y0, x0 = y.floor(), x.floor()
    for dy in (0, 1):
        for dx in (0, 1):
            wy = (1 - (y - y0)) if dy == 0 else (y - y0)
            wx = (1 - (x - x0)) if dx == 0 else (x - x0)
            yi, xi = (y0 + dy).long().clamp(0, n - 1), (x0 + dx).long().clamp(0, n - 1)
            k.index_add_(0, yi * n + xi, wy * wx)
    k = k.view(n, n)
    return (k / k.sum()).to(dtype)


def optical_psf(defocus_px: float, motion_px: float, motion_angle_deg: float, half: int) -> Tensor:
    """Disc ⊛ line PSF (2·half+1)², normalised to unit sum."""
    disc = disc_kernel(defocus_px, half, torch.float64)
    line = line_kernel(motion_px, motion_angle_deg, half, torch.float64)
    psf = F.conv2d(disc.view(1, 1, *disc.shape), line.flip(0, 1).view(1, 1, *line.shape), padding=half)[0, 0]
    return (psf / psf.sum()).float()


def psf_half_width(defocus_px: float, motion_px: float) -> int:
    """Half-width (px) of a grid that holds a disc ⊛ line PSF."""
    return int(math.ceil(defocus_px + motion_px / 2 + 1))


def convolve_per_sample(image: Tensor, kernels: Tensor) -> Tensor:
    """Convolve sample i of (B, C, H, W) with ``kernels[i]`` ((B, K, K), K odd), reflect padding.

    One grouped convolution for the whole batch; every channel of a sample uses its kernel.
    """
    b, c, h, w = image.shape
    half = kernels.shape[-1] // 2
    x = image.reshape(1, b * c, h, w)
    if half:
        x = F.pad(x, (half, half, half, half), mode="reflect" if half < min(h, w) else "replicate")
    weight = kernels.to(image).repeat_interleave(c, dim=0).unsqueeze(1)
    return F.conv2d(x, weight, groups=b * c).view(b, c, h, w)


def gaussian_blur_fft(image: Tensor, sigma_px: Tensor) -> Tensor:
    """Gaussian blur of (B, C, H, W) with per-sample ``sigma_px (B,)`` in the Fourier domain.

    The image is reflect-padded by half its size (fixed, so results do not depend on the batch),
    which keeps wrap-around away for sigma up to a sixth of the image size.
    """
    b, c, h, w = image.shape
    ph, pw = min(h // 2, h - 1), min(w // 2, w - 1)
    x = F.pad(image, (pw, pw, ph, ph), mode="reflect")
    hh, ww = x.shape[-2:]
    fy = torch.fft.fftfreq(hh, device=image.device).view(1, 1, hh, 1)
    fx = torch.fft.rfftfreq(ww, device=image.device).view(1, 1, 1, ww // 2 + 1)
    s = sigma_px.to(image).view(b, 1, 1, 1)
    transfer = torch.exp(-2.0 * math.pi**2 * s**2 * (fy**2 + fx**2))
    out = torch.fft.irfft2(torch.fft.rfft2(x) * transfer, s=(hh, ww))
    return out[..., ph : ph + h, pw : pw + w]


#: images up to this many pixels on a side blur by matrices (:func:`gaussian_blur_matrices`): two
#: (n × n) products per channel beat the FFTs over the 2n-padded image there (one CPU thread:
#: 11× at 128 px, 2.7× at 512, 2.4× at 1,024; docs/benchmarks-fundus.md)
MATRIX_BLUR_MAX_PX = 1024


def _padded_blur_matrices(n: int, sigma_px: Tensor) -> Tensor:
    """(B, n, n) matrices M with M·v = the 1-D form of :func:`gaussian_blur_fft` along an axis of n:
    its reflect padding p = min(n // 2, n − 1) each side and transfer exp(−2π²σ²f²), which is
    separable, so the 2-D blur is M_y · x · M_xᵀ (float64)."""
    p = min(n // 2, n - 1)
    s = sigma_px.to(torch.float64).view(-1, 1)
    return padded_filter_matrices(n, p, p, lambda f: torch.exp(-2.0 * math.pi**2 * s**2 * f**2), sigma_px.device)


def gaussian_blur_matrices(image: Tensor, sigma_px: Tensor) -> Tensor:
    """:func:`gaussian_blur_fft` as M_y · x · M_xᵀ per sample (the same linear map; float rounding apart)."""
    h, w = image.shape[-2:]
    my = _padded_blur_matrices(h, sigma_px).to(image.dtype)
    mx = my if w == h else _padded_blur_matrices(w, sigma_px).to(image.dtype)
    return apply_separable(image, my, mx)


def gaussian_blur(image: Tensor, sigma_px: Tensor) -> Tensor:
    """The blur of :func:`gaussian_blur_fft`, by matrices for images up to MATRIX_BLUR_MAX_PX."""
    if max(image.shape[-2:]) <= MATRIX_BLUR_MAX_PX and min(image.shape[-2:]) >= 2:
        return gaussian_blur_matrices(image, sigma_px)
    return gaussian_blur_fft(image, sigma_px)


def media_haze(linear: Tensor, fraction: Tensor, sigma_px: Tensor) -> Tensor:
    """Forward scatter by hazy media: (1 − h)·x + h·(x ⊛ Gaussian(σ)); ``fraction``, ``sigma_px`` (B,)."""
    h = fraction.to(linear).view(-1, 1, 1, 1)
    return (1.0 - h) * linear + h * gaussian_blur(linear, sigma_px)


def veiling_glare(linear: Tensor, fraction: Tensor) -> Tensor:
    """Wide-angle stray light: (1 − g)·x + g·mean(x) per channel; light is conserved. ``fraction`` (B,)."""
    g = fraction.to(linear).view(-1, 1, 1, 1)
    return (1.0 - g) * linear + g * linear.mean(dim=(2, 3), keepdim=True)


def rim_flare(
    linear: Tensor, fov: Tensor, centre: Tensor, radius_px: Tensor, amplitude: Tensor, angle_deg: Tensor, width_px: Tensor
) -> Tensor:
    """Add a crescent of reflected light just inside the FOV rim.

    Added light = A · mean_FOV(x) · exp(−(r − R)² / 2w²) · ((1 + cos(θ − φ)) / 2)⁴ · tint, inside
    the FOV only. ``centre (B, 2)``, ``radius_px``, ``amplitude`` (relative to the mean FOV
    light), ``angle_deg`` φ and ``width_px`` w are per sample (B,).
    """
    shape = (linear.shape[-2], linear.shape[-1])
    r = radial_distance(shape, centre, linear.device)
    theta = polar_angle(shape, centre, linear.device)
    phi = torch.deg2rad(angle_deg.to(linear)).view(-1, 1, 1)
    lobe = ((1.0 + torch.cos(theta - phi)) / 2.0) ** 4
    ring = torch.exp(-0.5 * ((r - radius_px.view(-1, 1, 1)) / width_px.view(-1, 1, 1)) ** 2)
    inside = (fov > 0.5).to(linear)
    mean = (linear * inside).sum(dim=(2, 3), keepdim=True) / inside.sum(dim=(2, 3), keepdim=True).clamp_min(1)
    tint = torch.tensor([1.0, 0.9, 0.75], device=linear.device, dtype=linear.dtype).view(1, 3, 1, 1)
    return linear + amplitude.to(linear).view(-1, 1, 1, 1) * mean * (ring * lobe).unsqueeze(1) * tint * inside
