"""Image-domain kernels of the radiographic chain: affine resampling and FFT filters (Gaussian MTF,
detector aperture, pixel-pitch change), all batched with per-case parameters."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from c3_core.functional.separable import apply_separable, padded_filter_matrices


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
    image: Tensor,
    transfer: Callable[[Tensor, Tensor], Tensor],
    pad: int,
    fast: bool = False,
    band: Callable[[int, int], tuple[int, int] | None] | None = None,
) -> Tensor:
    """Multiply the spectrum of reflect-padded ``image`` by ``transfer(fy, fx)`` (cycles/px).

    ``pad`` (px each side) must not depend on the other cases of the batch beyond what the
    filter's support makes immaterial (results must be batch-invariant). ``fast``: pad a little
    more, up to a fast FFT length (only for filters whose kernel is negligible beyond ``pad``).
    ``band(hp, wp)``: for a low-pass ``transfer`` that is exactly zero beyond ``ky`` rows (either
    sign, DFT order) and ``kx`` columns of the padded spectrum, ``(ky, kx)`` (``None``: no such
    band); ``transfer`` is then evaluated on the band only and the spectrum outside it is zeroed,
    the same product without a full-size transfer.
    """
    h, w = image.shape[-2:]
    top, bottom = _axis_pads(h, pad, fast)
    left, right = _axis_pads(w, pad, fast)
    x = F.pad(image, (left, right, top, bottom), mode="reflect") if (top or left) else image
    hp, wp = x.shape[-2:]
    fy = torch.fft.fftfreq(hp, device=image.device, dtype=image.dtype).view(1, 1, -1, 1)
    fx = torch.fft.rfftfreq(wp, device=image.device, dtype=image.dtype).view(1, 1, 1, -1)
    spectrum = torch.fft.rfft2(x)
    box = None if band is None else band(hp, wp)
    if box is None or 2 * box[0] + 1 >= hp or box[1] + 1 >= fx.shape[-1]:
        spectrum.mul_(transfer(fy, fx))  # in place: no second spectrum
    else:  # in place on the band's two row blocks (positive and negative fy), zeros elsewhere
        ky, kx = box
        spectrum[..., : ky + 1, : kx + 1].mul_(transfer(fy[..., : ky + 1, :], fx[..., : kx + 1]))
        if ky:
            spectrum[..., hp - ky :, : kx + 1].mul_(transfer(fy[..., hp - ky :, :], fx[..., : kx + 1]))
        spectrum[..., ky + 1 : hp - ky, :].zero_()
        spectrum[..., kx + 1 :].zero_()
    out = torch.fft.irfft2(spectrum, s=(hp, wp))
    return out[..., top : top + h, left : left + w]


COMPACT_SIGMA_PX = 1.5  # from here the Gaussian MTF at Nyquist is below 2e-5: a compact kernel


def _gaussian_mtf(coefficient: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """The Gaussian MTF exp(c (fy² + fx²)), c = −2π²σ² per case, as a ``transfer``; values below
    the dtype's smallest normal number (exponent below ln(tiny): −87.3 for float32) are exactly 0.

    Those values (subnormal, at most 1.2e-38 of the DC gain) cannot reach a float32 result, but
    on the CPU ``exp`` takes a scalar path for such underflowing arguments that is ~90× slower
    than its vector path, and a wide kernel's MTF underflows over almost all of its spectrum.
    """
    floor = math.log(torch.finfo(coefficient.dtype).tiny)

    def transfer(fy: Tensor, fx: Tensor) -> Tensor:
        arg = coefficient * (fy**2 + fx**2)
        mtf = torch.exp(arg.clamp_min(floor))
        return mtf.masked_fill(arg < floor, 0.0) if mtf.requires_grad else mtf.masked_fill_(arg < floor, 0.0)

    return transfer


def _gaussian_band(sigma_px: Tensor, dtype: torch.dtype) -> Callable[[int, int], tuple[int, int] | None]:
    """``band`` of :func:`_padded_spectrum_filter` for Gaussian MTFs of σ ``sigma_px`` (host values,
    every σ > 0): the rows and columns outside which every case's MTF is below the dtype's smallest
    normal number (a margin of e⁻¹ on the narrowest MTF; :func:`_gaussian_mtf` zeroes the rest)."""
    exponent = 1.0 - math.log(torch.finfo(dtype).tiny)  # 2π²σ²f² where the MTF is e⁻¹ · the smallest normal
    reach = math.sqrt(exponent / (2.0 * math.pi**2)) / float(sigma_px.min())  # cycles/px

    def band(hp: int, wp: int) -> tuple[int, int] | None:
        return math.floor(reach * hp) + 1, math.floor(reach * wp) + 1

    return band


def gaussian_blur_batched(image: Tensor, sigma_px: Tensor) -> Tensor:
    """Blur ``(B, C, H, W)`` with a per-case isotropic Gaussian of σ ``sigma_px (B,)`` pixels.

    Applied as its MTF exp(−2π²σ²f²) on an FFT of the image reflect-padded by half its size;
    σ = 0 is the identity. When every blurring case has σ >= 1.5 px the MTF is negligible at
    Nyquist and the kernel beyond 6σ below 1.6e-8 of its peak, so 6σ + 2 px of padding (of the
    widest case, rounded up to a fast FFT length) give the same result to float32 precision, at
    a fraction of the cost; below 1.5 px the MTF's cut at Nyquist gives the kernel long ripples
    and the half-size padding stays. MTF values below the smallest normal float are zero
    (:func:`_gaussian_mtf`); for a wide kernel that leaves a small low-frequency band, the only
    part of the spectrum where the MTF is evaluated and multiplied.
    """
    s = sigma_px.to(image.dtype).view(-1, 1, 1, 1)
    pad = min(image.shape[-2:]) // 2
    blurring = sigma_px[sigma_px > 0]
    compact = bool(blurring.numel()) and float(blurring.min()) >= COMPACT_SIGMA_PX
    if compact:
        pad = min(pad, math.ceil(6.0 * float(blurring.max())) + 2)
    every_case_blurs = blurring.numel() == sigma_px.numel()
    band = _gaussian_band(sigma_px.detach().cpu(), image.dtype) if compact and every_case_blurs else None
    return _padded_spectrum_filter(image, _gaussian_mtf(-2 * math.pi**2 * s**2), pad, fast=compact, band=band)


PSF_REACH_SIGMAS = 5.0  # a sampled Gaussian PSF is cut at ±⌈5σ⌉ px: the mass beyond is below 6e-7


def _sampled_gaussian_spectrum(sigma_px: Tensor, radius: int, n: int, onesided: bool) -> Tensor:
    """The DFT (length ``n``, real: the kernel is even) of each case's :func:`_sampled_gaussian_taps`
    (offsets up to ``radius``) placed circularly: ``(B, n)``, or ``(B, n // 2 + 1)`` when
    ``onesided`` (rfft order). σ = 0 is the unit impulse (a spectrum of ones)."""
    m, taps = _sampled_gaussian_taps(sigma_px, radius)
    kernel = torch.zeros((taps.shape[0], n), device=taps.device, dtype=taps.dtype)
    kernel.index_add_(1, m.long().remainder(n), taps)  # tap m at index m mod n
    return (torch.fft.rfft(kernel) if onesided else torch.fft.fft(kernel)).real


def _sampled_gaussian_taps(sigma_px: Tensor, reach: int) -> tuple[Tensor, Tensor]:
    """Offsets m = −``reach`` … ``reach`` (px) and each case's normalised sampled Gaussian on them,
    g[m] ∝ exp(−m² / 2σ²), cut at the case's own ±⌈5σ⌉ (so a case's kernel does not depend on the
    widest case of its batch): ``(2·reach + 1,)`` and ``(B, 2·reach + 1)``. σ = 0 is the unit impulse."""
    sigma = sigma_px.view(-1, 1)
    m = torch.arange(-reach, reach + 1, device=sigma_px.device, dtype=sigma_px.dtype)
    own = torch.ceil(PSF_REACH_SIGMAS * sigma.detach())
    taps = torch.where(sigma > 0, torch.exp(-0.5 * (m / sigma.clamp_min(1e-12)) ** 2), (m == 0).to(sigma.dtype))
    taps = taps * (m.abs() <= own)
    return m, taps / taps.sum(dim=1, keepdim=True)


def _psf_pads(n: int, radius: int) -> tuple[int, int]:
    """(before, after) reflect pads of an axis of ``n`` px for a kernel of ``radius`` px: the radius
    each side (grown to a fast FFT length) while that is less padding than one period of the image's
    mirror extension; otherwise that period, (0, n − 2): the circular convolution over it is the
    linear convolution with the endlessly reflected image, however wide the kernel."""
    if 2 * radius < n - 2:
        return _axis_pads(n, radius, True)
    return 0, max(n - 2, 0)


def _sampled_gaussian_matrices(sigma_px: Tensor, n: int) -> Tensor:
    """``(B, n, n)`` matrices M_b with M_b @ x = x (an axis of ``n`` px, mirrored endlessly)
    convolved with case b's normalised sampled Gaussian of σ ``sigma_px[b]`` px cut at ±⌈5σ⌉ px.

    The mirrored axis has period P = 2n − 2 and index x lands on pixel j when x ≡ ±j (mod P), so
    the taps are first summed by offset modulo P (a kernel wider than the period wraps), and
    M[i, j] = g_P[(j − i) mod P] + g_P[(−j − i) mod P], the second term only for 0 < j < n − 1
    (at the two edge pixels both congruences are one)."""
    b = sigma_px.numel()
    if n == 1:
        return torch.ones((b, 1, 1), device=sigma_px.device, dtype=sigma_px.dtype)
    m, taps = _sampled_gaussian_taps(sigma_px, math.ceil(PSF_REACH_SIGMAS * float(sigma_px.detach().max())))
    period = 2 * (n - 1)
    folded = torch.zeros((b, period), device=sigma_px.device, dtype=taps.dtype).index_add(1, m.long().remainder(period), taps)
    i = torch.arange(n, device=sigma_px.device).view(-1, 1)
    j = torch.arange(n, device=sigma_px.device).view(1, -1)
    direct = folded.index_select(1, (j - i).remainder(period).view(-1)).view(b, n, n)
    mirrored = folded.index_select(1, (-j - i).remainder(period)[:, 1:-1].reshape(-1)).view(b, n, n - 2)
    direct[..., 1:-1] += mirrored
    return direct


# Which way a case is blurred (measured on the 2-core CPU, 2 threads, 2026-12-05). Folded matrices
# cost O(n³) per axis pair whatever the kernel's width; padded FFTs O((n + 2r)² log) with r the
# kernel's radius. At 64 px, 35 images: σ 3-6 px matrices 0.9-1.0 ms vs FFTs 2.8 ms, σ 0.75-1.25 px
# 0.8 vs 0.9 ms; at 128 px, 16 images, 1.1 vs 1.5 ms and 1.6 vs 1.2 ms; at 512 px, 8 images, σ 3-6 px
# 20 vs 11 ms (FFTs win) but σ 36-85 px (scatter) ~20 vs 233-342 ms. So: matrices up to 128 px,
# and up to 1,024 px for a kernel whose radius reaches a fifth of the image.
MATRIX_BLUR_MAX_PX = 128
MATRIX_BLUR_WIDE_MAX_PX = 1024
MATRIX_BLUR_WIDE_REACH = 0.2  # radius / image size from which a wide kernel takes the matrices


def _blurs_by_matrices(radius: Tensor, size: int) -> Tensor:
    """Per case (its own radius ``radius (B,)`` px, the image's larger side ``size`` px): whether
    its blur is computed with folded matrices rather than padded FFTs (a case's own choice)."""
    if size <= MATRIX_BLUR_MAX_PX:
        return torch.ones_like(radius, dtype=torch.bool)
    if size > MATRIX_BLUR_WIDE_MAX_PX:
        return torch.zeros_like(radius, dtype=torch.bool)
    return radius >= MATRIX_BLUR_WIDE_REACH * size


def sampled_gaussian_blur_batched(image: Tensor, sigma_px: Tensor) -> Tensor:
    """Convolve ``(B, C, H, W)`` with a per-case sampled, normalised Gaussian PSF of σ ``sigma_px (B,)``
    pixels, cut at ±⌈5σ⌉ px (mass beyond: < 6e-7), on the image mirrored (reflect) beyond its edges.

    The kernel is compact and separable, so the result is exact linear convolution whichever way it
    is computed, and each case takes the cheaper way for its size and width
    (:func:`_blurs_by_matrices`): M_y · x · M_xᵀ with its folded convolution matrices
    (:func:`_sampled_gaussian_matrices`, taps cut at the case's own radius), or the FFT of the
    image reflect-padded by the widest radius of those cases (grown to a fast length; one period of
    the mirror extension when that is shorter), where the PSF's transfer multiplies the spectrum in
    place. The two agree within 1e-6 of the image's range. Unlike a Gaussian MTF cut at Nyquist
    (:func:`gaussian_blur_batched`), a narrow σ (below ~1.5 px) has no ringing tails. σ = 0 is the
    identity; a kernel wider than the image wraps over the image's mirror extension.
    """
    h, w = image.shape[-2:]
    if not sigma_px.numel() or float(sigma_px.detach().max()) <= 0:
        return image.clone()
    sigma = sigma_px.to(image.dtype)  # the transfer keeps the caller's autograd graph
    radius = torch.ceil(PSF_REACH_SIGMAS * sigma.detach())
    way = torch.where(radius == 0, 0, torch.where(_blurs_by_matrices(radius, max(h, w)), 1, 2))  # copy, matrices, FFTs
    blurs = (lambda x, s: x.clone(), _blur_by_matrices, _blur_by_fft)
    present = way.unique().tolist()
    if len(present) == 1:
        return blurs[present[0]](image, sigma)
    out = torch.empty_like(image)
    for k in present:  # σ = 0 is copied exactly, whatever the others need
        rows = (way == k).nonzero().view(-1)
        out = out.index_copy(0, rows, blurs[k](image.index_select(0, rows), sigma.index_select(0, rows)))
    return out


def _blur_by_matrices(image: Tensor, sigma: Tensor) -> Tensor:
    """:func:`sampled_gaussian_blur_batched` as M_y · x · M_xᵀ per case."""
    h, w = image.shape[-2:]
    my = _sampled_gaussian_matrices(sigma, h)  # (B, H, H): every channel alike
    mx = my if w == h else _sampled_gaussian_matrices(sigma, w)  # a square image: the same matrices
    return apply_separable(image, my, mx)


def _blur_by_fft(image: Tensor, sigma: Tensor) -> Tensor:
    """:func:`sampled_gaussian_blur_batched` on the FFT of the padded image."""
    h, w = image.shape[-2:]
    radius = math.ceil(PSF_REACH_SIGMAS * float(sigma.detach().max()))
    if radius == 0:
        return image.clone()
    top, bottom = _psf_pads(h, radius)
    left, right = _psf_pads(w, radius)
    x = F.pad(image, (left, right, top, bottom), mode="reflect") if (bottom or right) else image
    hp, wp = x.shape[-2:]
    spectrum = torch.fft.rfft2(x)
    hy = _sampled_gaussian_spectrum(sigma, radius, hp, onesided=False).view(-1, 1, hp, 1)
    hx = _sampled_gaussian_spectrum(sigma, radius, wp, onesided=True).view(-1, 1, 1, wp // 2 + 1)
    if spectrum.requires_grad:
        spectrum = spectrum * hy * hx
    else:
        spectrum.mul_(hy).mul_(hx)
    return torch.fft.irfft2(spectrum, s=(hp, wp))[..., top : top + h, left : left + w]


def aperture_change(image: Tensor, ratio: Tensor) -> Tensor:
    """Change a square detector aperture from 1 px to ``ratio (B,)`` px: MTF sinc(r f) / sinc(f)
    per axis (|f| ≤ ½ cycle/px, where sinc(f) ≥ 2/π, so the division is safe)."""
    r = ratio.to(image.dtype).view(-1, 1, 1, 1)

    def transfer(fy: Tensor, fx: Tensor) -> Tensor:  # separable: one full-size product of two small factors
        return (torch.sinc(r * fy) / torch.sinc(fy)) * (torch.sinc(r * fx) / torch.sinc(fx))

    return _padded_spectrum_filter(image, transfer, 8, fast=True)  # 8 px or more, up to a fast FFT length


def _axis_resampling(n: int, ratio: float, device: torch.device, dtype: torch.dtype) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Along one axis of ``n`` fine pixels, for a coarse grid of pitch ``ratio`` (px) with a node at
    pixel n // 2: the fine pixels each coarse node reads (``f0``, ``f1`` and the weight ``t`` of
    ``f1``: bilinear, coordinates clamped to the border) and the coarse nodes each fine pixel lies
    between (``k0``, ``k1`` = k0 + 1 and the weight ``w`` of ``k1``: linear). Computed on the CPU
    (a few hundred values, no device syncs), then moved to ``device``; indices are int64."""
    centre = float(n // 2)
    u = (torch.arange(n, dtype=dtype) - centre) / ratio  # fine pixel in coarse-node units
    u0 = torch.floor(u)
    w = u - u0
    first, last = int(u0[0]), int(u0[-1])  # coarse nodes first .. last + 1 cover every fine pixel
    q = (centre + torch.arange(first, last + 2, dtype=dtype) * ratio).clamp_(0, n - 1)
    f = torch.floor(q)
    t = q - f
    f0 = f.long()
    k0 = (u0 - first).long()
    return tuple(v.to(device) for v in (f0, (f0 + 1).clamp_max_(n - 1), t, k0, k0 + 1, w))  # type: ignore[return-value]


def _lerp_rows(x: Tensor, i0: Tensor, i1: Tensor, weight: Tensor) -> Tensor:
    """Rows ``i0`` and ``i1`` of ``x (..., n, W)`` blended by ``weight (m,)`` (of ``i1``): (..., m, W).
    Whole-row gathers (memory copies) and one ``lerp``."""
    return torch.lerp(x.index_select(-2, i0), x.index_select(-2, i1), weight.view(-1, 1))


#: images up to this many pixels on a side change pitch by matrices (:func:`pixel_pitch_matrices`):
#: the aperture filter, the coarse sampling and the interpolation back are all linear and separable,
#: so per axis they fold into one (n × n) matrix, and two small products per image replace the padded
#: FFTs and four gathers (one CPU thread: 32 × 64² at three ratios 3.2 → 1.4 ms, 16 × 128² 3.7 → 3.2 ms,
#: 8 × 256² 7.8 → 8.2 ms: slower from there)
PITCH_MATRIX_MAX_PX = 128
APERTURE_PAD_PX = 8  # the aperture filter's reflect padding (grown to a fast FFT length)


def _aperture_matrices(n: int, ratio: Tensor) -> Tensor:
    """``(B, n, n)``: :func:`aperture_change` along one axis of ``n`` px, as matrices (float64):
    its reflect padding (``_axis_pads(n, 8, fast=True)``) and transfer sinc(r f) / sinc(f)."""
    before, after = _axis_pads(n, APERTURE_PAD_PX, True)
    r = ratio.to(torch.float64).view(-1, 1)
    return padded_filter_matrices(n, before, after, lambda f: torch.sinc(r * f) / torch.sinc(f), ratio.device)


def _resampling_matrices(n: int, ratio: Tensor) -> Tensor:
    """``(B, n, n)``: the coarse sampling of pitch r (a node at pixel n // 2, read bilinearly,
    clamped at the border) followed by linear interpolation back to the fine pixels, as matrices
    (float64): :func:`_axis_resampling`'s map. Fine pixel i lies between nodes k0 = ⌊u⌋ and k0 + 1
    (u = (i − n // 2) / r, weight w of the second); node k reads pixels ⌊q⌋ and ⌊q⌋ + 1 at
    q = clamp(n // 2 + k r, 0, n − 1) (weight q − ⌊q⌋ of the second): four entries per row."""
    r = ratio.to(torch.float64).view(-1, 1)
    centre = float(n // 2)
    u = (torch.arange(n, dtype=torch.float64, device=ratio.device) - centre) / r  # (B, n)
    k0 = torch.floor(u)
    w = u - k0
    out = torch.zeros((r.shape[0], n, n), dtype=torch.float64, device=ratio.device)
    for node, weight in ((k0, 1.0 - w), (k0 + 1.0, w)):
        q = (centre + node * r).clamp(0.0, n - 1.0)
        f = torch.floor(q)
        t = q - f
        f0 = f.long()
        out.scatter_add_(2, f0.unsqueeze(2), (weight * (1.0 - t)).unsqueeze(2))
        out.scatter_add_(2, (f0 + 1).clamp_max(n - 1).unsqueeze(2), (weight * t).unsqueeze(2))
    return out


def pixel_pitch_matrices(n: int, ratio: Tensor) -> Tensor:
    """``(B, n, n)`` matrices M with M · v = :func:`change_pixel_pitch` along one axis of ``n`` px
    (aperture filter, then resampling), computed in float64."""
    return torch.matmul(_resampling_matrices(n, ratio), _aperture_matrices(n, ratio))


def change_pixel_pitch(image: Tensor, ratio: Tensor) -> Tensor:
    """Acquire at ``ratio`` × the pixel pitch (aperture widened likewise), then display on the
    original grid by bilinear interpolation between the coarse samples. ratio 1 is the identity.

    Up to ``PITCH_MATRIX_MAX_PX`` px: M_y · x · M_xᵀ with each axis's whole map folded into one
    matrix (:func:`pixel_pitch_matrices`; cases that share a ratio share them). Larger images:
    the coarse samples are read bilinearly between fine pixels (clamped at the border)
    and each fine pixel is the linear interpolation of its two coarse neighbours. The four steps
    run as row gathers + ``lerp`` in the order coarse rows, coarse columns, fine columns, fine
    rows, so the column steps (on a transposed copy) touch only the coarse rows. Cases that share
    a ratio (the severity levels) share one set of indices and run as one batch: the same
    element-wise arithmetic as case by case, so the same bytes.
    """
    h, w = image.shape[-2:]
    if max(h, w) <= PITCH_MATRIX_MAX_PX and min(h, w) >= 2:
        unique, index = torch.unique(ratio.detach().to(torch.float64), return_inverse=True)
        my = pixel_pitch_matrices(h, unique).to(image.dtype)
        mx = my if w == h else pixel_pitch_matrices(w, unique).to(image.dtype)
        return apply_separable(image, my.index_select(0, index), mx.index_select(0, index))
    blurred = aperture_change(image, ratio.to(image.dtype))
    groups: dict[float, list[int]] = {}
    for i, r in enumerate(ratio.tolist()):
        groups.setdefault(r, []).append(i)
    out = None if len(groups) == 1 else torch.empty_like(image, memory_format=torch.contiguous_format)
    for r, cases in groups.items():
        fy0, fy1, ty, ky0, ky1, wy = _axis_resampling(h, r, image.device, image.dtype)
        fx0, fx1, tx, kx0, kx1, wx = _axis_resampling(w, r, image.device, image.dtype)
        index = None if out is None else torch.tensor(cases, device=image.device)
        sub = blurred if index is None else blurred.index_select(0, index)
        coarse_rows = _lerp_rows(sub, fy0, fy1, ty).transpose(-1, -2).contiguous()  # (n, C, W, Hc)
        columns = _lerp_rows(_lerp_rows(coarse_rows, fx0, fx1, tx), kx0, kx1, wx)  # (n, C, W, Hc): coarse, then fine columns
        fine = _lerp_rows(columns.transpose(-1, -2).contiguous(), ky0, ky1, wy)
        if out is None:  # one ratio for the batch: this is the result
            return fine
        out.index_copy_(0, index, fine)  # differentiable too (out is a fresh buffer)
    return out
