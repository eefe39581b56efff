"""Seg-CFT's functional kernels: working-grid masks, areas, interventions on areas and the objective."""

from __future__ import annotations

import torch
from torch import Tensor

from c3_core.functional.grid import dilate, feather, from_grid, to_grid

__all__ = [
    "SegmentorMeasure", "dilate", "from_grid", "hard_area_px", "intervene", "mask_to_grid", "outside_change",
    "region_weight", "relative_area_error", "segcft_objective", "shifted_target", "soft_area", "standardise", "to_grid",
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


def relative_area_error(measured: Tensor, target: Tensor, scale: Tensor | None = None) -> Tensor:
    """``|measured - target| / scale`` elementwise (the Seg-CFT area term; ``scale`` defaults to
    ``target``, which must then be > 0); an entry whose ``scale`` is 0 (nothing to set) counts 0."""
    den = target if scale is None else scale
    err = (measured - target).abs() / den.clamp_min(1e-6)
    return err if scale is None else torch.where(scale > 0, err, torch.zeros_like(err))


def shifted_target(soft: Tensor, reading: Tensor, structure: Tensor, ratio: Tensor) -> tuple[Tensor, Tensor]:
    """Seg-CFT target for a segmentor's *soft* area when the area being set is its *hard* one.

    ``soft (B, S)``: the measure's differentiable reading of the originals (mean sigmoid);
    ``reading (B, S)``: the area it stands for (the fraction of pixels with logit > 0). The soft
    area also counts the sigmoid's tails off the structure, which an edit of the border barely
    moves, so ``ratio * soft`` asks the border to move ``soft / reading`` times too far. Here
    structure ``structure[b]``'s soft area moves by the area to add or remove,
    ``(ratio[b] - 1) * reading``, the other entries keep theirs. Returns the target and the scale
    of the relative error, ``intervene(reading, structure, ratio)`` (the intended area).
    """
    rows = torch.arange(soft.shape[0], device=soft.device)
    target = soft.clone()
    target[rows, structure] = soft[rows, structure] + (ratio.to(soft.dtype) - 1.0) * reading[rows, structure]
    return target, intervene(reading, structure, ratio)


def outside_change(u: Tensor, u_cf: Tensor, region: Tensor) -> Tensor:
    """Mean ``|u' - u|`` over pixels outside ``region (B, 1, S, S)`` in {0, 1}, per case ``(B,)``."""
    return ((u_cf - u).abs() * (1.0 - region)).flatten(1).mean(1)


def region_weight(structure: Tensor, region_px: int) -> Tensor:
    """Blend weight ``(B, 1, S, S)`` in [0, 1] from a structure mask (bool or {0, 1}): 1 within
    ``region_px`` px of it, feathered (a triangle kernel of radius 2) to exactly 0 beyond ``region_px + 4``."""
    return feather(dilate(structure.float(), region_px + 2), 1)


def segcft_objective(
    measured: Tensor,
    target: Tensor,
    u: Tensor,
    u_cf: Tensor,
    region: Tensor,
    closeness: float,
    scale: Tensor | None = None,
) -> Tensor:
    """``mean |A(u') - a'| / scale + closeness * mean |u' - u| outside region`` (a scalar; ``scale``
    defaults to ``a'``, see :func:`relative_area_error`)."""
    return relative_area_error(measured, target, scale).mean() + closeness * outside_change(u, u_cf, region).mean()


class SegmentorMeasure:
    """The Seg-CFT measure of a frozen segmentor (images ``(B, C, *spatial)`` -> logits): called, its
    soft size fractions ``(B, S)``, ``mean sigmoid(sharpness * logit)`` (differentiable);
    :meth:`reading`, the fractions of pixels with logit > 0 — the size that is set and judged.

    ``sharpness`` > 1 narrows the sigmoid around the segmented border: with a segmentor whose
    logits are shallow, the soft area counts wide tails, and pushing border pixels just past
    logit 0 flips them while the soft area barely moves, so a soft-area target leaves the hard
    area free to overshoot (see :func:`shifted_target` for the tails' offset)."""

    def __init__(self, segmentor: torch.nn.Module, sharpness: float = 1.0) -> None:
        if not (float(sharpness) > 0 and float(sharpness) < float("inf")):
            raise ValueError(f"sharpness must be a finite number > 0, got {sharpness!r}")
        self.segmentor = segmentor
        self.sharpness = float(sharpness)

    def __call__(self, v: Tensor) -> Tensor:
        logits = self.segmentor(v)
        return torch.sigmoid(logits if self.sharpness == 1.0 else self.sharpness * logits).flatten(2).mean(2)

    @torch.no_grad()
    def reading(self, v: Tensor) -> Tensor:
        return (self.segmentor(v) > 0).flatten(2).to(v.dtype).mean(2)
