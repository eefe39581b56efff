"""Mask-guided interventions on chest radiographs (log attenuation): lesion removed, lesion only, control.

The lesion is mask channel 2 of the demo cohort ("findings": effusion fluid, consolidation
patch, edema haze, atelectasis band; cardiomegaly has no region). Findings lie in the lungs but
often touch the heart, mediastinum or diaphragm, whose line integrals are far higher; filling
from every neighbour would paint them into the lung. So ``method="auto"`` here is the harmonic
fill with boundary values from the lungs only (mask channel 0; no flux towards other tissue),
i.e. the finding is replaced by the lung around it; the label then has consolidation and effusion
absent (their outlines hold them whole), edema and atelectasis unknown (the haze below the
outline's threshold and the lung's volume loss remain) and cardiomegaly kept (it has no region). ``method="ns"`` gives OpenCV Navier–Stokes
from all neighbours. Controls are placed inside the lungs, or else inside the body, and filled
from that area. Lesion-only
sets everything else to 0 (no attenuation: the unattenuated beam). Margins are in mm (2.8 mm per
demo pixel).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from c3_core.batch import Batch
from c3_core.domains import IntensityDomain
from c3_core.editors.interventions import HealthyControl, LesionOnly, LesionRemoved
from c3_core.operator import Severity

MARGIN = Severity("lesion margin", "mm", identity=0.0, extreme=8.4, levels=(0.0, 2.8, 5.6, 8.4))
LESION_CHANNELS = (2,)
LUNG_CHANNEL = 0
BODY_FRACTION = 0.25
REMOVED_FINDINGS = (2, 4)  # label columns the findings mask outlines whole: consolidation, effusion
UNKNOWN_FINDINGS = (0, 3)  # outlined in part: atelectasis (not its volume loss), edema (not its faint haze)


def body_region(batch: Batch) -> Tensor:
    """``(B, H, W)`` bool: pixels whose line integral exceeds ``BODY_FRACTION`` of the case's
    99th percentile (air outside the patient is near 0)."""
    flat = batch.image[:, 0].flatten(1).float()
    p99 = flat.kthvalue(max(1, int(round(0.99 * flat.shape[1]))), dim=1).values
    return batch.image[:, 0] > (BODY_FRACTION * p99).view(-1, 1, 1)


def lungs(batch: Batch, index: int) -> Tensor:
    """``(H, W)`` bool: the lungs of case ``index`` (mask channel 0)."""
    return batch.mask[index, LUNG_CHANNEL] >= 0.5  # type: ignore[index]


class CxrMaskGuided:
    """What the three cxr mask-guided editors declare alike (mixed in before the core editor class)."""

    modality: ClassVar[str] = "cxr"
    domain: ClassVar[IntensityDomain] = IntensityDomain.LOG_ATTENUATION
    severity: ClassVar[Severity] = MARGIN
    lesion_channels: ClassVar[tuple[int, ...]] = LESION_CHANNELS
    spatial_dims: ClassVar[tuple[int, ...]] = (2,)


class CxrLesionRemoved(CxrMaskGuided, LesionRemoved):
    id = "cxr.lesion_removed"
    auto_method_2d: ClassVar[str] = "harmonic"

    def fill_sources(self, batch: Batch, index: int) -> Tensor:
        return lungs(batch, index)

    def expected_label(self, label: Tensor, edited: Tensor) -> Tensor:
        """Edited cases: consolidation and effusion absent, atelectasis and edema unknown (NaN),
        cardiomegaly kept. A label that is not the five findings is unknown on edited cases."""
        if not label.is_floating_point() or label.ndim != 2 or label.shape[1] != 5:
            return super().expected_label(label, edited)
        rows = edited.to(label.device).view(-1, 1)
        absent = torch.zeros(5, dtype=torch.bool, device=label.device)
        absent[list(REMOVED_FINDINGS)] = True
        unknown = torch.zeros(5, dtype=torch.bool, device=label.device)
        unknown[list(UNKNOWN_FINDINGS)] = True
        out = torch.where(rows & absent, torch.zeros_like(label), label)
        return torch.where(rows & unknown, torch.full_like(label, float("nan")), out)


class CxrLesionOnly(CxrMaskGuided, LesionOnly):
    id = "cxr.lesion_only"
    background_value: ClassVar[float] = 0.0


class CxrHealthyControl(CxrMaskGuided, HealthyControl):
    id = "cxr.healthy_control"
    auto_method_2d: ClassVar[str] = "harmonic"

    def allowed_regions(self, batch: Batch) -> list[Tensor]:
        """The lungs (mask channel 0), then the body (line integral above ``BODY_FRACTION`` of
        the case's 99th percentile: soft tissue, mediastinum, abdomen)."""
        return [batch.mask[:, LUNG_CHANNEL] >= 0.5, body_region(batch)]  # type: ignore[index]
