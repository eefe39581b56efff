"""Camera response: exposure, colour temperature (white balance) and tone-curve changes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity
from c3_core.seeding import uniform
from c3_fundus.colour import white_balance_gains
from c3_fundus.operators._base import FundusOperator


@dataclass(frozen=True)
class CameraResponseParams:
    exposure_stops: float  # global exposure change, log2
    mired_shift: float  # colour-temperature change in mired (1e6 / K); > 0 is warmer
    tone_gamma: float  # exponent of the response curve applied to linear light (1 = unchanged)


class CameraResponse(FundusOperator[CameraResponseParams]):
    id = "fundus.camera_response"
    version = "1"
    severity = Severity("response_change", "fraction of the admissible camera-to-camera range", 0.0, 1.0, (0.25, 0.5, 0.75, 1.0))
    params_type = CameraResponseParams
    summary = "exposure (±0.7 stop), colour temperature (±60 mired) and tone-curve (gamma ±25 %) change"

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> CameraResponseParams:
        return CameraResponseParams(
            exposure_stops=severity * uniform(generator, -0.7, 0.7),
            mired_shift=severity * uniform(generator, -60.0, 60.0),
            tone_gamma=2.0 ** (severity * uniform(generator, -0.32, 0.32)),
        )

    def _apply_linear(self, linear: Tensor, batch: Batch, params: Sequence[CameraResponseParams]) -> Tensor:
        dev = linear.device
        exposure = torch.exp2(torch.tensor([p.exposure_stops for p in params], device=dev)).view(-1, 1, 1, 1)
        gains = white_balance_gains(torch.tensor([p.mired_shift for p in params])).to(dev).view(-1, 3, 1, 1)
        gamma = torch.tensor([p.tone_gamma for p in params], device=dev).view(-1, 1, 1, 1)
        return (linear * exposure * gains).clamp(0.0, 1.0) ** gamma
