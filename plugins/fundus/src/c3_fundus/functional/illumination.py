"""Illumination geometry and vignetting gains (multiplicative, linear light)."""

from __future__ import annotations

import torch
from torch import Tensor

from c3_fundus.functional.geometry import radial_distance


def cos4_vignetting(shape: tuple[int, int], centre: Tensor, focal_px: Tensor, device: torch.device) -> Tensor:
    """Relative illumination cos⁴(θ), θ = atan(r / f): the natural vignetting law -> (B, 1, H, W)."""
    r = radial_distance(shape, centre, device)
    theta = torch.atan(r / focal_px.view(-1, 1, 1))
    return (torch.cos(theta) ** 4).unsqueeze(1)


def focal_for_edge_falloff(radius_px: float, falloff: Tensor) -> Tensor:
    """Focal length (px) at which cos⁴ illumination at ``radius_px`` is ``1 − falloff``."""
    theta_edge = torch.acos((1.0 - falloff.clamp(0.0, 0.999)) ** 0.25)
    return radius_px / torch.tan(theta_edge).clamp_min(1e-6)


def decentred_illumination(shape: tuple[int, int], centre: Tensor, width_px: Tensor, stops: Tensor, device: torch.device) -> Tensor:
    """Gain 2^(stops · (G − mean G)) with G a Gaussian bump at ``centre`` of std ``width_px``.

    Positive stops make a bright halo at the source, negative a dark hole; the mean log-gain is
    zero, so overall exposure is unchanged. Returns (B, 1, H, W).
    """
    r = radial_distance(shape, centre, device)
    g = torch.exp(-0.5 * (r / width_px.view(-1, 1, 1)) ** 2)
    g = g - g.mean(dim=(1, 2), keepdim=True)
    return torch.exp2(stops.view(-1, 1, 1) * g).unsqueeze(1)
