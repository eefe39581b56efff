"""Detector pixel pitch: acquisition on a coarser grid, displayed on the original one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity, SeveritySource
from c3_core.seeding import Draws
from c3_cxr.functional.filters import change_pixel_pitch
from c3_cxr.operators._base import RadiographOperator


@dataclass(frozen=True)
class ResolutionParams:
    pitch_ratio: float  # new pixel pitch / native pixel pitch (≥ 1), square aperture of that width


class Resolution(RadiographOperator[ResolutionParams]):
    """Down-sampling by a detector of pitch r × native (aperture MTF sinc(r f) / sinc(f)), then
    bilinear up-sampling back to the native grid. Values stay line integrals (a local mean)."""

    id = "cxr.resolution"
    version = "3"  # 3: up to 128 px, aperture + resampling folded into one matrix per axis (same map, float rounding); 2: gathers + lerp
    severity = Severity(
        "pitch_ratio", "× native pixel pitch", 1.0, 2.0, (1.25, 1.5, 2.0),
        source=SeveritySource(
            quantity="detector pixel pitch (square aperture) relative to the native pitch",
            derivation=(
                "Flat-panel and CR chest detectors sample at about 100-200 um pitch (vendor specifications), so the "
                "ratio between the finest and coarsest systems in use is about 2; 2x2 binning doubles the pitch of "
                "one system. The aperture MTF sinc(r f) follows from the pitch alone"
            ),
            extreme_rationale="a 200 um detector is a current clinical product, so halving the sampling of 100 um is real",
        ),
    )
    params_type = ResolutionParams
    summary = "pixel-pitch change: coarser detector sampling, shown on the original grid"

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> ResolutionParams:
        return ResolutionParams(severity)

    def _apply(self, batch: Batch, params: Sequence[ResolutionParams]) -> Batch:
        ratio = torch.tensor([p.pitch_ratio for p in params], device=batch.device, dtype=batch.image.dtype)
        return batch.replace(image=change_pixel_pitch(batch.image, ratio).clamp_min_(0))  # a fresh buffer: clamp in place
