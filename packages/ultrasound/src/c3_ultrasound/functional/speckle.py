"""Speckle kernels: PSF-correlated complex Gaussian fields and the amplitude laws built on them.

Coherent imaging sums many random phasors per resolution cell. With many scatterers the sum is a
circular complex Gaussian ``Z`` and the echo amplitude ``|Z|`` is Rayleigh distributed (fully
developed speckle). Two departures are modelled:

* a coherent (specular) component ``m``: amplitude ``|m + Z|`` is Rician, speckle contrast
  below Rayleigh's (``m = 0`` is Rayleigh, ``m -> inf`` no speckle);
* few scatterers per resolution cell: the local scattering strength fluctuates, amplitude
  ``|Z| * sqrt(G)`` with ``G ~ Gamma(alpha, 1/alpha)`` is K-distributed, contrast above Rayleigh
  (``alpha -> inf`` is Rayleigh).

Every field here has unit mean square (``E[A^2] = 1``), so multiplying an envelope by it keeps
the mean echo power. Spatial correlation comes from smoothing white fields with a separable,
unit-energy Gaussian PSF (axial = rows, lateral = columns), which leaves each pixel's marginal
law unchanged. All kernels are pure torch and run on the generator's device.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))  # 2.3548
RAYLEIGH_CONTRAST = math.sqrt(4.0 / math.pi - 1.0)  # std/mean of a Rayleigh amplitude, 0.5227


def psf_kernel_1d(sigma_px: float, dtype: torch.dtype, device: torch.device, max_half: int) -> Tensor:
    """A unit-energy (sum of squares 1) sampled Gaussian of std ``sigma_px`` pixels.

    Unit energy means filtering white noise of variance v gives correlated noise of variance v.
    ``sigma_px <= 0`` gives the delta kernel (no correlation). ``max_half`` caps the half width
    (so the kernel never wraps onto itself on a small grid).
    """
    if sigma_px <= 0:
        return torch.ones(1, dtype=dtype, device=device)
    half = max(1, min(int(math.ceil(3.0 * sigma_px)), max_half))
    x = torch.arange(-half, half + 1, dtype=dtype, device=device)
    k = torch.exp(-0.5 * (x / sigma_px) ** 2)
    return k / k.pow(2).sum().sqrt()


def psf_filter(field: Tensor, sigma_axial_px: float, sigma_lateral_px: float) -> Tensor:
    """Filter ``field`` (N, H, W) with the separable Gaussian PSF, circular boundaries.

    Circular padding keeps the filtered field stationary: every pixel has the same variance. Each
    axis is one multiply-add of the field per tap on shifted views of a circularly padded copy
    (the kernels have at most a few dozen taps; a one-channel convolution costs ~30x more on a CPU).
    """
    n, h, w = field.shape
    ka = psf_kernel_1d(sigma_axial_px, field.dtype, field.device, (h - 1) // 2)
    kl = psf_kernel_1d(sigma_lateral_px, field.dtype, field.device, (w - 1) // 2)
    x = field
    if ka.numel() > 1:
        x = _circular_taps(x, ka, 1)
    if kl.numel() > 1:
        x = _circular_taps(x, kl, 2)
    return x


def _circular_taps(x: Tensor, kernel: Tensor, dim: int) -> Tensor:
    """``sum_t kernel[t] · x[(i + t − p) mod n]`` along ``dim`` (p = half the odd kernel's length,
    at most (n − 1) / 2, as ``psf_kernel_1d`` caps it)."""
    n, p = x.shape[dim], kernel.numel() // 2
    padded = torch.cat([x.narrow(dim, n - p, p), x, x.narrow(dim, 0, p)], dim)
    taps = kernel.tolist()
    out = padded.narrow(dim, 0, n) * taps[0]
    for t, weight in enumerate(taps[1:], start=1):
        out.add_(padded.narrow(dim, t, n), alpha=weight)
    return out


def complex_gaussian_field(
    shape: tuple[int, int], generator: torch.Generator, sigma_axial_px: float, sigma_lateral_px: float,
    dtype: torch.dtype = torch.float32,
) -> tuple[Tensor, Tensor]:
    """Real and imaginary parts (H, W) of a PSF-correlated circular complex Gaussian, E|Z|^2 = 1."""
    device = generator.device
    white = torch.randn((2, *shape), generator=generator, device=device, dtype=dtype) * math.sqrt(0.5)
    re_im = psf_filter(white, sigma_axial_px, sigma_lateral_px)
    return re_im[0], re_im[1]


def rician_amplitude(re: Tensor, im: Tensor, coherent: float) -> Tensor:
    """``|m + Z| / sqrt(1 + m^2)``: Rician with unit mean square; ``m = 0`` is Rayleigh."""
    return torch.sqrt((re + coherent) ** 2 + im**2) / math.sqrt(1.0 + coherent**2)


def gamma_texture(
    shape: tuple[int, int], degrees: int, generator: torch.Generator, sigma_axial_px: float, sigma_lateral_px: float,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """A PSF-correlated Gamma(alpha = degrees/2, scale 1/alpha) field with mean 1 (H, W).

    Built as a chi-square with ``degrees`` degrees of freedom over ``degrees``: the mean of the
    squares of ``degrees`` independent unit-variance Gaussian fields, each smoothed by the PSF.
    Each pixel is then exactly Gamma distributed, and neighbouring pixels share scatterer density
    over about one resolution cell.
    """
    if degrees < 1:
        raise ValueError(f"gamma_texture: degrees must be >= 1, got {degrees}")
    device = generator.device
    white = torch.randn((degrees, *shape), generator=generator, device=device, dtype=dtype)
    return psf_filter(white, sigma_axial_px, sigma_lateral_px).pow(2).mean(0)


def rayleigh_speckle(
    shape: tuple[int, int], generator: torch.Generator, sigma_axial_px: float = 0.0, sigma_lateral_px: float = 0.0,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Fully developed speckle amplitude (H, W): Rayleigh with unit mean square (scale sqrt(1/2))."""
    re, im = complex_gaussian_field(shape, generator, sigma_axial_px, sigma_lateral_px, dtype)
    return rician_amplitude(re, im, 0.0)


def k_speckle(
    shape: tuple[int, int], alpha: float, generator: torch.Generator, sigma_axial_px: float = 0.0,
    sigma_lateral_px: float = 0.0, dtype: torch.dtype = torch.float32,
) -> Tensor:
    """K-distributed speckle amplitude (H, W) with shape ``alpha`` (a multiple of 1/2), E[A^2] = 1."""
    degrees = round(2.0 * alpha)
    if degrees < 1 or abs(degrees - 2.0 * alpha) > 1e-9:
        raise ValueError(f"k_speckle: alpha must be a positive multiple of 1/2, got {alpha}")
    rayleigh = rayleigh_speckle(shape, generator, sigma_axial_px, sigma_lateral_px, dtype)
    return rayleigh * gamma_texture(shape, degrees, generator, sigma_axial_px, sigma_lateral_px, dtype).sqrt()


# -- moments, used to map a target speckle contrast onto a distribution (python floats) -------
def rician_contrast(coherent: float) -> float:
    """Amplitude std/mean of ``|m + Z|`` (E|Z|^2 = 1) for coherent amplitude ``m >= 0``.

    Mean = (sqrt(pi)/2) * L_{1/2}(-m^2) with the Laguerre function written through scaled Bessel
    functions; mean square = 1 + m^2.
    """
    y = torch.tensor(coherent**2 / 2.0, dtype=torch.float64)
    laguerre = (1.0 + coherent**2) * torch.special.i0e(y) + coherent**2 * torch.special.i1e(y)
    mean = math.sqrt(math.pi) / 2.0 * float(laguerre)
    return math.sqrt(max((1.0 + coherent**2) / mean**2 - 1.0, 0.0))


def k_contrast(alpha: float) -> float:
    """Amplitude std/mean of K-distributed speckle with shape ``alpha``.

    E[A] = E[R] E[sqrt G] with E[sqrt G] = Gamma(alpha + 1/2) / (Gamma(alpha) sqrt(alpha)), E[A^2] = 1.
    """
    ratio = alpha * math.exp(2.0 * (math.lgamma(alpha) - math.lgamma(alpha + 0.5)))
    return math.sqrt(4.0 / math.pi * ratio - 1.0)


def rician_coherent_for_contrast(contrast: float) -> float:
    """The coherent amplitude ``m`` whose Rician amplitude has std/mean ``contrast`` (0 < c < Rayleigh)."""
    if not 0.0 < contrast < RAYLEIGH_CONTRAST:
        raise ValueError(f"Rician contrast must lie in (0, {RAYLEIGH_CONTRAST:.4f}), got {contrast}")
    lo, hi = 0.0, 1.0
    while rician_contrast(hi) > contrast:
        hi *= 2.0
    for _ in range(60):  # contrast decreases monotonically in m
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if rician_contrast(mid) > contrast else (lo, mid)
    return 0.5 * (lo + hi)


def k_alpha_for_contrast(contrast: float) -> float:
    """The K shape ``alpha`` (real) whose amplitude has std/mean ``contrast`` (> Rayleigh's)."""
    if contrast <= RAYLEIGH_CONTRAST:
        raise ValueError(f"K contrast must exceed {RAYLEIGH_CONTRAST:.4f}, got {contrast}")
    lo, hi = 1e-3, 1.0
    while k_contrast(hi) > contrast:
        hi *= 2.0
        if hi > 1e7:
            return hi
    for _ in range(80):  # contrast decreases monotonically in alpha
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if k_contrast(mid) > contrast else (lo, mid)
    return 0.5 * (lo + hi)
