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
from c3_core.operator import Severity, SeveritySource
from c3_core.seeding import Draws, draw_seed, generator_from_seed
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
    severity = Severity(
        "snr", "S_ref / sigma (S_ref: mean WM signal, else foreground mean)", 100.0, 10.0, (50.0, 25.0, 15.0, 10.0),
        source=SeveritySource(
            quantity="SNR of the added thermal noise: reference-tissue signal / Gaussian sigma per channel",
            reference=(
                "BrainWeb FAQ, https://brainweb.bic.mni.mcgill.ca/faq.html (the same definition: percent noise = "
                "sigma of the Gaussian noise / signal of a reference tissue, white matter for T1)"
            ),
            derivation=(
                "SNR scales with voxel volume, sqrt(acquisition time) and roughly B0: from a research-grade 3 T "
                "reference, a 1.5 T scan (x1/2) with halved in-plane voxel area (x1/2) and half the averages "
                "(x1/sqrt2) loses a factor of about 6-10"
            ),
            extreme_rationale=(
                "SNR 10 (noise 10 % of WM) is a noisy but readable fast clinical scan: on the default 3 T FLAIR the "
                "lesion-WM difference is 0.74 of WM (Bloch model) = 7 sigma, and T1 grey-white contrast (0.23 of "
                "WM) still exceeds 2 sigma"
            ),
            narrowed="100 -> 8 narrowed to 100 -> 10: the derivation supports a loss of about 10x, not 12.5x",
        ),
    )
    params_type = NoiseParams
    summary = "Rician (1 coil) or non-central chi (L coils, root-sum-of-squares) noise at a target SNR"

    def __init__(self, coils: int = 1) -> None:
        if int(coils) < 1:
            raise ValueError(f"{self.id}: coils must be >= 1, got {coils}")
        self.coils = int(coils)

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> NoiseParams:
        return NoiseParams(severity, self.coils, draw_seed(generator))

    def _apply(self, batch: Batch, params: Sequence[NoiseParams]) -> Batch:
        ref = reference_signal(batch.image, batch.extras.get("tissue"))
        sigma = (ref / torch.tensor([p.snr for p in params], device=batch.device, dtype=ref.dtype)).tolist()
        out = torch.empty_like(batch.image, memory_format=torch.contiguous_format)  # each case's magnitude lands here
        for i, p in enumerate(params):
            noncentral_chi_magnitude(batch.image[i], sigma[i], p.coils, generator_from_seed(p.seed, batch.device), out=out[i])
        return batch.replace(image=out)
