"""Seg-CFT's functional kernels: working-grid masks, areas, interventions on areas and the objective."""

from __future__ import annotations

import torch
from torch import Tensor

from c3_core.functional.grid import dilate, feather, from_grid, to_grid

__all__ = [
    "dilate", "from_grid", "hard_area_px", "intervene", "mask_to_grid", "outside_change", "region_weight",
    "relative_area_error", "segcft_objective", "soft_area", "standardise", "to_grid",
]  # fmt: skip


def mask_to_grid(mask: Tensor, size: int) -> Tensor:
    """Binary masks ``(B, M, H, W)`` resampled to the working grid (area average, then >= 0.5)."""
    return (to_grid(mask.float(), size) >= 0.5).float()


def soft_area(logits: Tensor) -> Tensor:
    """Differentiable area fraction per structure: ``mean(sigmoid(logits))`` over pixels, ``(B, S)``."""
    return torch.sigmoid(logits).flatten(2).mean(2)


def hard_area_px(logits: Tensor) -> Tensor:
    """Segmented area in pixels per structure (``logit > 0``), ``(B, S)`` float64."""
    return (logits > 0).flatten(2).sum(2).double()


def standardise(frac: Tensor, mean: Tensor, std: Tensor) -> Tensor:
    """Generator condition from area fractions: ``(frac - mean) / std`` per structure."""
    return (frac - mean) / std


def intervene(frac: Tensor, structure: Tensor, ratio: Tensor) -> Tensor:
    """Area fractions ``(B, S)`` with structure ``structure[b]`` scaled by ``ratio[b]``, the others kept."""
    scale = torch.ones_like(frac)
    scale[torch.arange(frac.shape[0], device=frac.device), structure] = ratio.to(frac.dtype)
    return frac * scale


def relative_area_error(measured: Tensor, target: Tensor) -> Tensor:
    """``|measured - target| / target`` elementwise (the Seg-CFT area term); targets must be > 0."""
    return (measured - target).abs() / target.clamp_min(1e-6)


def outside_change(u: Tensor, u_cf: Tensor, region: Tensor) -> Tensor:
    """Mean ``|u' - u|`` over pixels outside ``region (B, 1, S, S)`` in {0, 1}, per case ``(B,)``."""
    return ((u_cf - u).abs() * (1.0 - region)).flatten(1).mean(1)


def region_weight(structure: Tensor, region_px: int) -> Tensor:
    """Blend weight ``(B, 1, S, S)`` in [0, 1] from a structure mask (bool or {0, 1}): 1 within
    ``region_px`` px of it, feathered (a triangle kernel of radius 2) to exactly 0 beyond ``region_px + 4``."""
    return feather(dilate(structure.float(), region_px + 2), 1)


def segcft_objective(
    measured: Tensor, target: Tensor, u: Tensor, u_cf: Tensor, region: Tensor, closeness: float
) -> Tensor:
    """``mean |A(u') - a'| / a' + closeness * mean |u' - u| outside region`` (a scalar)."""
    return relative_area_error(measured, target).mean() + closeness * outside_change(u, u_cf, region).mean()
