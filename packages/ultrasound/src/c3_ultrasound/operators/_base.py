"""What every ultrasound operator shares: modality, domain, rank and channel count."""

from __future__ import annotations

from typing import ClassVar

import torch

from c3_core.api import Batch, Domain, Operator, P
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
