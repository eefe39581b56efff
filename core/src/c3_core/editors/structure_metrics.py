"""Seg-CFT's metrics: area errors (MAPE, MAE, mm²), leakage, and the evaluation of a generator's interventions."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from c3_core.editors.structure_kernels import dilate, hard_area_px, intervene, standardise
from c3_core.editors.structure_nets import ConditionalVAE, check_data


def _check_pair(measured: Tensor, target: Tensor, what: str) -> None:
    if measured.shape != target.shape:
        raise ValueError(f"{what}: measured {tuple(measured.shape)} and target {tuple(target.shape)} differ in shape")
    if measured.numel() == 0:
        raise ValueError(f"{what}: no values")


def mape(measured: Tensor, target: Tensor) -> float:
    """Mean absolute percentage error ``100 * mean |m - t| / t`` (percent); targets must be > 0."""
    _check_pair(measured, target, "mape")
    if bool((target <= 0).any()):
        raise ValueError("mape: every target area must be > 0 (an empty target has no percentage error)")
    return float(100.0 * ((measured.double() - target.double()).abs() / target.double()).mean())


def mae(measured: Tensor, target: Tensor) -> float:
    """Mean absolute error ``mean |m - t|`` in the inputs' unit."""
    _check_pair(measured, target, "mae")
    return float((measured.double() - target.double()).abs().mean())


def pixel_area_mm2(spacing: Sequence[float], image_shape: Sequence[int], size: int) -> float:
    """Area in mm² of one working-grid pixel for an image of ``image_shape`` px at ``spacing`` mm/px."""
    if len(spacing) != 2 or len(image_shape) != 2:
        raise ValueError(f"pixel_area_mm2 needs 2-D spacing and shape, got {spacing}, {image_shape}")
    return float(spacing[0] * image_shape[0] / size * spacing[1] * image_shape[1] / size)


def leakage(original: Tensor, edited: Tensor, region: Tensor) -> Tensor:
    """Share of ``sum |x' - x|`` outside ``region (B, 1, H, W)`` (bool or {0, 1}), per case ``(B,)``.

    Convention: 0 for a case that did not change at all (no change, nothing leaked).
    """
    if region.shape[0] != original.shape[0] or region.shape[2:] != original.shape[2:]:
        raise ValueError(f"leakage: region {tuple(region.shape)} does not match images {tuple(original.shape)}")
    diff = (edited.double() - original.double()).abs().sum(1, keepdim=True)
    total = diff.flatten(1).sum(1)
    outside = (diff * (1.0 - region.double())).flatten(1).sum(1)
    return torch.where(total > 0, outside / total.clamp_min(1e-300), torch.zeros_like(total))


@dataclass(frozen=True)
class InterventionMetrics:
    """Area errors of counterfactuals measured by a segmentor, and leakage (see module docstring)."""

    structure: str
    n: int
    mape_percent: float
    mae_px: float
    mae_mm2: float
    leakage: float  # mean share of |u' - u| outside the dilated structure

    def as_row(self) -> dict[str, Any]:
        return dict(self.__dict__)


@torch.no_grad()
def evaluate_interventions(
    gen: ConditionalVAE,
    judge: Callable[[Tensor], Tensor],
    u: Tensor,
    frac: Tensor,
    masks: Tensor,
    mean: Tensor,
    std: Tensor,
    *,
    structures: Sequence[str],
    ratios: Sequence[float],
    pixel_mm2: float,
    margin_px: int,
    bound: Tensor | None = None,
) -> list[InterventionMetrics]:
    """Intervene on every structure of every case with every ratio; measure with ``judge`` (a
    frozen segmentor: images -> logits ``(B, S, ...)``).

    Target: ``ratio`` times the judge's hard area of the original; measured: the judge's hard area
    of the counterfactual. Leakage region: the structure's mask in the original united with the
    judge's mask of the counterfactual, dilated by ``margin_px``. ``bound (N, S, S, S)``: optional
    blend weights per structure (what the editor applies with ``region_px``), multiplied into the
    generator's change.
    """
    check_data(u, masks, gen.cfg)
    if frac.shape != (u.shape[0], gen.cfg.structures):
        raise ValueError(f"area fractions must be (N, {gen.cfg.structures}), got {tuple(frac.shape)}")
    if bound is not None and bound.shape != masks.shape:
        raise ValueError(f"bound must be (N, S, S, S) like the masks {tuple(masks.shape)}, got {tuple(bound.shape)}")
    out: list[InterventionMetrics] = []
    base_logits = torch.cat([judge(chunk) for chunk in u.split(64)])
    base_px = hard_area_px(base_logits)
    c_src = standardise(frac, mean, std)
    z = torch.cat([gen.abduct(chunk) for chunk in u.split(64)])
    for s, name in enumerate(structures):
        measured, target, leaks = [], [], []
        for r in ratios:
            sel = torch.full((u.shape[0],), s, dtype=torch.long, device=u.device)
            ratio = torch.full((u.shape[0],), float(r), dtype=torch.float64, device=u.device)
            c_tgt = standardise(intervene(frac, sel, ratio), mean, std)
            change = gen.decode(z, c_tgt) - gen.decode(z, c_src)
            u_cf = u + (change if bound is None else change * bound[:, s : s + 1])
            logits = judge(u_cf)
            measured.append(hard_area_px(logits)[:, s])
            target.append(base_px[:, s] * float(r))
            region = dilate(torch.maximum(masks[:, s : s + 1], (logits[:, s : s + 1] > 0).float()), margin_px)
            leaks.append(leakage(u, u_cf, region))
        m, t = torch.cat(measured).cpu(), torch.cat(target).cpu()
        keep = t > 0
        out.append(InterventionMetrics(
            name, int(keep.sum()), mape(m[keep], t[keep]), mae(m[keep], t[keep]),
            mae(m[keep], t[keep]) * pixel_mm2, float(torch.cat(leaks).mean()),
        ))  # fmt: skip
    return out
