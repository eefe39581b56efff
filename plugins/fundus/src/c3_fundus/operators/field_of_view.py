"""Field of view: magnification (crop), decentration and aperture diameter, FOV mask kept consistent."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity, SeveritySource
from c3_core.seeding import Draws, uniform
from c3_fundus.functional.field_of_view import aperture_in_srgb_, resample, zoom_grid
from c3_fundus.functional.geometry import circular_aperture, image_centre
from c3_fundus.operators._base import FundusOperator, lesion_check, per_sample

DEMO_FOV_RADIUS_FRAC = 0.95  # FOV radius of a full-field photograph, fraction of min(H, W) / 2


def _is_spatial(t: torch.Tensor, shape: tuple[int, int]) -> bool:
    return t.ndim == 4 and tuple(t.shape[-2:]) == shape


@dataclass(frozen=True)
class FieldOfViewParams:
    """A different framing of the same retina; lengths are fractions of the image size."""

    zoom: float  # magnification (> 1 crops the field; the retina appears larger)
    shift_row: float  # new image centre in the old image, offset as a fraction of height
    shift_col: float  # offset as a fraction of width
    aperture_radius_frac: float  # new circular aperture radius, fraction of min(H, W) / 2


class FieldOfView(FundusOperator[FieldOfViewParams]):
    """Re-frame the photograph: magnify about a shifted centre, then mask with a new aperture.

    sRGB values are resampled bilinearly and the new aperture multiplies linear light; lesion masks and every spatial extra (the FOV
    mask ``extras['fov']``) are resampled with the same grid, thresholded at 0.5 and cut by the
    same aperture, so the FOV mask always matches the lit region. Severity: the fraction of the
    field diameter lost, 0 → 0.25 (split between magnification and a smaller aperture).
    """

    id = "fundus.field_of_view"
    version = "2"
    spatial: ClassVar[bool] = True
    severity = Severity(
        "field_loss", "fraction of the FOV diameter lost", 0.0, 0.25, (0.05, 0.1, 0.15, 0.25),
        source=SeveritySource(
            quantity="loss of the visible field diameter (magnification and a smaller aperture)",
            reference=(
                "camera fields in screening practice: 45° macula-centred fields (Basu A et al., Diabet Med 2003;"
                "20(9):766-771, doi:10.1046/j.1464-5491.2003.01022.x) and 30° ETDRS fields (Baker CF et al., "
                "JPEG compression of stereoscopic digital images for the diagnosis of diabetic retinopathy via "
                "teleophthalmology, Can J Ophthalmol 2004)"
            ),
            derivation="1 - 30/45 = 0.33 and 1 - 35/45 = 0.22: the field lost from a 45° to a 30-35° camera",
            extreme_rationale=(
                "a 45° photograph re-taken with a 35° camera (or zoom) loses about a quarter of the diameter; the "
                "lesion masks move with the image and lesions outside the new field are checked"
            ),
        ),
    )
    params_type = FieldOfViewParams
    summary = "aperture diameter, magnification (crop) and decentration; masks and FOV move with the image"

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> FieldOfViewParams:
        u = uniform(generator, 0.0, 1.0)  # share of the loss taken by magnification
        zoom = 1.0 / (1.0 - u * severity)
        kept = 1.0 - severity  # visible field diameter, fraction of the original
        aperture = min(1.0, DEMO_FOV_RADIUS_FRAC * kept * zoom)
        return FieldOfViewParams(
            zoom=zoom,
            shift_row=uniform(generator, -0.03, 0.03),
            shift_col=uniform(generator, -0.03, 0.03),
            aperture_radius_frac=aperture,
        )

    def _apply(self, batch: Batch, params: Sequence[FieldOfViewParams]) -> Batch:
        b, _, h, w = batch.image.shape
        dev = batch.image.device
        zoom = per_sample(params, "zoom", dev)
        shift = torch.stack([per_sample(params, "shift_row", dev), per_sample(params, "shift_col", dev)], 1)
        grid = zoom_grid((h, w), zoom, shift)
        radius = per_sample(params, "aperture_radius_frac", dev) * min(h, w) / 2
        aperture = circular_aperture((h, w), image_centre((h, w), b, dev), radius, dev)
        dtype = batch.image.dtype
        hard = (aperture > 0.5).to(dtype)
        # resample the encoded values (as the camera's or viewer's resize does, and exactly as the
        # masks are resampled, so thresholds agree); the aperture then cuts light in linear light
        image = aperture_in_srgb_(resample(batch.image, grid), aperture).to(dtype)

        def move(t: torch.Tensor) -> torch.Tensor:  # resampled, thresholded at 0.5 and cut by the aperture, in place
            return resample(t.to(dtype), grid).ge_(0.5).mul_(hard).to(t.dtype)

        mask = None if batch.mask is None else move(batch.mask)
        extras = {k: move(v) if _is_spatial(v, (h, w)) else v for k, v in batch.extras.items()}
        return batch.replace(image=image, mask=mask, extras=extras)

    def check(self, original: Batch, counterfactual: Batch, params: Sequence[Any]) -> list[str | None]:
        if original.mask is None:
            return [None] * original.size
        area_scale = per_sample(params, "zoom", original.image.device) ** 2
        return lesion_check(self.id, original, counterfactual, self.min_visibility, area_scale)
