"""Ultrasound acquisition operators (envelope domain, 2-D, 1 channel)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from c3_core.batch import Batch, CaseInfo
from c3_core.domains import IntensityDomain
from c3_core.operator import Operator, P, Severity
from c3_core.seeding import draw_seed, generator_from_seed, uniform
from c3_ultrasound.functional import depth_gain_db, k_distributed_speckle, rayleigh_speckle


class UltrasoundOperator(Operator[P]):
    modality: ClassVar[str] = "us"
    domain: ClassVar[IntensityDomain] = IntensityDomain.ENVELOPE
    spatial_dims: ClassVar[tuple[int, ...]] = (2,)
    channels: ClassVar[tuple[int, ...] | None] = (1,)


@dataclass(frozen=True)
class SpeckleParams:
    scatterers_per_cell: float  # K-distribution shape α (>= 50 treated as Rayleigh)
    axial_resolution_mm: float  # PSF std along depth
    lateral_resolution_mm: float  # PSF std across the beam
    seed: int


class Speckle(UltrasoundOperator[SpeckleParams]):
    """Multiplies the envelope by a new speckle realisation; fewer scatterers per resolution cell
    give heavier-tailed (K-distributed) speckle."""

    id = "us.speckle"
    version = "1"
    severity = Severity("scatterers_per_cell", "K-distribution shape α (scatterers per resolution cell)", 50.0, 2.0, (20.0, 8.0, 4.0, 2.0))
    params_type = SpeckleParams
    summary = "Rayleigh / K-distributed multiplicative speckle shaped by the PSF"

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> SpeckleParams:
        return SpeckleParams(severity, uniform(generator, 0.15, 0.3), uniform(generator, 0.3, 0.6), draw_seed(generator))

    def _apply(self, batch: Batch, params: Sequence[SpeckleParams]) -> Batch:
        out = []
        for i, p in enumerate(params):
            g = generator_from_seed(p.seed, batch.device)
            sa, sl = p.axial_resolution_mm / batch.spacing[i][0], p.lateral_resolution_mm / batch.spacing[i][1]
            shape = tuple(batch.image.shape[1:])
            if p.scatterers_per_cell >= 50.0:
                s = rayleigh_speckle(shape, g, sa, sl, batch.device)
            else:
                s = k_distributed_speckle(shape, p.scatterers_per_cell, g, sa, sl, batch.device)
            out.append(batch.image[i] * s / s.pow(2).mean().sqrt())
        return batch.replace(image=torch.stack(out).to(batch.image.dtype))


@dataclass(frozen=True)
class AttenuationParams:
    tgc_error_db_per_cm: float  # TGC slope minus the true round-trip attenuation slope
    frequency_mhz: float
    attenuation_db_cm_mhz: float


class AttenuationTGC(UltrasoundOperator[AttenuationParams]):
    """Tissue attenuation 2·α·f·z (dB) compensated by a TGC whose slope is off by the severity."""

    id = "us.attenuation_tgc"
    version = "1"
    severity = Severity("tgc_slope_error", "dB/cm", 0.0, 3.0, (0.75, 1.5, 2.25, 3.0))
    params_type = AttenuationParams
    summary = "depth attenuation with a mis-set time-gain compensation"

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> AttenuationParams:
        sign = 1.0 if uniform(generator, 0, 1) < 0.5 else -1.0
        return AttenuationParams(sign * severity, uniform(generator, 3.0, 7.0), 0.5)

    def _apply(self, batch: Batch, params: Sequence[AttenuationParams]) -> Batch:
        rows = batch.image.shape[2]
        gains = []
        for i, p in enumerate(params):
            tgc = 2 * p.attenuation_db_cm_mhz * p.frequency_mhz + p.tgc_error_db_per_cm
            db = depth_gain_db(rows, batch.spacing[i][0], p.attenuation_db_cm_mhz, p.frequency_mhz, tgc, batch.device)
            gains.append(10 ** (db / 20))
        return batch.replace(image=batch.image * torch.stack(gains).view(batch.size, 1, rows, 1))


@dataclass(frozen=True)
class GainParams:
    gain_db: float


class Gain(UltrasoundOperator[GainParams]):
    id = "us.gain"
    version = "1"
    severity = Severity("gain", "dB", 0.0, 9.0, (3.0, 6.0, 9.0))
    params_type = GainParams
    summary = "overall receive gain change in dB"

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> GainParams:
        return GainParams(severity if uniform(generator, 0, 1) < 0.5 else -severity)

    def _apply(self, batch: Batch, params: Sequence[GainParams]) -> Batch:
        g = torch.tensor([10 ** (p.gain_db / 20) for p in params], device=batch.device, dtype=batch.image.dtype)
        return batch.replace(image=batch.image * g.view(-1, 1, 1, 1))
