"""Camera response: exposure, white balance (colour temperature) and tone curve."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity, SeveritySource
from c3_core.seeding import Draws, uniform
from c3_fundus.colour import white_balance_gains
from c3_fundus.functional.srgb import power_law_
from c3_fundus.operators._base import FundusOperator, per_sample, scale_

MAX_EXPOSURE_STOPS = 0.7
MAX_MIRED = 60.0
MAX_LOG2_GAMMA = 0.32


@dataclass(frozen=True)
class CameraResponseParams:
    """A different camera's response to the same light."""

    exposure_stops: float  # global exposure change, log2 of the linear gain
    mired_shift: float  # colour-temperature change in mired (1e6 / K); > 0 is warmer
    tone_gamma: float  # exponent of the response curve on linear light (1 = unchanged)


class CameraResponse(FundusOperator[CameraResponseParams]):
    """y = sRGB((2^stops · WB(mired) · x).clip(0, 1) ^ gamma), x linear light.

    Severity: fraction of the admissible camera-to-camera range (exposure ±0.7 stop, colour
    temperature ±60 mired, gamma ×2^±0.32), 0 → 1.
    """

    id = "fundus.camera_response"
    version = "1"
    severity = Severity(
        "response_change", "fraction of the admissible camera-to-camera range", 0.0, 1.0, (0.25, 0.5, 0.75, 1.0),
        source=SeveritySource(
            quantity="exposure (±0.7 stop), white balance (±60 mired) and tone-curve exponent (×2^±0.32) at s = 1",
            derivation=(
                "0.7 stop is a linear gain of 0.62-1.62, the spread of flash energy / auto-exposure between "
                "cameras and pupils. ±60 mired about 5500 K (182 mired) spans 4130-8200 K, from warm-white LED to "
                "bluish xenon-flash renderings under different white-balance presets. Gamma ×2^±0.32 (0.8-1.25) "
                "is the difference between vendors' tone curves on the same raw exposure"
            ),
            extreme_rationale=(
                "different cameras and flash units image the same retina this differently; the lesion-visibility "
                "check rejects any draw that hides a lesion"
            ),
        ),
    )
    params_type = CameraResponseParams
    summary = "exposure (±0.7 stop), white balance (±60 mired) and tone-curve (gamma ×2^±0.32) change"

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> CameraResponseParams:
        return CameraResponseParams(
            exposure_stops=severity * uniform(generator, -MAX_EXPOSURE_STOPS, MAX_EXPOSURE_STOPS),
            mired_shift=severity * uniform(generator, -MAX_MIRED, MAX_MIRED),
            tone_gamma=2.0 ** (severity * uniform(generator, -MAX_LOG2_GAMMA, MAX_LOG2_GAMMA)),
        )

    def _apply_linear(self, linear: Tensor, batch: Batch, params: Sequence[CameraResponseParams]) -> Tensor:
        dev = linear.device
        exposure = torch.exp2(per_sample(params, "exposure_stops", dev)).view(-1, 1, 1, 1)
        gains = white_balance_gains(per_sample(params, "mired_shift", dev)).view(-1, 3, 1, 1)
        gamma = per_sample(params, "tone_gamma", dev).view(-1, 1, 1, 1)
        return power_law_(scale_(linear, exposure * gains), gamma)  # (.clip(0, 1)) ** gamma
