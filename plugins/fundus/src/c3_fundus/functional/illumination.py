"""Illumination geometry and vignetting: multiplicative gains in linear light, (B, 1, H, W)."""

from __future__ import annotations

import torch
from torch import Tensor

from c3_fundus.functional.geometry import radial_distance


def cos4_vignetting(shape: tuple[int, int], centre: Tensor, focal_px: Tensor, device: torch.device) -> Tensor:
    """Relative illumination cos⁴θ with θ = atan(r / f): the natural-vignetting law.

    ``centre (B, 2)`` is the optical axis (row, col) in px, ``focal_px (B,)`` the focal length
    in px. Returns (B, 1, H, W) with 1 on the axis. Evaluated as cos⁴(atan u) = 1 / (1 + u²)²,
    u = r / f (the same function, without the trigonometry).
    """
    r = radial_distance(shape, centre, device)
    u2 = r.div_(focal_px.view(-1, 1, 1)).square_()
    return u2.add_(1.0).square_().reciprocal_().unsqueeze(1)


def focal_for_edge_falloff(radius_px: Tensor, falloff: Tensor) -> Tensor:
    """Focal length (px) at which cos⁴ illumination at ``radius_px`` is ``1 - falloff`` (both (B,))."""
    theta_edge = torch.acos((1.0 - falloff.clamp(0.0, 0.999)) ** 0.25)
    return radius_px / torch.tan(theta_edge).clamp_min(1e-6)


def decentred_illumination(
    shape: tuple[int, int], centre: Tensor, width_px: Tensor, ring_px: Tensor, stops: Tensor, device: torch.device
) -> Tensor:
    """Gain 2^(stops · (G − mean G)), G = exp(−(r − ring)² / 2 width²) about ``centre (B, 2)``.

    ``ring_px = 0`` gives a spot (the light source imaged off-centre), ``ring_px > 0`` an annular
    halo (the illumination ring reflected by the cornea). Positive ``stops`` brighten (halo),
    negative darken (dark hole). The mean log-gain is zero, so mean exposure is about unchanged.
    All of ``width_px``, ``ring_px``, ``stops`` are (B,). Returns (B, 1, H, W).
    """
    r = radial_distance(shape, centre, device)
    g = r.sub_(ring_px.view(-1, 1, 1)).div_(width_px.view(-1, 1, 1)).square_().mul_(-0.5).exp_()  # in place: one field
    g.sub_(g.mean(dim=(1, 2), keepdim=True))
    return g.mul_(stops.view(-1, 1, 1)).exp2_().unsqueeze(1)
