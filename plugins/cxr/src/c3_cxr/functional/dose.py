"""Dose reduction of a radiograph in the photon-count domain (quantum + electronic noise).

μ' = −ln(max(N, ½) / I0) with N ~ Poisson(I0 · e^(−μ)) + N(0, σ_e²), per case with its own
generator; the photon draw is :func:`c3_core.functional.photon.photon_counts` (exact Poisson below
20 counts, a three-moment normal map above; electronic noise of σ_e ≥ 1 photon shares its draw).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from c3_core.functional.photon import photon_counts

MIN_COUNTS = 0.5  # photons: a detector pixel never reads below half a photon (as c3_cxr.domains.from_counts)


def reduced_dose(mu: Tensor, i0: Sequence[float], electronic_sigma: Sequence[float], generators: Sequence[torch.Generator]) -> Tensor:
    """Noisy line integrals of ``mu (B, 1, H, W)`` (dimensionless, ≥ 0) at ``i0[b]`` photons per
    unattenuated pixel, with electronic noise of std ``electronic_sigma[b]`` photons; a new tensor.

    Element-wise work, batched over the cases in one buffer: counts λ = e^(ln I0 − μ) (2 passes),
    the photon draw written over λ (each case from its own generator), then μ' = ln I0 − ln max(N, ½)
    (3 passes).
    """
    log_i0 = torch.tensor([float(v) for v in i0], dtype=mu.dtype).log_().to(mu.device).view((-1,) + (1,) * (mu.ndim - 1))
    lam = torch.sub(log_i0, mu).exp_()  # expected counts
    counts = photon_counts(lam, generators, read_sigma=[float(s) for s in electronic_sigma], out=lam)
    return torch.sub(log_i0, counts.clamp_min_(MIN_COUNTS).log_(), out=counts)
