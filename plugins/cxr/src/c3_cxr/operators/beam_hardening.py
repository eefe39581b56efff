"""Beam hardening: thick parts attenuate relatively less as the spectrum hardens."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity
from c3_cxr.operators._base import RadiographOperator


@dataclass(frozen=True)
class BeamHardeningParams:
    beta: float  # quadratic coefficient of μ' = μ − β μ² (per unit line integral)


class BeamHardening(RadiographOperator[BeamHardeningParams]):
    id = "cxr.beam_hardening"
    version = "1"
    severity = Severity("beta", "1 / line-integral unit", 0.0, 0.06, (0.015, 0.03, 0.045, 0.06))
    params_type = BeamHardeningParams
    summary = "mild non-linear attenuation (beam hardening)"

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> BeamHardeningParams:
        return BeamHardeningParams(severity)

    def _apply(self, batch: Batch, params: Sequence[BeamHardeningParams]) -> Batch:
        beta = torch.tensor([p.beta for p in params], device=batch.device, dtype=batch.image.dtype).view(-1, 1, 1, 1)
        mu = batch.image.clamp_min(0)
        mu_max = 1.0 / (2.0 * beta.clamp_min(1e-9))  # keep the map monotone
        return batch.replace(image=torch.where(beta > 0, mu - beta * torch.minimum(mu, mu_max) ** 2, mu))
