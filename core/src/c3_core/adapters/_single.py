"""Shared: wrap one image (and masks) as a one-case Batch, apply an operator, unwrap."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from c3_core.batch import Batch
from c3_core.neighbourhood import Plan, PlannedStep
from c3_core.operator import Operator


def apply_one(
    operator: Operator[Any],
    image: Tensor,
    masks: Sequence[Tensor],
    spacing: Sequence[float],
    exam_id: str,
    generator: torch.Generator,
    severity: float,
) -> tuple[Tensor, list[Tensor], dict[str, Any]]:
    """Apply ``operator`` to one ``(C, *spatial)`` image; masks ``(M, *spatial)`` move if spatial.

    Returns the new image, the (possibly moved) masks and the provenance dict.
    """
    mask = torch.cat([m.float() for m in masks], 0)[None] if masks else None
    batch = Batch(
        image=image.float()[None],
        exam_ids=(exam_id,),
        modality=operator.modality,
        domain=operator.domain,
        spacing=(tuple(float(s) for s in spacing),),
        mask=mask,
    )
    params = operator.sample_params(batch.case_info(0), generator, severity)
    out = operator.apply(batch, [params])
    moved: list[Tensor] = []
    if masks:
        start = 0
        for m in masks:
            part = out.mask[0, start : start + m.shape[0]]  # type: ignore[index]
            moved.append(part.to(m.dtype) if m.is_floating_point() else (part >= 0.5).to(m.dtype))
            start += m.shape[0]
    prov = Plan(exam_id, 0, 0, 0, (PlannedStep(operator, severity, params, {}),)).provenance().to_dict()
    return out.image[0].to(image.dtype), moved, prov
