"""Procedural B-mode phantoms in the envelope domain.

A phantom is an echogenicity map (relative backscatter amplitude) times fully developed speckle,
times the depth gain left by the scanner's TGC, times an overall gain. The map holds a bright
skin line, a subcutaneous fat layer, a bright fascia, a textured parenchyma, sometimes a small
anechoic vessel with posterior enhancement (in either class) and, for lesion cases, a
hypoechoic ellipse. Every random choice comes from the generator passed in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from c3_core.api import uniform
from c3_ultrasound.functional.gain import db_to_amplitude, pixel_depth_cm, tgc_residual_db
from c3_ultrasound.functional.speckle import FWHM_PER_SIGMA, psf_filter, rayleigh_speckle

BASE_AMPLITUDE = 0.05  # parenchyma echo amplitude, about -26 dB below the display reference


@dataclass(frozen=True)
class Phantom:
    envelope: Tensor  # (1, H, W) echo envelope amplitude
    lesion: Tensor  # (1, H, W) lesion mask in {0, 1}


def _smooth_texture(shape: tuple[int, int], generator: torch.Generator, sigma_px: float) -> Tensor:
    """A zero-mean, unit-variance, smooth random field (H, W)."""
    white = torch.randn((1, *shape), generator=generator)
    return psf_filter(white, sigma_px, sigma_px)[0]


def render_phantom(has_lesion: bool, generator: torch.Generator, size: int, pixel_mm: float) -> Phantom:
    """Render one (1, size, size) envelope phantom; rows are depth, columns lateral position."""
    g = generator
    h = w = size
    z = (torch.arange(h, dtype=torch.float32) + 0.5).view(-1, 1) * pixel_mm  # depth, mm
    x = (torch.arange(w, dtype=torch.float32) + 0.5).view(1, -1) * pixel_mm  # lateral, mm
    extent = size * pixel_mm

    def wavy(depth_mm: float, amp_mm: float) -> Tensor:
        period = uniform(g, 8.0, 25.0)
        phase = uniform(g, 0.0, 2 * math.pi)
        tilt = uniform(g, -0.15, 0.15)
        return depth_mm + tilt * (x - extent / 2) + amp_mm * torch.sin(2 * math.pi * x / period + phase)

    # layered echogenicity (relative amplitude)
    skin = wavy(uniform(g, 0.8, 1.6), 0.2)
    fat_bottom = wavy(uniform(g, 3.5, 8.0), uniform(g, 0.3, 1.2))
    echo = torch.full((h, w), uniform(g, 0.85, 1.15))
    echo = echo * (1.0 + uniform(g, 0.1, 0.25) * _smooth_texture((h, w), g, uniform(g, 3.0, 8.0)))  # parenchyma texture
    echo = torch.where(z < fat_bottom, torch.full_like(echo, uniform(g, 0.45, 0.8)), echo)
    echo = torch.where(z < skin, torch.full_like(echo, uniform(g, 1.5, 2.2)), echo)
    fascia = torch.exp(-0.5 * ((z - fat_bottom) / uniform(g, 0.25, 0.45)) ** 2)
    echo = echo * (1.0 + uniform(g, 0.6, 1.5) * fascia)
    deeper = wavy(uniform(g, 16.0, 26.0), uniform(g, 0.3, 1.0))
    echo = echo * torch.where(z > deeper, torch.full_like(echo, uniform(g, 0.75, 1.3)), torch.ones_like(echo))

    # an anechoic vessel in either class (a round dark confounder) with posterior enhancement
    if uniform(g, 0.0, 1.0) < 0.35:
        vz, vx, vr = uniform(g, fat_bottom.mean().item() + 2.0, extent - 4.0), uniform(g, 3.0, extent - 3.0), uniform(g, 0.8, 1.6)
        inside = ((z - vz) ** 2 + (x - vx) ** 2).sqrt() <= vr
        echo = torch.where(inside, echo * 0.08, echo)
        below = (z > vz) & ((x - vx).abs() < vr)
        echo = torch.where(below, echo * uniform(g, 1.1, 1.35), echo)

    lesion = torch.zeros(h, w)
    if has_lesion:
        lz = uniform(g, max(6.0, fat_bottom.mean().item() + 2.5), extent - 5.0)
        lx = uniform(g, 5.0, extent - 5.0)
        a = uniform(g, 2.0, 4.5)  # lateral semi-axis, mm
        b = a * uniform(g, 0.55, 1.0)  # axial semi-axis, mm (wider than tall)
        theta = uniform(g, -0.4, 0.4)
        u = (x - lx) * math.cos(theta) + (z - lz) * math.sin(theta)
        v = -(x - lx) * math.sin(theta) + (z - lz) * math.cos(theta)
        r = ((u / a) ** 2 + (v / b) ** 2).sqrt()
        lesion = (r <= 1.0).float()
        contrast_db = uniform(g, 4.0, 12.0)  # how much darker than its surroundings
        edge = torch.sigmoid((1.0 - r) / uniform(g, 0.06, 0.2))  # soft or sharp margin
        echo = echo * (1.0 - edge * (1.0 - 10.0 ** (-contrast_db / 20.0)))

    # fully developed speckle with a case-specific PSF (probe and focus differ between exams)
    sa = uniform(g, 0.3, 0.6) / FWHM_PER_SIGMA / pixel_mm
    sl = uniform(g, 0.6, 1.3) / FWHM_PER_SIGMA / pixel_mm
    speckle = rayleigh_speckle((h, w), g, sa, sl)

    # residual TGC error (the operator's TGC slope mis-set by up to 1 dB/cm) and overall gain (+-3 dB)
    alpha = torch.tensor([uniform(g, 0.4, 0.8)], dtype=torch.float64)
    freq = torch.tensor([uniform(g, 4.0, 7.0)], dtype=torch.float64)
    slope = 2.0 * alpha * freq + uniform(g, -1.0, 1.0)
    depth_db = tgc_residual_db(pixel_depth_cm(h, torch.tensor([pixel_mm], dtype=torch.float64)), alpha, freq, slope)[0]
    gain = db_to_amplitude(depth_db + uniform(g, -3.0, 3.0)).float().view(h, 1)
    envelope = BASE_AMPLITUDE * echo * speckle * gain
    return Phantom(envelope[None].float(), lesion[None])
