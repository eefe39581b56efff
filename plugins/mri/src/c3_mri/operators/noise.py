"""Thermal noise on magnitude images: Rician (one coil) or non-central chi (L coils, SoS).

Severity is the SNR of the *added* noise, S_ref / σ, with S_ref the mean white-matter signal
(tissue map present) or the foreground mean (see :mod:`c3_mri.functional.noise`) and σ the
Gaussian std per real channel per coil. Noise already in the image adds in quadrature.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity
from c3_core.seeding import draw_seed, generator_from_seed
from c3_mri.functional.noise import noncentral_chi_magnitude, reference_signal
from c3_mri.operators._base import MriOperator


@dataclass(frozen=True)
class NoiseParams:
    snr: float  # S_ref / sigma (per real channel per coil)
    coils: int  # receive channels combined by root-sum-of-squares (1 = Rician)
    seed: int  # seed of this case's noise realisation


class MagnitudeNoise(MriOperator[NoiseParams]):
    id = "mri.noise"
    version = "2"
    severity = Severity("snr", "S_ref / sigma (S_ref: mean WM signal, else foreground mean)", 100.0, 8.0, (50.0, 25.0, 15.0, 8.0))
    params_type = NoiseParams
    summary = "Rician (1 coil) or non-central chi (L coils, root-sum-of-squares) noise at a target SNR"

    def __init__(self, coils: int = 1) -> None:
        if int(coils) < 1:
            raise ValueError(f"{self.id}: coils must be >= 1, got {coils}")
        self.coils = int(coils)

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> NoiseParams:
        return NoiseParams(severity, self.coils, draw_seed(generator))

    def _apply(self, batch: Batch, params: Sequence[NoiseParams]) -> Batch:
        ref = reference_signal(batch.image, batch.extras.get("tissue"))
        sigma = ref / torch.tensor([p.snr for p in params], device=batch.device, dtype=ref.dtype)
        out = torch.stack(
            [
                noncentral_chi_magnitude(batch.image[i], sigma[i], p.coils, generator_from_seed(p.seed, batch.device))
                for i, p in enumerate(params)
            ]
        )
        return batch.replace(image=out.to(batch.image.dtype))
