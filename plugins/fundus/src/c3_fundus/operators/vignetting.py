"""Natural vignetting: cos⁴ fall-off of illumination away from the optical axis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity
from c3_core.seeding import uniform
from c3_fundus.functional.illumination import cos4_vignetting, focal_for_edge_falloff
from c3_fundus.operators._base import FundusOperator


@dataclass(frozen=True)
class VignettingParams:
    edge_falloff: float  # fraction of centre illumination lost at the field-of-view radius
    centre_row: float  # optical axis, fraction of image height
    centre_col: float  # optical axis, fraction of image width
    fov_radius_frac: float  # FOV radius as a fraction of min(H, W) / 2


class Vignetting(FundusOperator[VignettingParams]):
    id = "fundus.vignetting"
    version = "1"
    severity = Severity("edge_falloff", "fraction of centre illumination lost at the FOV edge", 0.0, 0.6, (0.15, 0.3, 0.45, 0.6))
    params_type = VignettingParams
    summary = "cos^4 radial fall-off about a decentred optical axis"

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> VignettingParams:
        return VignettingParams(
            edge_falloff=severity,
            centre_row=0.5 + uniform(generator, -0.05, 0.05),
            centre_col=0.5 + uniform(generator, -0.05, 0.05),
            fov_radius_frac=0.92,
        )

    def _apply_linear(self, linear: Tensor, batch: Batch, params: Sequence[VignettingParams]) -> Tensor:
        h, w = linear.shape[-2:]
        dev = linear.device
        centre = torch.tensor([[p.centre_row * (h - 1), p.centre_col * (w - 1)] for p in params], device=dev)
        falloff = torch.tensor([p.edge_falloff for p in params], device=dev)
        radius = torch.tensor([p.fov_radius_frac * min(h, w) / 2 for p in params], device=dev)
        focal = torch.stack([focal_for_edge_falloff(float(r), f) for r, f in zip(radius, falloff)])
        return linear * cos4_vignetting((h, w), centre, focal, dev)
