"""Toy structure-area data and editor (modality ``toy``, display domain) for the Seg-CFT tests.

Images are 32 x 32 px: a disk of intensity 0.8 above a 0.2 background with a random tilt, radius
4–9 px, centre jittered; the disk is the single structure (mask channel 0). ``ThresholdSegmentor``
is an exact frozen segmentor for these images (logit ``gain * (u - 0.5)``).
"""

from __future__ import annotations

import functools

import torch
from torch import Tensor, nn

from c3_core.batch import Batch
from c3_core.domains import IntensityDomain
from c3_core.editors.structure import (
    FineTuneConfig,
    StructureAreaEditor,
    StructureModel,
    StructureModelConfig,
    fit_structure_model,
)
from c3_core.plugins.markers import hookimpl

SIZE = 32
SPACING = (0.5, 0.5)
CONFIG = StructureModelConfig(
    size=SIZE, channels=1, structures=1, widths=(8, 16), seg_widths=(4, 8, 8), latent_dim=8,
    gen_epochs=40, seg_epochs=24, reg_epochs=8, batch_size=16, lr=5e-3,
)  # fmt: skip  # seg_epochs 24: at 8 the segmentor's logits spanned only -1.3..2.3 (no border to set)
TUNE = FineTuneConfig(steps=40, batch_size=16, lr=2e-3, margin_px=2)


def disks(n: int, seed: int, size: int = SIZE) -> tuple[Tensor, Tensor]:
    """``(images (n, 1, size, size), masks (n, 1, size, size))`` from one seeded generator."""
    g = torch.Generator().manual_seed(seed)
    r = 4.0 + 5.0 * torch.rand(n, generator=g)
    cy, cx = (size / 2 + 4.0 * (torch.rand(n, generator=g) - 0.5) for _ in range(2))
    tilt = 0.1 * (torch.rand(n, 2, generator=g) - 0.5)
    lin = torch.arange(size, dtype=torch.float32)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    d2 = (yy - cy.view(-1, 1, 1)) ** 2 + (xx - cx.view(-1, 1, 1)) ** 2
    mask = (d2 <= r.view(-1, 1, 1) ** 2).float()
    ramp = tilt[:, :1, None] * (yy / size - 0.5) + tilt[:, 1:, None] * (xx / size - 0.5)
    image = 0.2 + 0.6 * mask + ramp
    return image.unsqueeze(1), mask.unsqueeze(1)


def disk_batch(n: int = 3, seed: int = 7) -> Batch:
    u, m = disks(n, seed)
    return Batch(u, tuple(f"toy-disk-{i}" for i in range(n)), "toy", IntensityDomain.DISPLAY, (SPACING,) * n, mask=m)


class ThresholdSegmentor(nn.Module):
    """Exact frozen segmentor of the toy disks: ``logits = gain * (u - 0.5)``."""

    def __init__(self, gain: float = 30.0) -> None:
        super().__init__()
        self.gain = gain

    def forward(self, u: Tensor) -> Tensor:
        return self.gain * (u - 0.5)


@functools.cache
def toy_model_state(seed: int = 0) -> tuple[tuple[str, Tensor], ...]:
    """The toy structure model's state (fitted once per test process; read-only tuples)."""
    u, m = disks(96, seed=1)
    model = fit_structure_model(u, m, structures=("disk",), config=CONFIG, tune=TUNE, seed=seed)
    return tuple(model.state_dict().items())


class ToyDiskArea(StructureAreaEditor):
    id = "toy.disk_area"
    modality = "toy"
    domain = IntensityDomain.DISPLAY
    structure = "disk"
    summary = "set the toy disk's area"
    expected_effect = "disk area set to A mm² (A = ratio x the segmented disk area)"

    @classmethod
    def load_model(cls) -> StructureModel:
        return StructureModel.from_state_dict(dict(toy_model_state()), CONFIG, ("disk",), source="toy")


@hookimpl
def c3_register_editors(registry):  # noqa: ANN001
    registry.add("toy.disk_area", "toy_structure:ToyDiskArea", "set the toy disk's area")
