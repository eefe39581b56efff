"""One operator family: a params dataclass (physical units), its sampler and the operator class.

The kernel it calls is :mod:`c3_plugin_template.functional.contrast`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from c3_core.api import Batch, CaseInfo, Domain, Draws, Operator, Severity, SeveritySource, random_sign
from c3_plugin_template.functional.contrast import contrast_kernel


@dataclass(frozen=True)
class ContrastParams:
    factor: float  # multiplies deviations from the mean (1 = unchanged)


class Contrast(Operator[ContrastParams]):
    id = "example.contrast"
    version = "1"
    modality = "example"
    domain = Domain.DISPLAY
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
    stream_sampling = True  # _sample draws only through uniform / draw_seed / random_sign / uniform_tensor

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> ContrastParams:
        return ContrastParams(1.0 + severity * random_sign(generator))

    def _apply(self, batch: Batch, params: Sequence[ContrastParams]) -> Batch:
        factor = torch.tensor([p.factor for p in params], device=batch.device, dtype=batch.image.dtype)
        return batch.replace(image=contrast_kernel(batch.image, factor))
