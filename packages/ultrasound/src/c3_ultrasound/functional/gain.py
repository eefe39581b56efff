"""Gain kernels on envelope amplitude: global gain and depth-dependent (attenuation / TGC) gain.

Amplitude gains are in dB of amplitude: a factor ``10 ** (dB / 20)``. Depth runs along the rows
(axial axis, dim -2), measured from the transducer face at the top edge of row 0 to each pixel
centre.
"""

from __future__ import annotations

import torch
from torch import Tensor


def db_to_amplitude(db: Tensor) -> Tensor:
    """Amplitude factor for a gain in dB: ``10 ** (db / 20)``."""
    return 10.0 ** (db / 20.0)


def apply_gain_db(envelope: Tensor, gain_db: Tensor) -> Tensor:
    """Scale each case of ``envelope`` (B, C, H, W) by ``gain_db`` (B,) dB of amplitude."""
    return envelope * db_to_amplitude(gain_db).to(envelope.dtype).view(-1, *[1] * (envelope.ndim - 1))


def pixel_depth_cm(rows: int, row_mm: Tensor) -> Tensor:
    """Depth (B, rows) in cm of each row centre for row pitches ``row_mm`` (B,) in mm."""
    index = 0.5 + torch.arange(rows, device=row_mm.device, dtype=row_mm.dtype)
    return index.view(1, -1) * row_mm.view(-1, 1) / 10.0


def tgc_residual_db(
    depth_cm: Tensor, attenuation_db_cm_mhz: Tensor, frequency_mhz: Tensor, tgc_slope_db_cm: Tensor
) -> Tensor:
    """Net depth gain (B, rows) in dB: TGC slope minus round-trip attenuation, times depth.

    Round-trip tissue attenuation is ``2 * alpha * f * z`` dB (alpha in dB/cm/MHz, f in MHz,
    z in cm); the TGC adds ``slope * z`` dB. Per-case parameters are (B,) tensors.
    """
    round_trip = 2.0 * attenuation_db_cm_mhz.view(-1, 1) * frequency_mhz.view(-1, 1)
    return (tgc_slope_db_cm.view(-1, 1) - round_trip) * depth_cm


def apply_depth_gain_db(envelope: Tensor, gain_db: Tensor) -> Tensor:
    """Scale each row of ``envelope`` (B, C, H, W) by ``gain_db`` (B, H) dB of amplitude."""
    b, h = gain_db.shape
    return envelope * db_to_amplitude(gain_db).to(envelope.dtype).view(b, 1, h, 1)
