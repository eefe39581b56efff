"""Dose reduction: quantum (Poisson) and electronic (Gaussian) noise in the photon-count domain."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity
from c3_core.seeding import draw_seed, generator_from_seed
from c3_cxr.domains import from_counts, to_counts
from c3_cxr.operators._base import RadiographOperator


@dataclass(frozen=True)
class DoseParams:
    dose_fraction: float  # of the reference exposure
    i0_reference: float  # unattenuated photons per pixel at the reference exposure
    electronic_sigma: float  # detector electronic noise, photons (std)
    seed: int


class Dose(RadiographOperator[DoseParams]):
    """counts ~ Poisson(f · I0 · e^(−μ)) + N(0, σ_e²); μ' = −ln(counts / (f · I0))."""

    id = "cxr.dose"
    version = "1"
    severity = Severity("dose_fraction", "fraction of the reference exposure", 1.0, 0.05, (0.5, 0.25, 0.1, 0.05))
    params_type = DoseParams
    summary = "lower dose: Poisson + electronic noise in the photon-count domain"

    def __init__(self, i0_reference: float = 20000.0, electronic_sigma: float = 3.0) -> None:
        if i0_reference <= 0 or electronic_sigma < 0:
            raise ValueError(f"{self.id}: i0_reference must be > 0 and electronic_sigma >= 0")
        self.i0, self.sigma_e = float(i0_reference), float(electronic_sigma)

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> DoseParams:
        return DoseParams(severity, self.i0, self.sigma_e, draw_seed(generator))

    def _apply(self, batch: Batch, params: Sequence[DoseParams]) -> Batch:
        view = (-1,) + (1,) * (batch.image.ndim - 1)
        i0 = torch.tensor([p.dose_fraction * p.i0_reference for p in params], device=batch.device).view(view)
        expected = to_counts(batch.image, i0)  # batched; only the draws are per case (per-case generators)
        noisy = []
        for i, p in enumerate(params):
            g = generator_from_seed(p.seed, batch.device)
            counts = torch.poisson(expected[i], generator=g)
            noisy.append(counts + p.electronic_sigma * torch.randn(counts.shape, generator=g, device=batch.device, dtype=counts.dtype))
        return batch.replace(image=from_counts(torch.stack(noisy), i0).to(batch.image.dtype))
