"""Optics: defocus (disc PSF) and veiling glare / media haze."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity
from c3_core.seeding import uniform
from c3_fundus.functional.optics import blur_per_sample, disc_kernel, veiling_glare
from c3_fundus.operators._base import FundusOperator


@dataclass(frozen=True)
class DefocusParams:
    radius_px: float  # radius of the geometric blur circle, pixels


class Defocus(FundusOperator[DefocusParams]):
    id = "fundus.defocus"
    version = "1"
    severity = Severity("blur_radius", "px (blur-circle radius)", 0.0, 2.0, (0.5, 1.0, 1.5, 2.0))
    params_type = DefocusParams
    summary = "defocus blur with a disc point-spread function"

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> DefocusParams:
        return DefocusParams(radius_px=severity)

    def _apply_linear(self, linear: Tensor, batch: Batch, params: Sequence[DefocusParams]) -> Tensor:
        kernels = [disc_kernel(p.radius_px, linear.device, linear.dtype) for p in params]
        return blur_per_sample(linear, kernels)


@dataclass(frozen=True)
class HazeParams:
    veil_fraction: float  # share of each pixel's light replaced by a uniform veil


class Haze(FundusOperator[HazeParams]):
    id = "fundus.haze"
    version = "1"
    severity = Severity("veil_fraction", "fraction of light scattered into a uniform veil", 0.0, 0.8, (0.1, 0.2, 0.4, 0.8))
    params_type = HazeParams
    summary = "veiling glare / media haze (lowers local contrast; the lesion check guards it)"

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> HazeParams:
        return HazeParams(veil_fraction=severity * uniform(generator, 0.85, 1.0))

    def _apply_linear(self, linear: Tensor, batch: Batch, params: Sequence[HazeParams]) -> Tensor:
        return veiling_glare(linear, torch.tensor([p.veil_fraction for p in params], device=linear.device))
