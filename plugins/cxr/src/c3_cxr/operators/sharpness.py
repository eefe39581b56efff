"""Detector MTF / vendor edge-enhancement change between soft and sharp."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity
from c3_core.seeding import uniform
from c3_cxr.functional.filters import gaussian_blur
from c3_cxr.operators._base import RadiographOperator


@dataclass(frozen=True)
class SharpnessParams:
    change: float  # < 0 softer (Gaussian MTF), > 0 sharper (unsharp masking); |change| <= 1
    sigma_mm: float  # width of the blur / the unsharp-mask low-pass


class Sharpness(RadiographOperator[SharpnessParams]):
    """Softer: convolution with a Gaussian of σ = |c| · σ_mm. Sharper: x + c · (x − blur(x))."""

    id = "cxr.sharpness"
    version = "1"
    severity = Severity("sharpness_change", "fraction of the vendor range (sign drawn)", 0.0, 1.0, (0.25, 0.5, 0.75, 1.0))
    params_type = SharpnessParams
    summary = "detector MTF / vendor processing between soft and sharp"

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> SharpnessParams:
        sign = 1.0 if uniform(generator, 0, 1) < 0.5 else -1.0
        return SharpnessParams(sign * severity, uniform(generator, 1.5, 3.0))

    def _apply(self, batch: Batch, params: Sequence[SharpnessParams]) -> Batch:
        out = []
        for i, p in enumerate(params):
            x = batch.image[i : i + 1]
            sigma_px = p.sigma_mm / batch.spacing[i][0]
            if p.change < 0:
                out.append(gaussian_blur(x, abs(p.change) * sigma_px))
            elif p.change > 0:
                out.append(x + p.change * (x - gaussian_blur(x, sigma_px)))
            else:
                out.append(x)
        return batch.replace(image=torch.cat(out).clamp_min(0).to(batch.image.dtype))
