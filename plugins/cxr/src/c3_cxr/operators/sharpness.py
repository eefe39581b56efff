"""Detector MTF / vendor edge-enhancement change between soft and sharp."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity
from c3_core.seeding import uniform
from c3_cxr.functional.filters import gaussian_blur_batched
from c3_cxr.operators._base import RadiographOperator


@dataclass(frozen=True)
class SharpnessParams:
    change: float  # < 0 softer (Gaussian MTF), > 0 sharper (unsharp masking); |change| <= 1
    sigma_mm: float  # width of the blur / the unsharp-mask low-pass


class Sharpness(RadiographOperator[SharpnessParams]):
    """Softer: convolution with a Gaussian of σ = |c| · σ_mm. Sharper: x + c · (x − blur_σ(x))."""

    id = "cxr.sharpness"
    version = "2"
    severity = Severity("sharpness_change", "fraction of the vendor range (sign drawn)", 0.0, 1.0, (0.25, 0.5, 0.75, 1.0))
    params_type = SharpnessParams
    summary = "detector MTF / vendor processing between soft and sharp"

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> SharpnessParams:
        sign = 1.0 if uniform(generator, 0, 1) < 0.5 else -1.0
        return SharpnessParams(sign * severity, uniform(generator, 1.5, 3.0))

    def _apply(self, batch: Batch, params: Sequence[SharpnessParams]) -> Batch:
        dev, dt = batch.device, batch.image.dtype
        change = torch.tensor([p.change for p in params], device=dev, dtype=dt)
        sigma_px = torch.tensor([p.sigma_mm / s[-1] for p, s in zip(params, batch.spacing, strict=True)], device=dev, dtype=dt)
        x = batch.image
        soft_sigma = torch.where(change < 0, change.abs() * sigma_px, sigma_px)  # blur width used by each case
        low = gaussian_blur_batched(x, soft_sigma)
        # per case: softer -> low; sharper -> x + c(x − low) = (1 + c)x − c·low; c = 0 -> x
        c = change.view(-1, 1, 1, 1)
        w_low = torch.where(c < 0, torch.ones_like(c), -c.clamp_min(0))
        w_x = torch.where(c < 0, torch.zeros_like(c), 1 + c.clamp_min(0))
        out = (low * w_low).add_(x * w_x)
        return batch.replace(image=out.clamp_min_(0).to(dt))
