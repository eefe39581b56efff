"""CT beam hardening: polychromatic line integrals → cupping and streaks after FBP."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity
from c3_cxr.functional.ct import as_slices, beam_hardening_change, from_slices, hu_change, pixel_mm, project_hu
from c3_cxr.operators._base import CTOperator


@dataclass(frozen=True)
class CTBeamHardeningParams:
    beta: float  # residual quadratic coefficient of p_poly = p − β p² after water precorrection


class CTBeamHardening(CTOperator[CTBeamHardeningParams]):
    """slice + FBP(−β p²): long paths attenuate relatively less, so the centre of large objects
    reads low (cupping) and dark bands join dense structures. Shifts are in HU."""

    id = "ct.beam_hardening"
    version = "1"
    severity = Severity("beta", "1 / line-integral unit (residual after water correction)", 0.0, 0.03, (0.01, 0.02, 0.03))
    params_type = CTBeamHardeningParams
    summary = "beam hardening: cupping and HU shifts from polychromatic attenuation"

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> CTBeamHardeningParams:
        return CTBeamHardeningParams(severity)

    def _apply(self, batch: Batch, params: Sequence[CTBeamHardeningParams]) -> Batch:
        slices, per_case = as_slices(batch.image)
        dev, dt = slices.device, slices.dtype
        px = pixel_mm(batch.spacing, per_case, dev, dt)
        sino, angles = project_hu(slices, px)
        beta = torch.tensor([p.beta for p in params], device=dev, dtype=dt).repeat_interleave(per_case).view(-1, 1, 1, 1)
        h, w = slices.shape[-2:]
        out = slices + hu_change(beam_hardening_change(sino, beta), angles, px, h, w)
        return batch.replace(image=from_slices(out, batch.image).to(batch.image.dtype))
