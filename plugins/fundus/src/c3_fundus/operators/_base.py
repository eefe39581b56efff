"""The shared shape of fundus operators: sRGB in and out, physics in linear light, lesion check."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from torch import Tensor

from c3_core.batch import Batch
from c3_core.domains import IntensityDomain
from c3_core.operator import Operator, P
from c3_fundus.colour import linear_to_srgb, srgb_to_linear
from c3_fundus.functional.visibility import visibility_ratio

MIN_VISIBILITY = 0.5


class FundusOperator(Operator[P]):
    """An sRGB fundus operator whose physics runs in linear light.

    ``check`` rejects a counterfactual when the lesions in mask channel 0 keep less than
    ``min_visibility`` of their original local contrast (microaneurysms, haemorrhages and exudates
    must stay visible for the grade to stay the same).
    """

    modality: ClassVar[str] = "fundus"
    domain: ClassVar[IntensityDomain] = IntensityDomain.SRGB
    spatial_dims: ClassVar[tuple[int, ...]] = (2,)
    channels: ClassVar[tuple[int, ...] | None] = (3,)

    def __init__(self, min_visibility: float = MIN_VISIBILITY) -> None:
        if not 0.0 <= min_visibility <= 1.0:
            raise ValueError(f"{self.id}: min_visibility must be in [0, 1], got {min_visibility}")
        self.min_visibility = float(min_visibility)

    def _apply(self, batch: Batch, params: Sequence[P]) -> Batch:
        linear = self._apply_linear(srgb_to_linear(batch.image), batch, params)
        return batch.replace(image=linear_to_srgb(linear).to(batch.image.dtype))

    def _apply_linear(self, linear: Tensor, batch: Batch, params: Sequence[P]) -> Tensor:
        raise NotImplementedError  # every concrete operator overrides this

    def check(self, original: Batch, counterfactual: Batch, params: Sequence[Any]) -> list[str | None]:
        if original.mask is None:
            return [None] * original.size
        ratio = visibility_ratio(
            srgb_to_linear(original.image), srgb_to_linear(counterfactual.image), original.mask[:, :1]
        )
        return [
            None if float(r) >= self.min_visibility else f"lesion visibility {float(r):.2f} < {self.min_visibility:.2f} ({self.id})"
            for r in ratio
        ]
