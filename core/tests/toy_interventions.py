"""Toy mask-guided editors (modality ``toy``, display domain) for the interventions and probe tests.

The toy dataset (``toy_plugin``, here at 32 x 32 px) puts a bright 6x6 lesion at rows/cols 4..9
of odd cases, with mask channel 0 marking it. ``ToyReader`` reads the lesion square; ``ToyIgnorer`` reads a corner.
"""

from __future__ import annotations

import torch
import toy_plugin
from torch import Tensor

from c3_core.batch import Batch
from c3_core.domains import IntensityDomain
from c3_core.editors.interventions import HealthyControl, LesionOnly, LesionRemoved
from c3_core.model import ModelBundle
from c3_core.operator import Severity
from c3_core.plugins.markers import hookimpl

MARGIN = Severity("lesion margin", "mm", identity=0.0, extreme=2.0, levels=(0.0, 1.0, 2.0))


class ToyLesionRemoved(LesionRemoved):
    id = "toy.lesion_removed"
    modality = "toy"
    domain = IntensityDomain.DISPLAY
    severity = MARGIN

    def expected_label(self, label: Tensor, edited: Tensor) -> Tensor:
        """Class indices: a case whose lesion was removed is "absent" (0); other labels unknown."""
        if label.is_floating_point():
            return super().expected_label(label, edited)
        return torch.where(edited.to(label.device), torch.zeros_like(label), label)


class ToyLesionOnly(LesionOnly):
    id = "toy.lesion_only"
    modality = "toy"
    domain = IntensityDomain.DISPLAY
    severity = MARGIN


class ToyHealthyControl(HealthyControl):
    id = "toy.healthy_control"
    modality = "toy"
    domain = IntensityDomain.DISPLAY
    severity = MARGIN

    def allowed_regions(self, batch: Batch) -> list[Tensor]:
        """Everything but a 1-pixel frame (so the area is not the whole image)."""
        area = torch.zeros((batch.size, *batch.spatial_shape), dtype=torch.bool, device=batch.device)
        area[(slice(None), *[slice(1, -1)] * batch.spatial_dims)] = True
        return [area]


def make_dataset(*, source: object = None, split: str = "test", **options: object) -> toy_plugin.ToyDataset:
    """The toy cohort at 32 x 32 px (room for a control region beside the lesion)."""
    return toy_plugin.ToyDataset(size=32, seed=0 if split == "test" else 1, **options)  # type: ignore[arg-type]


class _Window(torch.nn.Module):
    """Two-class logits from the mean of a fixed window: ``±gain * (mean - 0.55)``."""

    def __init__(self, rows: slice, cols: slice, gain: float = 20.0) -> None:
        super().__init__()
        self.rows, self.cols, self.gain = rows, cols, gain

    def forward(self, x: Tensor) -> Tensor:
        m = x[:, :, self.rows, self.cols].mean(dim=(1, 2, 3))
        z = self.gain * (m - 0.55)
        return torch.stack([-z, z], 1)


def reader(**_: object) -> ModelBundle:
    """Reads the lesion square (rows/cols 4..9)."""
    return ModelBundle(_Window(slice(4, 10), slice(4, 10)), "multiclass", ("absent", "present"), "display", name="toy.reader")


def ignorer(**_: object) -> ModelBundle:
    """Reads a window far from the lesion (rows/cols 24..27)."""
    return ModelBundle(_Window(slice(24, 28), slice(24, 28)), "multiclass", ("absent", "present"), "display", name="toy.ignorer")


class _Segmenter(torch.nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return 40.0 * (x[:, :1] - 0.65)


def segmenter(**_: object) -> ModelBundle:
    """Voxel-wise lesion logit from the intensity (the lesion is 0.3 brighter)."""
    return ModelBundle(_Segmenter(), "segmentation", ("lesion",), "display", name="toy.segmenter")


@hookimpl
def c3_register_editors(registry):  # noqa: ANN001
    registry.add("toy.lesion_removed", "toy_interventions:ToyLesionRemoved", "lesion removed")
    registry.add("toy.lesion_only", "toy_interventions:ToyLesionOnly", "lesion only")
    registry.add("toy.healthy_control", "toy_interventions:ToyHealthyControl", "healthy control")
