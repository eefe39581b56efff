"""B0 off-resonance distortion: displacement along the phase-encode axis with Jacobian scaling.

Forward model (EPI-like, phase-encode axis y): an off-resonance Δf(p) (Hz) shifts the signal
from p to p' = p + Δ(p) with Δ = Δf / BW_px voxels (BW_px: bandwidth per voxel along phase
encode, Hz/voxel). Signal is conserved, so the intensity at p' is I(p) / (1 + ∂Δ/∂p): it piles
up where the field compresses the image and thins out where it stretches it.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def displacement_px(offresonance_hz: Tensor, bandwidth_hz_per_px: Tensor | float) -> Tensor:
    """Shift in voxels along phase encode: Δ = Δf / BW_px."""
    return offresonance_hz / bandwidth_hz_per_px


def _sample_along(volume: Tensor, pos: Tensor, axis: int, mode: str = "bilinear") -> Tensor:
    """``volume (B, C, *sp)`` sampled at voxel positions ``pos (B, *sp)`` along ``axis`` (others fixed)."""
    b, _, *sp = volume.shape
    d = len(sp)
    coords = [
        (torch.arange(n, device=volume.device, dtype=volume.dtype) * 2 + 1) / n - 1 for n in sp
    ]
    mesh = [c.view(*[n if a == i else 1 for a, n in enumerate(sp)]).expand(*sp) for i, c in enumerate(coords)]
    mesh = [m.unsqueeze(0).expand(b, *sp) for m in mesh]
    mesh[axis] = (2 * pos + 1) / sp[axis] - 1
    grid = torch.stack(mesh[::-1], dim=-1)  # grid_sample wants (x, y[, z]) = last axis first
    if d not in (2, 3):
        raise ValueError(f"only 2-D and 3-D volumes, got {d}-D")
    return F.grid_sample(volume, grid, mode=mode, padding_mode="border", align_corners=False)


def inverse_positions(shift_px: Tensor, axis: int, iterations: int = 6) -> Tensor:
    """For each output voxel q, the source position p with p + Δ(p) = q (fixed-point iteration).

    ``shift_px (B, *sp)``; converges for smooth fields with |∂Δ/∂p| < 1. Returns (B, *sp).
    """
    sp = shift_px.shape[1:]
    q = torch.arange(sp[axis], device=shift_px.device, dtype=shift_px.dtype)
    q = q.view(*[n if a == axis else 1 for a, n in enumerate(sp)]).expand(*sp).unsqueeze(0)
    p = q - shift_px
    field = shift_px.unsqueeze(1)
    for _ in range(iterations):
        p = q - _sample_along(field, p, axis)[:, 0]
    return p


def distort(volume: Tensor, shift_px: Tensor, axis: int, *, jacobian: bool = True, mode: str = "bilinear") -> tuple[Tensor, Tensor]:
    """Move ``volume (B, C, *sp)`` by ``shift_px`` along ``axis``; returns (image, source positions).

    With ``jacobian`` the intensity is multiplied by ∂p/∂q = 1 / (1 + ∂Δ/∂p) (signal conserved).
    """
    p = inverse_positions(shift_px, axis)
    out = _sample_along(volume, p, axis, mode)
    if jacobian:
        dq_dp = torch.gradient(p, dim=1 + axis)[0]  # ∂p/∂q on the output grid
        out = out * dq_dp.clamp_min(0.0).unsqueeze(1)
    return out, p


def warp_like(volume: Tensor, positions: Tensor, axis: int, mode: str = "bilinear") -> Tensor:
    """Resample a mask or extra with the source positions from :func:`distort` (no Jacobian)."""
    return _sample_along(volume, positions, axis, mode)
