"""Sensor model in linear light: photon shot noise, read noise, PRNU/DSNU, ADC, Bayer CFA.

Photon model: a pixel at linear value x collects on average ``x · full_well_e`` photo-electrons
(the full well is reached at x = 1). Electrons are Poisson; read noise is Gaussian in electrons;
the ADC maps electrons to integer DN with ``gain_e_per_dn = full_well_e / (2^bits − 1)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor
from torch.nn import functional as F

from c3_core.functional.photon import photon_counts


def bayer_masks(shape: tuple[int, int], device: torch.device) -> Tensor:
    """RGGB colour-filter-array masks (3, H, W) in {0, 1}."""
    h, w = shape
    y = torch.arange(h, device=device).view(h, 1) % 2
    x = torch.arange(w, device=device).view(1, w) % 2
    r = ((y == 0) & (x == 0)).float()
    b = ((y == 1) & (x == 1)).float()
    return torch.stack([r, 1.0 - r - b, b])


def mosaic(rgb: Tensor) -> Tensor:
    """Keep each pixel's CFA channel: (B, 3, H, W) -> sparse (B, 3, H, W) (zeros elsewhere)."""
    return rgb * bayer_masks((rgb.shape[-2], rgb.shape[-1]), rgb.device)


def raw_mosaic(rgb: Tensor) -> Tensor:
    """The single-plane raw frame of an RGGB sensor: (..., 3, H, W) -> (..., 1, H, W), each pixel its CFA channel.

    Four strided copies (R at even rows / even columns, G at the two mixed sites, B at odd / odd):
    a quarter of the image each, no mask arithmetic.
    """
    raw = torch.empty((*rgb.shape[:-3], 1, *rgb.shape[-2:]), device=rgb.device, dtype=rgb.dtype)
    for channel, dy, dx in ((0, 0, 0), (1, 0, 1), (1, 1, 0), (2, 1, 1)):
        raw[..., 0, dy::2, dx::2] = rgb[..., channel, dy::2, dx::2]
    return raw


def _tent3(x: Tensor) -> Tensor:
    """Convolution with [[¼, ½, ¼], [½, 1, ½], [¼, ½, ¼]] (separable: [½, 1, ½] per axis), reflect padding.

    Per axis: (left + right) · ½ + centre, in place on one fresh buffer.
    """
    p = F.pad(x, (1, 1, 1, 1), mode="reflect")
    rows = torch.add(p[..., :-2], p[..., 2:]).mul_(0.5).add_(p[..., 1:-1])
    return torch.add(rows[..., :-2, :], rows[..., 2:, :]).mul_(0.5).add_(rows[..., 1:-1, :])


def bilinear_demosaic(sparse: Tensor) -> Tensor:
    """Bilinear demosaicing of an RGGB mosaic (B, 3, H, W) by normalised convolution.

    Sampled pixels keep their value; the others get the kernel-weighted mean of their channel's
    samples around them. The normaliser depends only on the CFA layout, so it is computed once.
    """
    masks = bayer_masks((sparse.shape[-2], sparse.shape[-1]), sparse.device).to(sparse.dtype).unsqueeze(0)
    fill = (1.0 - masks) / _tent3(masks).clamp_min(1e-6)  # 0 where sampled, 1 / normaliser elsewhere
    return _tent3(sparse).mul_(fill).addcmul_(sparse, masks)


def demosaic_raw(raw: Tensor) -> Tensor:
    """Bilinear demosaicing of a raw RGGB plane ``(..., 1, H, W)`` -> ``(..., 3, H, W)``.

    The same result as ``bilinear_demosaic(mosaic(raw))`` (reflect padding keeps the CFA
    parity, so every normaliser is 1 or 2 up to the borders), computed on the one raw plane:
    the means of the horizontal, vertical, four-neighbour and diagonal neighbours, then each
    output channel assembled site by site from the raw value or the right mean (strided copies).
    """
    p = F.pad(raw, (1, 1, 1, 1), mode="reflect")
    centre = p[..., 1:-1, 1:-1]
    horiz = torch.add(p[..., 1:-1, :-2], p[..., 1:-1, 2:]).mul_(0.5)
    vert = torch.add(p[..., :-2, 1:-1], p[..., 2:, 1:-1]).mul_(0.5)
    cross = torch.add(horiz, vert).mul_(0.5)
    diag = torch.add(p[..., :-2, :-2], p[..., :-2, 2:]).add_(p[..., 2:, :-2]).add_(p[..., 2:, 2:]).mul_(0.25)
    out = torch.empty((*raw.shape[:-3], 3, *raw.shape[-2:]), device=raw.device, dtype=raw.dtype)
    # sites: R (even row, even col), G_r (even, odd), G_b (odd, even), B (odd, odd)
    sources = {
        0: (centre, horiz, vert, diag),  # red: sampled at R; left/right at G_r; up/down at G_b; diagonals at B
        1: (cross, centre, centre, cross),  # green: four neighbours at R and B
        2: (diag, vert, horiz, centre),  # blue: diagonals at R; up/down at G_r; left/right at G_b; sampled at B
    }
    for channel, planes in sources.items():
        for (dy, dx), plane in zip(((0, 0), (0, 1), (1, 0), (1, 1)), planes):
            out[..., channel, dy::2, dx::2] = plane[..., 0, dy::2, dx::2]
    return out


def electrons(linear: Tensor, full_well_e: Tensor | float, read_noise_e: Tensor | float, generator: torch.Generator) -> Tensor:
    """One realisation: Poisson(x · full_well) + N(0, read_noise²) electrons, same shape as ``linear``.

    ``full_well_e`` broadcasts against ``linear`` (a scalar or (B, 1, 1, 1)); ``read_noise_e`` is
    one value (electrons). The draw is :func:`c3_core.functional.photon.photon_counts` (exact
    Poisson below 20 electrons, a three-moment normal map above; read noise of 1 e⁻ or more shares
    its normal draw).
    """
    rate = linear.clamp_min(0).mul_(full_well_e)
    return photon_counts(rate, generator, read_sigma=float(read_noise_e), out=rate)


def adc(electrons_: Tensor, full_well_e: Tensor, bits: int) -> Tensor:
    """Quantise electrons to DN (gain = full_well / (2^bits − 1) e⁻/DN), clip, return linear [0, 1]."""
    levels = float(2**bits - 1)
    dn = torch.round(electrons_ * (levels / full_well_e)).clamp(0.0, levels)
    return dn / levels


def fixed_pattern(shape: tuple[int, ...], prnu: float, dsnu: float, generator: torch.Generator, device: torch.device) -> tuple[Tensor, Tensor]:
    """Per-pixel gain (PRNU: relative std) and offset (DSNU: std in linear [0, 1] units) maps."""
    gain = 1.0 + prnu * torch.randn(shape, generator=generator, device=device)
    offset = dsnu * torch.randn(shape, generator=generator, device=device)
    return gain, offset


def expose_raw(
    raw: Tensor,
    full_well_e: Sequence[float],
    read_noise_e: Sequence[float],
    prnu: Sequence[float],
    dsnu: Sequence[float],
    adc_bits: int,
    noise_generators: Sequence[torch.Generator],
    pattern_generators: Sequence[torch.Generator],
) -> Tensor:
    """One exposure of a batch of raw planes ``(B, C, H, W)`` in linear [0, 1] -> linear [0, 1], a new tensor.

    Per case b: gain ~ 1 + prnu·N(0, 1) and offset ~ dsnu·N(0, 1) per photosite (fixed pattern,
    drawn in that order from ``pattern_generators[b]``), electrons ~ Poisson(max(x·gain + offset, 0)
    · full_well) + N(0, read²) (:func:`c3_core.functional.photon.photon_counts` with
    ``noise_generators[b]``), then the ADC (``adc_bits`` > 0) or full-well scaling back to [0, 1].
    The draws fill per-case slices of two buffers; all the arithmetic runs once over the batch.
    """
    shape = (-1,) + (1,) * (raw.ndim - 1)
    gain, signal = torch.empty_like(raw), torch.empty_like(raw)
    for b, g in enumerate(pattern_generators):
        gain[b].normal_(1.0, float(prnu[b]), generator=g)  # the same values as 1 + prnu · randn
        signal[b].normal_(0.0, float(dsnu[b]), generator=g)
    fw = torch.tensor([float(v) for v in full_well_e], device=raw.device, dtype=raw.dtype).view(shape)
    rate = signal.addcmul_(raw, gain).clamp_min_(0.0).mul_(fw)  # expected photo-electrons
    e = photon_counts(rate, noise_generators, read_sigma=[float(v) for v in read_noise_e], out=rate)
    if adc_bits > 0:
        levels = float(2**adc_bits - 1)
        return e.mul_(levels / fw).round_().clamp_(0.0, levels).div_(levels)
    return e.div_(fw)
