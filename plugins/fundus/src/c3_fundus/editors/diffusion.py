"""Pathology-preserving diffusion edits of fundus photographs (sRGB, C3 paper §2.3).

The generic machinery is :mod:`c3_core.editors.diffusion`. Here:

* **Model**: a diffusers UNet2DModel (widths 16/32/64, self-attention in the mid block only) on a 64 x 64 RGB grid,
  conditioned on the DR grade (one-hot, +1 at the grade and -1 elsewhere; 0 when unknown),
  trained on the demo cohort's training split on first use (CPU, seed 0) and cached as
  safetensors. ``c3 editor fit`` trains one on another cohort (``--size``, ``--device``).
* **Protected region**: the lesion masks (microaneurysms, haemorrhages, exudates; channels 0-2),
  re-imposed at every step and held bit-identical. **Frozen**: everything outside the field of
  view (``extras["fov"]``) never changes.
* **Scorer**: the demo task model's five grade probabilities (``fundus.demo_cnn``).
* **Directions** (guides in linear light; amplitudes scale with strength):

  - ``fundus.diffusion`` — plain resampling.
  - ``fundus.diffusion_illumination`` — illumination: a linear log-radiance gradient across the
    field, gain ``2^(a (cos t X + sin t Y))`` with ``X, Y`` in FOV radii about the image centre,
    ``a`` up to 0.5 stops per FOV radius, orientation ``t`` uniform.
  - ``fundus.diffusion_vessel_contrast`` — vessel contrast: the dark thin detail
    ``min(L - G_0.2mm(L), 0)`` (vessels, plus lesions, which the constraint restores) is scaled
    by ``1 + a``, ``a`` in ±0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor

from c3_core.batch import Batch
from c3_core.domains import IntensityDomain
from c3_core.editors.diffusion import DiffusionEditParams
from c3_core.editors.diffusion_demo import DemoDiffusionEditor
from c3_core.editors.diffusion_model import DiffusionConfig
from c3_fundus.colour import linear_to_srgb, srgb_to_linear
from c3_fundus.data.phantom import FOV_RADIUS
from c3_fundus.functional.optics import gaussian_blur_fft

WEIGHTS = "c3_fundus-diffusion-v1"
CONFIG = DiffusionConfig(size=64, channels=3, n_labels=5, widths=(16, 32, 64), norm_groups=8)
FIT: dict[str, Any] = {"epochs": 6, "batch_size": 8, "lr": 2e-3}
LESION_CHANNELS = (0, 1, 2)
VESSEL_SIGMA_MM = 0.2


# -- direction kernels (sRGB in, sRGB out, (B, 3, H, W)) ---------------------------------------
def illumination_gradient(srgb: Tensor, stops: Tensor, angle: Tensor, fov_radius: float = FOV_RADIUS) -> Tensor:
    """Linear light times ``2^(stops (cos(angle) X + sin(angle) Y))``; ``X, Y`` in FOV radii (``stops``, ``angle`` (B,))."""
    h, w = srgb.shape[2:]
    ys = torch.linspace(-1.0, 1.0, h, device=srgb.device, dtype=srgb.dtype).view(1, -1, 1) / fov_radius
    xs = torch.linspace(-1.0, 1.0, w, device=srgb.device, dtype=srgb.dtype).view(1, 1, -1) / fov_radius
    a = angle.to(srgb).view(-1, 1, 1)
    ramp = torch.cos(a) * xs + torch.sin(a) * ys
    gain = torch.exp2(stops.to(srgb).view(-1, 1, 1) * ramp).unsqueeze(1)
    return linear_to_srgb(srgb_to_linear(srgb) * gain)


def vessel_contrast(srgb: Tensor, gain: Tensor, spacing: Sequence[tuple[float, ...]], sigma_mm: float = VESSEL_SIGMA_MM) -> Tensor:
    """Linear light ``L + gain * min(L - G_sigma(L), 0)`` (dark thin structures scaled by ``1 + gain``)."""
    lin = srgb_to_linear(srgb)
    sigma = torch.tensor([sigma_mm / sp[0] for sp in spacing], dtype=srgb.dtype, device=srgb.device)
    dark = (lin - gaussian_blur_fft(lin, sigma)).clamp_max(0.0)
    return linear_to_srgb(lin + gain.to(srgb).view(-1, 1, 1, 1) * dark)


# -- editors -----------------------------------------------------------------------------------
class FundusDiffusion(DemoDiffusionEditor):
    """Plain grade-conditioned SDEdit resampling of a fundus photograph (the base of the fundus directions)."""

    id = "fundus.diffusion"
    modality = "fundus"
    domain = IntensityDomain.SRGB
    channels: ClassVar[tuple[int, ...] | None] = (3,)
    summary = "pathology-preserving diffusion resampling (SDEdit; lesions and outside-FOV held, task-model agreement)"
    lesion_channels: ClassVar[tuple[int, ...]] = LESION_CHANNELS
    lower_bound: ClassVar[float | None] = 0.0
    upper_bound: ClassVar[float | None] = 1.0
    model_config: ClassVar[DiffusionConfig | None] = CONFIG
    fit_defaults: ClassVar[dict[str, Any]] = FIT
    demo_weights = WEIGHTS
    demo_cohort = "c3_fundus.data.demo:FundusDemo"
    demo_task_model = "c3_fundus.models:demo_cnn"
    demo_vocabulary = "c3_fundus.grades:GRADE_NAMES"

    def frozen_mask(self, batch: Batch) -> Tensor | None:
        """Everything outside the field of view (``extras["fov"] < 0.5``), when the batch has one."""
        fov = batch.extras.get("fov")
        return None if fov is None else (fov[:, :1] < 0.5).to(batch.image.dtype)


def _values(params: Sequence[DiffusionEditParams], field: str, like: Tensor) -> Tensor:
    return torch.tensor([getattr(p, field) for p in params], dtype=like.dtype, device=like.device)


class FundusDiffusionIllumination(FundusDiffusion):
    id = "fundus.diffusion_illumination"
    summary = "diffusion edit: illumination gradient across the field of view"
    direction = "illumination"
    amplitude_unit = "stops per FOV radius"
    max_amplitude = 0.5
    signed = False  # the orientation angle covers both signs

    def guide(self, batch: Batch, params: Sequence[DiffusionEditParams]) -> Tensor:
        return illumination_gradient(batch.image, _values(params, "amplitude", batch.image), _values(params, "angle", batch.image))


class FundusDiffusionVesselContrast(FundusDiffusion):
    id = "fundus.diffusion_vessel_contrast"
    summary = "diffusion edit: vessel contrast (dark thin detail) scaled by 1 + a"
    direction = "vessel contrast"
    amplitude_unit = "gain of the dark detail below 0.2 mm"
    max_amplitude = 0.5

    def guide(self, batch: Batch, params: Sequence[DiffusionEditParams]) -> Tensor:
        return vessel_contrast(batch.image, _values(params, "amplitude", batch.image), batch.spacing)

