"""Lesion visibility: local contrast of lesions against the surrounding retina."""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F


def lesion_contrast(linear: Tensor, lesion_mask: Tensor, ring_px: int = 4) -> Tensor:
    """Weber contrast |mean(lesion) − mean(annulus)| / mean(annulus) on the green channel.

    ``lesion_mask`` (B, 1, H, W); the annulus is the lesion dilated by ``ring_px`` minus the
    lesion dilated by 1 px. Cases without lesions get NaN-free 0 and are flagged by the caller.
    Returns (B,).
    """
    m = (lesion_mask > 0.5).float()
    near = F.max_pool2d(m, 3, stride=1, padding=1)
    far = F.max_pool2d(m, 2 * ring_px + 1, stride=1, padding=ring_px)
    ring = (far - near).clamp_min(0)
    g = linear[:, 1:2]
    n_l = m.sum(dim=(1, 2, 3))
    n_r = ring.sum(dim=(1, 2, 3))
    mean_l = (g * m).sum(dim=(1, 2, 3)) / n_l.clamp_min(1)
    mean_r = (g * ring).sum(dim=(1, 2, 3)) / n_r.clamp_min(1)
    contrast = (mean_l - mean_r).abs() / mean_r.clamp_min(1e-6)
    return torch.where((n_l > 0) & (n_r > 0), contrast, torch.zeros_like(contrast))


def visibility_ratio(original: Tensor, counterfactual: Tensor, lesion_mask: Tensor) -> Tensor:
    """Lesion contrast in the counterfactual relative to the original (B,); 1 where no lesion."""
    c0 = lesion_contrast(original, lesion_mask)
    c1 = lesion_contrast(counterfactual, lesion_mask)
    return torch.where(c0 > 0, c1 / c0.clamp_min(1e-9), torch.ones_like(c0))
