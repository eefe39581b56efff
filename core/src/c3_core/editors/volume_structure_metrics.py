"""Evaluation of a 3-D structure-volume generator's interventions: MAPE and MAE of the volume
(mL, from the voxel spacing) measured by a frozen *judge* segmentor, and leakage.

For every case and ratio ``r`` the edit is the editor's: ``c`` from the guiding segmentor's hard
volume fraction of the original, ``c'`` with the structure's entry times ``r``, the change
``decode(z, c') - decode(z, c)`` multiplied by the region blend weight (``region_vox``; ``None``:
the raw change). Target: ``r`` times the judge's volume of the original; measured: the judge's
volume of the counterfactual. Leakage: the share of ``sum |u' - u|`` outside the union of the
original's structure mask and the judge's mask of the counterfactual, dilated by ``margin`` voxels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from c3_core.editors.volume_structure_kernels import dilate, hard_voxels, region_weight


def leakage(original: Tensor, edited: Tensor, region: Tensor) -> Tensor:
    """Share of ``sum |x' - x|`` outside ``region (B, 1, *spatial)`` per case ``(B,)`` (0 if unchanged)."""
    if region.shape[0] != original.shape[0] or region.shape[2:] != original.shape[2:]:
        raise ValueError(f"leakage: region {tuple(region.shape)} does not match images {tuple(original.shape)}")
    diff = (edited.double() - original.double()).abs().sum(1, keepdim=True)
    total = diff.flatten(1).sum(1)
    outside = (diff * (1.0 - region.double())).flatten(1).sum(1)
    return torch.where(total > 0, outside / total.clamp_min(1e-300), torch.zeros_like(total))


def mape(measured: Tensor, target: Tensor) -> float:
    """``100 * mean |m - t| / t`` (percent); every target must be > 0."""
    if measured.shape != target.shape or measured.numel() == 0:
        raise ValueError(f"mape: measured {tuple(measured.shape)} and target {tuple(target.shape)} must match and be non-empty")
    if bool((target <= 0).any()):
        raise ValueError("mape: every target must be > 0")
    return float(100.0 * ((measured.double() - target.double()).abs() / target.double()).mean())


def mae(measured: Tensor, target: Tensor) -> float:
    """``mean |m - t|`` in the inputs' unit."""
    if measured.shape != target.shape or measured.numel() == 0:
        raise ValueError(f"mae: measured {tuple(measured.shape)} and target {tuple(target.shape)} must match and be non-empty")
    return float((measured.double() - target.double()).abs().mean())


@dataclass(frozen=True)
class VolumeMetrics:
    structure: str
    n: int
    mape_percent: float
    mae_ml: float
    leakage: float

    def as_row(self) -> dict[str, Any]:
        return dict(self.__dict__)


@torch.no_grad()
def evaluate_volume_interventions(
    gen: nn.Module,
    guide: Callable[[Tensor], Tensor],
    judge: Callable[[Tensor], Tensor],
    u: Tensor,
    masks: Tensor,
    mean: Tensor,
    std: Tensor,
    *,
    structure: int,
    name: str,
    ratios: Sequence[float],
    voxel_ml: float,
    margin: int = 2,
    region_vox: int | None = 1,
    chunk: int = 4,
) -> VolumeMetrics:
    """Edit every case of ``u (N, C, *grid)`` with every ratio (see the module docstring); cases
    whose judge volume of the original is 0 are left out of MAPE / MAE (counted in ``n`` otherwise)."""
    measured, target, leaks = [], [], []
    for lo in range(0, u.shape[0], chunk):
        x, m = u[lo : lo + chunk], masks[lo : lo + chunk].float()
        g_logits, j_logits = guide(x), judge(x)
        frac = hard_voxels(g_logits).to(x.dtype) / float(g_logits[0, 0].numel())
        base = hard_voxels(j_logits)[:, structure]
        z = gen.abduct(x)
        c_src = (frac - mean) / std
        recon = gen.decode(z, c_src)
        weight = None if region_vox is None else region_weight(g_logits[:, structure : structure + 1] > 0, region_vox)
        for r in ratios:
            scale = torch.ones_like(frac)
            scale[:, structure] = float(r)
            change = gen.decode(z, (frac * scale - mean) / std) - recon
            x_cf = x + (change if weight is None else change * weight)
            cf_logits = judge(x_cf)
            measured.append(hard_voxels(cf_logits)[:, structure])
            target.append(base * float(r))
            region = dilate(torch.maximum(m[:, structure : structure + 1], (cf_logits[:, structure : structure + 1] > 0).float()), margin)
            leaks.append(leakage(x, x_cf, region))
    mv, tv = torch.cat(measured).cpu() * voxel_ml, torch.cat(target).cpu() * voxel_ml
    keep = tv > 0
    if not bool(keep.any()):  # the judge segments nothing: no volume to compare
        return VolumeMetrics(name, 0, float("nan"), float("nan"), float(torch.cat(leaks).mean()))
    return VolumeMetrics(name, int(keep.sum()), mape(mv[keep], tv[keep]), mae(mv[keep], tv[keep]), float(torch.cat(leaks).mean()))
