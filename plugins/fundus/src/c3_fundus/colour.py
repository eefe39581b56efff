"""Colour conversions: sRGB <-> linear light (IEC 61966-2-1), von Kries white balance."""

from __future__ import annotations

import torch
from torch import Tensor


def srgb_to_linear(x: Tensor) -> Tensor:
    """sRGB-encoded values in [0, 1] -> linear relative radiance in [0, 1]."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: Tensor) -> Tensor:
    """Linear relative radiance -> sRGB encoding, clipped to [0, 1] (the sensor saturates)."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= 0.0031308, 12.92 * x, 1.055 * x.clamp_min(1e-12) ** (1 / 2.4) - 0.055)


def white_balance_gains(mired_shift: Tensor) -> Tensor:
    """Per-channel gains (B, 3) for a colour-temperature shift given in mired (1e6 / K).

    First-order model: ln(R/G) and ln(B/G) of a blackbody change linearly with mired near
    daylight; a positive shift (warmer light) raises red and lowers blue. Coefficients are per
    100 mired: red +0.23, blue −0.42 (fitted to the sRGB chromaticity of Planckian light between
    4000 K and 7500 K). Green is the reference.
    """
    m = mired_shift.double() / 100.0
    return torch.stack([torch.exp(0.23 * m), torch.ones_like(m), torch.exp(-0.42 * m)], dim=1).float()
