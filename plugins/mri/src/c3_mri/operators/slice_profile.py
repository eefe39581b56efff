"""Slice-profile broadening: thicker or softer slices blur along the slice axis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity
from c3_mri.functional.slice_profile import convolve_axis, gaussian_profile
from c3_mri.operators._base import MriOperator


@dataclass(frozen=True)
class SliceProfileParams:
    fwhm_mm: float  # full width at half maximum of the added slice profile
    slice_axis: int


class SliceProfile(MriOperator[SliceProfileParams]):
    """Convolution with a Gaussian slice profile of the target FWHM (mm, converted with the
    case's spacing). The label mask stays the ground truth (partial volume blurs only the image)."""

    id = "mri.slice_profile"
    version = "1"
    spatial_dims = (3,)
    severity = Severity("fwhm", "mm", 0.0, 5.0, (1.5, 2.5, 3.5, 5.0))
    params_type = SliceProfileParams
    summary = "slice-profile broadening along the slice axis (FWHM in mm)"

    def __init__(self, slice_axis: int = 2) -> None:
        self.slice_axis = int(slice_axis)

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> SliceProfileParams:
        return SliceProfileParams(severity, self.slice_axis)

    def _apply(self, batch: Batch, params: Sequence[SliceProfileParams]) -> Batch:
        out = []
        for i, p in enumerate(params):
            fwhm_px = p.fwhm_mm / batch.spacing[i][p.slice_axis]
            x = batch.image[i : i + 1]
            out.append(x if fwhm_px <= 0 else convolve_axis(x, gaussian_profile(fwhm_px, x.device, x.dtype), p.slice_axis))
        return batch.replace(image=torch.cat(out, 0))
