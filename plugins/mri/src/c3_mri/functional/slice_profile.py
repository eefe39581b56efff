"""Slice profiles along the slice axis: Gaussian or Hann-windowed sinc, and thick-slice resampling.

All widths are in voxels of the slice axis here; operators convert from mm with the spacing.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
SINC_FWHM = 1.2067  # FWHM of sinc(x) = sin(pi x)/(pi x) in units of its first-zero distance


def gaussian_profile(fwhm_px: float, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """Unit-sum Gaussian kernel of the given FWHM in voxels (support ±4σ)."""
    sigma = max(fwhm_px / FWHM_PER_SIGMA, 1e-3)
    half = max(1, int(math.ceil(4 * sigma)))
    x = torch.arange(-half, half + 1, device=device, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype)


def windowed_sinc_profile(fwhm_px: float, lobes: int = 3, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> Tensor:
    """Unit-sum Hann-windowed sinc slice profile (an RF pulse's excitation profile along z).

    The sinc's first-zero distance is chosen so that the *windowed* profile has the requested
    FWHM (the window narrows the main lobe slightly; corrected by a fixed-point iteration).
    """
    width = max(fwhm_px, 1e-3) / SINC_FWHM
    for _ in range(4):  # the Hann window narrows the main lobe; correct the width for it
        k = _wsinc(width, lobes, device)
        measured = measure_fwhm(k)
        width *= fwhm_px / max(measured, 1e-6) if measured > 0 else 1.0
    return (_wsinc(width, lobes, device)).to(dtype)


def _wsinc(width: float, lobes: int, device: torch.device | str) -> Tensor:
    half = max(1, int(math.ceil(lobes * width)))
    x = torch.arange(-half, half + 1, device=device, dtype=torch.float64)
    u = x / width
    s = torch.where(u == 0, torch.ones_like(u), torch.sin(math.pi * u) / (math.pi * u))
    w = 0.5 * (1 + torch.cos(math.pi * x / (half + 1)))
    k = (s * w).clamp_min(0) if width < 1 else s * w
    return k / k.sum()


def measure_fwhm(profile: Tensor) -> float:
    """FWHM (in samples) of a 1-D peaked profile, by linear interpolation of the crossings."""
    p = profile.double().flatten()
    i = int(p.argmax())
    half = float(p[i]) / 2
    lo = i
    while lo > 0 and float(p[lo - 1]) >= half:
        lo -= 1
    hi = i
    while hi < p.numel() - 1 and float(p[hi + 1]) >= half:
        hi += 1
    left = float(lo) if lo == 0 else lo - (float(p[lo]) - half) / (float(p[lo]) - float(p[lo - 1]))
    right = float(hi) if hi == p.numel() - 1 else hi + (float(p[hi]) - half) / (float(p[hi]) - float(p[hi + 1]))
    return right - left


def convolve_axis(volume: Tensor, kernel: Tensor, axis: int) -> Tensor:
    """Convolve ``(B, C, *sp)`` along spatial ``axis`` with a symmetric 1-D kernel (replicate padding).

    ``kernel`` is (K,) for all cases or (B, K) per case (odd K, centred; pad shorter kernels
    with zeros to a common K).
    """
    x = volume.movedim(2 + axis, -1)
    b = x.shape[0]
    k = kernel if kernel.ndim == 2 else kernel.unsqueeze(0).expand(b, -1)
    p = k.shape[-1] // 2
    shape = x.shape
    padded = F.pad(x.reshape(b, -1, shape[-1]), (p, p), mode="replicate")
    windows = padded.unfold(-1, k.shape[-1], 1)  # (B, rest, n, K)
    out = torch.einsum("brnk,bk->brn", windows, k.to(x.dtype))
    return out.reshape(shape).movedim(-1, 2 + axis)


def thick_slice_resample(volume: Tensor, factor: float, axis: int) -> Tensor:
    """Partial volume of thick slices: average down by ``factor`` along ``axis`` and back.

    The volume is resampled (linear, area-weighted when shrinking) to ``round(n / factor)`` slices
    and linearly back to ``n``; detail finer than a thick slice is lost, as on a scanner that
    acquires thick slices that are later interpolated to the original grid.
    """
    if factor <= 1.0:
        return volume
    x = volume.movedim(2 + axis, -1)
    shape = x.shape
    n = shape[-1]
    m = max(1, int(round(n / factor)))
    flat = x.reshape(1, -1, n)
    down = F.adaptive_avg_pool1d(flat, m)
    up = F.interpolate(down, size=n, mode="linear", align_corners=False)
    return up.reshape(shape).movedim(-1, 2 + axis)


def profile_value(x: Tensor, fwhm: Tensor, kind: str, lobes: int = 3) -> Tensor:
    """Slice profile at offsets ``x`` (voxels) for per-row FWHM ``fwhm`` (broadcastable), unnormalised.

    "gaussian": exp(−x²/2σ²); "sinc": Hann-windowed sinc whose main lobe has FWHM ≈ ``fwhm``
    (first zero at fwhm / 1.2067, ``lobes`` zero crossings each side).
    """
    if kind == "gaussian":
        sigma = (fwhm / FWHM_PER_SIGMA).clamp_min(1e-3)
        return torch.exp(-0.5 * (x / sigma) ** 2)
    if kind == "sinc":
        width = (fwhm / SINC_FWHM).clamp_min(1e-3)
        u = x / width
        s = torch.where(u.abs() < 1e-9, torch.ones_like(u), torch.sin(torch.pi * u) / (torch.pi * u))
        window = torch.where(u.abs() < lobes, 0.5 * (1 + torch.cos(torch.pi * u / lobes)), torch.zeros_like(u))
        return s * window
    raise ValueError(f"unknown slice profile {kind!r} (gaussian, sinc)")


def slice_matrix(n: int, fwhm_px: Tensor, kind: str, thick: bool) -> Tensor:
    """Per-case linear map along the slice axis, (B, n, n) float64 (output row, input column).

    * ``thick=False``: convolution with the profile (rows renormalised to unit sum at the edges);
    * ``thick=True``: acquisition of thick slices — m = round(n / fwhm) slices of spacing
      n / m voxels, each the profile-weighted integral around its centre — then linear
      interpolation back to the n-voxel grid (partial volume).

    FWHM ≤ 1e-6 voxels gives the identity.
    """
    fw = fwhm_px.double().view(-1, 1, 1)
    pos = torch.arange(n, dtype=torch.float64, device=fwhm_px.device)
    conv = profile_value(pos.view(1, n, 1) - pos.view(1, 1, n), fw, kind)
    conv = conv / conv.sum(-1, keepdim=True)
    if not thick:
        eye = torch.eye(n, dtype=torch.float64, device=fwhm_px.device).expand_as(conv)
        return torch.where(fw > 1e-6, conv, eye)
    mats = []
    for f in fwhm_px.tolist():  # per case: the number of thick slices differs
        m = max(1, int(round(n / max(f, 1.0))))
        step = n / m
        centres = (torch.arange(m, dtype=torch.float64, device=fwhm_px.device) + 0.5) * step - 0.5
        acq = profile_value(pos.view(1, n) - centres.view(m, 1), torch.tensor(max(f, 1e-6), dtype=torch.float64), kind)
        acq = acq / acq.sum(-1, keepdim=True)  # (m, n)
        # linear interpolation from slice centres back to voxel positions (clamped at the ends)
        t = ((pos + 0.5) / step - 0.5).clamp(0, m - 1)
        lo = t.floor().long().clamp(max=m - 1)
        hi = (lo + 1).clamp(max=m - 1)
        w = t - lo.double()
        interp = torch.zeros(n, m, dtype=torch.float64, device=fwhm_px.device)
        interp[torch.arange(n), lo] += 1 - w
        interp[torch.arange(n), hi] += w
        mats.append(interp @ acq if f > 1e-6 else torch.eye(n, dtype=torch.float64, device=fwhm_px.device))
    return torch.stack(mats)


def apply_along_axis(volume: Tensor, matrix: Tensor, axis: int) -> Tensor:
    """``volume (B, C, *sp)`` multiplied by per-case ``matrix (B, n, n)`` along spatial ``axis``.

    Weights below the volume dtype's smallest normal number are zero: a profile's far tail
    (|offset| > 13σ for a Gaussian) is subnormal in float32, weighs less than 1e-38 of the peak,
    and only ever gave voxels far outside the object subnormal values instead of 0, while making
    the matrix product ~10x slower on the CPU (subnormal arithmetic).
    """
    x = volume.movedim(2 + axis, -1)
    m = matrix.to(x.dtype)
    m = m.masked_fill(m.abs() < torch.finfo(m.dtype).tiny, 0.0)
    out = torch.einsum("b...j,bij->b...i", x, m)
    return out.movedim(-1, 2 + axis)
