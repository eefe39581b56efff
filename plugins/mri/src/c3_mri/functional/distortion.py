"""B0 off-resonance distortion: displacement along the phase-encode axis with Jacobian scaling."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def displacement_px(offresonance_hz: Tensor, bandwidth_per_px_hz: float) -> Tensor:
    """Shift in pixels along phase encode: Δ = Δf / BW_px."""
    return offresonance_hz / bandwidth_per_px_hz


def warp_along_axis(volume: Tensor, shift_px: Tensor, axis: int, mode: str = "bilinear") -> Tensor:
    """Resample ``volume (B, C, *sp)`` so that content at position p moves to p + shift(p).

    The output at q samples the input at q − shift(q) (a first-order inverse of a smooth field).
    ``shift_px (B, *sp)``; ``axis`` counts spatial axes from 0.
    """
    b, _, *sp = volume.shape
    d = len(sp)
    coords = torch.meshgrid(*[torch.linspace(-1, 1, n, device=volume.device, dtype=volume.dtype) for n in sp], indexing="ij")
    coords = [c.unsqueeze(0).expand(b, *sp).clone() for c in coords]
    coords[axis] = coords[axis] - shift_px * 2.0 / max(sp[axis] - 1, 1)
    grid = torch.stack(coords[::-1], dim=-1)  # grid_sample wants (x, y[, z]) = last axis first
    return F.grid_sample(volume, grid, mode=mode, padding_mode="border", align_corners=True) if d in (2, 3) else volume


def jacobian_along_axis(shift_px: Tensor, axis: int) -> Tensor:
    """Intensity factor 1 + ∂Δ/∂p along ``axis`` (pile-up where the field compresses), (B, *sp)."""
    grad = torch.gradient(shift_px, dim=1 + axis)[0]
    return (1.0 + grad).clamp_min(0.05)
