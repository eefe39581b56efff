"""Magnitude noise: Rician (one coil) and non-central chi (L coils, root-sum-of-squares)."""

from __future__ import annotations

import torch
from torch import Tensor


def noncentral_chi_magnitude(signal: Tensor, sigma: float, coils: int, generator: torch.Generator) -> Tensor:
    """|s + n| over L coils with complex Gaussian noise of std ``sigma`` per real channel.

    The true signal is put in coil 1's real part (equal coil sensitivities would only rescale):
    M = sqrt((s + n_1r)^2 + n_1i^2 + Σ_{l>1} (n_lr^2 + n_li^2)). For L = 1 this is Rician; in
    general M/σ follows a non-central chi distribution with 2L degrees of freedom and
    non-centrality s/σ.
    """
    shape = (2 * coils, *signal.shape)
    n = torch.randn(shape, generator=generator, device=signal.device, dtype=signal.dtype) * sigma
    real = signal + n[0]
    return torch.sqrt(real**2 + (n[1:] ** 2).sum(0))
