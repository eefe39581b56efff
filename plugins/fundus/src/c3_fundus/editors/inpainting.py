"""Mask-guided interventions on fundus photographs (sRGB): lesion removed, lesion only, control.

The lesion is the union of the three mask channels (microaneurysms, haemorrhages, exudates).
Controls are placed inside the field of view (``extras["fov"]`` where the dataset provides it).
Lesion-only sets everything else to 0 (black, as outside the field of view). Margins are in mm
(about 0.1 mm per pixel of the 128 px demo).
"""

from __future__ import annotations

from typing import ClassVar

from torch import Tensor

from c3_core.batch import Batch
from c3_core.domains import IntensityDomain
from c3_core.editors.interventions import HealthyControl, LesionOnly, LesionRemoved
from c3_core.operator import Severity

MARGIN = Severity("lesion margin", "mm", identity=0.0, extreme=0.3, levels=(0.0, 0.1, 0.2, 0.3))
LESION_CHANNELS = (0, 1, 2)


class FundusMaskGuided:
    """What the three fundus mask-guided editors declare alike (mixed in before the core editor class)."""

    modality: ClassVar[str] = "fundus"
    domain: ClassVar[IntensityDomain] = IntensityDomain.SRGB
    severity: ClassVar[Severity] = MARGIN
    lesion_channels: ClassVar[tuple[int, ...]] = LESION_CHANNELS
    spatial_dims: ClassVar[tuple[int, ...]] = (2,)


class FundusLesionRemoved(FundusMaskGuided, LesionRemoved):
    id = "fundus.lesion_removed"


class FundusLesionOnly(FundusMaskGuided, LesionOnly):
    id = "fundus.lesion_only"
    background_value: ClassVar[float] = 0.0


class FundusHealthyControl(FundusMaskGuided, HealthyControl):
    id = "fundus.healthy_control"

    def allowed_regions(self, batch: Batch) -> list[Tensor]:
        """The field of view (``extras["fov"]``), or the whole image without one."""
        fov = batch.extras.get("fov")
        if fov is None:
            return super().allowed_regions(batch)
        return [fov[:, 0] >= 0.5]
