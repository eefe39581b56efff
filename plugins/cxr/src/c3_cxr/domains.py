"""Conversions between the radiograph's domains.

log-attenuation (line integral of μ, ≥ 0) <-> photon counts: N = I0 · exp(−μ);
display: the reference vendor look-up (a window over log-attenuation) used by the models.
"""

from __future__ import annotations

import torch
from torch import Tensor

MIN_COUNTS = 0.5  # a detector pixel never reads below half a photon, so log stays finite


def to_counts(mu: Tensor, i0: Tensor | float) -> Tensor:
    """Expected detected photons per pixel for unattenuated fluence ``i0``."""
    return i0 * torch.exp(-mu)


def from_counts(counts: Tensor, i0: Tensor | float) -> Tensor:
    """Line integral −ln(N / I0), with N clipped at :data:`MIN_COUNTS` (no NaN or Inf at zero counts)."""
    return -torch.log(counts.clamp_min(MIN_COUNTS) / i0)


def to_display(mu: Tensor, low: float = 0.0, high: float = 4.0) -> Tensor:
    """Reference window: bone and mediastinum bright, lungs dark, in [0, 1]."""
    return ((mu - low) / (high - low)).clamp(0.0, 1.0)


# -- CT: Hounsfield units <-> linear attenuation ----------------------------------------------
MU_WATER_PER_MM = 0.0192  # linear attenuation of water at an effective ~70 keV, 1/mm


def hu_to_mu(hu: Tensor, mu_water: float = MU_WATER_PER_MM) -> Tensor:
    """Linear attenuation (1/mm) from HU: μ = μ_w (1 + HU/1000), clipped at 0 (air is −1000 HU)."""
    return (mu_water * (1.0 + hu / 1000.0)).clamp_min(0.0)


def mu_to_hu(mu: Tensor, mu_water: float = MU_WATER_PER_MM) -> Tensor:
    """HU from linear attenuation (1/mm): HU = 1000 (μ − μ_w) / μ_w."""
    return 1000.0 * (mu - mu_water) / mu_water


def delta_mu_to_hu(delta_mu: Tensor, mu_water: float = MU_WATER_PER_MM) -> Tensor:
    """An attenuation change (1/mm) expressed in HU (HU is affine in μ, so only the slope applies)."""
    return 1000.0 * delta_mu / mu_water
