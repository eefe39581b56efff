"""Thermal noise on magnitude images: Rician (one coil) or non-central chi (L coils)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity
from c3_core.seeding import draw_seed, generator_from_seed
from c3_mri.functional.noise import noncentral_chi_magnitude
from c3_mri.operators._base import MriOperator


def reference_signal(image: Tensor) -> Tensor:
    """Mean signal of the foreground (voxels above 10 % of the 99th percentile), per case (B,)."""
    flat = image.flatten(1)
    k = max(1, int(0.99 * flat.shape[1]))
    p99 = flat.kthvalue(k, dim=1).values
    fg = flat > 0.1 * p99.unsqueeze(1)
    return (flat * fg).sum(1) / fg.sum(1).clamp_min(1)


@dataclass(frozen=True)
class NoiseParams:
    snr: float  # foreground mean signal / per-channel noise std
    coils: int  # receive channels combined by root-sum-of-squares (1 = Rician)
    seed: int


class MagnitudeNoise(MriOperator[NoiseParams]):
    id = "mri.noise"
    version = "1"
    severity = Severity("snr", "foreground mean / noise std per channel", 200.0, 8.0, (60.0, 30.0, 15.0, 8.0))
    params_type = NoiseParams
    summary = "Rician (1 coil) or non-central chi (L coils, SoS) noise at a target SNR"

    def __init__(self, coils: int = 1) -> None:
        if coils < 1:
            raise ValueError(f"{self.id}: coils must be >= 1, got {coils}")
        self.coils = int(coils)

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> NoiseParams:
        return NoiseParams(severity, self.coils, draw_seed(generator))

    def _apply(self, batch: Batch, params: Sequence[NoiseParams]) -> Batch:
        ref = reference_signal(batch.image)
        out = torch.stack(
            [
                noncentral_chi_magnitude(batch.image[i], float(ref[i]) / p.snr, p.coils, generator_from_seed(p.seed, batch.device))
                for i, p in enumerate(params)
            ]
        )
        return batch.replace(image=out)
