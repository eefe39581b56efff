"""The shared shape of fundus operators: sRGB in and out, physics in linear light, lesion check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from c3_core.batch import Batch
from c3_core.domains import IntensityDomain
from c3_core.operator import Operator, P
from c3_fundus.functional.srgb import linear_to_srgb_, records_grad, srgb_to_linear_fast
from c3_fundus.functional.visibility import lesion_visibility

MIN_VISIBILITY = 0.5
LESION_TYPES = ("microaneurysms", "haemorrhages", "exudates")  # mask channels of fundus cohorts


def lesion_check(
    op_id: str,
    original: Batch,
    counterfactual: Batch,
    min_visibility: float,
    area_scale: Tensor | None = None,
) -> list[str | None]:
    """Rejection reasons (or None) for counterfactuals whose lesions lost local contrast.

    The one helper every fundus operator's ``check`` calls. No mask: nothing to check.
    Masks with 3 channels are named microaneurysms / haemorrhages / exudates in the reason.
    ``original`` is the case as drawn (``check_reference = "case"``): in a chain, the contrast
    lost by earlier steps counts. Lesions moved by an earlier re-framing step are read where
    they now are; the area they lost is that step's own check's (``area_scale`` is this step's).
    """
    if original.mask is None:
        return [None] * original.size
    cf_masks = counterfactual.mask
    if cf_masks is original.mask or (area_scale is None and torch.equal(cf_masks, original.mask)):
        cf_masks = None  # one geometry (an intensity step; in a chain, no earlier step moved the lesions)
    vis, worst = lesion_visibility(  # the green channel, decoded only at the pixels the means read
        original.image[:, 1:2].float(),
        counterfactual.image[:, 1:2].float(),
        original.mask.float(),
        None if cf_masks is None else cf_masks.float(),
        area_scale,
        to_linear=srgb_to_linear_fast,
    )
    names = LESION_TYPES if original.mask.shape[1] == len(LESION_TYPES) else None
    reasons: list[str | None] = []
    for v, t in zip(vis.tolist(), worst.tolist()):
        if v >= min_visibility:
            reasons.append(None)
            continue
        what = f"{op_id}: {names[t]}" if names is not None and t >= 0 else op_id
        reasons.append(f"lesion visibility {v:.2f} < {min_visibility:.2f} ({what})")
    return reasons


class FundusOperator(Operator[P]):
    """An sRGB fundus operator; intensity physics runs in linear light via :meth:`_apply_linear`.

    ``check`` rejects a counterfactual when any lesion type in the mask keeps less than
    ``min_visibility`` of its original local contrast against the surrounding retina
    (microaneurysms, haemorrhages and exudates must stay visible for the grade to stay the same).
    The original is the case as drawn, also in a later step of a chain (``check_reference``), so
    steps that each keep enough contrast cannot add up to a counterfactual that does not.
    """

    modality: ClassVar[str] = "fundus"
    check_reference: ClassVar[Literal["input", "case"]] = "case"  # visibility relative to the case
    domain: ClassVar[IntensityDomain] = IntensityDomain.SRGB
    spatial_dims: ClassVar[tuple[int, ...]] = (2,)
    channels: ClassVar[tuple[int, ...] | None] = (3,)
    stream_sampling: ClassVar[bool] = True  # _sample draws through c3_core.seeding's helpers only

    def __init__(self, min_visibility: float = MIN_VISIBILITY) -> None:
        if not 0.0 <= float(min_visibility) <= 1.0:
            raise ValueError(f"{self.id}: min_visibility must be in [0, 1], got {min_visibility}")
        self.min_visibility = float(min_visibility)

    def _apply(self, batch: Batch, params: Sequence[P]) -> Batch:
        linear = self._apply_linear(srgb_to_linear_fast(batch.image), batch, params)
        return batch.replace(image=linear_to_srgb_(linear).to(batch.image.dtype))  # the buffer is ours: encoded in place

    def _apply_linear(self, linear: Tensor, batch: Batch, params: Sequence[P]) -> Tensor:
        """Linear light (B, 3, H, W) in -> linear light out. Intensity operators override this.

        ``linear`` is a fresh buffer that this call owns (it may scale it in place when autograd
        does not record it); the returned tensor is encoded to sRGB in place, so it must be one
        that no batch holds (``linear`` itself or a new tensor).
        """
        raise NotImplementedError(f"{self.id} must override _apply or _apply_linear")

    def check(self, original: Batch, counterfactual: Batch, params: Sequence[Any]) -> list[str | None]:
        return lesion_check(self.id, original, counterfactual, self.min_visibility)


def scale_(linear: Tensor, gain: Tensor) -> Tensor:
    """``linear · gain`` (broadcast), in place on ``linear`` unless autograd records it."""
    return linear * gain if records_grad(linear) else linear.mul_(gain)


def per_sample(params: Sequence[Any], name: str, device: torch.device) -> Tensor:
    """Stack one float field of per-sample params into a (B,) float32 tensor on ``device``."""
    return torch.tensor([float(getattr(p, name)) for p in params], dtype=torch.float32, device=device)


def fov_of(batch: Batch) -> Tensor | None:
    """The batch's FOV mask (B, 1, H, W) from ``extras['fov']``, if it carries one."""
    fov = batch.extras.get("fov")
    return None if fov is None else fov[:, :1].to(batch.image.dtype)
