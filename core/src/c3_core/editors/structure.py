"""Segmentor-guided counterfactual fine-tuning (Seg-CFT): set a structure's area, measure it with a segmentor.

The pieces, on a square working grid of ``size`` px (images in model units ``u``):

* a **conditional generator** with an abduct/decode interface: ``z = abduct(u)`` (the posterior
  mean of a conditional VAE) and ``decode(z, c)``, where ``c`` holds the standardised area
  fractions of the ``S`` structures (``(B, S)``). A counterfactual with target areas ``a'`` keeps
  the abducted exogenous terms of ``u`` — its code ``z`` *and* its reconstruction residual
  ``u - decode(z, c)`` — and changes only the parents: ``u' = u + decode(z, c') - decode(z, c)``,
  so an edit with ``a' = a`` is exactly the identity;
* a frozen **area measure** ``A(u) -> (B, S)`` area fractions: the soft area
  ``mean sigmoid(sharpness * logit)`` of a segmentor's logits (Seg-CFT; ``FineTuneConfig.sharpness``,
  4: a plain sigmoid of a shallow segmentor lets the hard area overshoot) or the output of an area
  regressor (the regressor-guided baseline);
* **fine-tuning** of the decoder (the encoder stays frozen, so abduction does not move) on
  ``L = mean_s |A(u')_s - a'_s| / h'_s + lambda * mean(|u' - u| outside R) + rho * MSE(decode(z, c), u)``,
  where ``h'`` is ``ratio`` times the measure's reading of the intervened structure's area on the
  original (a segmentor: pixels with logit > 0; the other structures keep theirs), ``a'`` the soft
  area ``A(u)`` with that structure's entry moved by ``h' - h`` (:func:`shifted_target`: the
  sigmoid's tails off the structure do not scale with it), and ``R`` is the intervened
  structure's mask, dilated by ``margin_px`` (the closeness constraint);
* **metrics**: MAPE (percent) and MAE of the area (working-grid px and mm² from the spacing),
  and leakage, the share of ``sum |x' - x|`` that lies outside the dilated structure.

:class:`StructureAreaEditor` is the generic interventional editor: a plugin subclass names the
structure, the map to model units and how to load its fitted :class:`StructureModel`.

The pieces live in one-job modules, all re-exported here: ``structure_kernels`` (grids, areas,
the objective), ``structure_nets`` (networks and their config), ``structure_model`` (the fitted
model), ``structure_training`` (fitting and fine-tuning) and ``structure_metrics`` (evaluation).
Randomness (initialisation, VAE noise, minibatches, fine-tuning targets) only from explicit generators.
"""

from __future__ import annotations

import math
from abc import abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import torch
from torch import Tensor

from c3_core.batch import Batch, CaseInfo
from c3_core.editors.nets import init_parameters, model_on_device
from c3_core.editors.structure_kernels import (
    SegmentorMeasure,
    dilate,
    from_grid,
    hard_area_px,
    intervene,
    mask_to_grid,
    outside_change,
    region_weight,
    relative_area_error,
    segcft_objective,
    shifted_target,
    soft_area,
    standardise,
    to_grid,
)
from c3_core.editors.structure_metrics import (
    InterventionMetrics,
    evaluate_interventions,
    leakage,
    mae,
    mape,
    pixel_area_mm2,
)
from c3_core.editors.structure_model import StructureModel
from c3_core.editors.structure_nets import (
    AreaRegressor,
    ConditionalVAE,
    StructureModelConfig,
    StructureSegmentor,
    counterfactual,
    freeze,
)
from c3_core.editors.structure_training import (
    AreaMeasure,
    FineTuneConfig,
    area_statistics,
    fine_tune,
    fit_structure_model,
    regressor_measure,
    segmentor_measure,
    train_generator,
    train_regressor,
    train_segmentor,
)
from c3_core.operator import Editor, Severity
from c3_core.seeding import Draws, random_sign
from c3_core.truth import set_unknown

__all__ = [  # the editor, and every piece this module held before the split (imported from here)
    "AreaMeasure", "AreaParams", "AreaRegressor", "ConditionalVAE", "FineTuneConfig", "InterventionMetrics",
    "SegmentorMeasure", "StructureAreaEditor", "StructureModel", "StructureModelConfig", "StructureSegmentor", "area_statistics",
    "counterfactual", "dilate", "evaluate_interventions", "fine_tune", "fit_structure_model", "freeze",
    "from_grid", "hard_area_px", "init_parameters", "intervene", "leakage", "mae", "mape", "mask_to_grid",
    "outside_change", "pixel_area_mm2", "region_weight", "regressor_measure", "relative_area_error",
    "segcft_objective", "segmentor_measure", "shifted_target", "soft_area", "standardise", "to_grid", "train_generator",
    "train_regressor", "train_segmentor",
]  # fmt: skip


@dataclass(frozen=True)
class AreaParams:
    """``ratio``: target area / the segmented area of the structure in the original (> 0)."""

    ratio: float


class StructureAreaEditor(Editor[AreaParams]):
    """Set one structure's area to ``ratio`` times its segmented area (interventional).

    Plugin subclasses set ``id``, ``modality``, ``domain``, ``structure``, ``summary``,
    ``expected_effect``, the affine map to model units (``intensity_offset``, ``intensity_scale``),
    an optional ``lower_bound`` of the domain, and implement :meth:`load_model` (CPU).

    Severity is the relative area change ``|ratio - 1|``. Options: ``direction`` — ``"grow"``,
    ``"shrink"`` or ``"either"`` (the sign is drawn from the generator); ``tolerance`` — the
    relative area error above which :meth:`check` rejects a counterfactual; ``region_px`` — the
    change is applied only near the structure: weight 1 on the segmented structure dilated by
    ``region_px`` working-grid px, feathered to exactly 0 beyond ``region_px + 4`` px (``None``:
    the generator's change everywhere, as trained).

    Changes: on every case whose ratio is not 1, the returned mask holds the frozen segmentor's
    masks of the *edited* image in the structures' channels (``mask_channels``: the batch mask
    channel of each of the model's structures, default channel ``s`` for structure ``s``), and
    its other channels are unknown (NaN: the edit may have moved them); the label is
    :meth:`expected_label` (default unknown: NaN, or -1 for a class index).
    """

    stream_sampling: ClassVar[bool] = True  # _sample draws through c3_core.seeding's helpers only

    intent: ClassVar[Literal["admissible", "interventional"]] = "interventional"
    version: ClassVar[str] = "1"
    preserves: ClassVar[frozenset[str]] = frozenset()  # the structure (its mask, maybe the label) changes
    changes: ClassVar[frozenset[str]] = frozenset({"mask", "label", "structure_area"})
    mask_channels: ClassVar[tuple[int, ...] | None] = None
    spatial_dims: ClassVar[tuple[int, ...]] = (2,)
    severity: ClassVar[Severity] = Severity("relative area change", "fraction of the segmented area", 0.0, 0.3, (0.1, 0.2, 0.3))
    params_type: ClassVar[type] = AreaParams
    structure: ClassVar[str]
    intensity_offset: ClassVar[float] = 0.0
    intensity_scale: ClassVar[float] = 1.0
    lower_bound: ClassVar[float | None] = None

    def __init__(self, direction: str = "either", tolerance: float = 0.15, region_px: int | None = 4) -> None:
        if direction not in ("grow", "shrink", "either"):
            raise ValueError(f"{self.id}: direction must be 'grow', 'shrink' or 'either', got {direction!r}")
        if not (math.isfinite(float(tolerance)) and float(tolerance) > 0):
            raise ValueError(f"{self.id}: tolerance must be a finite number > 0, got {tolerance!r}")
        if region_px is not None and (isinstance(region_px, bool) or not isinstance(region_px, int) or region_px < 0):
            raise ValueError(f"{self.id}: region_px must be an integer >= 0 or None, got {region_px!r}")
        self.direction = direction
        self.tolerance = float(tolerance)
        self.region_px = region_px
        self._models: dict[str, StructureModel] = {}

    @classmethod
    @abstractmethod
    def load_model(cls) -> StructureModel:
        """The fitted structure model on the CPU (trained and cached by the plugin on first use)."""

    def model(self, device: torch.device | str) -> StructureModel:
        """The structure model on ``device`` (loaded once per editor instance and device)."""
        return model_on_device(self._models, device, self.load_model, lambda m, d: m.to(d))

    # -- params ---------------------------------------------------------------------------
    def _sample(self, info: CaseInfo, generator: Draws, severity: float) -> AreaParams:
        if self.direction == "either":
            sign = random_sign(generator)
        else:
            sign = 1.0 if self.direction == "grow" else -1.0
        return AreaParams(ratio=1.0 + sign * float(severity))

    # -- apply ----------------------------------------------------------------------------
    def _model_units(self, image: Tensor) -> Tensor:
        return (image - self.intensity_offset) / self.intensity_scale

    def _apply(self, batch: Batch, params: Sequence[AreaParams]) -> Batch:
        for p in params:
            if not (math.isfinite(p.ratio) and p.ratio > 0):
                raise ValueError(f"{self.id}: ratio must be a finite number > 0, got {p.ratio!r}")
        model = self.model(batch.device)
        small = to_grid(self._model_units(batch.image), model.config.size)
        ratio = torch.tensor([p.ratio for p in params], dtype=small.dtype, device=batch.device)
        index = model.index(self.structure)
        delta, logits, _ = model.edit_delta(small, index, ratio)
        if self.region_px is not None:
            delta = delta * self.region_weight(logits[:, index : index + 1] > 0)
        out = batch.image + (from_grid(delta, batch.spatial_shape) * self.intensity_scale).to(batch.image.dtype)
        if self.lower_bound is not None:
            out = out.clamp_min(self.lower_bound)
        edited = (ratio != 1.0).cpu()
        label = None if batch.label is None else self.expected_label(batch.label, edited)
        if batch.mask is None:
            return batch.replace(image=out, label=label)
        channels = self.structure_channels(model, batch.mask.shape[1])
        mask = set_unknown(batch.mask, edited)
        seg = self.segmented_mask(batch.replace(image=out)).to(mask.dtype)
        mask[:, channels] = torch.where(edited.to(mask.device).view(-1, 1, 1, 1), seg, batch.mask[:, channels])
        return batch.replace(image=out, mask=mask, label=label)

    def structure_channels(self, model: StructureModel, n_channels: int) -> list[int]:
        """The batch mask channel of each of the model's structures (ValueError if absent)."""
        channels = list(range(len(model.structures)) if self.mask_channels is None else self.mask_channels)
        if len(channels) != len(model.structures) or max(channels) >= n_channels:
            raise ValueError(
                f"{self.id}: the mask has {n_channels} channel(s); the structures {list(model.structures)} "
                f"need channels {channels}"
            )
        return channels

    @torch.no_grad()
    def segmented_mask(self, batch: Batch) -> Tensor:
        """The frozen segmentor's masks ``(B, S, H, W)`` in {0, 1} of ``batch``'s images at the image
        grid (logits resampled bilinearly, then ``> 0``)."""
        model = self.model(batch.device)
        logits = model.segment_logits(to_grid(self._model_units(batch.image), model.config.size))
        return (from_grid(logits, batch.spatial_shape) > 0).to(batch.image.dtype)

    def expected_label(self, label: Tensor, edited: Tensor) -> Tensor:
        """The label of the edited images: ``label`` with the rows ``edited (B,)`` bool unknown
        (a plugin that knows what the structure's size means for its findings states them)."""
        return set_unknown(label, edited)

    def region_weight(self, structure: Tensor) -> Tensor:
        """:func:`region_weight` of the segmented structure with this editor's ``region_px``."""
        return region_weight(structure, 0 if self.region_px is None else self.region_px)

    # -- measurement and validity ---------------------------------------------------------
    @torch.no_grad()
    def measure_area_mm2(self, batch: Batch) -> Tensor:
        """The segmentor's area of the structure per case ``(B,)`` in mm² (float64, CPU)."""
        model = self.model(batch.device)
        size = model.config.size
        px = hard_area_px(model.segment_logits(to_grid(self._model_units(batch.image), size)))[:, model.index(self.structure)]
        mm2 = torch.tensor([pixel_area_mm2(sp, batch.spatial_shape, size) for sp in batch.spacing], dtype=torch.float64)
        return px.cpu() * mm2

    def target_area_mm2(self, original: Batch, params: Sequence[AreaParams]) -> Tensor:
        """The declared effect per case ``(B,)``: ``ratio`` times the original's segmented area, mm²."""
        return self.measure_area_mm2(original) * torch.tensor([p.ratio for p in params], dtype=torch.float64)

    def check(self, original: Batch, counterfactual: Batch, params: Sequence[AreaParams]) -> list[str | None]:
        """Reject a case whose segmented area misses the target by more than ``tolerance`` (relative)."""
        target = self.target_area_mm2(original, params)
        got = self.measure_area_mm2(counterfactual)
        reasons: list[str | None] = []
        for t, a in zip(target.tolist(), got.tolist()):
            if t <= 0:
                reasons.append(f"{self.id}: no {self.structure} segmented in the original, no area to set")
            elif abs(a - t) / t > self.tolerance:
                reasons.append(f"{self.id}: {self.structure} area {a:.0f} mm² misses the target {t:.0f} mm² by {100 * abs(a - t) / t:.1f} % (> {100 * self.tolerance:g} %)")
            else:
                reasons.append(None)
        return reasons

    @classmethod
    def describe(cls) -> dict[str, Any]:
        d = super().describe()
        d.update(structure=cls.structure)
        return d
