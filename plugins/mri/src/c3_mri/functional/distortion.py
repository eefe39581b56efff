"""B0 off-resonance distortion: displacement along the phase-encode axis with Jacobian scaling.

Forward model (EPI-like, phase-encode axis y): an off-resonance Δf(p) (Hz) shifts the signal
from p to p' = p + Δ(p) with Δ = Δf / BW_px voxels (BW_px: bandwidth per voxel along phase
encode, Hz/voxel). Signal is conserved, so the intensity at p' is I(p) / (1 + ∂Δ/∂p): it piles
up where the field compresses the image and thins out where it stretches it.

Each output voxel q reads the source position p with p + Δ(p) = q, interpolated linearly along
the axis (:class:`AxisWarp`). For a displacement that is a polynomial of degree ≤ 2 along the
axis (an order-2 off-resonance map) p solves a quadratic, so it and ∂p/∂q are exact; any other
smooth displacement is inverted by fixed-point iteration and differentiated numerically.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


def displacement_px(offresonance_hz: Tensor, bandwidth_hz_per_px: Tensor | float) -> Tensor:
    """Shift in voxels along phase encode: Δ = Δf / BW_px."""
    return offresonance_hz / bandwidth_hz_per_px


@dataclass(frozen=True)
class AxisWarp:
    """Where every output voxel reads along one spatial ``axis``: source ``positions (B, *sp)`` in
    voxels and, made from them once for every volume warped alike (image, mask, extras), the
    lower neighbour ``lower (B, 1, *sp)`` and the weight ``weight (B, 1, *sp)`` in [0, 1] of a
    linear interpolation, positions clipped to the volume (border padding)."""

    axis: int
    positions: Tensor
    lower: Tensor
    weight: Tensor

    @classmethod
    def at(cls, positions: Tensor, axis: int) -> AxisWarp:
        length = positions.shape[1 + axis]
        p = positions.clamp(0, length - 1).unsqueeze(1)
        below = p.floor().clamp_max_(max(length - 2, 0))  # the last voxel is read as the upper end of the last gap
        return cls(axis, positions, below.long(), p - below)

    def sample(self, volume: Tensor) -> Tensor:
        """``volume (B, C, *sp)`` read at the positions: two gathers along the axis and a lerp."""
        b, c, *sp = volume.shape
        dim = 2 + self.axis
        index = self.lower.expand(b, c, *sp)
        if volume.shape[dim] == 1:
            return volume.gather(dim, index)
        n = volume.shape[dim]
        following = torch.cat([volume.narrow(dim, 1, n - 1), volume.narrow(dim, n - 1, 1)], dim)  # voxel i + 1 (border)
        return torch.lerp(volume.gather(dim, index), following.gather(dim, index), self.weight.to(volume.dtype))


def _along(length: int, axis: int, like: Tensor) -> Tensor:
    """Voxel indices 0..length-1 along ``axis`` of ``like (B, *sp)``, broadcastable to it."""
    q = torch.arange(length, device=like.device, dtype=like.dtype)
    return q.view(*[length if a == axis else 1 for a in range(like.ndim - 1)]).unsqueeze(0)


def quadratic_inverse(shift_px: Tensor, axis: int) -> tuple[Tensor, Tensor]:
    """``(p, ∂p/∂q)`` (B, *sp) for a shift that is a polynomial of degree ≤ 2 along ``axis``.

    Δ(p) = α + βp + γp² on each line along the axis is fitted exactly through its samples at
    p = 0, the middle and the last voxel (float64, per line); then p + Δ(p) = q is solved in the
    stable form p = 2(q − α) / ((1 + β) + √((1 + β)² + 4γ(q − α))), and ∂p/∂q = 1 / (1 + β + 2γp),
    0 where the map folds over (no real root, or a non-positive slope). Needs 3 voxels or more.
    """
    length = shift_px.shape[1 + axis]
    if length < 3:
        raise ValueError(f"a quadratic along axis {axis} needs at least 3 voxels, got {length}")
    mid, last = (length - 1) // 2, length - 1
    f0, fm, fl = (shift_px.narrow(1 + axis, i, 1).double() for i in (0, mid, last))
    gamma = ((fl - f0) / last - (fm - f0) / mid) / (last - mid)
    beta = (fm - f0) / mid - gamma * mid
    slope, curve = (1.0 + beta).to(shift_px.dtype), gamma.to(shift_px.dtype)
    rest = _along(length, axis, shift_px) - f0.to(shift_px.dtype)  # q − α
    root = (slope * slope + 4.0 * curve * rest).clamp_min_(0.0).sqrt_()
    p = 2.0 * rest / (slope + root)
    rate = slope + 2.0 * curve * p  # ∂q/∂p = 1 + Δ'(p)
    return p, torch.where(rate > 0, rate.reciprocal(), torch.zeros_like(rate))


def inverse_positions(shift_px: Tensor, axis: int, iterations: int = 6) -> Tensor:
    """For each output voxel q, the source position p with p + Δ(p) = q (fixed-point iteration).

    ``shift_px (B, *sp)``; converges for smooth fields with |∂Δ/∂p| < 1. Returns (B, *sp).
    """
    q = _along(shift_px.shape[1 + axis], axis, shift_px)
    p = q - shift_px
    field = shift_px.unsqueeze(1)
    for _ in range(iterations):
        p = q - AxisWarp.at(p, axis).sample(field)[:, 0]
    return p


def distort(volume: Tensor, shift_px: Tensor, axis: int, *, jacobian: bool = True, quadratic: bool = False) -> tuple[Tensor, AxisWarp]:
    """Move ``volume (B, C, *sp)`` by ``shift_px`` along ``axis``; returns (image, the warp).

    With ``jacobian`` the intensity is multiplied by ∂p/∂q = 1 / (1 + ∂Δ/∂p) (signal conserved).
    ``quadratic``: the shift is a polynomial of degree ≤ 2 along the axis (solved exactly, see
    :func:`quadratic_inverse`); otherwise any smooth shift (fixed-point inverse, numerical ∂p/∂q).
    """
    if volume.ndim - 2 not in (2, 3):
        raise ValueError(f"only 2-D and 3-D volumes, got {volume.ndim - 2}-D")
    if quadratic and shift_px.shape[1 + axis] >= 3:
        p, dp_dq = quadratic_inverse(shift_px, axis)
    else:
        p = inverse_positions(shift_px, axis)
        dp_dq = torch.gradient(p, dim=1 + axis)[0].clamp_min(0.0) if p.shape[1 + axis] > 1 else torch.ones_like(p)
    warp = AxisWarp.at(p, axis)
    out = warp.sample(volume)
    if jacobian:
        out = out * dp_dq.unsqueeze(1).to(out.dtype)
    return out, warp


def warp_like(volume: Tensor, warp: AxisWarp) -> Tensor:
    """Resample a mask or extra ``(B, C, *sp)`` with the warp from :func:`distort` (no Jacobian)."""
    return warp.sample(volume)
