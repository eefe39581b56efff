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
