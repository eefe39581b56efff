"""Colour domains of fundus photographs and the converters between them.

Two intensity domains are used:

* ``srgb`` — the dataset domain: sRGB-encoded values in [0, 1] (IEC 61966-2-1), what cameras
  write to PNG/JPEG. Every fundus operator takes and returns this domain.
* ``linear_rgb`` — relative radiance in [0, 1] (camera linear light). Operators convert to it
  internally wherever physics is multiplicative or additive in light (illumination, vignetting,
  photon noise, white balance, blur, glare) and convert back.

Also here: colour-temperature white-balance gains (mired model) and JPEG's YCbCr (JFIF, BT.601
full range, values in 0..255).
"""

from __future__ import annotations

import torch
from torch import Tensor

SRGB_KNEE = 0.04045  # sRGB-encoded value where the linear toe meets the power law
LINEAR_KNEE = 0.0031308  # the same point in linear light


def srgb_to_linear(x: Tensor) -> Tensor:
    """sRGB-encoded values in [0, 1] -> linear relative radiance in [0, 1] (input clipped first)."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= SRGB_KNEE, x / 12.92, ((x.clamp_min(SRGB_KNEE) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(x: Tensor) -> Tensor:
    """Linear relative radiance -> sRGB encoding in [0, 1]; light above 1 saturates (clipped)."""
    x = x.clamp(0.0, 1.0)
    return torch.where(x <= LINEAR_KNEE, 12.92 * x, 1.055 * x.clamp_min(LINEAR_KNEE) ** (1 / 2.4) - 0.055)


def white_balance_gains(mired_shift: Tensor) -> Tensor:
    """Per-channel linear-light gains (B, 3) for a colour-temperature shift in mired (1e6 / K).

    First-order model: ln(R/G) and ln(B/G) of Planckian light change linearly with mired near
    daylight; a positive shift (warmer, lower-K light) raises red and lowers blue. Coefficients
    per 100 mired: red +0.23, blue -0.42 (sRGB chromaticities of blackbodies, 4000-7500 K).
    Green is the reference. Gains for +m and -m are exact inverses.
    """
    m = mired_shift.double() / 100.0
    return torch.stack([torch.exp(0.23 * m), torch.ones_like(m), torch.exp(-0.42 * m)], dim=1).float()


_RGB_TO_YCBCR = ((0.299, 0.587, 0.114), (-0.168736, -0.331264, 0.5), (0.5, -0.418688, -0.081312))
_YCBCR_TO_RGB = ((1.0, 0.0, 1.402), (1.0, -0.344136, -0.714136), (1.0, 1.772, 0.0))


def rgb_to_ycbcr(rgb255: Tensor) -> Tensor:
    """JFIF YCbCr of (B, 3, H, W) RGB in 0..255: Y in 0..255, Cb/Cr centred on 128."""
    m = torch.tensor(_RGB_TO_YCBCR, dtype=rgb255.dtype, device=rgb255.device)
    out = torch.einsum("oc,bchw->bohw", m, rgb255)
    offset = torch.tensor([0.0, 128.0, 128.0], dtype=rgb255.dtype, device=rgb255.device).view(1, 3, 1, 1)
    return out + offset


def ycbcr_to_rgb(ycc: Tensor) -> Tensor:
    """Inverse of :func:`rgb_to_ycbcr` (no clipping)."""
    offset = torch.tensor([0.0, 128.0, 128.0], dtype=ycc.dtype, device=ycc.device).view(1, 3, 1, 1)
    m = torch.tensor(_YCBCR_TO_RGB, dtype=ycc.dtype, device=ycc.device)
    return torch.einsum("oc,bchw->bohw", m, ycc - offset)
