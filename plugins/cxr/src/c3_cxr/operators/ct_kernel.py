"""CT reconstruction kernel: re-filtering the projections between soft and sharp."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity, SeveritySource
from c3_core.seeding import Draws, random_sign, uniform
from c3_cxr.functional.ct import as_slices, from_slices, hu_change, pixel_mm, project_hu
from c3_cxr.functional.tomography import kernel_window, ramp_response
from c3_cxr.operators._base import CTOperator


@dataclass(frozen=True)
class CTKernelParams:
    kernel_change: float  # −1 soft (Hann-apodised ramp) … 0 unchanged … +1 sharp (boosted ramp)
    boost: float  # high-frequency gain of the sharp kernel at Nyquist, 1 + boost


class CTKernel(CTOperator[CTKernelParams]):
    """Reconstruct with another kernel: slice + FBP_{ramp·W}(p) − FBP_{ramp}(p).

    W(f) = 1 + c (Hann(f) − 1) for c < 0 (soft-tissue kernel), W(f) = 1 + c · boost · (2f)² for
    c > 0 (bone / edge-enhancing kernel), f in cycles per pixel. The sign is drawn, |c| = severity.
    """

    id = "ct.kernel"
    version = "2"  # 2: Joseph's projector and a gathered back-projection (c3_cxr.functional.tomography)
    severity = Severity(
        "kernel_change", "fraction of the soft-to-sharp range (sign drawn)", 0.0, 1.0, (0.25, 0.5, 1.0),
        source=SeveritySource(
            quantity="reconstruction filter: ramp x W(f), W from a Hann window (soft) to 1 + (0.6-1.0)(2f)^2 (sharp)",
            derivation=(
                "The Hann-apodised ramp is the textbook soft-tissue FBP filter; edge-enhancing lung/bone kernels "
                "raise the response above the ramp at high frequency. At |c| = 1 the window runs from Hann "
                "(zero gain at Nyquist) to a 1.6-2x gain at Nyquist, the two ends of a vendor's kernel family"
            ),
            extreme_rationale=(
                "routine chest CT is reconstructed with both a soft (mediastinal) and a sharp (lung) kernel from "
                "the same raw data, so either end is an image a site produces for every exam"
            ),
        ),
    )
    params_type = CTKernelParams
    summary = "reconstruction kernel change between soft and sharp (ramp-filter windows)"

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> CTKernelParams:
        sign = random_sign(generator)
        return CTKernelParams(sign * severity, uniform(generator, 0.6, 1.0))

    def _apply(self, batch: Batch, params: Sequence[CTKernelParams]) -> Batch:
        slices, per_case = as_slices(batch.image)
        dev, dt = slices.device, slices.dtype
        px = pixel_mm(batch.spacing, per_case, dev, dt)
        sino, angles = project_hu(slices, px)
        _, freq = ramp_response(sino.shape[-1], dev, dt)
        change = torch.tensor([p.kernel_change for p in params], device=dev, dtype=dt).repeat_interleave(per_case)
        boost = torch.tensor([p.boost for p in params], device=dev, dtype=dt).repeat_interleave(per_case)
        # the window of a sharp kernel is linear in c·boost, so fold boost into the change
        window = kernel_window(freq, torch.where(change > 0, change * boost, change)) - 1.0
        h, w = slices.shape[-2:]
        out = slices + hu_change(sino, angles, px, h, w, window)
        return batch.replace(image=from_slices(out, batch.image).to(batch.image.dtype))
