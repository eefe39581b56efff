"""Mask-guided interventions on brain MRI (magnitude): lesion removed, lesion only, control.

The lesion is mask channel 0 (the demo's MS lesions; the NIfTI cohort's lesion mask). Volumes are
filled with the harmonic (Laplace) fill by default, 2-D images with Navier–Stokes. Controls are
placed inside the brain: CSF + GM + WM fractions of ``extras["tissue"]`` above 0.5 where the
dataset provides them (the demo does), else the voxels above 10 % of the case's 99th-percentile
intensity. Lesion-only sets everything else to 0 (no signal). Margins are in mm.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from c3_core.batch import Batch
from c3_core.domains import IntensityDomain
from c3_core.editors.interventions import HealthyControl, LesionOnly, LesionRemoved
from c3_core.operator import Severity

MARGIN = Severity("lesion margin", "mm", identity=0.0, extreme=3.0, levels=(0.0, 1.5, 3.0))
LESION_CHANNELS = (0,)
FOREGROUND_FRACTION = 0.1  # of the 99th percentile, when no tissue map is given


def brain_region(batch: Batch) -> Tensor:
    """``(B, *spatial)`` bool: the brain (tissue fractions) or the bright foreground."""
    tissue = batch.extras.get("tissue")
    if tissue is not None and tissue.shape[1] >= 3:
        return tissue[:, :3].sum(1) > 0.5
    flat = batch.image.abs().amax(1).flatten(1)
    k = max(1, int(round(0.99 * flat.shape[1])))
    p99 = flat.float().kthvalue(k, dim=1).values
    return batch.image.abs().amax(1) > (FOREGROUND_FRACTION * p99).view(-1, *[1] * batch.spatial_dims)


class MriMaskGuided:
    """What the three mri mask-guided editors declare alike (mixed in before the core editor class)."""

    modality: ClassVar[str] = "mri"
    domain: ClassVar[IntensityDomain] = IntensityDomain.MAGNITUDE
    severity: ClassVar[Severity] = MARGIN
    lesion_channels: ClassVar[tuple[int, ...]] = LESION_CHANNELS


class MriLesionRemoved(MriMaskGuided, LesionRemoved):
    id = "mri.lesion_removed"


class MriLesionOnly(MriMaskGuided, LesionOnly):
    id = "mri.lesion_only"
    background_value: ClassVar[float] = 0.0


class MriHealthyControl(MriMaskGuided, HealthyControl):
    id = "mri.healthy_control"

    def allowed_regions(self, batch: Batch) -> list[Tensor]:
        """The brain (see :func:`brain_region`)."""
        return [brain_region(batch).to(torch.bool)]
