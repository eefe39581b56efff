"""Shared class attributes of MRI operators."""

from __future__ import annotations

from typing import ClassVar

from c3_core.domains import IntensityDomain
from c3_core.operator import Operator, P


class MriOperator(Operator[P]):
    """An operator on MRI magnitude images, 2-D or 3-D."""

    modality: ClassVar[str] = "mri"
    domain: ClassVar[IntensityDomain] = IntensityDomain.MAGNITUDE
    spatial_dims: ClassVar[tuple[int, ...]] = (2, 3)
    stream_sampling: ClassVar[bool] = True  # _sample draws through c3_core.seeding's helpers only
