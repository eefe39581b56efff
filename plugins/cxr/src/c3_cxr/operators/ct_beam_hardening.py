"""CT beam hardening: polychromatic line integrals → cupping and streaks after FBP."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity, SeveritySource
from c3_core.seeding import Draws
from c3_cxr.functional.ct import as_slices, beam_hardening_change, from_slices, hu_change, pixel_mm, project_hu
from c3_cxr.operators._base import CTOperator


@dataclass(frozen=True)
class CTBeamHardeningParams:
    beta: float  # residual quadratic coefficient of p_poly = p − β p² after water precorrection


class CTBeamHardening(CTOperator[CTBeamHardeningParams]):
    """slice + FBP(−β p²): long paths attenuate relatively less, so the centre of large objects
    reads low (cupping) and dark bands join dense structures. Shifts are in HU."""

    id = "ct.beam_hardening"
    version = "2"  # 2: Joseph's projector and a gathered back-projection (c3_cxr.functional.tomography)
    severity = Severity(
        "beta", "1 / line-integral unit (residual after water correction)", 0.0, 0.014, (0.005, 0.01, 0.014),
        source=SeveritySource(
            quantity="residual quadratic coefficient beta of p_poly = p - beta p^2 left after water precorrection",
            reference="SpekPy x-ray spectra (https://pypi.org/project/spekpy, v2.5.4) with its water attenuation data",
            derivation=(
                "beta = Var_S(mu) / (2 E_S(mu)^2) over the detected spectrum (cumulant expansion). For water the "
                "whole, uncorrected non-linearity of a 120 kVp beam with 3 mm Al + 0.1 mm Cu is 0.014 (SpekPy fit "
                "over 0-20 cm water, p <= 4); a water precorrection removes most of it, the residual comes from bone "
                "and spectrum mismatch and cannot exceed it"
            ),
            extreme_rationale=(
                "0.014 is the non-linearity of a filtered 120 kVp beam with no water correction at all (a "
                "miscalibrated or disabled precorrection): visible cupping, still a reconstructable scan"
            ),
            narrowed=(
                "0 -> 0.03 narrowed to 0 -> 0.014: 0.03 exceeds even the uncorrected water non-linearity of a "
                "120 kVp beam (0.014-0.025), so no residual after water correction reaches it"
            ),
        ),
    )
    params_type = CTBeamHardeningParams
    summary = "beam hardening: cupping and HU shifts from polychromatic attenuation"

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> CTBeamHardeningParams:
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
