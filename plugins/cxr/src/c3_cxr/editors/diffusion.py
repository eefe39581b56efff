"""Pathology-preserving diffusion edits of chest radiographs (log attenuation, C3 paper §2.3).

The generic machinery (SDEdit with a label-conditioned DDIM UNet, lesion re-imposition, scorer
agreement) is :mod:`c3_core.editors.diffusion`. Here:

* **Model**: a diffusers UNet2DModel (widths 16/32/64, self-attention in the mid block only) on a 64 x 64 grid, conditioned
  on the five findings (+1 / -1 / 0 unknown), trained on the demo cohort's training split on first
  use (CPU, seed 0) and cached as safetensors (``c3_core.cache.cache_dir()``). ``c3 editor fit``
  trains one on another cohort (e.g. at 128 or 256 px on a GPU: ``--size``, ``--device``).
* **Protected region**: mask channel 2 (the findings: effusion, consolidation, edema, atelectasis);
  re-imposed at every step and held bit-identical.
* **Scorer**: the demo task model's five finding probabilities (``cxr.demo_cnn``).
* **Directions** (the guide ``x + D(x)`` that SDEdit makes realistic; amplitudes scale with strength):

  - ``cxr.diffusion`` — plain resampling (``D = 0``): texture, noise and fine anatomy vary.
  - ``cxr.diffusion_rib_contrast`` — rib-shadow contrast: the lung field's band-pass component
    (difference of Gaussians, sigma 2 mm and 8 mm: rib-width structures) is scaled by ``1 + a``,
    ``a`` in ±0.5 (gain).
  - ``cxr.diffusion_haze`` — subtle haze: a smooth added line integral inside the lungs, 40 % at
    the apex rising to 100 % at the base (dependent), ``a`` up to 0.12 (line-integral units;
    the demo's edema haze is 0.45 and effusion fluid 1.1).
  - ``cxr.diffusion_projection`` — projection geometry: the AP-projection signature, scapular
    soft tissue overlapping the lateral upper lung fields (in a PA film the scapulae are rotated
    clear of the lungs), ``a`` up to 0.25 line-integral units.

  Lungs come from mask channel 0 when the batch has masks; without one the whole image is used.
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
from c3_cxr.functional.filters import gaussian_blur_batched

WEIGHTS = "c3_cxr-diffusion-v1"
CONFIG = DiffusionConfig(size=64, channels=1, n_labels=5, widths=(16, 32, 64), norm_groups=8)
FIT: dict[str, Any] = {"epochs": 20, "batch_size": 8, "lr": 2e-3}  # 6 epochs left the demo denoiser undertrained (docs/editors.md)
LESION_CHANNELS = (2,)
LUNG_CHANNEL = 0


# -- direction kernels (log attenuation, (B, 1, H, W)) ----------------------------------------
def lungs(batch: Batch) -> Tensor:
    """``(B, 1, H, W)`` float: the lung mask (channel 0), or ones without a mask."""
    if batch.mask is None or batch.mask.shape[1] <= LUNG_CHANNEL:
        return torch.ones_like(batch.image[:, :1])
    return (batch.mask[:, LUNG_CHANNEL : LUNG_CHANNEL + 1] >= 0.5).to(batch.image.dtype)


def blur_mm(x: Tensor, sigma_mm: float, spacing: Sequence[tuple[float, ...]]) -> Tensor:
    """Gaussian blur with sigma in mm (isotropic pixels assumed: the first spacing entry per case)."""
    sigma = torch.tensor([sigma_mm / sp[0] for sp in spacing], dtype=x.dtype, device=x.device)
    return gaussian_blur_batched(x, sigma)


def rib_contrast(mu: Tensor, lung: Tensor, gain: Tensor, spacing: Sequence[tuple[float, ...]]) -> Tensor:
    """``mu + gain * w * (G_2mm(mu) - G_8mm(mu))`` with ``w`` the lungs blurred by 4 mm (``gain (B,)``)."""
    band = blur_mm(mu, 2.0, spacing) - blur_mm(mu, 8.0, spacing)
    w = blur_mm(lung, 4.0, spacing).clamp(0.0, 1.0)
    return mu + gain.view(-1, 1, 1, 1) * w * band


def _extent(lung: Tensor, axis: int) -> tuple[Tensor, Tensor]:
    """Per case, the first and last index (float) along ``axis`` (2 rows, 3 cols) where the lungs are."""
    other = 3 if axis == 2 else 2
    occupied = lung[:, 0].amax(dim=other - 1) > 0.5  # (B, n)
    n = occupied.shape[1]
    idx = torch.arange(n, device=lung.device, dtype=lung.dtype).expand_as(occupied)
    first = torch.where(occupied, idx, torch.full_like(idx, float(n))).amin(1)
    last = torch.where(occupied, idx, torch.full_like(idx, -1.0)).amax(1)
    empty = last < first
    return torch.where(empty, torch.zeros_like(first), first), torch.where(empty, torch.full_like(last, n - 1.0), last)


def haze(mu: Tensor, lung: Tensor, amount: Tensor, spacing: Sequence[tuple[float, ...]]) -> Tensor:
    """``mu + amount * G_8mm(lungs) * (0.4 + 0.6 * depth)``: depth 0 at the lung apex, 1 at the base."""
    top, bottom = _extent(lung, 2)
    rows = torch.arange(mu.shape[2], device=mu.device, dtype=mu.dtype).view(1, -1, 1)
    depth = ((rows - top.view(-1, 1, 1)) / (bottom - top).clamp_min(1.0).view(-1, 1, 1)).clamp(0.0, 1.0)
    w = blur_mm(lung, 8.0, spacing).clamp(0.0, 1.0) * (0.4 + 0.6 * depth).unsqueeze(1)
    return mu + amount.view(-1, 1, 1, 1) * w


def scapular_overlap(mu: Tensor, lung: Tensor, amount: Tensor, spacing: Sequence[tuple[float, ...]]) -> Tensor:
    """``mu + amount * S``: ``S`` covers the lateral 45 % of each lung's half-width in the upper 60 %
    of the lung height (soft edges, 4 mm blur), restricted to the lungs."""
    top, bottom = _extent(lung, 2)
    left, right = _extent(lung, 3)
    h, w = mu.shape[2:]
    rows = torch.arange(h, device=mu.device, dtype=mu.dtype).view(1, -1, 1)
    cols = torch.arange(w, device=mu.device, dtype=mu.dtype).view(1, 1, -1)
    centre = ((left + right) / 2).view(-1, 1, 1)
    half = ((right - left) / 2).clamp_min(1.0).view(-1, 1, 1)
    lateral = (((cols - centre).abs() / half - 0.55) / 0.15).clamp(0.0, 1.0)
    height = (bottom - top).clamp_min(1.0).view(-1, 1, 1)
    upper = torch.sigmoid((top.view(-1, 1, 1) + 0.6 * height - rows) / (0.05 * height))
    s = blur_mm((lateral * upper).unsqueeze(1) * lung, 4.0, spacing).clamp(0.0, 1.0)
    return mu + amount.view(-1, 1, 1, 1) * s


# -- editors -----------------------------------------------------------------------------------
class CxrDiffusion(DemoDiffusionEditor):
    """Plain label-conditioned SDEdit resampling of a radiograph (the base of the CXR directions)."""

    id = "cxr.diffusion"
    modality = "cxr"
    domain = IntensityDomain.LOG_ATTENUATION
    channels: ClassVar[tuple[int, ...] | None] = (1,)
    summary = "pathology-preserving diffusion resampling (SDEdit; findings region held, task-model agreement)"
    lesion_channels: ClassVar[tuple[int, ...]] = LESION_CHANNELS
    lower_bound: ClassVar[float | None] = 0.0  # a line integral is never negative
    model_config: ClassVar[DiffusionConfig | None] = CONFIG
    fit_defaults: ClassVar[dict[str, Any]] = FIT
    demo_weights = WEIGHTS
    demo_cohort = "c3_cxr.data.demo:ChestDemo"
    demo_task_model = "c3_cxr.models:demo_cnn"
    demo_vocabulary = "c3_cxr.data.phantom:FINDINGS"


def _amplitudes(params: Sequence[DiffusionEditParams], like: Tensor) -> Tensor:
    return torch.tensor([p.amplitude for p in params], dtype=like.dtype, device=like.device)


class CxrDiffusionRibContrast(CxrDiffusion):
    id = "cxr.diffusion_rib_contrast"
    summary = "diffusion edit: rib-shadow contrast in the lung fields scaled by 1 + a"
    direction = "rib-shadow contrast"
    amplitude_unit = "gain of the 2-8 mm band-pass in the lungs"
    max_amplitude = 0.5

    def guide(self, batch: Batch, params: Sequence[DiffusionEditParams]) -> Tensor:
        return rib_contrast(batch.image, lungs(batch), _amplitudes(params, batch.image), batch.spacing)


class CxrDiffusionHaze(CxrDiffusion):
    id = "cxr.diffusion_haze"
    summary = "diffusion edit: subtle dependent haze added over the lungs"
    direction = "subtle haze"
    amplitude_unit = "line integral added at the lung base"
    max_amplitude = 0.12
    signed = False

    def guide(self, batch: Batch, params: Sequence[DiffusionEditParams]) -> Tensor:
        return haze(batch.image, lungs(batch), _amplitudes(params, batch.image), batch.spacing)


class CxrDiffusionProjection(CxrDiffusion):
    id = "cxr.diffusion_projection"
    summary = "diffusion edit: AP-projection geometry (scapulae over the lateral upper lung fields)"
    direction = "projection geometry"
    amplitude_unit = "line integral of the scapular overlap"
    max_amplitude = 0.25
    signed = False

    def guide(self, batch: Batch, params: Sequence[DiffusionEditParams]) -> Tensor:
        return scapular_overlap(batch.image, lungs(batch), _amplitudes(params, batch.image), batch.spacing)
