"""``us.speckle``: a new multiplicative speckle pattern, Rician, Rayleigh or K-distributed.

Severity is the *speckle contrast* of the multiplicative amplitude field (its std / mean):

* 0: no change (the field is exactly 1);
* between 0 and 0.523: partially developed speckle with a coherent component (Rician amplitude);
* 0.523: fully developed speckle (Rayleigh amplitude, many scatterers per resolution cell);
* above 0.523: K-distributed amplitude (Rayleigh x sqrt(Gamma)); the K shape ``alpha`` is the
  effective number of scatterers per resolution cell, rounded to a multiple of 1/2 (see
  :func:`c3_ultrasound.functional.speckle.gamma_texture`), so the realised contrast is the nearest
  achievable one (``alpha = 2`` gives 0.664, the admissible extreme). ``alpha > 16`` is treated as
  Rayleigh (contrast within 3.6 %).

The field has unit mean square (mean echo power kept) and is spatially correlated by an
anisotropic Gaussian PSF whose axial / lateral FWHM in mm are sampled per case and converted to
pixels with the case's spacing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from c3_core.api import Batch, CaseInfo, Draws, Severity, SeveritySource, draw_seed, generator_from_seed, uniform
from c3_ultrasound.functional.speckle import (
    FWHM_PER_SIGMA,
    RAYLEIGH_CONTRAST,
    complex_gaussian_field,
    gamma_texture,
    k_alpha_for_contrast,
    rician_amplitude,
    rician_coherent_for_contrast,
)
from c3_ultrasound.operators._base import UltrasoundOperator

DISTRIBUTIONS = ("none", "rician", "rayleigh", "k")
MAX_K_ALPHA = 16.0
RAYLEIGH_TOLERANCE = 1e-3  # contrasts this close to Rayleigh's are drawn as Rayleigh


@dataclass(frozen=True)
class SpeckleParams:
    """One case's speckle field.

    ``distribution``: "none" | "rician" | "rayleigh" | "k". ``coherent_amplitude``: Rician
    coherent-to-diffuse amplitude ratio m (diffuse E|Z|^2 = 1; 0 unless Rician).
    ``scatterers_per_cell``: K shape alpha, a multiple of 1/2 (0 unless K).
    ``axial_fwhm_mm`` / ``lateral_fwhm_mm``: PSF full width at half maximum in mm.
    ``seed``: the field's noise realisation.
    """

    distribution: str
    coherent_amplitude: float
    scatterers_per_cell: float
    axial_fwhm_mm: float
    lateral_fwhm_mm: float
    seed: int

    def __post_init__(self) -> None:
        if self.distribution not in DISTRIBUTIONS:
            raise ValueError(f"SpeckleParams: distribution must be one of {DISTRIBUTIONS}, got {self.distribution!r}")
        if self.distribution == "k" and (self.scatterers_per_cell <= 0 or (2 * self.scatterers_per_cell) % 1):
            raise ValueError(f"SpeckleParams: K shape must be a positive multiple of 1/2, got {self.scatterers_per_cell}")
        if self.axial_fwhm_mm < 0 or self.lateral_fwhm_mm < 0:
            raise ValueError("SpeckleParams: PSF widths must be >= 0 mm")


def speckle_field(params: SpeckleParams, shape: tuple[int, int], spacing_mm: tuple[float, float], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The unit-mean-square multiplicative amplitude field (H, W) that ``params`` describe."""
    if params.distribution == "none":
        return torch.ones(shape, device=device, dtype=dtype)
    g = generator_from_seed(params.seed, device)
    sa = params.axial_fwhm_mm / FWHM_PER_SIGMA / spacing_mm[0]
    sl = params.lateral_fwhm_mm / FWHM_PER_SIGMA / spacing_mm[1]
    re, im = complex_gaussian_field(shape, g, sa, sl, dtype)
    amplitude = rician_amplitude(re, im, params.coherent_amplitude)
    if params.distribution == "k":
        degrees = round(2 * params.scatterers_per_cell)
        amplitude = amplitude * gamma_texture(shape, degrees, g, sa, sl, dtype).sqrt()
    return amplitude


class Speckle(UltrasoundOperator[SpeckleParams]):
    """Multiply the envelope by a new PSF-correlated speckle field of a given contrast."""

    id = "us.speckle"
    version = "3"  # 3: the PSF blur by multiply-adds on shifted views (psf_filter), not a one-channel conv2d: rounding apart
    severity = Severity(
        "speckle_contrast",
        "std/mean of the multiplicative amplitude (0 none, 0.523 Rayleigh, above: K-distributed)",
        0.0,
        0.66,
        (0.15, 0.3, 0.45, RAYLEIGH_CONTRAST, 0.6, 0.66),
        source=SeveritySource(
            quantity="speckle contrast (std/mean) of the envelope amplitude",
            reference=(
                "Wagner RF, Insana MF, Brown DG, Statistical properties of radio-frequency and envelope-detected "
                "signals with applications to medical ultrasound, J Opt Soc Am A 1987;4(5):910-922, "
                "doi:10.1364/josaa.4.000910 (fully developed speckle: Rayleigh envelope, SNR 1.91, contrast 0.523; "
                "coherent components lower it)"
            ),
            derivation=(
                "Rician below 0.523 (a coherent component), Rayleigh at 0.523 (many scatterers per cell), K-distributed "
                "above it with alpha effective scatterers per cell; alpha = 2 gives 0.664"
            ),
            extreme_rationale=(
                "about two effective scatterers per resolution cell: sparse scattering seen in real tissue "
                "(non-Rayleigh speckle), not an instrument fault"
            ),
        ),
    )
    params_type = SpeckleParams
    summary = "multiplicative speckle (Rician / Rayleigh / K amplitude) correlated by the PSF"

    def __init__(self, axial_fwhm_mm: tuple[float, float] = (0.3, 0.6), lateral_fwhm_mm: tuple[float, float] = (0.6, 1.2)) -> None:
        """``axial_fwhm_mm`` / ``lateral_fwhm_mm``: ranges (mm) the PSF widths are drawn from."""
        for name, rng in (("axial_fwhm_mm", axial_fwhm_mm), ("lateral_fwhm_mm", lateral_fwhm_mm)):
            if len(rng) != 2 or not 0 <= rng[0] <= rng[1]:
                raise ValueError(f"{self.id}: {name} must be a range [low, high] in mm with 0 <= low <= high, got {rng}")
        self.axial_fwhm_mm = (float(axial_fwhm_mm[0]), float(axial_fwhm_mm[1]))
        self.lateral_fwhm_mm = (float(lateral_fwhm_mm[0]), float(lateral_fwhm_mm[1]))

    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> SpeckleParams:
        axial = uniform(generator, *self.axial_fwhm_mm)
        lateral = uniform(generator, *self.lateral_fwhm_mm)
        seed = draw_seed(generator)
        coherent, alpha = 0.0, 0.0
        if severity <= 0.0:
            dist = "none"
        elif abs(severity - RAYLEIGH_CONTRAST) <= RAYLEIGH_TOLERANCE:
            dist = "rayleigh"
        elif severity < RAYLEIGH_CONTRAST:
            dist, coherent = "rician", rician_coherent_for_contrast(severity)
        else:
            alpha = max(0.5, round(2.0 * k_alpha_for_contrast(severity)) / 2.0)
            dist = "k" if alpha <= MAX_K_ALPHA else "rayleigh"
            alpha = alpha if dist == "k" else 0.0
        return SpeckleParams(dist, coherent, alpha, axial, lateral, seed)

    def _apply(self, batch: Batch, params: Sequence[SpeckleParams]) -> Batch:
        shape = (int(batch.image.shape[2]), int(batch.image.shape[3]))
        fields = [
            speckle_field(p, shape, batch.spacing[i], batch.device, batch.image.dtype)  # per-case noise realisation
            for i, p in enumerate(params)
        ]
        return batch.replace(image=batch.image * torch.stack(fields).unsqueeze(1))
