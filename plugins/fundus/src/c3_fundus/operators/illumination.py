"""Illumination geometry and vignetting: a decentred light source (halo / dark hole) and cos⁴ fall-off."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity, SeveritySource
from c3_core.seeding import Draws, uniform
from c3_fundus.functional.geometry import fov_radius
from c3_fundus.functional.illumination import cos4_vignetting, decentred_illumination, focal_for_edge_falloff
from c3_fundus.operators._base import FundusOperator, fov_of, per_sample, scale_


@dataclass(frozen=True)
class IlluminationParams:
    """Uneven illumination (linear-light gain); positions are fractions of image height/width."""

    stops: float  # peak log2 gain relative to the mean; < 0 is a dark hole, > 0 a bright halo
    centre_row: float  # light-source centre, fraction of height
    centre_col: float  # fraction of width
    width_frac: float  # Gaussian std of the bump/ring, fraction of min(H, W)
    ring_frac: float  # ring radius, fraction of min(H, W); 0 = a spot


class Illumination(FundusOperator[IlluminationParams]):
    """A decentred light source: a bright spot or corneal-reflex ring (halo), or a dark hole.

    Severity: peak-to-mean illumination change in stops (log2 of the gain), 0 → 1.5.
    """

    id = "fundus.illumination"
    version = "2"
    severity = Severity(
        "illumination_range", "stops (log2 gain, peak to mean)", 0.0, 1.5, (0.4, 0.8, 1.2, 1.5),
        source=SeveritySource(
            quantity="peak-to-mean illumination gain of a decentred source (bright halo or dark hole), in stops",
            derivation=(
                "A small or decentred pupil makes the fundus flash illuminate the retina unevenly: the familiar "
                "bright crescent/halo or dark central hole of non-mydriatic photographs. 1.5 stops is a local gain "
                "of 2.8 (or 0.35) against the mean, which still leaves the region within an 8-bit sensor's range"
            ),
            extreme_rationale=(
                "uneven illumination of this size is common in non-mydriatic screening photographs that are still "
                "graded; the lesion-visibility check rejects draws that hide a lesion"
            ),
        ),
    )
    params_type = IlluminationParams
    summary = "decentred light source: uneven illumination, bright halo or dark hole"

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> IlluminationParams:
        sign = 1.0 if uniform(generator, 0.0, 1.0) < 0.6 else -1.0
        ring = uniform(generator, 0.0, 1.0) < 0.3 and sign > 0  # corneal-reflex halo
        return IlluminationParams(
            stops=sign * severity,
            centre_row=uniform(generator, 0.3, 0.7),
            centre_col=uniform(generator, 0.3, 0.7),
            width_frac=uniform(generator, 0.05, 0.1) if ring else uniform(generator, 0.2, 0.4),
            ring_frac=uniform(generator, 0.25, 0.4) if ring else 0.0,
        )

    def _apply_linear(self, linear: Tensor, batch: Batch, params: Sequence[IlluminationParams]) -> Tensor:
        h, w = linear.shape[-2:]
        dev = linear.device
        centre = torch.stack([per_sample(params, "centre_row", dev) * (h - 1), per_sample(params, "centre_col", dev) * (w - 1)], 1)
        side = float(min(h, w))
        gain = decentred_illumination(
            (h, w), centre, per_sample(params, "width_frac", dev) * side, per_sample(params, "ring_frac", dev) * side,
            per_sample(params, "stops", dev), dev,
        )
        return scale_(linear, gain)  # (B, 3, H, W) · (B, 1, H, W)


@dataclass(frozen=True)
class VignettingParams:
    """Natural (cos⁴) vignetting about an optical axis; positions are fractions of height/width."""

    edge_falloff: float  # fraction of on-axis illumination lost at the FOV radius
    centre_row: float  # optical axis, fraction of image height
    centre_col: float  # optical axis, fraction of image width


class Vignetting(FundusOperator[VignettingParams]):
    """Radial fall-off I(r) = cos⁴(atan(r / f)) within the field of view.

    f is chosen so that I(R) = 1 − edge_falloff at the FOV radius R (from ``extras['fov']``,
    else 0.95 · min(H, W) / 2). Severity: edge fall-off as a fraction, 0 → 0.6.
    """

    id = "fundus.vignetting"
    version = "2"
    severity = Severity(
        "edge_falloff", "fraction of on-axis light lost at the FOV edge", 0.0, 0.6, (0.15, 0.3, 0.45, 0.6),
        source=SeveritySource(
            quantity="fraction of on-axis illumination lost at the FOV radius, cos^4 natural vignetting",
            derivation=(
                "Natural vignetting is cos^4(theta) of the field angle; 1 - cos^4(theta) = 0.6 at theta = 37.6°, "
                "the fall-off of a field angle of 37°; 0.3 is cos^4 at 24°. Fundus optics relay the pupil, so the "
                "fall-off seen at the edge of a 45-50° photograph adds pupil vignetting to the cos^4 term"
            ),
            extreme_rationale=(
                "dark peripheries losing half the light are usual in wide-field and non-mydriatic photographs that "
                "are still graded"
            ),
        ),
    )
    params_type = VignettingParams
    summary = "cos^4 radial fall-off (natural vignetting) about a slightly decentred optical axis"

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> VignettingParams:
        return VignettingParams(
            edge_falloff=severity,
            centre_row=0.5 + uniform(generator, -0.05, 0.05),
            centre_col=0.5 + uniform(generator, -0.05, 0.05),
        )

    def _apply_linear(self, linear: Tensor, batch: Batch, params: Sequence[VignettingParams]) -> Tensor:
        h, w = linear.shape[-2:]
        dev = linear.device
        centre = torch.stack([per_sample(params, "centre_row", dev) * (h - 1), per_sample(params, "centre_col", dev) * (w - 1)], 1)
        fov = fov_of(batch)
        radius = torch.full((linear.shape[0],), 0.95 * min(h, w) / 2, device=dev)
        if fov is not None:  # the FOV radius of each case (a case with an empty FOV keeps the default)
            measured = fov_radius(fov)
            radius = torch.where(measured > 4.0, measured, radius)
        focal = focal_for_edge_falloff(radius, per_sample(params, "edge_falloff", dev))
        return scale_(linear, cos4_vignetting((h, w), centre, focal, dev))
