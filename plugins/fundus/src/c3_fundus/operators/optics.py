"""Optics: defocus (disc PSF), small motion blur, media haze, veiling glare and rim flare."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity, SeveritySource
from c3_core.seeding import Draws, uniform
from c3_fundus.functional.geometry import circular_aperture, fov_geometry, image_centre
from c3_fundus.functional.optics import (
    convolve_per_sample,
    media_haze,
    optical_psf,
    psf_half_width,
    rim_flare,
    veiling_glare,
)
from c3_fundus.operators._base import MIN_VISIBILITY, FundusOperator, fov_of, per_sample

COMPONENTS = ("defocus", "motion", "haze", "glare", "flare")
#: the admissible range at severity 1 (distances on the retina)
MAX_DEFOCUS_UM = 120.0  # blur-circle radius
MAX_MOTION_UM = 150.0  # motion-blur length
MAX_HAZE = 0.25  # fraction of light forward-scattered by hazy media
HAZE_SIGMA_MM = (0.3, 0.8)  # width of the haze scatter kernel
MAX_GLARE = 0.06  # fraction of light spread into a uniform veil
MAX_FLARE = 0.35  # rim-flare peak, relative to the mean light in the FOV


@dataclass(frozen=True)
class OpticsParams:
    """Optical degradations; distances in micrometres (µm) or millimetres on the retina."""

    defocus_um: float  # radius of the geometric blur circle
    motion_um: float  # length of the linear motion path during the exposure
    motion_angle_deg: float  # direction of motion, degrees from the image rows
    haze_fraction: float  # share of light scattered by the media (cataract, tear film)
    haze_sigma_mm: float  # standard deviation of the haze scatter kernel
    glare_fraction: float  # share of light spread into a uniform veil (veiling glare)
    flare_amplitude: float  # rim-flare peak relative to the mean FOV light
    flare_angle_deg: float  # where on the rim the flare sits (0 = right, 90 = bottom)
    flare_width_frac: float  # rim-flare width, fraction of the FOV radius


class Optics(FundusOperator[OpticsParams]):
    """Optical blur and stray light of the fundus camera and the eye's media, in linear light.

    x → haze: (1 − h)x + h·(x ⊛ G_σ) → PSF: disc(defocus) ⊛ line(motion) → glare:
    (1 − g)·x + g·mean(x) → + rim flare (a crescent at the FOV rim). Distances on the retina
    are converted to pixels with each case's spacing. ``components`` picks a subset of
    ``("defocus", "motion", "haze", "glare", "flare")``. Severity: fraction of the admissible
    range (defocus ≤ 120 µm, motion ≤ 150 µm, haze ≤ 25 %, glare ≤ 6 %, flare ≤ 35 %), 0 → 1.
    """

    id = "fundus.optics"
    version = "2"  # 2: media haze blurs by matrices up to 1,024 px (the same linear map; rounding apart)
    severity = Severity(
        "optics_degradation", "fraction of the admissible optics range", 0.0, 1.0, (0.25, 0.5, 0.75, 1.0),
        source=SeveritySource(
            quantity=(
                "defocus blur radius (<= 120 um), motion blur (<= 150 um), media haze (<= 25 %), veiling glare "
                "(<= 6 %) and rim flare (<= 35 %) on the retina at s = 1, each drawn in 50-100 % of that"
            ),
            derivation=(
                "The eye's optics give about 0.29 mm of retina per degree (Gullstrand eye), so a 120 um blur radius "
                "is 0.4° and 150 um of motion 0.5° - a small defocus or fixation drift during the flash, about the "
                "diameter of a major vessel at the disc. Haze of 25 % and a 6 % uniform veil lower contrast as a "
                "moderate cataract or tear-film problem does; a rim-flare crescent of 35 % is the reflex at a "
                "mis-aligned pupil"
            ),
            extreme_rationale=(
                "each at its maximum is a photograph that graders call 'slightly blurred / hazy but gradable'; the "
                "lesion-visibility check rejects any draw in which a lesion loses half its contrast"
            ),
        ),
    )
    params_type = OpticsParams
    summary = "defocus (disc PSF), small motion blur, media haze, veiling glare and rim flare"

    def __init__(self, components: Iterable[str] = COMPONENTS, min_visibility: float = MIN_VISIBILITY) -> None:
        super().__init__(min_visibility)
        chosen = tuple(components)
        unknown = sorted(set(chosen) - set(COMPONENTS))
        if unknown or not chosen:
            raise ValueError(f"{self.id}: components must be a non-empty subset of {COMPONENTS}, got {list(chosen)}")
        self.components = frozenset(chosen)

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> OpticsParams:
        def amount(name: str, top: float) -> float:
            u = uniform(generator, 0.5, 1.0)  # always drawn, so params do not depend on components
            return severity * u * top if name in self.components else 0.0

        return OpticsParams(
            defocus_um=amount("defocus", MAX_DEFOCUS_UM),
            motion_um=amount("motion", MAX_MOTION_UM),
            motion_angle_deg=uniform(generator, 0.0, 180.0),
            haze_fraction=amount("haze", MAX_HAZE),
            haze_sigma_mm=uniform(generator, *HAZE_SIGMA_MM),
            glare_fraction=amount("glare", MAX_GLARE),
            flare_amplitude=amount("flare", MAX_FLARE),
            flare_angle_deg=uniform(generator, 0.0, 360.0),
            flare_width_frac=uniform(generator, 0.04, 0.08),
        )

    def _apply_linear(self, linear: Tensor, batch: Batch, params: Sequence[OpticsParams]) -> Tensor:
        b, _, h, w = linear.shape
        dev = linear.device
        mm_per_px = torch.tensor([sum(s) / len(s) for s in batch.spacing], dtype=torch.float32, device=dev)
        x = linear
        haze = per_sample(params, "haze_fraction", dev)
        if bool((haze > 0).any()):
            x = media_haze(x, haze, per_sample(params, "haze_sigma_mm", dev) / mm_per_px)
        defocus_px = [p.defocus_um / 1000.0 / float(m) for p, m in zip(params, mm_per_px.tolist())]
        motion_px = [p.motion_um / 1000.0 / float(m) for p, m in zip(params, mm_per_px.tolist())]
        if any(d > 0 for d in defocus_px) or any(m > 0 for m in motion_px):
            half = max(psf_half_width(d, m) for d, m in zip(defocus_px, motion_px))
            half = min(half, min(h, w) // 2 - 1)
            kernels = torch.stack(
                [optical_psf(d, m, p.motion_angle_deg, half) for d, m, p in zip(defocus_px, motion_px, params)]
            ).to(dev)
            x = convolve_per_sample(x, kernels)
        glare = per_sample(params, "glare_fraction", dev)
        if bool((glare > 0).any()):
            x = veiling_glare(x, glare)
        flare = per_sample(params, "flare_amplitude", dev)
        if bool((flare > 0).any()):
            fov = fov_of(batch)
            centre = image_centre((h, w), b, dev)
            radius = torch.full((b,), 0.95 * min(h, w) / 2, device=dev)
            if fov is not None:
                c_fov, r_fov = fov_geometry(fov)
                ok = (r_fov > 4.0).view(-1, 1)
                centre, radius = torch.where(ok, c_fov, centre), torch.where(ok.view(-1), r_fov, radius)
            else:
                fov = circular_aperture((h, w), centre, radius, dev)
            width = per_sample(params, "flare_width_frac", dev) * radius
            x = rim_flare(x, fov, centre, radius, flare, per_sample(params, "flare_angle_deg", dev), width)
        return x
