"""Shared class attributes of radiography operators."""

from __future__ import annotations

from typing import ClassVar

from c3_core.domains import IntensityDomain
from c3_core.operator import Operator, P


class RadiographOperator(Operator[P]):
    """A projection-radiography operator on log-attenuation images (B, 1, H, W)."""

    modality: ClassVar[str] = "cxr"
    domain: ClassVar[IntensityDomain] = IntensityDomain.LOG_ATTENUATION
    spatial_dims: ClassVar[tuple[int, ...]] = (2,)
    channels: ClassVar[tuple[int, ...] | None] = (1,)
    stream_sampling: ClassVar[bool] = True  # _sample draws through c3_core.seeding's helpers only


class CTOperator(Operator[P]):
    """A CT operator on reconstructed slices in HU: ``(B, 1, H, W)`` or volumes ``(B, 1, D, H, W)``
    (axial slices along the first spatial axis; in-plane pixels assumed square)."""

    modality: ClassVar[str] = "ct"
    domain: ClassVar[IntensityDomain] = IntensityDomain.HU
    spatial_dims: ClassVar[tuple[int, ...]] = (2, 3)
    channels: ClassVar[tuple[int, ...] | None] = (1,)
    stream_sampling: ClassVar[bool] = True  # _sample draws through c3_core.seeding's helpers only
