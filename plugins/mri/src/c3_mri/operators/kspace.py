"""k-space artefacts: Gibbs truncation and N/2 ghosting."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from c3_core.batch import Batch, CaseInfo
from c3_core.operator import Severity
from c3_mri.operators._base import MriOperator


def _kspace(x: Tensor) -> Tensor:
    dims = tuple(range(2, x.ndim))
    return torch.fft.fftshift(torch.fft.fftn(x, dim=dims), dim=dims)


def _image(k: Tensor) -> Tensor:
    dims = tuple(range(2, k.ndim))
    return torch.fft.ifftn(torch.fft.ifftshift(k, dim=dims), dim=dims).abs()


@dataclass(frozen=True)
class GibbsParams:
    kept_fraction: float  # fraction of k-space kept along every axis (centred)


class GibbsTruncation(MriOperator[GibbsParams]):
    id = "mri.gibbs"
    version = "1"
    severity = Severity("kept_fraction", "fraction of k-space kept per axis", 1.0, 0.5, (0.85, 0.7, 0.6, 0.5))
    params_type = GibbsParams
    summary = "Gibbs ringing from k-space truncation"

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> GibbsParams:
        return GibbsParams(severity)

    def _apply(self, batch: Batch, params: Sequence[GibbsParams]) -> Batch:
        k = _kspace(batch.image)
        masks = []
        for p in params:
            m = torch.ones(batch.spatial_shape, device=batch.device)
            for axis, n in enumerate(batch.spatial_shape):
                keep = max(1, int(round(n * p.kept_fraction)))
                lo = (n - keep) // 2
                line = torch.zeros(n, device=batch.device)
                line[lo : lo + keep] = 1
                m = m * line.view(*[n if a == axis else 1 for a in range(batch.spatial_dims)])
            masks.append(m)
        return batch.replace(image=_image(k * torch.stack(masks).unsqueeze(1)).to(batch.image.dtype))


@dataclass(frozen=True)
class GhostParams:
    ghost_fraction: float  # amplitude of the N/2 ghost relative to the object
    phase_axis: int


class Ghosting(MriOperator[GhostParams]):
    """Alternate phase-encode lines scaled by (1 − 2a): an N/2 ghost of relative amplitude a."""

    id = "mri.ghosting"
    version = "1"
    severity = Severity("ghost_fraction", "ghost amplitude / object amplitude", 0.0, 0.25, (0.05, 0.1, 0.15, 0.25))
    params_type = GhostParams
    summary = "N/2 ghosting from phase errors on alternate k-space lines"

    def __init__(self, phase_axis: int = 1) -> None:
        self.phase_axis = int(phase_axis)

    def _sample(self, info: CaseInfo, generator: torch.Generator, severity: float) -> GhostParams:
        return GhostParams(severity, self.phase_axis)

    def _apply(self, batch: Batch, params: Sequence[GhostParams]) -> Batch:
        axis = params[0].phase_axis
        dims = tuple(range(2, batch.image.ndim))
        k = torch.fft.fftn(batch.image, dim=dims)
        n = batch.spatial_shape[axis]
        odd = (torch.arange(n, device=batch.device) % 2 == 1).float()
        a = torch.tensor([p.ghost_fraction for p in params], device=batch.device).view(-1, 1)
        scale = 1.0 - 2.0 * a * odd.view(1, n)  # (B, n)
        view = [batch.size, 1] + [n if i == axis else 1 for i in range(batch.spatial_dims)]
        k = k * scale.view(view)
        return batch.replace(image=torch.fft.ifftn(k, dim=dims).abs().to(batch.image.dtype))
