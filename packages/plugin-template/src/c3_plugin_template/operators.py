"""One operator family: a params dataclass (physical units), a kernel, and the operator class."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from c3_core.batch import Batch, CaseInfo
from c3_core.domains import IntensityDomain
from c3_core.operator import Operator, Severity, SeveritySource
from c3_core.seeding import uniform


def contrast_kernel(image: Tensor, factor: Tensor) -> Tensor:
    """Scale deviations from each image's mean by ``factor`` (B,); the mean is preserved."""
    mean = image.mean(dim=tuple(range(1, image.ndim)), keepdim=True)
    return mean + factor.view(-1, *[1] * (image.ndim - 1)) * (image - mean)


@dataclass(frozen=True)
class ContrastParams:
    factor: float  # multiplies deviations from the mean (1 = unchanged)


class Contrast(Operator[ContrastParams]):
    id = "example.contrast"
    version = "1"
    modality = "example"
    domain = IntensityDomain.DISPLAY
    severity = Severity(
        "contrast_change", "fraction (factor = 1 ± s)", 0.0, 0.5, (0.1, 0.25, 0.5),
        # every physics operator says where its range comes from (the conformance kit checks it):
        # the quantity, a reference (DOI / URL) or a derivation, and why the extreme is still plausible
        source=SeveritySource(
            quantity="global contrast factor about the image mean (example modality)",
            derivation="template: replace with the physical quantity of your operator and its source",
            extreme_rationale="template example; a real plugin names the acquisition that reaches the extreme",
        ),
    )
    params_type = ContrastParams
    summary = "global contrast change about the mean"

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> ContrastParams:
        return ContrastParams(1.0 + severity * (1.0 if uniform(generator, 0, 1) < 0.5 else -1.0))

    def _apply(self, batch: Batch, params: Sequence[ContrastParams]) -> Batch:
        factor = torch.tensor([p.factor for p in params], device=batch.device, dtype=batch.image.dtype)
        return batch.replace(image=contrast_kernel(batch.image, factor))
