"""Concept perturbation's functional kernels: the edit's blend region, the latent shift and mask IoU."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from c3_core.functional.grid import dilate, feather, from_grid, to_grid

__all__ = ["dilate", "feather", "from_grid", "mask_iou", "shift_latent", "soft_region", "to_grid"]


def soft_region(anatomy: Tensor, channels: Sequence[int], dilate_px: int, feather_px: int) -> Tensor:
    """Blend weight ``(B, 1, H, W)`` in [0, 1] from binary anatomy masks ``(B, A, H, W)``.

    The union of ``channels`` is dilated by ``dilate_px + 2 * feather_px`` and feathered by
    ``feather_px``: the weight is 1 on the union dilated by ``dilate_px`` and exactly 0 farther than
    ``dilate_px + 4 * feather_px`` px from the union.
    """
    if not channels:
        raise ValueError("soft_region needs at least one anatomy channel")
    union = anatomy[:, list(channels)].amax(1, keepdim=True).float()
    return feather(dilate(union, dilate_px + 2 * feather_px), feather_px)


def shift_latent(z: Tensor, direction: Tensor, shift: Tensor, noise: Tensor | None = None) -> Tensor:
    """``z + shift[:, None] * direction`` plus ``noise`` with its component along ``direction`` removed."""
    out = z + shift.view(-1, 1) * direction.view(1, -1)
    if noise is not None:
        along = (noise @ direction).view(-1, 1) * direction.view(1, -1)
        out = out + (noise - along)
    return out


def mask_iou(a: Tensor, b: Tensor) -> Tensor:
    """IoU per case of boolean masks ``(B, ...)``; 1.0 when both are empty."""
    a, b = a.flatten(1).bool(), b.flatten(1).bool()
    inter = (a & b).sum(1).double()
    union = (a | b).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1.0), torch.ones_like(union))
