"""Parallel-beam CT in torch: forward projection, ramp filtering and back-projection.

Conventions (all lengths in pixels, so line integrals are dimensionless when the image holds
μ·pixel_mm): pixel (row i, column j) sits at x = j − (W−1)/2, y = i − (H−1)/2. The ray at angle θ
and detector offset t is {t (cos θ, sin θ) + s (−sin θ, cos θ)}; angles cover [0, π). Detector bins
are 1 px wide, odd in number and span the image diagonal, so no ray misses the image.

Projection is Joseph's method (Joseph, IEEE Trans Med Imaging 1982;1(3):192-196): a ray closer
to the y axis than to the x axis is sampled once per image row, at the row's centre, by linear
interpolation between the two pixels of that row it passes between, and each sample counts the
ray's length per row, 1/|cos θ| (per column and 1/|sin θ| for the other rays). Filtered
back-projection follows the discrete ramp of Kak & Slaney (ch. 3): the spatial kernel
h[0] = 1/4, h[n odd] = −1/(π n)², h[n even] = 0, applied by zero-padded FFT, then
f(x, y) = π / A · Σ_θ q_θ(x cos θ + y sin θ), q_θ read by linear interpolation between bins.
Both read outside the image (or the detector) as zero, and both interpolate with two gathers and
a lerp per sample, the indices made once per angle for every image of the batch.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F

ANGLE_CHUNK = 24  # angles per call at most (bounds memory, not a loop over voxels)
CHUNK_ELEMENTS = 1 << 20  # samples per call at most, over the batch: the scratch of a call (4 MiB per float32 array) stays in cache


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

    Joseph's method: each ray is sampled once per row (rays within 45° of the y axis) or once per
    column (the others) by linear interpolation along that row or column, each sample weighted by
    the ray's length through it; outside the image is zero.
    """
    n, _, h, w = image.shape
    d = n_bins or detector_bins(h, w)
    dev, dt = image.device, image.dtype
    ang = angles.to(device=dev, dtype=torch.float64)
    cos, sin = ang.cos(), ang.sin()
    by_rows = cos.abs() >= sin.abs()
    t = (torch.arange(d, device=dev, dtype=dt) - (d - 1) / 2).view(1, -1, 1)  # detector offset, px
    out = image.new_empty(n, 1, ang.numel(), d)
    for rows, chosen in ((True, by_rows), (False, ~by_rows)):
        which = chosen.nonzero().flatten()
        if which.numel() == 0:
            continue
        # lines: the rows (sampled along x) or the columns (sampled along y), each with a zero beyond both ends
        plane = image[:, 0] if rows else image[:, 0].transpose(1, 2)
        lines, length = plane.shape[1], plane.shape[2]
        padded = F.pad(plane, (1, 1)).reshape(n, -1)
        centre = (torch.arange(lines, device=dev, dtype=dt) - (lines - 1) / 2).view(1, 1, -1)
        offsets = (torch.arange(lines, device=dev, dtype=torch.int32) * (length + 2)).view(1, 1, -1)
        step, across = (cos, sin) if rows else (sin, cos)
        for chunk in which.split(_angles_per_call(n, d * lines)):
            # the ray at offset t crosses line ℓ at t / step − ℓ · across / step (px along the line)
            inv = (1.0 / step[chunk]).to(dt).view(-1, 1, 1)
            slope = (across[chunk] / step[chunk]).to(dt).view(-1, 1, 1)
            pos = torch.addcmul((length + 1) / 2 - centre * slope, t, inv).clamp_(0, length + 1)  # in the padded line
            ray_length = inv.abs().view(1, -1, 1)  # px of ray per line crossed
            out[:, 0, chunk] = _lerp_gather(padded, pos, offsets, length).view(n, chunk.numel(), d, lines).sum(dim=3) * ray_length
    return out


def _lerp_gather(rows: Tensor, pos: Tensor, offsets: Tensor, last: int) -> Tensor:
    """Linear interpolation of ``rows (N, R·(last + 2))`` (R rows of ``last + 2`` values, laid end to
    end) at positions ``pos`` in [0, last + 1] along row ``offsets / (last + 2)`` (broadcast with
    ``pos``): ``(N, pos.numel())``. Two gathers and a lerp; int32 indices, made once for the batch."""
    start = pos.floor().clamp_(max=last)
    frac = pos.sub_(start).flatten()  # pos is the caller's scratch
    index = start.to(torch.int32).add_(offsets).flatten()
    low = rows.index_select(1, index)
    return low.lerp_(rows.index_select(1, index.add_(1)), frac)


def _angles_per_call(batch: int, per_angle: int) -> int:
    """Angles gathered per call: at most ``ANGLE_CHUNK`` and ``CHUNK_ELEMENTS`` samples over the batch."""
    return max(1, min(ANGLE_CHUNK, CHUNK_ELEMENTS // max(1, batch * per_angle)))


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
    """π/A · Σ_θ q_θ(x cos θ + y sin θ) on an ``H × W`` grid → ``(N, 1, H, W)``; ``q_θ`` read by
    linear interpolation between detector bins, zero beyond the detector."""
    n, _, a, d = filtered.shape
    dev, dt = filtered.device, filtered.dtype
    xs = (torch.arange(width, device=dev, dtype=dt) - (width - 1) / 2).view(1, 1, -1)
    ys = (torch.arange(height, device=dev, dtype=dt) - (height - 1) / 2).view(1, -1, 1)
    padded = F.pad(filtered[:, 0], (1, 1)).reshape(n, -1)  # each projection with a zero bin beyond both ends
    total = torch.zeros(n, height * width, device=dev, dtype=dt)
    angles = angles.to(device=dev, dtype=dt)
    per_call = _angles_per_call(n, height * width)
    for start in range(0, a, per_call):
        chunk = angles[start : start + per_call]
        c, s = chunk.cos().view(-1, 1, 1), chunk.sin().view(-1, 1, 1)
        pos = torch.addcmul(xs * c + (d + 1) / 2, ys, s).clamp_(0, d + 1)  # detector coordinate in the padded projection
        rows = torch.arange(start, start + chunk.numel(), device=dev, dtype=torch.int32).view(-1, 1, 1) * (d + 2)
        total += _lerp_gather(padded, pos, rows, d).view(n, chunk.numel(), height * width).sum(dim=1)
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
