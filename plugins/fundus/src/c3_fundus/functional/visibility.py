"""Lesion visibility: local contrast of lesions against the surrounding retina (an annulus).

The measure every fundus operator's ``check`` uses (one implementation, here). For lesion type
c (a mask channel: microaneurysms, haemorrhages, exudates) the Weber contrast is

    C_c = |mean_green(lesion_c) − mean_green(annulus_c)| / mean_green(annulus_c)

on the green channel in linear light, where the annulus is lesion_c dilated by ``ring_px`` minus
every lesion dilated by 1 px. The visibility of a counterfactual is the smallest ratio
C_c(counterfactual) / C_c(original) over the lesion types present, times the fraction of lesion
area still inside the image (spatial operators can crop lesions away).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

DEFAULT_RING_PX = 4


def lesion_contrast(linear: Tensor, masks: Tensor, ring_px: int = DEFAULT_RING_PX) -> tuple[Tensor, Tensor]:
    """Per-type Weber contrast (B, M) and lesion pixel counts (B, M).

    ``linear`` (B, 3, H, W) linear light; ``masks`` (B, M, H, W) in [0, 1]. Types with no lesion
    pixels (or no annulus) get contrast 0.
    """
    m = (masks > 0.5).to(linear.dtype)
    any_lesion = m.amax(dim=1, keepdim=True)
    near = F.max_pool2d(any_lesion, 3, stride=1, padding=1)
    far = F.max_pool2d(m, 2 * ring_px + 1, stride=1, padding=ring_px)
    ring = (far - near).clamp_min(0)
    g = linear[:, 1:2]
    n_l = m.sum(dim=(2, 3))
    n_r = ring.sum(dim=(2, 3))
    mean_l = (g * m).sum(dim=(2, 3)) / n_l.clamp_min(1)
    mean_r = (g * ring).sum(dim=(2, 3)) / n_r.clamp_min(1)
    contrast = (mean_l - mean_r).abs() / mean_r.clamp_min(1e-6)
    valid = (n_l > 0) & (n_r > 0)
    return torch.where(valid, contrast, torch.zeros_like(contrast)), torch.where(valid, n_l, torch.zeros_like(n_l))


def lesion_visibility(
    original: Tensor,
    counterfactual: Tensor,
    original_masks: Tensor,
    counterfactual_masks: Tensor | None = None,
    area_scale: Tensor | None = None,
    ring_px: int = DEFAULT_RING_PX,
) -> tuple[Tensor, Tensor]:
    """Visibility (B,) of lesions in ``counterfactual`` relative to ``original`` and the worst type (B,).

    Images are linear light (B, 3, H, W). ``counterfactual_masks`` defaults to the original masks
    (intensity operators); ``area_scale (B,)`` is the factor by which a spatial operator scales
    areas (zoom²), so area kept = (counterfactual lesion pixels / area_scale) / original pixels.
    Cases without lesions get visibility 1 and worst type -1.
    """
    cf_masks = original_masks if counterfactual_masks is None else counterfactual_masks
    c0, n0 = lesion_contrast(original, original_masks, ring_px)
    c1, n1 = lesion_contrast(counterfactual, cf_masks, ring_px)
    present = (c0 > 0) & (n0 > 0)
    ratio = c1 / c0.clamp_min(1e-9)
    if counterfactual_masks is not None:
        scale = torch.ones(n0.shape[0], device=n0.device, dtype=n0.dtype) if area_scale is None else area_scale.to(n0)
        kept = ((n1 / scale.view(-1, 1)) / n0.clamp_min(1)).clamp(max=1.0)
        ratio = ratio * kept
    ratio = torch.where(present, ratio, torch.full_like(ratio, float("inf")))
    worst_value, worst_type = ratio.min(dim=1)
    has_any = present.any(dim=1)
    visibility = torch.where(has_any, worst_value, torch.ones_like(worst_value))
    return visibility, torch.where(has_any, worst_type, torch.full_like(worst_type, -1))
