"""B0 off-resonance distortion along the phase-encode axis (spatial: masks move with it)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity
from c3_mri.functional.bias_field import log_bias_field, total_order_mask
from c3_mri.functional.distortion import displacement_px, jacobian_along_axis, warp_along_axis
from c3_mri.operators._base import MriOperator


@dataclass(frozen=True)
class B0Params:
    peak_offresonance_hz: float  # max |Δf| of the smooth off-resonance map
    bandwidth_hz_per_px: float  # readout/phase-encode bandwidth per pixel
    phase_axis: int  # spatial axis of phase encoding
    shape_coefficients: tuple[float, ...]  # order-2 Legendre shape of the map (normalised later)


class B0Distortion(MriOperator[B0Params]):
    """Δ(p) = Δf(p) / BW_px pixels along phase encode; intensity × (1 + ∂Δ/∂p) (pile-up)."""

    id = "mri.b0_distortion"
    version = "1"
    spatial = True
    severity = Severity("peak_offresonance", "Hz", 0.0, 200.0, (50.0, 100.0, 150.0, 200.0))
    params_type = B0Params
    summary = "off-resonance displacement along phase-encode with Jacobian"

    def __init__(self, bandwidth_hz_per_px: float = 100.0, phase_axis: int = 1) -> None:
        if bandwidth_hz_per_px <= 0:
            raise ValueError(f"{self.id}: bandwidth_hz_per_px must be > 0")
        self.bandwidth, self.phase_axis = float(bandwidth_hz_per_px), int(phase_axis)

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> B0Params:
        d = len(info.spatial_shape)
        if not 0 <= self.phase_axis < d:
            raise ValueError(f"{self.id}: phase_axis {self.phase_axis} does not exist in a {d}-D image")
        mask = total_order_mask(2, d)
        u = (torch.rand(mask.numel(), generator=generator, dtype=torch.float64) * 2 - 1) * mask.double()
        return B0Params(severity, self.bandwidth, self.phase_axis, tuple(float(v) for v in u))

    def _apply(self, batch: Batch, params: Sequence[B0Params]) -> Batch:
        axis = params[0].phase_axis
        coeff = torch.tensor([p.shape_coefficients for p in params], device=batch.device, dtype=torch.float32)
        shape = log_bias_field(batch.spatial_shape, coeff, 2)
        peak = shape.flatten(1).abs().amax(1).clamp_min(1e-6).view(-1, *[1] * batch.spatial_dims)
        hz = shape / peak * torch.tensor([p.peak_offresonance_hz for p in params], device=batch.device).view_as(peak)
        shift = displacement_px(hz, params[0].bandwidth_hz_per_px)
        image = warp_along_axis(batch.image, shift, axis) * jacobian_along_axis(shift, axis).unsqueeze(1)
        mask = None if batch.mask is None else (warp_along_axis(batch.mask.float(), shift, axis) >= 0.5).to(batch.mask.dtype)
        extras = {k: warp_along_axis(v.float(), shift, axis).to(v.dtype) for k, v in batch.extras.items()}
        return batch.replace(image=image, mask=mask, extras=extras)
