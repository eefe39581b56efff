"""Uneven illumination from a decentred light source: a bright halo or a dark hole."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity
from c3_core.seeding import uniform
from c3_fundus.functional.illumination import decentred_illumination
from c3_fundus.operators._base import FundusOperator


@dataclass(frozen=True)
class IlluminationParams:
    stops: float  # peak log2 gain of the bump relative to the mean (negative: dark hole)
    centre_row: float  # light-source centre, fraction of height
    centre_col: float  # fraction of width
    width_frac: float  # Gaussian std as a fraction of min(H, W)


class Illumination(FundusOperator[IlluminationParams]):
    id = "fundus.illumination"
    version = "1"
    severity = Severity("illumination_range", "stops (log2 gain, peak to mean)", 0.0, 1.5, (0.4, 0.8, 1.2, 1.5))
    params_type = IlluminationParams
    summary = "decentred light source: uneven illumination, halo or dark hole"

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> IlluminationParams:
        sign = 1.0 if uniform(generator, 0.0, 1.0) < 0.6 else -1.0
        return IlluminationParams(
            stops=sign * severity,
            centre_row=uniform(generator, 0.25, 0.75),
            centre_col=uniform(generator, 0.25, 0.75),
            width_frac=uniform(generator, 0.2, 0.4),
        )

    def _apply_linear(self, linear: Tensor, batch: Batch, params: Sequence[IlluminationParams]) -> Tensor:
        h, w = linear.shape[-2:]
        dev = linear.device
        centre = torch.tensor([[p.centre_row * (h - 1), p.centre_col * (w - 1)] for p in params], device=dev)
        width = torch.tensor([p.width_frac * min(h, w) for p in params], device=dev)
        stops = torch.tensor([p.stops for p in params], device=dev)
        return linear * decentred_illumination((h, w), centre, width, stops, dev)
