"""What every ultrasound operator shares: modality, domain, rank and channel count."""

from __future__ import annotations

from typing import ClassVar

import torch

from c3_core.api import Batch, Domain, Draws, Operator, P, uniform
from c3_ultrasound.intensity_domains import ENVELOPE


class UltrasoundOperator(Operator[P]):
    """Base for ``us.*`` operators: 2-D single-channel echo envelope, axial axis = rows."""

    modality: ClassVar[str] = "us"
    domain: ClassVar[Domain] = ENVELOPE
    spatial_dims: ClassVar[tuple[int, ...]] = (2,)
    channels: ClassVar[tuple[int, ...] | None] = (1,)
    stream_sampling: ClassVar[bool] = True  # _sample draws through c3_core.seeding's helpers only


def row_pitch_mm(batch: Batch) -> torch.Tensor:
    """Axial pixel pitch (B,) in mm, float64 on the batch's device."""
    return torch.tensor([s[0] for s in batch.spacing], dtype=torch.float64, device=batch.device)


def random_sign(generator: Draws) -> float:
    """+1 or -1 with equal probability, from ``generator``."""
    return 1.0 if uniform(generator, 0.0, 1.0) < 0.5 else -1.0
